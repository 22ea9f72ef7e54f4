// The GraphQL client: the tab's token, the chosen language, and typed errors.

import { locale } from "./i18n.js";

const TOKEN_KEY = "mailgate.console.token";

/** The token for this tab: handed over once in the fragment (#token=…), then kept in
 *  sessionStorage (this tab only, gone when it closes) and removed from the address.
 *  Returns `{ token, handed }`: `handed` is a token from the fragment that differs from
 *  the one this tab is signed in with — it is not used until the reader agrees
 *  (`setToken`), so a link cannot swap the session behind the reader's back. */
export function takeToken() {
  const params = new URLSearchParams(location.hash.slice(1));
  const handed = params.get("token")?.trim() || null;
  if (params.has("token")) {
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  const current = sessionStorage.getItem(TOKEN_KEY);
  if (handed && !current) {
    sessionStorage.setItem(TOKEN_KEY, handed);
    return { token: handed, handed: null };
  }
  return { token: current, handed: handed && handed !== current ? handed : null };
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token.trim());
}

/** The token this tab is signed in with, or null. */
export function currentToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** The claims a token carries (its payload, read without checking the signature: only to
 *  say when it expired and for whom), or null when it is no JWT. */
export function tokenClaims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "=")), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** A GraphQL error the screen can show: `code` is `extensions.code`, `fields` the
 *  VALIDATION_FAILED list of {field, code, message}. */
export class ApiError extends Error {
  constructor(message, code, fields = [], extensions = {}) {
    super(message);
    this.code = code;
    this.fields = fields;
    this.extensions = extensions;
  }
}

/** Runs one operation; resolves to `data`, or throws ApiError. `partial: true` returns
 *  `{data, errors}` instead of throwing when some data came back. */
export async function gql(query, variables = {}, { partial = false } = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        "Accept-Language": locale(),
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError("", "NETWORK");
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError("", response.status === 503 ? "OVERLOADED" : "INTERNAL");
  }
  const errors = body.errors || [];
  const unauthenticated = errors.find((e) => e.extensions?.code === "UNAUTHENTICATED");
  if (unauthenticated) {
    // An expired or revoked token: the console goes back to its sign-in.
    window.dispatchEvent(new CustomEvent("mailgate:unauthenticated", { detail: unauthenticated.message }));
  }
  if (partial && body.data) return { data: body.data, errors };
  if (errors.length) {
    const first = errors[0];
    const ext = first.extensions || {};
    throw new ApiError(first.message, ext.code || "INTERNAL", ext.fields || [], ext);
  }
  return body.data;
}

/** The queue's counts from /metrics (operators): {status: count}. */
export async function queueCounts() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await fetch("/metrics", { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw new ApiError("", response.status === 401 || response.status === 403 ? "FORBIDDEN" : "INTERNAL");
  const text = await response.text();
  const counts = {};
  let oldest = null;
  for (const line of text.split("\n")) {
    const m = line.match(/^mailgate_deliveries\{status="([a-z_]+)"\} ([0-9.e+]+)$/);
    if (m) counts[m[1]] = Number(m[2]);
    const o = line.match(/^mailgate_queue_oldest_due_age_seconds ([0-9.e+]+)$/);
    if (o) oldest = Number(o[1]);
  }
  return { counts, oldest };
}
