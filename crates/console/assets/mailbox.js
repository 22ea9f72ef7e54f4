// Connecting a Microsoft 365 or Google mailbox by signing in instead of a password: the
// card on the tenant's screen (connect, reconnect, disconnect), the offer shown when
// Microsoft refuses a password, and finishing a sign-in when the browser comes back
// with `#mailgate-sign-in=…&state=…&code=…` (the same admin's token completes it).

import { gql } from "./api.js";
import { confirmDialog, fill, h, when } from "./dom.js";
import { locale, t } from "./i18n.js";

const PENDING_KEY = "mailgate.console.signIn";

/** The sign-in this tab is coming back from, read once from the URL fragment and removed
 *  from the address (the code must not stay in the history). `null` when there is none. */
export function takeSignInReturn() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (!params.has("mailgate-sign-in") && !params.has("mailgate-consent")) return null;
  const back = {
    provider: params.get("mailgate-sign-in"),
    consent: params.get("mailgate-consent"),
    state: params.get("state"),
    code: params.get("code"),
    error: params.get("error"),
  };
  let pending = null;
  try {
    pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || "null");
  } catch {
    pending = null;
  }
  sessionStorage.removeItem(PENDING_KEY);
  const rest = pending?.tenant ? `#tenant=${encodeURIComponent(pending.tenant)}` : "";
  history.replaceState(null, "", location.pathname + location.search + rest);
  return { ...back, pending };
}

/** Starts a sign-in of `kind` for tenant `id`: the browser leaves for the provider.
 *  `fromAddress`, when given, is the sender typed in the form, used once it comes back. */
export async function connect(id, kind, fromAddress = null) {
  const data = await gql(
    `mutation ConsoleConnect($id: ID!, $kind: MailConnectionKind!) { connectMailbox(tenantId: $id, kind: $kind) { authorizationUrl adminConsentUrl expiresAt } }`,
    { id, kind },
  );
  const start = data.connectMailbox;
  sessionStorage.setItem(PENDING_KEY, JSON.stringify({ tenant: id, kind, fromAddress, adminConsentUrl: start.adminConsentUrl }));
  location.assign(start.authorizationUrl);
}

/** Finishes a sign-in the browser came back from; resolves to the message to show. */
export async function complete(id, back) {
  if (back.consent) {
    return { kind: back.consent === "granted" ? "ok" : "error", content: [h("p", {}, t(back.consent === "granted" ? "consentGranted" : "consentRefused"))] };
  }
  if (back.error) {
    const key = { consent_required: "signInConsent", access_denied: "signInCancelled" }[back.error] || "signInFailed";
    const link = back.pending?.adminConsentUrl;
    return {
      kind: "error",
      content: [
        h("p", { "data-sign-in-error": back.error }, t(key)),
        back.error === "consent_required" && link ? h("p", {}, t("consentLinkLabel"), " ", h("a", { href: link, "data-part": "admin-consent", rel: "noreferrer" }, t("consentLink"))) : null,
      ],
    };
  }
  const data = await gql(
    `mutation ConsoleComplete($id: ID!, $state: String!, $code: String!, $from: String) { completeMailboxConnection(tenantId: $id, state: $state, code: $code, fromAddress: $from) { connection { id mailbox status } settings { version health { state } } } }`,
    { id, state: back.state || "", code: back.code || "", from: back.pending?.fromAddress || null },
  );
  const done = data.completeMailboxConnection;
  const pending = done.settings?.health.state === "PENDING_VERIFICATION";
  return {
    kind: "ok",
    content: [
      h("p", { "data-part": "signed-in" }, t("signInDone", { mailbox: done.connection.mailbox })),
      pending ? h("p", {}, t("signInTestNext")) : null,
    ],
  };
}

/** The app-only connection an organisation's admin sets up (no one signs in): the
 *  steps, pre-filled for the mailbox, then the connection. */
function appSection({ id, appKinds, say, reload, fail }) {
  const kind = h("select", { id: "app-kind" }, appKinds.map((k) => h("option", { value: k }, t(`appKind${k}`))));
  const mailbox = h("input", { type: "email", id: "app-mailbox", autocomplete: "email" });
  const directory = h("input", { type: "text", id: "app-directory", autocomplete: "off", spellcheck: "false" });
  const directoryRow = h("p", { class: "field" }, h("label", { for: "app-directory" }, t("appDirectory")), directory);
  const steps = h("div", { "aria-live": "polite", "data-part": "app-steps" });
  const showDirectory = () => {
    directoryRow.hidden = kind.value !== "MICROSOFT_APP_SMTP";
  };
  kind.addEventListener("change", showDirectory);
  showDirectory();
  const show = h("button", { type: "button", "data-action": "app-steps" }, t("appShowSteps"));
  show.addEventListener("click", async () => {
    try {
      const data = await gql(
        `query ConsoleAppSetup($id: ID!, $k: MailConnectionKind!, $m: String!) { appConnectionSetup(tenantId: $id, kind: $k, mailbox: $m) { adminConsentUrl clientId scopes commands } }`,
        { id, k: kind.value, m: mailbox.value.trim() },
      );
      const setup = data.appConnectionSetup;
      const connectNow = h("button", { type: "button", class: "primary", "data-action": "app-connect" }, t("appConnect"));
      connectNow.addEventListener("click", async () => {
        connectNow.disabled = true;
        try {
          const done = await gql(
            `mutation ConsoleAppConnect($id: ID!, $k: MailConnectionKind!, $m: String!, $d: String) { connectMailboxAsApp(tenantId: $id, kind: $k, mailbox: $m, directoryId: $d) { connection { mailbox } } }`,
            { id, k: kind.value, m: mailbox.value.trim(), d: directory.value.trim() || null },
          );
          // Said after the reload: a notice describes the state it was said in.
          await reload();
          say("ok", h("p", { "data-part": "signed-in" }, t("signInDone", { mailbox: done.connectMailboxAsApp.connection.mailbox })), h("p", {}, t("signInTestNext")));
        } catch (e) {
          connectNow.disabled = false;
          fail(e);
        }
      });
      fill(
        steps,
        setup.adminConsentUrl ? h("p", {}, t("appConsentStep"), " ", h("a", { href: setup.adminConsentUrl, rel: "noreferrer", "data-part": "app-consent" }, t("consentLink"))) : null,
        setup.commands.length ? [h("p", {}, t("appPowerShellStep")), h("pre", { class: "commands", "data-part": "app-commands", tabindex: "0" }, setup.commands.join("\n"))] : null,
        kind.value === "GOOGLE_DOMAIN_WIDE"
          ? h("p", { "data-part": "app-delegation" }, t("appDelegationStep", { client: setup.clientId ?? "", scopes: setup.scopes.join(",") }))
          : null,
        h("div", { class: "actions" }, connectNow),
      );
    } catch (e) {
      fail(e);
    }
  });
  return h(
    "details",
    { class: "app-only", "data-part": "app-only" },
    h("summary", {}, t("appTitle")),
    h("p", { class: "muted" }, t("appIntro")),
    h("p", { class: "field" }, h("label", { for: "app-kind" }, t("appKindLabel")), kind),
    h("p", { class: "field" }, h("label", { for: "app-mailbox" }, t("appMailbox")), mailbox),
    directoryRow,
    h("div", { class: "actions" }, show),
    steps,
  );
}

/** The card: the tenant's connections with their state, and the buttons to connect. */
export function mailboxCard({ id, providers, appKinds = [], connections, say, reload, fail }) {
  const box = h("section", { class: "card mailbox", "aria-labelledby": "mailbox-title", "data-part": "mailbox" });
  const smtp = h("input", { type: "checkbox", id: "mailbox-smtp" });
  const go = async (kind, button) => {
    button.disabled = true;
    try {
      await connect(id, kind);
    } catch (e) {
      button.disabled = false;
      fail(e);
    }
  };
  const buttons = [];
  if (providers.includes("MICROSOFT")) {
    const b = h("button", { type: "button", class: "primary", "data-action": "connect-microsoft" }, t("connectMicrosoft"));
    b.addEventListener("click", () => go(smtp.checked ? "MICROSOFT_DELEGATED_SMTP" : "MICROSOFT_DELEGATED_GRAPH", b));
    buttons.push(b);
  }
  if (providers.includes("GOOGLE")) {
    const b = h("button", { type: "button", "data-action": "connect-google" }, t("connectGoogle"));
    b.addEventListener("click", () => go("GOOGLE_GMAIL_API", b));
    buttons.push(b);
  }
  const rows = connections.map((c) => {
    const state = h("span", { class: `state state-${c.status === "ACTIVE" ? "live" : "suspended"}`, "data-state": c.status }, t(`connection${c.status}`));
    // App-only connections are set up again by the organisation's admin, not signed in.
    const signedIn = !["MICROSOFT_APP_SMTP", "GOOGLE_DOMAIN_WIDE", "XOAUTH2_CLIENT_CREDENTIALS"].includes(c.kind);
    const again = signedIn ? h("button", { type: "button", "data-action": "reconnect" }, t("reconnect")) : null;
    again?.addEventListener("click", () => go(c.kind || (c.provider === "GOOGLE" ? "GOOGLE_GMAIL_API" : "MICROSOFT_DELEGATED_GRAPH"), again));
    const drop = h("button", { type: "button", class: "danger", "data-action": "disconnect" }, t("disconnect"));
    drop.addEventListener("click", async () => {
      const ok = await confirmDialog({
        title: t("disconnectTitle"),
        body: [t("disconnectBody", { mailbox: c.mailbox }), c.provider === "MICROSOFT" ? t("disconnectMicrosoft") : t("disconnectGoogle")],
        confirm: t("disconnect"),
        cancel: t("cancel"),
        danger: true,
      });
      if (!ok) return;
      try {
        await gql(`mutation ConsoleDisconnect($id: ID!, $c: ID!) { disconnectMailbox(tenantId: $id, connectionId: $c) }`, { id, c: c.id });
        await reload();
        say("ok", t("disconnected", { mailbox: c.mailbox }));
      } catch (e) {
        fail(e);
      }
    });
    const refreshed = c.lastRefreshedAt ? t("lastRefreshed", { when: when(c.lastRefreshedAt, locale()) }) : "";
    return h(
      "li",
      { "data-connection": c.id, "data-status": c.status },
      h("span", { class: "mailbox-address" }, c.mailbox),
      " ",
      state,
      refreshed ? h("span", { class: "muted" }, ` ${refreshed}`) : null,
      h("span", { class: "row-actions" }, c.status === "ACTIVE" ? null : again, drop),
    );
  });
  fill(
    box,
    h("h2", { id: "mailbox-title" }, t("mailboxTitle")),
    h("p", { class: "intro" }, t("mailboxIntro")),
    rows.length ? h("ul", { class: "connections" }, rows) : null,
    buttons.length
      ? h("div", { class: "actions" }, ...buttons)
      : appKinds.length
        ? null
        : h("p", { class: "muted", "data-part": "sign-in-off" }, t("signInOff")),
    providers.includes("MICROSOFT") ? h("p", { class: "option" }, smtp, " ", h("label", { for: "mailbox-smtp" }, t("connectSmtp"))) : null,
    appKinds.length ? appSection({ id, appKinds, say, reload, fail }) : null,
  );
  return box;
}

/** The offer shown when Microsoft refused the password: sign in instead, in place. */
export function microsoftOffer(id, fail) {
  const b = h("button", { type: "button", class: "primary", "data-action": "offer-connect-microsoft" }, t("connectMicrosoft"));
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await connect(id, "MICROSOFT_DELEGATED_GRAPH");
    } catch (e) {
      b.disabled = false;
      fail(e);
    }
  });
  return h("div", { class: "notice", role: "note", "data-part": "sign-in-offer" }, h("p", {}, t("offerMicrosoft")), b);
}
