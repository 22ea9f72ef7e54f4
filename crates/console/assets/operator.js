// The operator's screen: the delivery queue, creating a tenant, the tenants with paging
// and a plan filter, changing a plan (with a warning before a downgrade), and opening any
// tenant's mail-server screen.

import { ApiError, gql, queueCounts } from "./api.js";
import { confirmDialog, fill, h } from "./dom.js";
import { planName, t } from "./i18n.js";
import { WebhooksSection } from "./webhooks.js";

const TENANTS = `query ConsoleTenants($first: Int, $after: String, $plan: Plan) {
  tenants(first: $first, after: $after, plan: $plan) {
    pageInfo { hasNextPage endCursor }
    edges { node { id name plan canOverrideSender
      effectiveSender { address source reasonCode }
      platformSender { address name }
      mailSettings { version active health { state } } } }
  }
}`;

const PAGE = 20;

/**
 * Where a tenant's own mail server stands, as a code with a label (`tenantState<CODE>`):
 * NONE (nothing saved), NOT_ALLOWED (nothing saved, the plan forbids it), INACTIVE (saved,
 * the plan forbids it), PENDING_VERIFICATION (waits for a test; PENDING_BEHIND_LIVE when
 * an earlier version still carries the mail), LIVE, SUSPENDED, UNREADABLE.
 */
export function settingsState(tenant) {
  const reason = tenant.effectiveSender.reasonCode;
  if (reason === "SETTINGS_UNREADABLE") return "UNREADABLE";
  const settings = tenant.mailSettings;
  if (!settings) return tenant.canOverrideSender ? "NONE" : "NOT_ALLOWED";
  if (!settings.active) return "INACTIVE";
  const state = settings.health.state;
  if (state === "PENDING_VERIFICATION" && reason === "CUSTOM_LIVE") return "PENDING_BEHIND_LIVE";
  return state;
}

export async function showOperator(root, { plans, openTenant }) {
  const screen = new OperatorScreen(root, plans, openTenant);
  screen.render();
  await Promise.all([screen.loadTenants(), screen.loadQueue(), screen.webhooks.load()]);
  return screen;
}

class OperatorScreen {
  constructor(root, plans, openTenant) {
    this.root = root;
    this.plans = plans;
    this.openTenant = openTenant;
    this.plan = null;
    this.cursors = [null];
  }

  planInfo(code) {
    return this.plans.find((p) => p.code === code);
  }

  planSelect(id, selected, { any = false } = {}) {
    return h(
      "select",
      { id },
      any ? h("option", { value: "" }, t("allPlans")) : null,
      this.plans.map((p) => {
        const option = h("option", { value: p.code }, planName(p));
        option.selected = p.code === selected;
        return option;
      }),
    );
  }

  render() {
    this.status = h("div", { class: "status", role: "status", "aria-live": "polite", "data-part": "status" });
    this.queue = h("div", { "data-part": "queue" });
    const filter = this.planSelect("plan-filter", "", { any: true });
    filter.value = "";
    filter.addEventListener("change", () => {
      this.plan = filter.value || null;
      this.cursors = [null];
      this.loadTenants();
    });
    this.list = h("div", { "data-part": "tenants" });
    this.webhooks = new WebhooksSection(
      (kind, text) => this.say(kind, text),
      (e) => this.fail(e),
      this.plans,
    );
    this.pager = h("div", { class: "pager" });
    fill(
      this.root,
      h("h1", {}, t("tenantsTitle")),
      this.status,
      h(
        "section",
        { class: "card", "aria-labelledby": "queue-title" },
        h("h2", { id: "queue-title" }, t("queueTitle")),
        this.queue,
        h("button", { type: "button", "data-action": "refresh-queue", onclick: () => this.loadQueue() }, t("refresh")),
      ),
      this.createSection(),
      h(
        "section",
        { class: "card", "aria-labelledby": "tenants-title" },
        h("h2", { id: "tenants-title" }, t("tenantsTitle")),
        h("div", { class: "toolbar" }, h("label", { for: "plan-filter" }, t("planFilter")), filter),
        this.list,
        this.pager,
      ),
      this.webhooks.element,
    );
  }

  say(kind, text) {
    fill(this.status, h("div", { class: `message ${kind}`, "data-kind": kind }, text));
  }

  fail(e) {
    const text = e instanceof ApiError ? e.message || t(e.code === "NETWORK" ? "network" : "errorPrefix") : String(e);
    const parts = [h("p", {}, text)];
    if (e instanceof ApiError) for (const f of e.fields) parts.push(h("p", { "data-field": f.field }, f.message));
    fill(this.status, h("div", { class: "message error", "data-code": e.code || "INTERNAL" }, ...parts));
  }

  async loadQueue() {
    try {
      const { counts, oldest } = await queueCounts();
      fill(
        this.queue,
        h("ul", { class: "counts" }, ["queued", "sending", "retrying", "sent", "failed"].map((s) => h("li", { "data-status": s.toUpperCase() }, `${t(`status${s.toUpperCase()}`)}: ${counts[s] ?? 0}`))),
        oldest !== null ? h("p", { class: "muted" }, t("oldestWait", { s: Math.round(oldest) })) : null,
      );
    } catch {
      fill(this.queue, h("p", { class: "muted" }, t("queueUnavailable")));
    }
  }

  createSection() {
    const name = h("input", { id: "new-tenant-name", type: "text", autocomplete: "off", "aria-describedby": "new-tenant-err" });
    const plan = this.planSelect("new-tenant-plan", "SHARE");
    const err = h("p", { class: "field-error", id: "new-tenant-err", hidden: true });
    const form = h(
      "form",
      { class: "inline", novalidate: true, "aria-labelledby": "create-title", "data-part": "create-tenant" },
      h("div", { class: "field" }, h("label", { for: "new-tenant-name" }, t("name")), name, err),
      h("div", { class: "field" }, h("label", { for: "new-tenant-plan" }, t("plan")), plan),
      h("button", { type: "submit", class: "primary", "data-action": "create-tenant" }, t("create")),
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      err.hidden = true;
      name.removeAttribute("aria-invalid");
      try {
        const data = await gql(`mutation ConsoleCreate($n: String!, $p: Plan!) { createTenant(name: $n, plan: $p) { id name } }`, {
          n: name.value,
          p: plan.value,
        });
        name.value = "";
        this.cursors = [null];
        await this.loadTenants();
        this.say("ok", t("created_", { name: data.createTenant.name }));
      } catch (e2) {
        const onName = e2 instanceof ApiError ? e2.fields.find((f) => f.field === "name") : null;
        if (onName) {
          err.textContent = onName.message;
          err.hidden = false;
          name.setAttribute("aria-invalid", "true");
          name.focus();
        } else {
          this.fail(e2);
        }
      }
    });
    return h("section", { class: "card", "aria-labelledby": "create-title" }, h("h2", { id: "create-title" }, t("createTitle")), form);
  }

  async loadTenants() {
    const after = this.cursors[this.cursors.length - 1];
    // Loads can overlap (a filter changed while the list reloads): only the latest shows.
    this.generation = (this.generation ?? 0) + 1;
    const generation = this.generation;
    try {
      const { data, errors } = await gql(TENANTS, { first: PAGE, after, plan: this.plan }, { partial: true });
      if (generation !== this.generation) return;
      if (!data?.tenants) throw new ApiError(errors[0]?.message ?? "", errors[0]?.extensions?.code ?? "INTERNAL");
      const conn = data.tenants;
      const rows = conn.edges.map((e) => this.tenantRow(e.node));
      fill(
        this.list,
        rows.length
          ? h(
              "table",
              { class: "stack" },
              h("caption", { class: "visually-hidden" }, t("tenantsTitle")),
              h("thead", {}, h("tr", {}, [t("name"), t("plan"), t("ownServer"), t("senderNow"), t("changePlan"), t("open")].map((c) => h("th", { scope: "col" }, c)))),
              h("tbody", {}, rows),
            )
          : h("p", { class: "muted", "data-part": "empty" }, this.plan ? t("noTenantsFiltered") : t("noTenants")),
      );
      const prev = h("button", { type: "button", "data-action": "previous", disabled: this.cursors.length === 1 }, t("previous"));
      const next = h("button", { type: "button", "data-action": "next", disabled: !conn.pageInfo.hasNextPage }, t("next"));
      prev.addEventListener("click", () => {
        this.cursors.pop();
        this.loadTenants();
      });
      next.addEventListener("click", () => {
        this.cursors.push(conn.pageInfo.endCursor);
        this.loadTenants();
      });
      fill(this.pager, prev, next);
    } catch (e) {
      this.fail(e);
    }
  }

  tenantRow(tenant) {
    const selectId = `plan-of-${tenant.id}`;
    const plan = this.planSelect(selectId, tenant.plan);
    plan.setAttribute("aria-label", `${t("changePlan")}: ${tenant.name}`);
    const change = h("button", { type: "button", "data-action": "change-plan" }, t("change"));
    change.addEventListener("click", () => this.changePlan(tenant, plan.value, plan));
    const open = h("button", { type: "button", "data-action": "open" }, t("open"));
    const state = settingsState(tenant);
    open.addEventListener("click", () => this.openTenant(tenant.id));
    return h(
      "tr",
      { "data-tenant": tenant.id, "data-name": tenant.name },
      h("th", { scope: "row" }, tenant.name),
      h("td", { "data-part": "plan", "data-plan": tenant.plan, "data-label": t("plan") }, planName(this.planInfo(tenant.plan) ?? { code: tenant.plan, name: tenant.plan })),
      h("td", { "data-part": "settings-state", "data-state": state, "data-label": t("ownServer") }, h("span", { class: `state state-${state.toLowerCase()}` }, t(`tenantState${state}`))),
      h(
        "td",
        { "data-source": tenant.effectiveSender.source, "data-label": t("senderNow") },
        tenant.effectiveSender.address,
        h("span", { class: "muted" }, ` ${t(`senderSource${tenant.effectiveSender.source}`)}`),
      ),
      h("td", { "data-label": t("changePlan") }, plan, " ", change),
      h("td", {}, open),
    );
  }

  async changePlan(tenant, code, select) {
    if (code === tenant.plan) return;
    const target = this.planInfo(code);
    if (tenant.canOverrideSender && !target.canOverrideSender) {
      const s = tenant.platformSender;
      const address = s.name ? `${s.name} <${s.address}>` : s.address;
      const ok = await confirmDialog({
        title: t("downgradeTitle", { tenant: tenant.name, plan: planName(target) }),
        body: tenant.mailSettings
          ? t("downgradeBody", { plan: planName(target), address })
          : t("downgradeNoSettings", { plan: planName(target), address }),
        confirm: t("confirmChange"),
        cancel: t("cancel"),
        danger: true,
      });
      if (!ok) {
        // Nothing changed: the dropdown says so again.
        if (select) select.value = tenant.plan;
        return;
      }
    }
    try {
      await gql(`mutation ConsolePlan($id: ID!, $p: Plan!) { changeTenantPlan(tenantId: $id, plan: $p) { id plan } }`, { id: tenant.id, p: code });
      await this.loadTenants();
      this.say("ok", t("planChanged"));
    } catch (e) {
      this.fail(e);
    }
  }
}
