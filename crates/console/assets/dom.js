// Building the page without innerHTML: every text from the API or the user is set as
// text, never parsed as markup.

/** An element: h("p", { class: "x", "data-field": "host" }, "text", child, …). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "value") {
      el.value = value;
    } else if (name === "checked") {
      el.checked = Boolean(value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let serial = 0;
/** A unique id for label/aria links. */
export function uid(prefix) {
  serial += 1;
  return `${prefix}-${serial}`;
}

/** A date from the API in the reader's locale. */
export function when(iso, locale) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(locale === "ja" ? "ja-JP" : "en-GB", { dateStyle: "medium", timeStyle: "medium" });
}

/** Shows a modal confirmation; resolves true when confirmed. */
export function confirmDialog({ title, body, confirm, cancel, danger = false }) {
  return new Promise((resolve) => {
    const dialog = document.getElementById("confirm");
    const titleId = uid("dlg");
    const bodyId = uid("dlg");
    dialog.setAttribute("aria-labelledby", titleId);
    dialog.setAttribute("aria-describedby", bodyId);
    const yes = h("button", { type: "button", class: danger ? "danger" : "primary", "data-action": "confirm" }, confirm);
    const no = h("button", { type: "button", "data-action": "cancel" }, cancel);
    fill(
      dialog,
      h("h2", { id: titleId }, title),
      h("div", { id: bodyId }, ...[body].flat().map((p) => h("p", {}, p))),
      h("div", { class: "actions" }, no, yes),
    );
    const done = (answer) => {
      dialog.close();
      resolve(answer);
    };
    yes.addEventListener("click", () => done(true));
    no.addEventListener("click", () => done(false));
    dialog.addEventListener("cancel", () => resolve(false), { once: true });
    dialog.showModal();
    no.focus();
  });
}
