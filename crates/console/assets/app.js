// The console's entry: sign-in with a token (pasted, or handed over once in the URL
// fragment), the language switch, and the screen for the caller's role.

import { ApiError, currentToken, gql, setToken, signOut, takeToken, tokenClaims } from "./api.js";
import { confirmDialog, fill, h, when } from "./dom.js";
import { locale, setLocale, t } from "./i18n.js";
import { showOperator } from "./operator.js";
import { showTenant } from "./tenant.js";
import { takeSignInReturn } from "./mailbox.js";

const VIEWER = `query ConsoleViewer { viewer { subject role tenant { id } } plans { code name canOverrideSender } }`;

const main = document.getElementById("main");
let session = null;
let screen = null;
// A sign-in with Microsoft or Google this tab came back from, finished once the session
// is known (its token completes it).
let signIn = takeSignInReturn();

function chrome() {
  document.documentElement.lang = locale();
  document.title = t("title");
  document.getElementById("brand-title").textContent = t("title");
  document.getElementById("lang-label").textContent = t("language");
  document.getElementById("lang").value = locale();
  const out = document.getElementById("sign-out");
  out.textContent = t("signOut");
  out.hidden = !session;
  document.getElementById("who").textContent = session ? `${session.viewer.subject} · ${t(`role${session.viewer.role}`)}` : "";
}

function signInScreen(problem) {
  session = null;
  chrome();
  const token = h("textarea", { id: "token", rows: "4", spellcheck: "false", autocomplete: "off", "aria-describedby": "token-help token-err" });
  const form = h(
    "form",
    { class: "card sign-in", novalidate: true, "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, t("signInTitle")),
    h("p", { id: "token-help" }, t("signInBody")),
    h("label", { for: "token" }, t("tokenLabel")),
    token,
    h("p", { class: "field-error", id: "token-err", hidden: !problem, role: "alert" }, problem || ""),
    h("button", { type: "submit", class: "primary", "data-action": "sign-in" }, t("signIn")),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!token.value.trim()) return;
    setToken(token.value);
    start();
  });
  fill(main, form);
  token.focus();
}

/** What to say when the server refused `token`: when its own `exp` has passed, that the
 *  link expired and how a new one is made (the server says only "authentication
 *  required", whatever the reason); otherwise the server's `message`. */
function refusal(token, message) {
  const claims = token ? tokenClaims(token) : null;
  if (!(typeof claims?.exp === "number" && claims.exp * 1000 < Date.now())) return message || t("badToken");
  const expired = h("span", { "data-part": "link-expired" }, t("linkExpired", { when: when(new Date(claims.exp * 1000).toISOString(), locale()) }));
  // The claims are not verified (the token was refused): a command is shown only when
  // they are what Mailgate itself puts there — a known role, a tenant id in UUID form —
  // so a crafted link cannot make this page show a command of someone else's choosing.
  const role = ["operator", "tenant_admin", "service"].includes(claims.role) ? claims.role : null;
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  const tenantOk = claims.tenant_id === undefined || claims.tenant_id === null || (typeof claims.tenant_id === "string" && uuid.test(claims.tenant_id));
  if (!role || !tenantOk) return [expired];
  const tenant = claims.tenant_id ? ` --tenant ${claims.tenant_id}` : "";
  const command = `mailgate token --role ${role}${tenant} --console-url ${location.origin}`;
  return [expired, " ", t("linkExpiredCommand"), " ", h("code", { class: "command", "data-part": "new-link" }, command)];
}

function problemScreen(e) {
  const fallback = { NETWORK: "network", NOT_FOUND: "notFound" }[e.code] || "errorPrefix";
  const text = e instanceof ApiError ? e.message || t(fallback) : String(e);
  fill(main, h("div", { class: "message error", role: "alert", "data-code": e.code || "INTERNAL" }, text));
}

async function route(carry = null) {
  if (!session) return;
  screen = null;
  chrome();
  const { viewer, plans } = session;
  const wanted = new URLSearchParams(location.hash.slice(1)).get("tenant");
  const back = signIn;
  signIn = null;
  try {
    if (viewer.role === "TENANT_ADMIN") {
      screen = await showTenant(main, viewer.tenant.id, { viewer, carry, signIn: back });
    } else if (viewer.role === "OPERATOR" && wanted) {
      screen = await showTenant(main, wanted, {
        viewer,
        carry,
        signIn: back?.pending?.tenant === wanted ? back : null,
        back: () => {
          location.hash = "";
        },
      });
    } else if (viewer.role === "OPERATOR") {
      await showOperator(main, {
        plans,
        openTenant: (id) => {
          location.hash = `tenant=${encodeURIComponent(id)}`;
        },
      });
    } else {
      fill(main, h("div", { class: "message error", role: "alert" }, t("serviceRole")));
    }
  } catch (e) {
    problemScreen(e);
  }
}

async function start() {
  chrome();
  let { token, handed } = takeToken();
  if (handed) {
    // A link with another token while this tab is signed in: ask before replacing.
    const replace = await confirmDialog({
      title: t("replaceSessionTitle"),
      body: t("replaceSessionBody"),
      confirm: t("replaceSession"),
      cancel: t("keepSession"),
    });
    if (replace) {
      setToken(handed);
      token = handed;
      session = null;
    }
  }
  if (!token) {
    signInScreen();
    return;
  }
  fill(main, h("p", { class: "loading" }, t("loading")));
  try {
    const data = await gql(VIEWER);
    session = { viewer: data.viewer, plans: data.plans };
  } catch (e) {
    if (e instanceof ApiError && (e.code === "UNAUTHENTICATED" || e.code === "FORBIDDEN")) {
      signOut();
      signInScreen(e.code === "UNAUTHENTICATED" ? refusal(token, e.message) : e.message || t("badToken"));
    } else {
      problemScreen(e);
    }
    return;
  }
  await route();
}

document.getElementById("lang").addEventListener("change", (e) => {
  setLocale(e.target.value);
  if (session) route(screen?.snapshot?.() ?? null);
  else signInScreen();
});
document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  location.hash = "";
  signInScreen();
});
window.addEventListener("mailgate:unauthenticated", (e) => {
  if (!session) return;
  const token = currentToken();
  signOut();
  signInScreen(refusal(token, e.detail));
});
window.addEventListener("hashchange", () => {
  if (new URLSearchParams(location.hash.slice(1)).has("token")) start();
  else route();
});

start();
