// The operator's webhook endpoints (Standard Webhooks): register one (its secret is shown
// once; the tenant is picked by name), enable or disable it, rotate its secret, remove it,
// and read its messages — what happened, to which tenant, in words — with their attempts,
// replaying one.

import { ApiError, gql } from "./api.js";
import { confirmDialog, fill, h, when } from "./dom.js";
import { locale, planName, t } from "./i18n.js";

const ENDPOINT_FIELDS = `id url description tenantId tenant { name } eventTypes enabled createdAt previousSecretExpiresAt`;

// Tenants whose name contains what the operator typed, for the endpoint's tenant.
const TENANT_CHOICES = `query ConsoleWebhookTenants($name: String) {
  tenants(first: 20, nameContains: $name) { edges { node { id name } } }
}`;

// The event types come from the API (the domain's list), so the console never misses one.
const ENDPOINTS = `query ConsoleWebhooks { webhookEventTypes webhookEndpoints(first: 50) { edges { node { ${ENDPOINT_FIELDS} } } } }`;

const MESSAGES = `query ConsoleWebhookMessages($id: ID!) { webhookEndpoint(id: $id) { id messages(first: 20) {
  edges { node { id eventType eventTypeCode tenantId tenant { name } body status attempts nextAttemptAt createdAt deliveredAt
    recentAttempts { at statusCode error durationMs responseExcerpt } } } } } }`;

/** The webhooks section of the operator's screen. */
export class WebhooksSection {
  constructor(say, fail, plans = []) {
    this.say = say;
    this.fail = fail;
    this.plans = plans;
    this.list = h("div", { "data-part": "webhooks" });
    this.secretBox = h("div", { "aria-live": "polite", "data-part": "webhook-secret" });
    this.element = h(
      "section",
      { class: "card", "aria-labelledby": "webhooks-title" },
      h("h2", { id: "webhooks-title" }, t("webhooksTitle")),
      h("p", { class: "intro" }, t("webhooksIntro")),
      this.createForm(),
      this.secretBox,
      this.list,
    );
  }

  createForm() {
    const url = h("input", { id: "webhook-url", type: "text", inputmode: "url", autocomplete: "off", spellcheck: "false", "aria-describedby": "webhook-url-err" });
    const description = h("input", { id: "webhook-description", type: "text", autocomplete: "off" });
    // The tenant is picked by name: a search narrows the list, the list holds the choice.
    const search = h("input", { id: "webhook-tenant-search", type: "text", enterkeyhint: "search", autocomplete: "off", spellcheck: "false", "aria-controls": "webhook-tenant" });
    const tenant = h("select", { id: "webhook-tenant", "aria-describedby": "webhook-tenant-help webhook-tenant-err" }, h("option", { value: "" }, t("webhookAllTenants")));
    this.tenantSelect = tenant;
    let pending = null;
    search.addEventListener("input", () => {
      clearTimeout(pending);
      pending = setTimeout(() => this.loadTenantChoices(search.value), 250);
    });
    // Enter searches at once; it does not register the endpoint.
    search.addEventListener("keydown", (e) => {
      if (e.key !== "Enter") return;
      e.preventDefault();
      clearTimeout(pending);
      this.loadTenantChoices(search.value);
    });
    const secret = h("input", { id: "webhook-secret", type: "password", autocomplete: "new-password", spellcheck: "false", "aria-describedby": "webhook-secret-help webhook-secret-err" });
    // Filled with a box per event type once the first load answers.
    this.eventBoxes = h("div", { class: "choices wrap", "data-part": "webhook-event-types" });
    const errors = {
      url: h("p", { class: "field-error", id: "webhook-url-err", hidden: true }),
      tenantId: h("p", { class: "field-error", id: "webhook-tenant-err", hidden: true }),
      secret: h("p", { class: "field-error", id: "webhook-secret-err", hidden: true }),
      eventTypes: h("p", { class: "field-error", id: "webhook-events-err", hidden: true }),
    };
    const form = h(
      "form",
      { novalidate: true, "aria-labelledby": "webhooks-title", "data-part": "create-webhook" },
      h("div", { class: "field" }, h("label", { for: "webhook-url" }, t("webhookUrl")), url, errors.url),
      h("div", { class: "field" }, h("label", { for: "webhook-description" }, t("webhookDescription")), description),
      h(
        "div",
        { class: "field" },
        h("label", { for: "webhook-tenant-search" }, t("webhookTenantSearch")),
        search,
        h("label", { for: "webhook-tenant" }, t("webhookTenant")),
        tenant,
        h("p", { class: "help", id: "webhook-tenant-help" }, t("webhookTenantHelp")),
        errors.tenantId,
      ),
      h("fieldset", { class: "field", "aria-describedby": "webhook-events-err" }, h("legend", {}, t("webhookEvents")), this.eventBoxes, errors.eventTypes),
      h(
        "div",
        { class: "field" },
        h("label", { for: "webhook-secret" }, t("webhookSecretInput")),
        secret,
        h("p", { class: "help", id: "webhook-secret-help" }, t("webhookSecretHelp")),
        errors.secret,
      ),
      h("button", { type: "submit", class: "primary", "data-action": "create-webhook" }, t("webhookCreate")),
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      for (const el of Object.values(errors)) el.hidden = true;
      const input = {
        url: url.value.trim(),
        description: description.value.trim() || null,
        tenantId: tenant.value || null,
        eventTypes: [...this.eventBoxes.querySelectorAll("input")].filter((b) => b.checked).map((b) => b.value),
        secret: secret.value.trim() || null,
      };
      try {
        const data = await gql(
          `mutation ConsoleCreateWebhook($i: WebhookEndpointInput!) { createWebhookEndpoint(input: $i) { secret endpoint { id url } } }`,
          { i: input },
        );
        this.showSecret(data.createWebhookEndpoint.endpoint.url, data.createWebhookEndpoint.secret);
        url.value = "";
        description.value = "";
        tenant.value = "";
        search.value = "";
        secret.value = "";
        await this.load();
      } catch (err) {
        const rest = [];
        for (const f of err instanceof ApiError ? err.fields : []) {
          const key = f.field.split(".")[0].replace(/\[\d+\]$/, "");
          if (errors[key]) {
            errors[key].textContent = f.message;
            errors[key].hidden = false;
          } else {
            rest.push(f);
          }
        }
        if (!(err instanceof ApiError) || !err.fields.length || rest.length) this.fail(err);
      }
    });
    return form;
  }

  /**
   * The tenants whose name contains `name` (all when blank, the first 20) as the choices
   * of the endpoint's tenant; the tenant already chosen stays a choice.
   */
  async loadTenantChoices(name = "") {
    this.tenantGeneration = (this.tenantGeneration ?? 0) + 1;
    const generation = this.tenantGeneration;
    try {
      const data = await gql(TENANT_CHOICES, { name: name.trim() || null });
      if (generation !== this.tenantGeneration) return;
      const select = this.tenantSelect;
      const chosen = select.selectedOptions[0];
      const found = data.tenants.edges.map((e) => e.node);
      const options = found.map((n) => h("option", { value: n.id }, n.name));
      if (chosen?.value && !found.some((n) => n.id === chosen.value)) options.unshift(chosen);
      fill(select, h("option", { value: "" }, t("webhookAllTenants")), options);
      if (!found.length) select.append(h("option", { value: "", disabled: true }, t("webhookNoTenantFound")));
      select.value = chosen?.value ?? "";
    } catch (e) {
      this.fail(e);
    }
  }

  /** One box per event type, all ticked; drawn once (later loads keep the admin's choice). */
  showEventTypes(types) {
    if (this.eventBoxes.childElementCount) return;
    fill(
      this.eventBoxes,
      ...types.map((type) => {
        const box = h("input", { type: "checkbox", id: `event-${type}`, value: type, checked: true });
        return h("span", { class: "choice" }, box, h("label", { for: box.id }, t(`event${type}`)));
      }),
    );
  }

  showSecret(url, secret) {
    fill(
      this.secretBox,
      h(
        "div",
        { class: "message ok" },
        h("p", {}, t("webhookSecretOnce", { url })),
        h("p", {}, h("code", { "data-part": "secret" }, secret)),
      ),
    );
  }

  async load() {
    try {
      const [data] = await Promise.all([gql(ENDPOINTS), this.tenantSelect.length > 1 ? null : this.loadTenantChoices()]);
      this.showEventTypes(data.webhookEventTypes);
      const endpoints = data.webhookEndpoints.edges.map((e) => e.node);
      // Endpoints that were open stay open (with their messages) across a reload.
      const open = new Set([...this.list.querySelectorAll("details[open]")].map((d) => d.dataset.endpoint));
      const views = endpoints.map((e) => this.endpointView(e));
      fill(this.list, views.length ? views : h("p", { class: "muted" }, t("webhooksNone")));
      for (const view of views) if (open.has(view.dataset.endpoint)) view.open = true;
    } catch (e) {
      this.fail(e);
    }
  }

  endpointView(endpoint) {
    const messages = h("div", { "data-part": "webhook-messages" });
    const details = h(
      "details",
      { class: "delivery", "data-endpoint": endpoint.id, "data-url": endpoint.url },
      h(
        "summary",
        {},
        h("span", { class: `status ${endpoint.enabled ? "status-sent" : "status-failed"}` }, endpoint.enabled ? t("webhookEnabled") : t("webhookDisabled")),
        ` ${endpoint.url}`,
        endpoint.description ? ` — ${endpoint.description}` : "",
        ` · ${endpoint.tenantId ? (endpoint.tenant?.name ?? endpoint.tenantId) : t("webhookAllTenants")}`,
      ),
      h("p", { class: "muted" }, endpoint.eventTypes.map((type) => t(`event${type}`)).join("、 ")),
      endpoint.previousSecretExpiresAt ? h("p", { class: "muted" }, t("webhookOverlap", { when: when(endpoint.previousSecretExpiresAt, locale()) })) : null,
      h("div", { class: "actions" }, this.toggle(endpoint), this.rotate(endpoint), this.remove(endpoint), this.refresh(endpoint, messages)),
      messages,
    );
    details.addEventListener("toggle", () => {
      if (details.open) this.loadMessages(endpoint, messages);
    });
    return details;
  }

  toggle(endpoint) {
    const button = h("button", { type: "button", "data-action": "toggle-webhook" }, endpoint.enabled ? t("webhookDisable") : t("webhookEnable"));
    button.addEventListener("click", async () => {
      try {
        await gql(`mutation ConsoleToggleWebhook($id: ID!, $on: Boolean!) { updateWebhookEndpoint(id: $id, input: { enabled: $on }) { id enabled } }`, {
          id: endpoint.id,
          on: !endpoint.enabled,
        });
        await this.load();
      } catch (e) {
        this.fail(e);
      }
    });
    return button;
  }

  rotate(endpoint) {
    const button = h("button", { type: "button", "data-action": "rotate-webhook" }, t("webhookRotate"));
    button.addEventListener("click", async () => {
      const ok = await confirmDialog({ title: t("webhookRotateTitle"), body: t("webhookRotateBody"), confirm: t("webhookRotate"), cancel: t("cancel") });
      if (!ok) return;
      try {
        const data = await gql(`mutation ConsoleRotateWebhook($id: ID!) { rotateWebhookSecret(id: $id) { secret endpoint { id url } } }`, { id: endpoint.id });
        this.showSecret(endpoint.url, data.rotateWebhookSecret.secret);
        await this.load();
      } catch (e) {
        this.fail(e);
      }
    });
    return button;
  }

  remove(endpoint) {
    const button = h("button", { type: "button", class: "danger", "data-action": "delete-webhook" }, t("webhookDelete"));
    button.addEventListener("click", async () => {
      const ok = await confirmDialog({ title: t("webhookDeleteTitle"), body: t("webhookDeleteBody", { url: endpoint.url }), confirm: t("webhookDelete"), cancel: t("cancel"), danger: true });
      if (!ok) return;
      try {
        await gql(`mutation ConsoleDeleteWebhook($id: ID!) { deleteWebhookEndpoint(id: $id) }`, { id: endpoint.id });
        this.say("ok", t("webhookDeleted"));
        await this.load();
      } catch (e) {
        this.fail(e);
      }
    });
    return button;
  }

  refresh(endpoint, messages) {
    const button = h("button", { type: "button", "data-action": "refresh-webhook" }, t("refresh"));
    button.addEventListener("click", () => this.loadMessages(endpoint, messages));
    return button;
  }

  async loadMessages(endpoint, box) {
    box.generation = (box.generation ?? 0) + 1;
    const generation = box.generation;
    try {
      const data = await gql(MESSAGES, { id: endpoint.id });
      if (generation !== box.generation) return;
      const rows = data.webhookEndpoint?.messages.edges.map((e) => this.messageView(e.node, endpoint, box)) ?? [];
      fill(box, rows.length ? h("ul", { class: "webhook-messages" }, rows) : h("p", { class: "muted" }, t("webhookNoMessages")));
    } catch (e) {
      fill(box, h("p", { class: "error" }, e.message || t("errorPrefix")));
    }
  }

  /**
   * What a message says happened, in words: the tenant by name and, from the event's
   * body, the plans of a plan change, the settings' version, the kind of a delivery.
   */
  whatHappened(m) {
    let data = {};
    try {
      data = JSON.parse(m.body).data ?? {};
    } catch {
      // A body that is not JSON still says its event type and tenant.
    }
    const plan = (code) => planName(this.plans.find((p) => p.code === code) ?? { code, name: code });
    const kind = data.kind === "CUSTOM" ? t("kindCUSTOM_MAIL") : data.kind ? t(`kind${data.kind}`) : "";
    const vars = {
      tenant: m.tenant?.name ?? m.tenantId,
      from: data.from ? plan(data.from) : "",
      to: data.to ? plan(data.to) : "",
      plan: plan(data.changes?.find((c) => c.field === "plan")?.after ?? ""),
      version: data.version ?? "",
      kind,
    };
    return t(`what${m.eventType}`, vars);
  }

  messageView(m, endpoint, box) {
    const last = m.recentAttempts[0];
    const replay = h("button", { type: "button", "data-action": "replay-webhook" }, t("webhookReplay"));
    replay.addEventListener("click", async () => {
      try {
        await gql(`mutation ConsoleReplay($id: ID!) { replayWebhookMessage(id: $id) { id status } }`, { id: m.id });
        await this.loadMessages(endpoint, box);
      } catch (e) {
        this.fail(e);
      }
    });
    return h(
      "li",
      { "data-message": m.id, "data-status": m.status, "data-event": m.eventTypeCode },
      h("span", { class: `status status-${{ DELIVERED: "sent", FAILED: "failed" }[m.status] ?? "queued"}` }, t(`webhookStatus${m.status}`)),
      " ",
      h("span", { "data-part": "what" }, this.whatHappened(m)),
      ` · ${when(m.createdAt, locale())} · ${t("webhookAttempts", { n: m.attempts })}`,
      last ? ` · ${last.statusCode ?? last.error ?? ""} (${last.durationMs} ms)` : "",
      m.nextAttemptAt ? ` · ${t("nextAttempt", { when: when(m.nextAttemptAt, locale()) })}` : "",
      " ",
      m.status === "DELIVERED" || m.status === "FAILED" ? replay : null,
    );
  }
}
