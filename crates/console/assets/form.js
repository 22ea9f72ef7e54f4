// The "Settings > Mail server" form: every field of both seed pages, the presets, the
// client-side checks (which mirror the server's rules but never replace them: whatever
// can be sent is sent, and the server's field errors are what is shown), and the
// messages beside each field.

import { h, uid } from "./dom.js";
import { duration, t } from "./i18n.js";

/** The shape of each provider's own part of its host name (a DNS label, a cloud region,
 * a server number). */
const HOST_PARTS = {
  ACCOUNT: /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/,
  REGION: /^[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}$/,
  SERVER: /^[0-9]{1,5}$/,
};

const ENCRYPTIONS = ["NONE", "SSL", "STARTTLS"];

/** Mirrors domain::values: what the server will certainly refuse. */
const CHECKS = {
  host: (v) => (!v.trim() ? "chkRequired" : v.length > 253 ? ["chkTooLong", { n: 253 }] : !isHost(v.trim()) ? "chkHost" : null),
  fromAddress: (v) => (!v.trim() ? "chkRequired" : v.length > 254 ? ["chkTooLong", { n: 254 }] : !isEmail(v.trim()) ? "chkEmail" : null),
  fromName: (v) => ([...v].length > 100 ? ["chkTooLong", { n: 100 }] : null),
  port: (v) => (!/^[0-9]{1,5}$/.test(v.trim()) || Number(v) < 1 || Number(v) > 65535 ? "chkPort" : null),
  sendIntervalMs: (v) => (v.trim() && (!/^[0-9]{1,7}$/.test(v.trim()) || Number(v) > 3600000) ? "chkInterval" : null),
  localHostname: (v) => (v.trim() && !(isHost(v.trim()) && v.includes(".")) && !/^\[.+\]$/.test(v.trim()) ? "chkLocalHostname" : null),
  "popBeforeSmtp.host": (v) => (!v.trim() ? "chkRequired" : !isHost(v.trim()) ? "chkHost" : null),
  "popBeforeSmtp.port": (v) => (!/^[0-9]{1,5}$/.test(v.trim()) || Number(v) < 1 || Number(v) > 65535 ? "chkPort" : null),
};

export function isHost(v) {
  if (/^[0-9.]+$/.test(v)) return /^(\d{1,3}\.){3}\d{1,3}$/.test(v);
  if (/^\[?[0-9a-fA-F:]+\]?$/.test(v) && v.includes(":")) return true;
  return v.split(".").every((label) => /^[\p{L}\p{N}]([\p{L}\p{N}-]{0,61}[\p{L}\p{N}])?$/u.test(label));
}

export function isEmail(v) {
  const at = v.lastIndexOf("@");
  if (at < 1) return false;
  const local = v.slice(0, at);
  const domain = v.slice(at + 1);
  return !/\s/.test(local) && local.length <= 64 && domain.includes(".") && isHost(domain) && !/^[0-9.]+$/.test(domain);
}

/** The domain of an address, lower case ("" when it has none). */
export function domainOf(address) {
  const at = address.lastIndexOf("@");
  return at < 0 ? "" : address.slice(at + 1).trim().toLowerCase().replace(/\.$/, "");
}

export class SettingsForm {
  /** presets: mailServerPresets; settings: the saved MailSettings or null. */
  constructor({ presets, settings, readOnly, onFromAddress }) {
    this.presets = presets;
    this.settings = settings;
    this.readOnly = readOnly;
    this.onFromAddress = onFromAddress;
    this.rows = new Map();
    this.inputs = {};
    this.element = this.build();
    this.load(settings);
  }

  preset(kind) {
    return this.presets.find((p) => p.kind === kind) || null;
  }

  // ---- building -------------------------------------------------------------------

  row(field, label, control, help) {
    const errId = uid("err");
    const hintId = uid("hint");
    const helpId = help ? uid("help") : null;
    const describedBy = [helpId, errId, hintId].filter(Boolean).join(" ");
    for (const el of [control].flat()) {
      const targets = el.matches("input, select") ? [el] : [...el.querySelectorAll("input, select")];
      for (const target of targets) target.setAttribute("aria-describedby", describedBy);
    }
    const error = h("p", { class: "field-error", id: errId, "data-error-for": field, hidden: true });
    const hint = h("p", { class: "field-hint", id: hintId, "data-hint-for": field, hidden: true });
    const row = h(
      "div",
      { class: "field", "data-field": field },
      label,
      control,
      help ? h("p", { class: "help", id: helpId }, help) : null,
      error,
      hint,
    );
    this.rows.set(field, { row, error, hint, control });
    return row;
  }

  text(field, labelKey, { type = "text", help, autocomplete = "off", inputmode, placeholder } = {}) {
    const id = uid("f");
    const input = h("input", { id, name: field, type, autocomplete, inputmode, placeholder, spellcheck: "false" });
    this.inputs[field] = input;
    if (CHECKS[field]) input.addEventListener("blur", () => this.checkOne(field));
    input.addEventListener("input", () => this.clearField(field));
    return this.row(field, h("label", { for: id }, t(labelKey)), input, help);
  }

  radios(field, legendKey, options, help) {
    const name = uid("r");
    const inputs = options.map(([value, labelKey]) => {
      const id = uid("f");
      const input = h("input", { type: "radio", id, name, value });
      input.addEventListener("change", () => this.clearField(field));
      return h("span", { class: "choice" }, input, h("label", { for: id }, t(labelKey)));
    });
    this.inputs[field] = { radios: inputs.map((s) => s.querySelector("input")) };
    const errId = uid("err");
    const hintId = uid("hint");
    const helpId = help ? uid("help") : null;
    const error = h("p", { class: "field-error", id: errId, "data-error-for": field, hidden: true });
    const hint = h("p", { class: "field-hint", id: hintId, "data-hint-for": field, hidden: true });
    const set = h(
      "fieldset",
      { class: "field radios", "data-field": field, "aria-describedby": [helpId, errId, hintId].filter(Boolean).join(" ") },
      h("legend", {}, t(legendKey)),
      h("div", { class: "choices" }, inputs),
      help ? h("p", { class: "help", id: helpId }, help) : null,
      error,
      hint,
    );
    this.rows.set(field, { row: set, error, hint, control: set });
    return set;
  }

  build() {
    const kindId = uid("f");
    const kind = h(
      "select",
      { id: kindId, name: "serverKind" },
      h("option", { value: "CUSTOM" }, t("kindCUSTOM")),
      this.presets.map((p) => h("option", { value: p.kind }, p.kind === "GMAIL" ? t("kindGMAIL") : p.name)),
    );
    this.inputs.serverKind = kind;
    kind.addEventListener("change", () => this.choosePreset(kind.value, true));
    this.presetInfo = h("div", { class: "preset-info", "aria-live": "polite" });

    const hostInputId = uid("f");
    this.inputs.hostInput = h("input", { id: hostInputId, name: "hostInput", type: "text", autocomplete: "off", spellcheck: "false", "aria-describedby": `${hostInputId}-err` });
    this.hostInputLabel = h("label", { for: hostInputId });
    this.hostInputError = h("p", { class: "field-error", id: `${hostInputId}-err`, "data-error-for": "hostInput", hidden: true });
    this.inputs.hostInput.addEventListener("input", () => this.fillTemplate());
    this.hostInputRow = h("div", { class: "field", "data-field": "hostInput", hidden: true }, this.hostInputLabel, this.inputs.hostInput, this.hostInputError);

    const pop = h("input", { type: "checkbox", id: uid("f"), name: "popBeforeSmtp" });
    this.inputs.popBeforeSmtp = pop;
    this.popFields = h(
      "div",
      { class: "nested", hidden: true },
      this.text("popBeforeSmtp.host", "popHost"),
      this.text("popBeforeSmtp.port", "popPort", { inputmode: "numeric" }),
      this.text("popBeforeSmtp.username", "popUser"),
      this.text("popBeforeSmtp.password", "popPassword", { type: "password", autocomplete: "new-password" }),
      this.checkbox("popBeforeSmtp.tls", "popTls"),
    );
    pop.addEventListener("change", () => {
      this.popFields.hidden = !pop.checked;
    });

    this.authFields = h(
      "div",
      { class: "nested" },
      // With the seed's other names for each (what a provider's manual may call it).
      this.text("username", "username", { help: [t("usernameHelp"), " ", t("usernameAlso")] }),
      this.text("password", "password", { type: "password", help: [t("passwordHelp"), " ", t("passwordAlso")], autocomplete: "new-password" }),
    );

    const perMinuteId = uid("f");
    this.inputs.perMinute = h("input", { id: perMinuteId, type: "number", min: "1", max: "100000", inputmode: "numeric", class: "short" });
    this.intervalOut = h("p", { class: "help", "aria-live": "polite" });
    const computeButton = h("button", { type: "button", "data-action": "compute-interval" }, t("compute"));
    computeButton.addEventListener("click", () => this.computeInterval());

    const form = h(
      "form",
      { class: "settings", novalidate: true, "aria-labelledby": "settings-title" },
      h(
        "fieldset",
        { class: "all", disabled: this.readOnly },
        h("legend", { class: "visually-hidden" }, t("formTitle")),
        this.row("serverKind", h("label", { for: kindId }, t("serverKind")), kind, t("serverKindHelp")),
        this.presetInfo,
        this.hostInputRow,
        this.text("host", "host", { help: t("hostHelp") }),
        this.text("fromAddress", "fromAddress", { type: "email", help: t("fromAddressHelp"), autocomplete: "email" }),
        h("div", { class: "discovery", "data-part": "discovery", "aria-live": "polite" }),
        this.text("fromName", "fromName", { help: t("fromNameHelp") }),
        this.text("port", "port", { inputmode: "numeric", help: t("portHelp") }),
        this.radios("encryption", "encryption", ENCRYPTIONS.map((e) => [e, `enc${e}`]), t("encryptionHelp")),
        this.radios("smtpAuth", "smtpAuth", [["true", "authOn"], ["false", "authOff"]], t("smtpAuthHelp")),
        this.authFields,
        h("div", { class: "field check" }, pop, h("label", { for: pop.id }, t("popBeforeSmtp"))),
        this.popFields,
        this.text("localHostname", "localHostname", { help: t("localHostnameHelp") }),
        this.row(
          "sendIntervalMs",
          h("label", { for: "send-interval" }, t("sendInterval")),
          [h("span", { class: "with-unit" }, this.intervalInput(), h("span", {}, t("ms")), this.intervalWords)],
          t("sendIntervalHelp"),
        ),
        h(
          "div",
          { class: "interval-helper" },
          h("label", { for: perMinuteId }, t("perMinute")),
          this.inputs.perMinute,
          h("span", {}, t("mails")),
          computeButton,
          this.intervalOut,
        ),
      ),
    );
    for (const r of this.inputs.smtpAuth.radios) {
      r.addEventListener("change", () => this.showAuth());
    }
    for (const r of this.inputs.encryption.radios) {
      r.addEventListener("change", () => this.suggestPort(r.value));
    }
    this.inputs.fromAddress.addEventListener("input", () => this.onFromAddress?.(this.inputs.fromAddress.value));
    return form;
  }

  intervalInput() {
    const input = h("input", { id: "send-interval", name: "sendIntervalMs", type: "text", inputmode: "numeric", class: "short", autocomplete: "off" });
    this.inputs.sendIntervalMs = input;
    input.addEventListener("blur", () => this.checkOne("sendIntervalMs"));
    input.addEventListener("input", () => {
      this.clearField("sendIntervalMs");
      this.showInterval();
    });
    // The interval in words beside the milliseconds (5000 → 5 秒).
    this.intervalWords = h("span", { class: "muted", "data-part": "interval-words", "aria-live": "polite" });
    return input;
  }

  showInterval() {
    const v = this.inputs.sendIntervalMs.value.trim();
    this.intervalWords.textContent = /^[0-9]{1,7}$/.test(v) ? t("intervalIs", { words: duration(v) }) : "";
  }

  checkbox(field, labelKey) {
    const id = uid("f");
    const input = h("input", { type: "checkbox", id, name: field });
    this.inputs[field] = input;
    return this.row(field, h("label", { for: id }, t(labelKey)), input);
  }

  // ---- values ---------------------------------------------------------------------

  radio(field) {
    return this.inputs[field].radios.find((r) => r.checked)?.value ?? null;
  }

  setRadio(field, value) {
    for (const r of this.inputs[field].radios) r.checked = r.value === String(value);
  }

  load(s) {
    const i = this.inputs;
    i.serverKind.value = s?.serverKind ?? "CUSTOM";
    i.host.value = s?.host ?? "";
    i.fromAddress.value = s?.fromAddress ?? "";
    i.fromName.value = s?.fromName ?? "";
    i.port.value = s?.port ? String(s.port) : "";
    this.setRadio("encryption", s?.encryption ?? "STARTTLS");
    this.setRadio("smtpAuth", s ? s.smtpAuth : true);
    i.username.value = s?.username ?? "";
    i.password.value = "";
    i.password.placeholder = s?.connectionId ? t("passwordSignedIn") : s?.hasPassword ? t("passwordKeep") : "";
    const pop = s?.popBeforeSmtp;
    i.popBeforeSmtp.checked = Boolean(pop);
    this.popFields.hidden = !pop;
    i["popBeforeSmtp.host"].value = pop?.host ?? "";
    i["popBeforeSmtp.port"].value = pop?.port ? String(pop.port) : "110";
    i["popBeforeSmtp.username"].value = pop?.username ?? "";
    i["popBeforeSmtp.password"].value = "";
    i["popBeforeSmtp.password"].placeholder = pop?.hasPassword ? t("passwordKeep") : "";
    i["popBeforeSmtp.tls"].checked = Boolean(pop?.tls);
    i.localHostname.value = s?.localHostname ?? "";
    i.sendIntervalMs.value = String(s?.sendIntervalMs ?? 0);
    this.showInterval();
    this.settings = s;
    this.choosePreset(i.serverKind.value, false);
    this.showAuth();
    this.clearErrors();
    // What the form said when loaded: anything else was typed since.
    this.loaded = this.typed();
  }

  /** The form's values that make settings (the interval helper's count is not one). */
  typed() {
    const { perMinute, ...values } = this.snapshot();
    return JSON.stringify(values);
  }

  /** Whether something was typed (or chosen) since the settings were loaded. */
  dirty() {
    return this.typed() !== this.loaded;
  }

  /** Whether the form says what is saved: settings are saved and nothing was typed since. */
  unchanged() {
    return Boolean(this.settings) && !this.dirty();
  }

  /** The MailSettingsInput the form says now; `null` when a number field cannot be
   *  sent at all (its client-side message is then shown). */
  draft() {
    const i = this.inputs;
    const unsendable = ["port", "sendIntervalMs"].filter((f) => i[f].value.trim() && !/^[0-9]+$/.test(i[f].value.trim()));
    if (i.popBeforeSmtp.checked && !/^[0-9]*$/.test(i["popBeforeSmtp.port"].value.trim())) unsendable.push("popBeforeSmtp.port");
    if (unsendable.length) {
      for (const f of unsendable) this.checkOne(f);
      return null;
    }
    const int = (v) => (v.trim() ? Number(v.trim()) : null);
    const auth = this.radio("smtpAuth") === "true";
    const input = {
      serverKind: i.serverKind.value,
      host: i.host.value.trim(),
      fromAddress: i.fromAddress.value.trim(),
      fromName: i.fromName.value.trim(),
      port: int(i.port.value),
      encryption: this.radio("encryption"),
      smtpAuth: auth,
      localHostname: i.localHostname.value.trim(),
      sendIntervalMs: int(i.sendIntervalMs.value) ?? 0,
      expectedVersion: this.settings?.version ?? 0,
    };
    if (auth) {
      input.username = i.username.value.trim();
      // Settings that sign in keep their connection, unless a password is typed.
      if (i.password.value) input.password = i.password.value;
      else if (this.settings?.connectionId) input.connectionId = this.settings.connectionId;
    } else {
      input.username = "";
    }
    if (i.popBeforeSmtp.checked) {
      input.popBeforeSmtp = {
        host: i["popBeforeSmtp.host"].value.trim(),
        port: int(i["popBeforeSmtp.port"].value),
        username: i["popBeforeSmtp.username"].value.trim(),
        tls: i["popBeforeSmtp.tls"].checked,
      };
      if (i["popBeforeSmtp.password"].value) input.popBeforeSmtp.password = i["popBeforeSmtp.password"].value;
    } else {
      input.popBeforeSmtp = null;
    }
    return input;
  }

  /** Whether `input` (from draft()) clears, as the server reads it: every text field
   * empty (the seed's way to clear), no connection, no POP login. */
  static clears(input) {
    const blank = (v) => !v || !String(v).trim();
    const pop = input.popBeforeSmtp;
    return (
      ["host", "fromAddress", "fromName", "username", "password", "localHostname", "connectionId"].every((f) => blank(input[f])) &&
      (!pop || (blank(pop.host) && blank(pop.username) && blank(pop.password)))
    );
  }

  /** What the reader has typed, to carry over a re-render (a language switch). */
  snapshot() {
    const values = {};
    for (const [name, input] of Object.entries(this.inputs)) {
      if (input.radios) values[name] = this.radio(name);
      else if (input.type === "checkbox") values[name] = input.checked;
      else values[name] = input.value;
    }
    return values;
  }

  restore(values) {
    for (const [name, value] of Object.entries(values || {})) {
      const input = this.inputs[name];
      if (!input) continue;
      if (input.radios) this.setRadio(name, value);
      else if (input.type === "checkbox") input.checked = value;
      else input.value = value;
    }
    this.popFields.hidden = !this.inputs.popBeforeSmtp.checked;
    this.choosePreset(this.inputs.serverKind.value, false);
    this.showAuth();
    this.showInterval();
  }

  fromAddress() {
    return this.inputs.fromAddress.value.trim();
  }

  // ---- presets, suggestions, helpers -------------------------------------------------

  choosePreset(kind, fill) {
    const p = this.preset(kind);
    const i = this.inputs;
    this.presetInfo.replaceChildren();
    this.hostInputRow.hidden = !(p && p.hostTemplate);
    i.host.readOnly = Boolean(p);
    if (!p) return;
    if (fill) {
      i.port.value = String(p.port);
      this.setRadio("encryption", p.encryption);
      this.setRadio("smtpAuth", p.smtpAuth);
      this.showAuth();
      if (!p.hostTemplate) i.host.value = p.host;
    }
    // Each provider's own part (a Sakura account, an SES region, an Xserver number)
    // starts empty when the admin picks another provider: one typed for another means
    // something else here. Loading and restoring keep what is there.
    if (fill && this.hostInputOf !== kind) {
      i.hostInput.value = "";
      this.hostInputError.hidden = true;
    }
    this.hostInputOf = kind;
    if (p.hostTemplate) {
      this.hostInputLabel.textContent = t(`hostInput${p.hostInput}`);
      const m = p.hostTemplate.match(/^(.*)\{[a-z_]+\}(.*)$/);
      if (m && i.host.value.startsWith(m[1]) && i.host.value.endsWith(m[2]) && !i.hostInput.value) {
        i.hostInput.value = i.host.value.slice(m[1].length, i.host.value.length - m[2].length);
      }
      this.fillTemplate();
    }
    const info = [];
    if (p.sendLimit) info.push(h("p", {}, t("presetLimit", { count: p.sendLimit.count, period: t(`period${p.sendLimit.period}`) })));
    // A pace only where the provider limits a rate (per minute); a cap per hour or day
    // is a quota, and spacing mails out to meet it would only make them late.
    if (p.sendIntervalMs && p.sendLimit?.period === "MINUTE") {
      const use = h("button", { type: "button", "data-action": "apply-interval" }, t("applyInterval"));
      use.addEventListener("click", () => {
        i.sendIntervalMs.value = String(p.sendIntervalMs);
        this.showInterval();
      });
      info.push(h("p", { "data-part": "preset-interval" }, t("presetInterval", { words: duration(p.sendIntervalMs), ms: p.sendIntervalMs }), " ", use));
    } else if (p.sendLimit) {
      info.push(h("p", { "data-part": "preset-quota" }, t("presetQuota")));
    }
    for (const hint of p.hints) info.push(h("p", { class: "preset-hint", "data-hint-code": hint.code }, hint.message));
    this.presetInfo.append(...info);
  }

  fillTemplate() {
    const p = this.preset(this.inputs.serverKind.value);
    if (!p?.hostTemplate) return;
    const part = this.inputs.hostInput.value.trim().toLowerCase();
    // Checked as it is typed: a part of the wrong shape makes no host name at all.
    const shape = HOST_PARTS[p.hostInput];
    const bad = Boolean(part) && shape !== undefined && !shape.test(part);
    this.hostInputError.hidden = !bad;
    this.hostInputError.textContent = bad ? t(`hostInputBad${p.hostInput}`) : "";
    this.inputs.hostInput.setAttribute("aria-invalid", String(bad));
    this.inputs.host.value = part && !bad ? p.hostTemplate.replace(/\{[a-z_]+\}/, part) : "";
  }

  /** Fills the form from a discovered server or the probe's suggestion. */
  apply({ serverKind, host, port, encryption, smtpAuth }) {
    const i = this.inputs;
    if (serverKind) {
      i.serverKind.value = this.preset(serverKind) || serverKind === "CUSTOM" ? serverKind : "CUSTOM";
      this.choosePreset(i.serverKind.value, true);
    }
    if (host && !this.preset(i.serverKind.value)?.hostTemplate) i.host.value = host;
    if (port) i.port.value = String(port);
    if (encryption) this.setRadio("encryption", encryption);
    if (smtpAuth !== undefined && smtpAuth !== null) this.setRadio("smtpAuth", smtpAuth);
    this.showAuth();
    this.clearErrors();
  }

  showAuth() {
    this.authFields.hidden = this.radio("smtpAuth") !== "true";
  }

  suggestPort(encryption) {
    const port = this.inputs.port;
    const usual = { NONE: "25", SSL: "465", STARTTLS: "587" };
    if (!port.value.trim() || Object.values(usual).includes(port.value.trim())) port.value = usual[encryption];
  }

  computeInterval() {
    const n = Math.floor(Number(this.inputs.perMinute.value));
    if (!Number.isFinite(n) || n < 1) {
      this.intervalOut.textContent = t("chkPort");
      return;
    }
    const ms = Math.ceil(60000 / n);
    const safeN = Math.max(1, Math.floor((n * 5) / 6));
    const safe = Math.ceil(60000 / safeN);
    this.inputs.sendIntervalMs.value = String(ms);
    this.showInterval();
    this.intervalOut.textContent = t("computed", { n, ms, safe, safeN });
  }

  // ---- messages beside the fields ----------------------------------------------------

  rowOf(field) {
    if (this.rows.has(field)) return this.rows.get(field);
    // popBeforeSmtp.* errors on the whole group land on its host; others on the nearest.
    if (field.startsWith("popBeforeSmtp")) return this.rows.get("popBeforeSmtp.host");
    return null;
  }

  checkOne(field) {
    const check = CHECKS[field];
    if (!check) return true;
    const row = this.rowOf(field);
    const verdict = check(this.inputs[field].value);
    if (!verdict) {
      this.clearField(field);
      return true;
    }
    const [key, vars] = Array.isArray(verdict) ? verdict : [verdict, {}];
    this.setError(field, t(key, vars), "client");
    return row !== null;
  }

  setError(field, message, source = "server") {
    const row = this.rowOf(field);
    if (!row) return false;
    row.error.textContent = message;
    row.error.hidden = false;
    row.error.dataset.source = source;
    row.row.classList.add("invalid");
    const input = this.inputs[field];
    if (input instanceof HTMLElement) input.setAttribute("aria-invalid", "true");
    return true;
  }

  /** The server's field errors ({field, code, message}); answers those with no field
   *  on this form. */
  showErrors(fields) {
    this.clearErrors();
    const elsewhere = [];
    for (const f of fields) {
      if (!this.setError(f.field, f.message)) elsewhere.push(f);
      else this.rowOf(f.field).error.dataset.code = f.code;
    }
    this.focusFirstInvalid();
    return elsewhere;
  }

  /** Focus (and the view) on the first field marked invalid, if any. */
  focusFirstInvalid() {
    const first = this.element.querySelector(".field.invalid input, .field.invalid select");
    if (first) {
      first.focus({ preventScroll: true });
      first.scrollIntoView?.({ block: "center" });
    }
  }

  /** A test mail's or probe's hint beside the field it names; false when it names none here. */
  showHint(field, text) {
    this.clearHints();
    const row = field ? this.rowOf(field) : null;
    if (!row) return false;
    row.hint.textContent = text;
    row.hint.hidden = false;
    row.row.classList.add("hinted");
    return true;
  }

  clearField(field) {
    const row = this.rowOf(field);
    if (!row) return;
    row.error.hidden = true;
    row.error.textContent = "";
    row.row.classList.remove("invalid");
    const input = this.inputs[field];
    if (input instanceof HTMLElement) input.removeAttribute("aria-invalid");
  }

  clearHints() {
    for (const { hint, row } of this.rows.values()) {
      hint.hidden = true;
      hint.textContent = "";
      row.classList.remove("hinted");
    }
  }

  clearErrors() {
    for (const field of this.rows.keys()) this.clearField(field);
    this.clearHints();
  }
}
