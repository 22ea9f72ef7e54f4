// A tenant's screen, 設定 > メールサーバー: where mail goes out from now and why, the
// state of the saved settings, the form with test mail, save and clear, the setup
// assistant (discovery, probe, domain check), the deliveries and the audit trail.

import { ApiError, gql } from "./api.js";
import { confirmDialog, fill, h, when } from "./dom.js";
import { SettingsForm, domainOf, isEmail } from "./form.js";
import { has, locale, planName, t } from "./i18n.js";
import { complete, connect, mailboxCard, microsoftOffer } from "./mailbox.js";

const SETTINGS_FIELDS = `serverKind host port fromAddress fromName smtpAuth username hasPassword encryption
  popBeforeSmtp { host port username hasPassword tls } localHostname sendIntervalMs active version updatedAt
  connectionId signInOffer connection { id mailbox status }
  health { state since consecutiveFailures hint hintCode activationCodeExpiresAt lastFailure { at stage smtpCode enhancedCode serverMessage } }
  warnings { code field message }`;

const TENANT = `query ConsoleTenant($id: ID!) {
  tenant(id: $id) {
    id name plan canOverrideSender
    effectiveSender { address name source reason reasonCode replyTo }
    platformSender { address name }
    mailSettings { ${SETTINGS_FIELDS} }
  }
  mailSignInProviders
  mailAppConnectionKinds
  mailConnections(tenantId: $id) { id kind provider mailbox status lastRefreshedAt }
}`;

const PRESETS = `query ConsolePresets { mailServerPresets {
  kind name host hostTemplate hostInput port encryption smtpAuth username sendIntervalMs
  sendLimit { count period } hints { code message } } plans { code name canOverrideSender } }`;

const RESULT_FIELDS = `ok stage smtpCode enhancedCode serverMessage hint hintCode field elapsedMs
  sender { address name source } activated activationCodeSent warnings { code field message } signInOffer`;

const DELIVERIES = `query ConsoleDeliveries($id: ID!, $status: DeliveryStatus, $after: String) {
  tenant(id: $id) { deliveries(status: $status, first: 20, after: $after) {
    counts { status count }
    pageInfo { hasNextPage endCursor }
    edges { node { id kind to subject status retries createdAt sentAt nextAttemptAt failureMessage
      attempts { at outcome stage smtpCode enhancedCode serverMessage senderAddress route } } }
  } }
}`;

// Newest first, a page at a time ("Show more" asks for the older ones).
const AUDIT = `query ConsoleAudit($id: ID!, $after: String) {
  tenant(id: $id) { auditTrail(first: 20, after: $after, order: NEWEST_FIRST) {
    pageInfo { hasNextPage endCursor }
    edges { node { id action description actorLabel at changes { field label beforeText afterText secret } } }
  } }
}`;

let presetsCache = null;

/** Failures that are likely to pass by themselves: a temporary refusal, a timeout, a
 * provider's throttling (with any 4xx reply). */
const TEMPORARY = new Set(["TEMPORARY_FAILURE", "TIMED_OUT", "PROVIDER_THROTTLED"]);
/** Failures a change at the provider fixes, which may take a while to reach its servers
 * (the Ecrea page: right after the setting, the test may still fail). */
const AFTER_A_CHANGE = new Set(["GMAIL_APP_PASSWORD", "M365_SMTP_AUTH_DISABLED"]);

/** A server's reply as one line: code, enhanced code (unless the text starts with it), text. */
function reply({ smtpCode, enhancedCode, serverMessage }) {
  const text = serverMessage || "";
  const enhanced = enhancedCode && !text.startsWith(enhancedCode) ? enhancedCode : null;
  return [smtpCode, enhanced, text].filter(Boolean).join(" ");
}

/** Builds the screen of tenant `id` into `root`. */
export async function showTenant(root, id, { viewer, back, carry, signIn }) {
  const screen = new TenantScreen(root, id, viewer, back);
  await screen.load();
  if (carry?.tenant === id) screen.restore(carry);
  if (signIn) await screen.finishSignIn(signIn);
  return screen;
}

class TenantScreen {
  constructor(root, id, viewer, back) {
    this.root = root;
    this.id = id;
    this.viewer = viewer;
    this.back = back;
    this.deliveryStatus = null;
    this.lastDiscovery = "";
  }

  async load() {
    fill(this.root, h("p", { class: "loading" }, t("loading")));
    if (!presetsCache) presetsCache = await gql(PRESETS);
    const { data, errors } = await gql(TENANT, { id: this.id }, { partial: true });
    this.tenant = data.tenant;
    this.providers = data.mailSignInProviders ?? [];
    this.appKinds = data.mailAppConnectionKinds ?? [];
    this.connections = data.mailConnections ?? [];
    this.unreadable = errors.find((e) => e.extensions?.code === "SETTINGS_UNREADABLE") || null;
    if (!this.tenant) throw new ApiError("", "NOT_FOUND");
    this.render();
  }

  async reload() {
    const before = this.tenant;
    const { data, errors } = await gql(TENANT, { id: this.id }, { partial: true });
    if (!data.tenant) throw new ApiError("", "NOT_FOUND");
    this.tenant = data.tenant;
    this.providers = data.mailSignInProviders ?? [];
    this.appKinds = data.mailAppConnectionKinds ?? [];
    this.connections = data.mailConnections ?? [];
    this.unreadable = errors.find((e) => e.extensions?.code === "SETTINGS_UNREADABLE") || null;
    // Another plan: the screen is built anew (read-only, or writable again), without the
    // notices and results of before; what was typed stays while it may be changed.
    if (this.tenant.plan !== before.plan || this.tenant.canOverrideSender !== before.canOverrideSender) {
      const carry = this.snapshot();
      this.render();
      if (this.tenant.canOverrideSender) this.restore(carry);
      return;
    }
    this.renderSender();
    this.renderHealth();
    this.renderMailbox();
    this.form.settings = this.tenant.mailSettings;
    const saved = this.tenant.mailSettings;
    this.form.inputs.password.placeholder = saved?.connectionId ? t("passwordSignedIn") : saved?.hasPassword ? t("passwordKeep") : "";
    this.dropStaleNotice();
    this.renderTest();
  }

  /** The state the screen's notices describe: the plan and the saved settings' version
   * and state. A notice said in one state is gone once the state is another. */
  stateKey() {
    const s = this.tenant.mailSettings;
    const settings = this.unreadable ? "UNREADABLE" : s ? `${s.version}:${s.active}:${s.health.state}` : "NONE";
    return `${this.tenant.plan}:${settings}`;
  }

  /** Removes the notice at the top when it was said in another state than the one now
   * (e.g. "saved, waiting for a test" once the settings are live or cleared). */
  dropStaleNotice() {
    const notice = this.status.firstElementChild;
    if (notice && notice.dataset.forState !== this.stateKey()) fill(this.status);
  }

  /** The form loaded with `settings`, and the test card told what the form now says. */
  loadForm(settings) {
    this.form.load(settings);
    this.renderTest();
  }

  /** What was typed, carried over a language switch. */
  snapshot() {
    return { tenant: this.id, form: this.form?.snapshot(), to: this.testTo?.value ?? "" };
  }

  restore(carry) {
    if (carry.form && this.tenant.canOverrideSender) this.form.restore(carry.form);
    if (this.testTo) this.testTo.value = carry.to;
    this.renderTest();
  }

  planName(code) {
    return planName(presetsCache.plans.find((p) => p.code === code) ?? { code, name: code });
  }

  render() {
    const tenant = this.tenant;
    const readOnly = !tenant.canOverrideSender;
    // The test card is built below unless the screen is read-only.
    this.testCard = this.testTo = this.testResult = null;
    this.senderBox = h("section", { class: "sender", "aria-labelledby": "sender-title", "data-part": "sender" });
    this.healthBox = h("section", { class: "health", "aria-labelledby": "health-title", "data-part": "health" });
    this.mailboxBox = h("div", { "data-part": "mailbox-slot" });
    this.status = h("div", { class: "status", role: "status", "aria-live": "polite", "data-part": "status" });
    this.form = new SettingsForm({
      presets: presetsCache.mailServerPresets,
      settings: tenant.mailSettings,
      readOnly,
      onFromAddress: (value) => this.discoverSoon(value),
    });
    const save = h("button", { type: "submit", class: "primary", "data-action": "save", disabled: readOnly }, t("save"));
    this.saveButton = save;
    const clear = h("button", { type: "button", class: "danger", "data-action": "clear", disabled: readOnly }, t("clear"));
    clear.addEventListener("click", () => this.clear());
    this.form.element.addEventListener("submit", (e) => {
      e.preventDefault();
      this.save();
    });
    // Ecrea's キャンセル: throws away what was typed and shows the saved settings again.
    const discard = h("button", { type: "button", "data-action": "discard", disabled: readOnly }, t("discard"));
    discard.addEventListener("click", () => this.discard());
    this.form.element.append(h("div", { class: "actions" }, save, discard, clear));
    // The test card follows the form: the saved settings' test while it says what is
    // saved, the draft's as soon as something is typed (apply buttons inside count too).
    for (const type of ["input", "change", "click"]) this.form.element.addEventListener(type, () => queueMicrotask(() => this.renderTest()));

    fill(
      this.root,
      this.back ? h("p", {}, h("a", { href: "#", "data-action": "back", onclick: (e) => { e.preventDefault(); this.back(); } }, t("backToTenants"))) : null,
      h("nav", { class: "crumbs", "aria-label": "breadcrumb" }, h("span", {}, t("navSettings")), " > ", h("span", { "aria-current": "page" }, t("navMailServer"))),
      h("h1", {}, tenant.name, " ", h("span", { class: "badge", "data-part": "plan" }, `${t("plan")}: ${this.planName(tenant.plan)}`)),
      this.senderBox,
      readOnly ? this.planNotice() : null,
      this.healthBox,
      readOnly ? null : this.mailboxBox,
      h(
        "section",
        { class: "card", "aria-labelledby": "settings-title" },
        h("h2", { id: "settings-title" }, t("formTitle")),
        h("p", { class: "intro" }, t("formIntro")),
        h("p", { class: "intro", "data-part": "experts" }, t("formExperts")),
        this.status,
        this.form.element,
      ),
      readOnly ? null : this.testSection(),
      readOnly ? null : this.assistantSection(),
      this.viewer.role === "OPERATOR" ? this.quotaSection() : null,
      this.deliveriesSection(),
      this.auditSection(),
    );
    this.renderSender();
    this.renderHealth();
    this.renderMailbox();
    this.renderTest();
    this.loadDeliveries();
    this.loadAudit();
  }

  // ---- sign in with Microsoft or Google ----------------------------------------------

  renderMailbox() {
    if (!this.tenant.canOverrideSender || (!this.providers.length && !this.appKinds.length && !this.connections.length)) {
      fill(this.mailboxBox);
      return;
    }
    fill(
      this.mailboxBox,
      mailboxCard({
        id: this.id,
        providers: this.providers,
        appKinds: this.appKinds,
        connections: this.connections,
        say: (kind, ...content) => this.say(kind, ...content),
        reload: () => this.reload().then(() => this.loadForm(this.tenant.mailSettings)),
        fail: (e) => this.sayError(e),
      }),
    );
  }

  /** The browser came back from a sign-in: complete it as this admin and say how it went. */
  async finishSignIn(back) {
    try {
      const said = await complete(this.id, back);
      // Said after the reload: it describes the state the sign-in led to.
      await this.reload();
      this.loadForm(this.tenant.mailSettings);
      this.say(said.kind, ...said.content);
      this.loadAudit();
    } catch (e) {
      this.sayError(e);
    }
    this.status.scrollIntoView?.({ block: "center" });
  }

  // ---- where mail goes out from ------------------------------------------------------

  renderSender() {
    const s = this.tenant.effectiveSender;
    const address = s.name ? `${s.name} <${s.address}>` : s.address;
    fill(
      this.senderBox,
      h("h2", { id: "sender-title" }, t("senderNow")),
      h("p", { class: "sender-address", "data-source": s.source, "data-reason": s.reasonCode }, address),
      h("p", {}, s.source === "CUSTOM" ? t("senderCustom") : t("senderDefault"), " — ", h("span", { "data-part": "reason" }, s.reason)),
      s.replyTo ? h("p", {}, `${t("replyTo")}: ${s.replyTo}`) : null,
    );
  }

  planNotice() {
    const tenant = this.tenant;
    const platform = this.platformDefault();
    return h(
      "section",
      { class: "notice", role: "note", "aria-labelledby": "plan-title", "data-part": "plan-forbids" },
      h("h2", { id: "plan-title" }, t("planForbidsTitle")),
      h("p", {}, t("planForbidsBody")),
      h("p", {}, t("planForbidsDefault", { address: platform })),
      tenant.mailSettings ? h("p", {}, t("planForbidsKept")) : null,
    );
  }

  // ---- verification and health -----------------------------------------------------

  renderHealth() {
    const s = this.tenant.mailSettings;
    const box = this.healthBox;
    if (this.unreadable) {
      fill(box, h("h2", { id: "health-title" }, t("healthTitle")), h("p", { class: "error" }, this.unreadable.message));
      return;
    }
    if (!s) {
      fill(box, h("h2", { id: "health-title" }, t("healthTitle")), h("p", { "data-state": "NONE" }, t("noSettings")));
      return;
    }
    const state = s.active ? s.health.state : "INACTIVE";
    const label = s.active ? t(`state${state}`) : t("stateInactive");
    const body = { PENDING_VERIFICATION: "pendingBody", LIVE: "liveBody", SUSPENDED: "suspendedBody" }[state];
    const parts = [
      h("h2", { id: "health-title" }, t("healthTitle")),
      h("p", {}, h("span", { class: `state state-${state.toLowerCase()}`, "data-state": state }, label), " ", h("span", { class: "muted" }, t("since", { when: when(s.health.since, locale()) }))),
      body ? h("p", {}, t(body)) : null,
      s.health.consecutiveFailures ? h("p", {}, t("failuresInRow", { n: s.health.consecutiveFailures })) : null,
      s.health.hint ? h("p", { class: "field-hint", "data-hint-code": s.health.hintCode }, s.health.hint) : null,
      s.signInOffer === "MICROSOFT" && this.providers?.includes("MICROSOFT") ? microsoftOffer(this.id, (e) => this.sayError(e)) : null,
      s.warnings.length ? h("ul", { class: "warnings" }, s.warnings.map((w) => h("li", { "data-code": w.code }, w.message))) : null,
    ];
    // Going live happens in one place, the test card: this box says the state and
    // points there (to the code's field while a code waits).
    if (s.active && state !== "LIVE" && this.tenant.canOverrideSender) {
      const go = h("button", { type: "button", "data-action": "go-test" }, t(s.health.activationCodeExpiresAt ? "goCode" : "goTest"));
      go.addEventListener("click", () => this.focusTest());
      parts.push(h("p", {}, go));
    }
    fill(box, ...parts);
  }

  /** Focus (and the view) on the test card's next step: the code, the recipient, or the button. */
  focusTest() {
    const target = this.testCard.querySelector("#activation-code") ?? (this.testTo.value.trim() ? this.testButton : this.testTo);
    target.focus({ preventScroll: true });
    target.scrollIntoView?.({ block: "center" });
  }

  async activate(code, button) {
    button.disabled = true;
    try {
      await gql(`mutation ConsoleActivate($id: ID!, $code: String!) { activateMailSettings(tenantId: $id, code: $code) { version } }`, {
        id: this.id,
        code: code.value.trim(),
      });
      fill(this.testResult, h("div", { class: "message ok", "data-ok": "true" }, h("p", {}, t("activated"))));
      await this.reload();
      this.loadAudit();
    } catch (e) {
      fill(this.testResult, this.errorView(e));
    } finally {
      button.disabled = false;
    }
  }

  // ---- save and clear ----------------------------------------------------------------

  /** A notice at the top of the form, for as long as the state it was said in lasts. */
  say(kind, ...content) {
    fill(this.status, h("div", { class: `message ${kind}`, "data-kind": kind, "data-for-state": this.stateKey() }, ...content));
  }

  /** An error at the top of the form, like a notice. */
  sayError(e) {
    const view = this.errorView(e);
    view.dataset.forState = this.stateKey();
    fill(this.status, view);
  }

  errorView(e) {
    if (e instanceof ApiError && e.fields.length) {
      return h("div", { class: "message error", "data-code": e.code }, h("p", {}, e.message), h("ul", {}, e.fields.map((f) => h("li", { "data-field": f.field }, f.message))));
    }
    const text = e instanceof ApiError ? e.message || t(e.code === "NETWORK" ? "network" : "errorPrefix") : String(e);
    return h("div", { class: "message error", "data-code": e.code || "INTERNAL" }, h("p", {}, text));
  }

  /** Moves focus and view to the result just said (after a save or a clear). */
  showResult() {
    this.status.setAttribute("tabindex", "-1");
    this.status.focus({ preventScroll: true });
    this.status.scrollIntoView?.({ block: "center" });
  }

  async save() {
    const input = this.form.draft();
    if (!input) {
      this.say("error", t("fixFields"));
      this.form.focusFirstInvalid();
      return;
    }
    // Emptying every field and saving clears, as the seed page says: asked first, like
    // the clear button (nothing saved: nothing to clear, the server says what is missing).
    if (SettingsForm.clears(input) && this.tenant.mailSettings && !(await this.confirmClear())) return;
    const button = this.saveButton;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    button.textContent = t("saving");
    try {
      await this.saveDraft(input);
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      button.textContent = t("save");
    }
  }

  async saveDraft(input) {
    // Settings saved but unreadable: saving anew replaces the version the server named.
    if (!this.tenant.mailSettings && this.unreadable) input.expectedVersion = this.unreadable.extensions?.currentVersion ?? 0;
    this.form.clearErrors();
    try {
      const data = await gql(
        `mutation ConsoleSave($id: ID!, $input: MailSettingsInput!) { updateMailSettings(tenantId: $id, input: $input) { ${SETTINGS_FIELDS} } }`,
        { id: this.id, input },
      );
      const saved = data.updateMailSettings;
      // A test's result ends with the save (it described what the form said before).
      if (this.testResult) fill(this.testResult);
      this.form.load(saved);
      await this.reload();
      this.renderTest();
      if (!saved) this.say("ok", t("cleared"));
      else if (saved.health.state === "PENDING_VERIFICATION") this.say("ok", h("p", {}, t("savedPending")), this.goTestButton());
      else this.say("ok", t("saved"));
      this.showResult();
      this.loadAudit();
    } catch (e) {
      this.showFailure(e);
    }
  }

  showFailure(e) {
    if (e instanceof ApiError && e.code === "VALIDATION_FAILED") {
      const elsewhere = this.form.showErrors(e.fields);
      this.say("error", h("p", {}, e.message), elsewhere.length ? h("ul", {}, elsewhere.map((f) => h("li", {}, f.message))) : null);
    } else if (e instanceof ApiError && e.code === "VERSION_CONFLICT") {
      // Said once the latest settings are in: it describes them.
      this.reload()
        .then(() => this.loadForm(this.tenant.mailSettings))
        .finally(() => {
          this.say("error", t("versionConflict"));
          this.showResult();
        });
    } else {
      this.sayError(e);
      this.showResult();
    }
  }

  /** Asks before clearing, naming the platform default mail goes out from afterwards. */
  confirmClear() {
    return confirmDialog({
      title: t("clearTitle"),
      body: [t("clearBody"), t("clearDefault", { address: this.platformDefault() })],
      confirm: t("clear"),
      cancel: t("cancel"),
      danger: true,
    });
  }

  async clear() {
    if (!(await this.confirmClear())) return;
    try {
      const data = await gql(
        `mutation ConsoleClear($id: ID!, $v: Int) { clearMailSettings(tenantId: $id, expectedVersion: $v) { id } }`,
        { id: this.id, v: this.tenant.mailSettings?.version ?? this.unreadable?.extensions?.currentVersion ?? null },
      );
      if (data.clearMailSettings) {
        if (this.testResult) fill(this.testResult);
        await this.reload();
        this.loadForm(null);
        this.say("ok", t("cleared"));
        this.showResult();
        this.loadAudit();
      }
    } catch (e) {
      this.showFailure(e);
    }
  }

  /** Ecrea's キャンセル: what was typed is thrown away (asked first) and the form shows
   * the saved settings again. */
  async discard() {
    const saved = this.tenant.mailSettings;
    if (this.form.dirty()) {
      const ok = await confirmDialog({
        title: t("discardTitle"),
        body: [t(saved ? "discardBody" : "discardBodyNone")],
        confirm: t("discardConfirm"),
        cancel: t("discardKeep"),
        danger: true,
      });
      if (!ok) return;
    }
    this.loadForm(saved);
    this.say("ok", t(saved ? "discarded" : "discardedNone"));
    this.showResult();
  }

  /** The platform's default sender, which mail goes out from after a clear. */
  platformDefault() {
    const s = this.tenant.platformSender;
    return s.name ? `${s.name} <${s.address}>` : s.address;
  }

  // ---- test mail ---------------------------------------------------------------------

  /** The one place to test and go live: one recipient and one button, which tests the
   * saved settings (and puts them in force, or sends the activation code, whose field
   * then appears here) while the form says what is saved and they wait; the draft as
   * typed otherwise, saying that saving comes before going live. */
  testSection() {
    this.testTo = h("input", { type: "email", id: "test-to", name: "to", autocomplete: "email", "aria-describedby": "test-to-warn test-to-err" });
    const warn = h("p", { class: "warning", id: "test-to-warn", hidden: true, "data-part": "same-domain" }, t("testSameDomain"));
    const err = h("p", { class: "field-error", id: "test-to-err", hidden: true });
    const check = () => {
      const to = domainOf(this.testTo.value);
      const from = domainOf(this.form.fromAddress());
      warn.hidden = !(to && from && to === from);
      err.hidden = true;
    };
    this.testTo.addEventListener("input", check);
    this.form.inputs.fromAddress.addEventListener("input", check);
    this.testButton = h("button", { type: "button", class: "primary", "data-action": "send-test" }, t("sendTest"));
    this.testButton.addEventListener("click", () => {
      this.renderTest();
      if (this.testMode === "saved") this.testSaved(err);
      else this.sendTest(err);
    });
    this.testIntro = h("p", { class: "intro", "data-part": "test-mode" });
    this.testNotLive = h("p", { class: "warning", "data-part": "test-not-live", hidden: true }, t("testDraftNotLive"));
    this.testActivation = h("div", { "data-part": "activation" });
    this.testResult = h("div", { class: "test-result", "aria-live": "polite", "data-part": "test-result" });
    this.testCard = h(
      "section",
      { class: "card", "aria-labelledby": "test-title", "data-part": "test" },
      h("h2", { id: "test-title" }, t("testTitle")),
      this.testIntro,
      this.testNotLive,
      h("div", { class: "field", "data-field": "to" }, h("label", { for: "test-to" }, t("testTo")), this.testTo, warn, err),
      this.testButton,
      this.testActivation,
      this.testResult,
    );
    return this.testCard;
  }

  /** A button that moves focus to the test card (in notices that send the admin there). */
  goTestButton() {
    const go = h("button", { type: "button", "data-action": "go-test" }, t("goTest"));
    go.addEventListener("click", () => this.focusTest());
    return go;
  }

  /** The test card as the form and the saved settings are now. */
  renderTest() {
    if (!this.testCard) return;
    const s = this.tenant.mailSettings;
    const waiting = Boolean(s && s.active && s.health.state !== "LIVE" && !this.unreadable && this.tenant.canOverrideSender);
    const saved = waiting && this.form.unchanged();
    this.testMode = saved ? "saved" : "draft";
    this.testCard.dataset.mode = this.testMode;
    this.testButton.dataset.action = saved ? "test-saved" : "send-test";
    this.testButton.textContent = t(saved ? "testSaved" : "sendTest");
    this.testIntro.textContent = t(saved ? "testIntroSaved" : "testIntro");
    this.testNotLive.hidden = !waiting || saved;
    // The code's field only while a code waits (`code` activation): letters and digits.
    const codeUntil = waiting ? s.health.activationCodeExpiresAt : null;
    if (!codeUntil) {
      fill(this.testActivation);
      return;
    }
    const until = t("codeUntil", { when: when(codeUntil, locale()) });
    const shown = this.testActivation.querySelector("#activation-code-until");
    if (shown) {
      shown.textContent = until;
      return;
    }
    const code = h("input", { type: "text", id: "activation-code", autocomplete: "one-time-code", inputmode: "text", autocapitalize: "characters", spellcheck: "false", "aria-describedby": "activation-code-until" });
    const activate = h("button", { type: "button", "data-action": "activate" }, t("activate"));
    activate.addEventListener("click", () => this.activate(code, activate));
    fill(
      this.testActivation,
      h("div", { class: "activation" }, h("label", { for: "activation-code" }, t("activationCode")), code, h("p", { class: "muted", id: "activation-code-until" }, until), activate),
    );
  }

  /** The recipient typed; one that cannot be an address is said beside it (and sent:
   * the server's answer is what counts). */
  recipient(err) {
    const to = this.testTo.value.trim();
    if (to && !isEmail(to)) {
      err.textContent = t("chkEmail");
      err.hidden = false;
    }
    return to;
  }

  /** A refused test call: the recipient's error beside it, the form's beside their fields. */
  showTestFailure(e, err) {
    if (e instanceof ApiError && e.code === "VALIDATION_FAILED") {
      const elsewhere = this.form.showErrors(e.fields.filter((f) => f.field !== "to"));
      const onTo = e.fields.find((f) => f.field === "to");
      if (onTo) {
        err.textContent = onTo.message;
        err.hidden = false;
      }
      fill(this.testResult, h("div", { class: "message error", "data-code": e.code }, h("p", {}, e.message), elsewhere.filter((f) => f.field !== "to").map((f) => h("p", {}, f.message))));
    } else {
      fill(this.testResult, this.errorView(e));
    }
  }

  /** Shows a test's result (and its recipient warnings) in the card; the hint beside its field. */
  showTestResult(r, ...extra) {
    fill(this.testResult, this.resultView(r), ...extra);
    if (!r.ok && r.hint) this.form.showHint(r.field, r.hint);
    for (const w of r.warnings) if (w.field === "to") this.testResult.append(h("p", { class: "warning", "data-code": w.code }, w.message));
  }

  busy(on) {
    this.testButton.disabled = on;
    if (on) this.testButton.setAttribute("aria-busy", "true");
    else this.testButton.removeAttribute("aria-busy");
  }

  async sendTest(err) {
    const settings = this.form.draft();
    if (!settings) {
      fill(this.testResult, h("div", { class: "message error" }, t("fixFields")));
      return;
    }
    delete settings.expectedVersion;
    const to = this.recipient(err);
    this.form.clearErrors();
    this.busy(true);
    fill(this.testResult, h("p", {}, t("sending")));
    try {
      const data = await gql(
        `mutation ConsoleTest($id: ID!, $to: String!, $s: MailSettingsInput) { sendTestMail(tenantId: $id, to: $to, settings: $s) { ${RESULT_FIELDS} } }`,
        { id: this.id, to, s: settings },
      );
      this.showTestResult(data.sendTestMail);
    } catch (e) {
      this.showTestFailure(e, err);
    } finally {
      this.busy(false);
    }
  }

  /** The saved settings' test: in force when it goes through (or a code is sent). Its
   * result stays in view across the reload that follows, until the admin saves, clears
   * or tests again. */
  async testSaved(err) {
    const to = this.recipient(err);
    this.form.clearHints();
    this.busy(true);
    fill(this.testResult, h("p", {}, t("sending")));
    try {
      const data = await gql(`mutation ConsoleTestSaved($id: ID!, $to: String!) { sendTestMail(tenantId: $id, to: $to) { ${RESULT_FIELDS} } }`, { id: this.id, to });
      const r = data.sendTestMail;
      this.showTestResult(r, r.activationCodeSent ? h("p", { "data-part": "code-sent" }, t("codeSent")) : null);
      await this.reload();
      this.loadAudit();
      // In `code` mode the code's field has just appeared: the admin's next step.
      if (r.activationCodeSent) this.testCard.querySelector("#activation-code")?.focus();
      this.testResult.scrollIntoView?.({ block: "nearest" });
    } catch (e) {
      this.showTestFailure(e, err);
    } finally {
      this.busy(false);
    }
  }

  resultView(r) {
    if (r.ok) {
      return h(
        "div",
        { class: "message ok", "data-ok": "true" },
        h("p", {}, t("testOk", { ms: r.elapsedMs })),
        r.sender ? h("p", {}, t("sentFrom", { address: r.sender.name ? `${r.sender.name} <${r.sender.address}>` : r.sender.address })) : null,
        r.activated ? h("p", {}, t("activated")) : null,
      );
    }
    const rows = [
      [t("stage"), has(`stage${r.stage}`) ? t(`stage${r.stage}`) : r.stage, "stage", r.stage],
      [t("serverReply"), reply(r), "reply"],
      [t("hint"), r.hint, "hint"],
    ].filter(([, v]) => v);
    // The seed's 「しばらくしてから」: where the failure is likely to pass by itself.
    const later = AFTER_A_CHANGE.has(r.hintCode) ? "testRetryLaterAfterChange" : TEMPORARY.has(r.hintCode) || (r.smtpCode >= 400 && r.smtpCode < 500) ? "testRetryLater" : null;
    return h(
      "div",
      { class: "message error", "data-ok": "false", "data-stage": r.stage, "data-hint-code": r.hintCode || "" },
      h("p", {}, t("testFailed")),
      h("dl", {}, rows.map(([k, v, part]) => [h("dt", {}, k), h("dd", { "data-part": part }, v)])),
      later ? h("p", { "data-part": "retry-later" }, t(later)) : null,
      r.signInOffer === "MICROSOFT" && this.providers?.includes("MICROSOFT") ? microsoftOffer(this.id, (e) => this.sayError(e)) : null,
    );
  }

  // ---- setup assistant ---------------------------------------------------------------

  discoverSoon(value) {
    clearTimeout(this.discoverTimer);
    this.discoverTimer = setTimeout(() => this.discover(value.trim()), 500);
  }

  async discover(address) {
    const box = this.form.element.querySelector('[data-part="discovery"]');
    const domain = domainOf(address);
    if (!isEmail(address) || domain === this.lastDiscovery) return;
    this.lastDiscovery = domain;
    // DNS and autoconfig lookups take a moment: say so while they run.
    fill(box, h("p", { class: "muted", role: "status", "data-part": "discovery-busy" }, t("discoveryLooking", { domain })));
    try {
      const data = await gql(
        `query ConsoleDiscover($id: ID!, $a: String!) { discoverMailServer(tenantId: $id, fromAddress: $a) {
          domain candidates { serverKind host port encryption smtpAuth source confidence confidenceText evidence signIn preset { name } }
          steps { source outcome } } }`,
        { id: this.id, a: address },
      );
      const found = data.discoverMailServer;
      if (domainOf(this.form.fromAddress()) !== found.domain) return;
      if (!found.candidates.length) {
        // "Nothing found" only when every lookup answered; a lookup that failed may hide a
        // server (and typing the same domain again asks again).
        const unanswered = found.steps.some((s) => s.outcome === "FAILED");
        if (unanswered) this.lastDiscovery = "";
        fill(
          box,
          unanswered
            ? h("p", { class: "warning", "data-part": "discovery-unanswered" }, t("discoveryUnanswered", { domain: found.domain }))
            : h("p", { class: "muted", "data-part": "discovery-none" }, t("discoveryNone")),
        );
        return;
      }
      fill(
        box,
        h("h3", {}, t("discoveryTitle")),
        h(
          "ul",
          {},
          found.candidates.slice(0, 3).map((c) => {
            const use = h("button", { type: "button", "data-action": "apply-discovery" }, t("apply"));
            use.addEventListener("click", () => {
              this.form.apply(c);
              fill(box, h("p", { class: "ok" }, t("applied")));
            });
            // Microsoft and Google mailboxes: a sign-in first, the password preset second.
            const signIn = c.signIn && this.providers.includes(c.signIn)
              ? h("button", { type: "button", class: "primary", "data-action": `discovery-connect-${c.signIn.toLowerCase()}` }, t(c.signIn === "MICROSOFT" ? "connectMicrosoft" : "connectGoogle"))
              : null;
            signIn?.addEventListener("click", async () => {
              signIn.disabled = true;
              try {
                // The typed sender is carried over the sign-in (the form is left behind).
                await connect(this.id, c.signIn === "MICROSOFT" ? "MICROSOFT_DELEGATED_GRAPH" : "GOOGLE_GMAIL_API", this.form.fromAddress());
              } catch (e) {
                signIn.disabled = false;
                fill(box, this.errorView(e));
              }
            });
            return h(
              "li",
              { "data-source": c.source },
              `${c.preset?.name ?? c.host} — ${c.host}:${c.port} ${t(`enc${c.encryption}`)} (${c.confidenceText}; ${c.evidence}) `,
              signIn ? h("span", { class: "muted" }, t("signInRecommended"), " ") : null,
              signIn,
              " ",
              use,
            );
          }),
        ),
      );
    } catch (e) {
      this.lastDiscovery = "";
      fill(box, this.errorView(e));
    }
  }

  assistantSection() {
    const probe = h("button", { type: "button", "data-action": "probe" }, t("probe"));
    const check = h("button", { type: "button", "data-action": "domain-check" }, t("domainCheck"));
    const probeOut = h("div", { "aria-live": "polite", "data-part": "probe" });
    const checkOut = h("div", { "aria-live": "polite", "data-part": "domain-check" });
    probe.addEventListener("click", () => this.probe(probe, probeOut));
    check.addEventListener("click", () => this.domainCheck(check, checkOut));
    return h(
      "section",
      { class: "card", "aria-labelledby": "assistant-title" },
      h("h2", { id: "assistant-title" }, t("assistantTitle")),
      h("div", { class: "actions" }, probe, check),
      probeOut,
      checkOut,
    );
  }

  /** Runs one of the assistant's calls on the form as typed: `call(settings)` answers
   *  what to show in `out`; field errors land beside their fields. */
  async assist(button, out, busyKey, call) {
    const settings = this.form.draft();
    if (!settings) return;
    delete settings.expectedVersion;
    button.disabled = true;
    fill(out, h("p", {}, t(busyKey)));
    try {
      fill(out, ...(await call(settings)));
    } catch (e) {
      if (e instanceof ApiError && e.code === "VALIDATION_FAILED") this.form.showErrors(e.fields);
      fill(out, this.errorView(e));
    } finally {
      button.disabled = false;
    }
  }

  probe(button, out) {
    return this.assist(button, out, "probing", async (settings) => {
      const data = await gql(
        `mutation ConsoleProbe($id: ID!, $s: MailSettingsInput!) { probeMailServer(tenantId: $id, settings: $s) {
          summary authTried authOk authFailure { hint field }
          suggestion { host port encryption smtpAuth }
          pairs { port encryption works typed failure { stage hint } } } }`,
        { id: this.id, s: settings },
      );
      const r = data.probeMailServer;
      const parts = [
        h("p", {}, r.summary),
        h(
          "ul",
          {},
          r.pairs.map((p) => h("li", { "data-works": String(p.works) }, `${p.port} + ${t(`enc${p.encryption}`)}: ${p.works ? t("works") : t("fails")}${p.failure ? ` — ${p.failure.hint}` : ""}`)),
        ),
      ];
      if (r.authTried) parts.push(h("p", { class: r.authOk ? "ok" : "error" }, r.authOk ? t("authOk") : `${t("authNg")} ${r.authFailure?.hint ?? ""}`));
      if (r.suggestion) {
        const use = h("button", { type: "button", class: "primary", "data-action": "apply-probe" }, t("probeApply"));
        use.addEventListener("click", () => {
          // A failed login says the password is wrong, not that the server needs none:
          // keep the form's authentication then.
          const keepAuth = r.authTried && !r.authOk;
          this.form.apply({ ...r.suggestion, smtpAuth: keepAuth ? undefined : r.suggestion.smtpAuth });
          this.renderTest();
          fill(out, h("p", { class: "ok" }, t("applied")));
        });
        parts.push(use);
      }
      return parts;
    });
  }

  domainCheck(button, out) {
    return this.assist(button, out, "checking", async (settings) => {
      const data = await gql(
        `query ConsoleDomain($id: ID!, $a: String!, $s: MailSettingsInput) { checkSenderDomain(tenantId: $id, fromAddress: $a, settings: $s) {
          domain verdict summary issues { code message } fixes { name type value replaces } } }`,
        { id: this.id, a: this.form.fromAddress(), s: settings },
      );
      const r = data.checkSenderDomain;
      return [
        h("p", {}, h("span", { class: `verdict verdict-${r.verdict.toLowerCase()}`, "data-verdict": r.verdict }, t(`verdict${r.verdict}`)), " ", r.summary),
        r.issues.length ? h("ul", {}, r.issues.map((i) => h("li", { "data-code": i.code }, i.message))) : null,
        r.fixes.length
          ? [h("h3", {}, t("dnsFixes")), h("ul", { class: "records" }, r.fixes.map((f) => h("li", {}, h("code", {}, `${f.name} ${f.type} ${f.value}`), f.replaces ? h("p", { class: "muted" }, t("replaces", { record: f.replaces })) : null)))]
          : null,
      ];
    });
  }

  // ---- enqueue quota (operators) -----------------------------------------------------

  quotaSection() {
    const inForce = h("p", { "data-part": "quota" });
    const perMinute = h("input", { id: "quota-minute", type: "text", inputmode: "numeric", class: "short", "aria-describedby": "quota-help quota-minute-err" });
    const perDay = h("input", { id: "quota-day", type: "text", inputmode: "numeric", class: "short", "aria-describedby": "quota-help quota-day-err" });
    const errors = {
      perMinute: h("p", { class: "field-error", id: "quota-minute-err", hidden: true }),
      perDay: h("p", { class: "field-error", id: "quota-day-err", hidden: true }),
    };
    // The overrides fill the fields, unless the reader has typed there already.
    for (const input of [perMinute, perDay]) input.addEventListener("input", () => (input.dataset.edited = "true"));
    const show = (q) => {
      fill(inForce, t("quotaInForce", q));
      if (!perMinute.dataset.edited) perMinute.value = q.overridePerMinute ?? "";
      if (!perDay.dataset.edited) perDay.value = q.overridePerDay ?? "";
    };
    gql(`query ConsoleQuota($id: ID!) { tenant(id: $id) { enqueueQuota { perMinute perDay overridePerMinute overridePerDay } } }`, { id: this.id })
      .then((d) => show(d.tenant.enqueueQuota))
      .catch((e) => fill(inForce, this.errorView(e)));
    const form = h(
      "form",
      { class: "inline", novalidate: true, "aria-labelledby": "quota-title" },
      h("div", { class: "field" }, h("label", { for: "quota-minute" }, t("quotaPerMinute")), perMinute, errors.perMinute),
      h("div", { class: "field" }, h("label", { for: "quota-day" }, t("quotaPerDay")), perDay, errors.perDay),
      h("button", { type: "submit", "data-action": "save-quota" }, t("quotaSave")),
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      for (const el of Object.values(errors)) el.hidden = true;
      const value = (input, field) => {
        const v = input.value.trim();
        if (!v) return null;
        if (!/^[0-9]+$/.test(v)) {
          errors[field].textContent = t("chkCount");
          errors[field].hidden = false;
          throw new Error("client");
        }
        return Number(v);
      };
      let vars;
      try {
        vars = { id: this.id, m: value(perMinute, "perMinute"), d: value(perDay, "perDay") };
      } catch {
        return;
      }
      try {
        const data = await gql(
          `mutation ConsoleSetQuota($id: ID!, $m: Int, $d: Int) { setEnqueueQuota(tenantId: $id, perMinute: $m, perDay: $d) { perMinute perDay overridePerMinute overridePerDay } }`,
          vars,
        );
        delete perMinute.dataset.edited;
        delete perDay.dataset.edited;
        show(data.setEnqueueQuota);
        this.say("ok", t("quotaSaved"));
        this.loadAudit();
      } catch (err) {
        const fields = err instanceof ApiError ? err.fields : [];
        for (const f of fields) {
          if (errors[f.field]) {
            errors[f.field].textContent = f.message;
            errors[f.field].hidden = false;
          }
        }
        if (!fields.length) this.sayError(err);
      }
    });
    return h(
      "section",
      { class: "card", "aria-labelledby": "quota-title", "data-part": "quota-section" },
      h("h2", { id: "quota-title" }, t("quotaTitle")),
      inForce,
      h("p", { class: "help", id: "quota-help" }, t("quotaHelp")),
      form,
    );
  }

  // ---- deliveries --------------------------------------------------------------------

  deliveriesSection() {
    const filter = h(
      "select",
      { id: "delivery-status" },
      h("option", { value: "" }, t("all")),
      ["QUEUED", "SENDING", "SENT", "RETRYING", "FAILED"].map((s) => h("option", { value: s }, t(`status${s}`))),
    );
    filter.addEventListener("change", () => {
      this.deliveryStatus = filter.value || null;
      this.loadDeliveries();
    });
    const refresh = h("button", { type: "button", "data-action": "refresh-deliveries" }, t("refresh"));
    refresh.addEventListener("click", () => this.loadDeliveries());
    this.counts = h("ul", { class: "counts", "data-part": "delivery-counts" });
    this.deliveryList = h("div", { "data-part": "deliveries" });
    return h(
      "section",
      { class: "card", "aria-labelledby": "deliveries-title" },
      h("h2", { id: "deliveries-title" }, t("deliveriesTitle")),
      h("div", { class: "toolbar" }, h("label", { for: "delivery-status" }, t("statusFilter")), filter, refresh),
      this.counts,
      this.deliveryList,
    );
  }

  async loadDeliveries(after = null) {
    // A filter change while a refresh is under way: only the latest load shows.
    this.deliveriesGeneration = (this.deliveriesGeneration ?? 0) + 1;
    const generation = this.deliveriesGeneration;
    try {
      const data = await gql(DELIVERIES, { id: this.id, status: this.deliveryStatus, after });
      if (generation !== this.deliveriesGeneration) return;
      const conn = data.tenant.deliveries;
      fill(this.counts, conn.counts.map((c) => h("li", { "data-status": c.status }, `${t(`status${c.status}`)}: ${c.count}`)));
      const rows = conn.edges.map((e) => this.deliveryRow(e.node));
      // Deliveries that were open stay open across a reload.
      const open = new Set([...this.deliveryList.querySelectorAll("details[open]")].map((d) => d.dataset.delivery));
      for (const row of rows) if (open.has(row.dataset.delivery)) row.open = true;
      // Which filter the list shows, for whoever reads the page (and its tests).
      this.deliveryList.dataset.status = this.deliveryStatus ?? "";
      if (!after) fill(this.deliveryList);
      this.deliveryList.querySelector('[data-action="more-deliveries"]')?.remove();
      if (!rows.length && !after) {
        this.deliveryList.append(h("p", { class: "muted", "data-part": "empty" }, this.deliveryStatus ? t("noDeliveriesFiltered") : t("noDeliveries")));
        return;
      }
      this.deliveryList.append(...rows);
      if (conn.pageInfo.hasNextPage) {
        const more = h("button", { type: "button", "data-action": "more-deliveries" }, t("more"));
        more.addEventListener("click", () => this.loadDeliveries(conn.pageInfo.endCursor));
        this.deliveryList.append(more);
      }
    } catch (e) {
      fill(this.deliveryList, this.errorView(e));
    }
  }

  deliveryRow(d) {
    const kind = d.kind === "CUSTOM" ? t("kindCUSTOM_MAIL") : t(`kind${d.kind}`);
    const summary = h(
      "summary",
      {},
      h("span", { class: `status status-${d.status.toLowerCase()}`, "data-status": d.status }, t(`status${d.status}`)),
      ` ${kind} — ${d.to} — ${d.subject} — ${when(d.createdAt, locale())}`,
      d.retries ? ` (${t("retries", { n: d.retries })})` : "",
    );
    const attempts = h(
      "ol",
      { class: "attempts" },
      d.attempts.map((a) =>
        h(
          "li",
          { "data-outcome": a.outcome },
          `${when(a.at, locale())} ${t(`outcome${a.outcome}`)} · ${t("route")}: ${t(`route${a.route}`)}`,
          a.senderAddress ? ` · ${a.senderAddress}` : "",
          a.stage ? ` · ${t("stage")}: ${has(`stage${a.stage}`) ? t(`stage${a.stage}`) : a.stage}` : "",
          a.smtpCode || a.serverMessage ? ` · ${reply(a)}` : "",
        ),
      ),
    );
    const extra = [
      d.nextAttemptAt ? h("p", {}, t("nextAttempt", { when: when(d.nextAttemptAt, locale()) })) : null,
      d.failureMessage ? h("p", { class: "error" }, d.failureMessage) : null,
    ];
    let retry = null;
    if (d.status === "FAILED") {
      retry = h("button", { type: "button", "data-action": "retry", "data-delivery": d.id }, t("retry"));
      retry.addEventListener("click", async () => {
        // Sending again reaches a person: asked first, naming whom and what.
        const ok = await confirmDialog({
          title: t("retryTitle"),
          // Retention may have removed the recipient and subject: then a general sentence.
          body: [d.to && d.subject ? t("retryBody", { to: d.to, subject: d.subject }) : t("retryBodyRemoved")],
          confirm: t("retry"),
          cancel: t("cancel"),
        });
        if (!ok) return;
        retry.disabled = true;
        try {
          await gql(`mutation ConsoleRetry($id: ID!) { retryDelivery(id: $id) { id status } }`, { id: d.id });
          await this.loadDeliveries();
          this.say("ok", t("retried"));
        } catch (e) {
          retry.disabled = false;
          this.sayError(e);
        }
      });
    }
    return h("details", { class: "delivery", "data-delivery": d.id }, summary, h("h3", { class: "visually-hidden" }, t("attempts")), attempts, extra, retry);
  }

  // ---- audit trail -------------------------------------------------------------------

  auditSection() {
    this.auditList = h("div", { "data-part": "audit" });
    return h("section", { class: "card", "aria-labelledby": "audit-title" }, h("h2", { id: "audit-title" }, t("auditTitle")), this.auditList);
  }

  /** The newest page of the trail, or (with `after`) the next older page below it. */
  async loadAudit(after = null) {
    this.auditGeneration = (this.auditGeneration ?? 0) + 1;
    const generation = this.auditGeneration;
    try {
      const data = await gql(AUDIT, { id: this.id, after });
      if (generation !== this.auditGeneration) return;
      const conn = data.tenant.auditTrail;
      const events = conn.edges.map((e) => e.node);
      if (!after) fill(this.auditList);
      this.auditList.querySelector('[data-action="more-audit"]')?.remove();
      if (!events.length && !after) {
        this.auditList.append(h("p", { class: "muted" }, t("noAudit")));
        return;
      }
      let list = this.auditList.querySelector("ol.audit");
      if (!list) {
        list = h("ol", { class: "audit" });
        this.auditList.append(list);
      }
      list.append(...events.map((e) => this.auditEntry(e)));
      if (conn.pageInfo.hasNextPage) {
        const more = h("button", { type: "button", "data-action": "more-audit" }, t("more"));
        more.addEventListener("click", () => this.loadAudit(conn.pageInfo.endCursor));
        this.auditList.append(more);
      }
    } catch (e) {
      fill(this.auditList, this.errorView(e));
    }
  }

  /** One entry: what was done, when, by whom, and each field's change in words. */
  auditEntry(e) {
    const change = (c) => (c.secret ? `${c.label} ${t("secretChanged")}` : `${c.label}: ${c.beforeText ?? "—"} → ${c.afterText ?? "—"}`);
    return h(
      "li",
      { "data-action": e.action, "data-event": e.id },
      h("strong", {}, e.description),
      ` ${when(e.at, locale())} · ${e.actorLabel}`,
      e.changes.length ? h("ul", {}, e.changes.map((c) => h("li", { "data-field": c.field }, change(c)))) : null,
    );
  }
}
