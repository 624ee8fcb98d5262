// Small DOM helpers: no framework, no innerHTML with data (text only).
import { AuditExportError } from "@auditexport/client";

type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, unknown>;

/** h("button", {type: "button", onclick: fn}, "Text"): an element with attributes and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs | null = null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") {
        el.addEventListener(k.slice(2), v as EventListener);
      } else if (k === "value" && (el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement)) {
        el.value = String(v);
      } else if (k === "checked" && el instanceof HTMLInputElement) {
        el.checked = Boolean(v);
      } else if (v === true) {
        el.setAttribute(k, "");
      } else {
        el.setAttribute(k, String(v));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
}

export function clear(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

let uid = 0;
export function nextId(prefix: string): string {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled field: label + control + hint + error slot. `field` is the API field path the server names in violations. */
export function field(label: string, control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, opts: { field?: string; hint?: Child } = {}): HTMLElement {
  const id = control.id || nextId("f");
  control.id = id;
  if (opts.field) control.dataset["field"] = opts.field;
  const describedBy: string[] = [];
  let hint: HTMLElement | null = null;
  if (opts.hint) {
    hint = h("div", { class: "hint", id: `${id}-hint` }, opts.hint);
    describedBy.push(hint.id);
  }
  const err = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  if (describedBy.length) control.setAttribute("aria-describedby", describedBy.join(" "));
  if (control instanceof HTMLInputElement && (control.type === "checkbox" || control.type === "radio")) {
    return h("div", { class: "field check" }, control, h("label", { for: id }, label), hint, err);
  }
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint, err);
}

export function select(options: [string, string][], value = "", attrs: Attrs = {}): HTMLSelectElement {
  const s = h("select", attrs, options.map(([v, l]) => h("option", { value: v }, l)));
  s.value = value;
  return s;
}

/** Normalises a field path: snake_case -> lowerCamelCase, indexes dropped. */
function normPath(p: string): string {
  return p.replace(/\[\d+\]/g, "").replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
}

/** Clears the field errors and the form-level error of a form. */
export function clearErrors(form: HTMLElement): void {
  for (const el of form.querySelectorAll<HTMLElement>(".field-error")) {
    el.hidden = true;
    el.textContent = "";
  }
  for (const el of form.querySelectorAll<HTMLElement>("[aria-invalid]")) {
    el.removeAttribute("aria-invalid");
    const d = (el.getAttribute("aria-describedby") ?? "").split(" ").filter((x) => x && !x.endsWith("-error"));
    if (d.length) el.setAttribute("aria-describedby", d.join(" "));
    else el.removeAttribute("aria-describedby");
  }
  const fe = form.querySelector<HTMLElement>(".form-error");
  if (fe) {
    fe.hidden = true;
    fe.textContent = "";
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof AuditExportError) {
    if (err.codeName === "PERMISSION_DENIED") return `Not allowed: ${err.message}`;
    if (err.codeName === "UNAUTHENTICATED") return `Not signed in or the API key is not valid: ${err.message}`;
    return err.message || err.codeName;
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * showErrors puts each field violation of err next to the control whose data-field names it
 * (marked aria-invalid and described by the message); the rest goes into the form's .form-error
 * (role=alert). Focus moves to the first invalid control, else to the form error.
 */
export function showErrors(form: HTMLElement, err: unknown): void {
  clearErrors(form);
  // Visible controls only: hidden provider-specific fields never take a message.
  const controls = [...form.querySelectorAll<HTMLElement>("[data-field]")].filter((el) => el.getClientRects().length > 0);
  const rest: string[] = [];
  let first: HTMLElement | null = null;
  const violations = err instanceof AuditExportError ? err.fieldViolations : [];
  for (const v of violations) {
    const want = normPath(v.field);
    const c =
      controls.find((el) => normPath(el.dataset["field"] ?? "") === want) ??
      controls.find((el) => {
        const f = normPath(el.dataset["field"] ?? "");
        return f !== "" && (want.endsWith("." + f) || f.endsWith("." + want));
      });
    if (!c) {
      rest.push(`${v.field}: ${v.description}`);
      continue;
    }
    const slot = form.querySelector<HTMLElement>(`#${CSS.escape(c.id)}-error`);
    if (slot) {
      slot.textContent = slot.textContent ? `${slot.textContent} ${v.description}` : v.description;
      slot.hidden = false;
      c.setAttribute("aria-invalid", "true");
      const d = (c.getAttribute("aria-describedby") ?? "").split(" ").filter(Boolean);
      if (!d.includes(slot.id)) d.push(slot.id);
      c.setAttribute("aria-describedby", d.join(" "));
    }
    first ??= c;
  }
  let fe = form.querySelector<HTMLElement>(".form-error");
  if (!fe) {
    fe = h("div", { class: "form-error", role: "alert" });
    form.prepend(fe);
  }
  const msg = violations.length === 0 ? errorMessage(err) : rest.length ? rest.join("; ") : "Some fields need attention (see below).";
  fe.textContent = msg;
  fe.hidden = false;
  if (first) first.focus();
  else {
    fe.tabIndex = -1;
    fe.focus();
  }
}

/** An alert box for a page-level error (e.g. a refused load). */
export function alertBox(err: unknown): HTMLElement {
  return h("div", { class: "alert", role: "alert" }, errorMessage(err));
}

/** A table inside a focusable, labelled scroll region (narrow screens scroll it sideways). */
export function table(label: string, headers: string[], rows: Child[][], opts: { empty?: string } = {}): HTMLElement {
  if (rows.length === 0) return h("p", { class: "empty" }, opts.empty ?? "Nothing here yet.");
  return h(
    "div",
    { class: "table-wrap", role: "region", "aria-label": label, tabindex: 0 },
    h(
      "table",
      null,
      h("caption", { class: "sr-only" }, label),
      h("thead", null, h("tr", null, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, rows.map((r) => h("tr", null, r.map((c) => h("td", null, c))))),
    ),
  );
}

export function button(label: string, onclick: (e: Event) => unknown, attrs: Attrs = {}): HTMLButtonElement {
  return h("button", { type: "button", ...attrs, onclick }, label);
}

/** Runs fn with the button disabled and aria-busy set. */
export async function busy<T>(btn: HTMLButtonElement | null, fn: () => Promise<T>): Promise<T> {
  if (btn) {
    btn.disabled = true;
    btn.setAttribute("aria-busy", "true");
  }
  try {
    return await fn();
  } finally {
    if (btn) {
      btn.disabled = false;
      btn.removeAttribute("aria-busy");
    }
  }
}

/** A modal confirmation (native <dialog>: focus is trapped and returned). Resolves to the form's values or null. */
export function confirmDialog(title: string, body: Child, confirmLabel: string, extra?: HTMLElement): Promise<boolean> {
  return new Promise((resolve) => {
    const titleId = nextId("dlg");
    const ok = h("button", { type: "submit", class: "danger" }, confirmLabel);
    const cancel = h("button", { type: "button" }, "Cancel");
    const dlg = h(
      "dialog",
      { "aria-labelledby": titleId },
      h("form", { method: "dialog" }, h("h2", { id: titleId }, title), h("div", null, body), extra, h("div", { class: "actions" }, ok, cancel)),
    );
    let result = false;
    ok.addEventListener("click", () => (result = true));
    cancel.addEventListener("click", () => dlg.close());
    dlg.addEventListener("close", () => {
      dlg.remove();
      resolve(result);
    });
    document.body.appendChild(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

export function fmtTime(ts: string | undefined): string {
  if (!ts || ts.startsWith("1970-01-01")) return "—";
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return ts;
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
}

export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

export function fmtInt(n: number | string | undefined): string {
  return Number(n ?? 0).toLocaleString("en-US");
}

/** "SCHEDULE_STATE_ACTIVE" -> "Active". */
export function enumLabel(v: string | undefined, prefix: string): string {
  if (!v || v.endsWith("_UNSPECIFIED")) return "—";
  const s = v.startsWith(prefix) ? v.slice(prefix.length) : v;
  return s.charAt(0) + s.slice(1).toLowerCase().replace(/_/g, " ");
}

export function badge(text: string, kind: string): HTMLElement {
  return h("span", { class: `badge ${kind}` }, text);
}
