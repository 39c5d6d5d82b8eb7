// DOM helpers, number formatting, dialogs and toasts. Text always goes in as textContent.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const int = new Intl.NumberFormat("en-US");
export const fmtInt = (n) => int.format(Number(n || 0));

// "1 request", "2 requests": a count with its noun in the right number.
export const plural = (n, one, many = `${one}s`) => `${fmtInt(n)} ${Number(n) === 1 ? one : many}`;

// USD as the API writes it, exact to the nano-dollar: whole cents show two places
// ("$5.00"), anything finer all nine ("$99.999498210"), with thousands separators. The
// value is a decimal string and never goes through floating point.
export function fmtUsd(value) {
  let s = String(value ?? "0").trim();
  const neg = s.startsWith("-");
  if (neg) s = s.slice(1);
  const [w, f = ""] = s.split(".");
  if (!/^\d*$/.test(w) || !/^\d*$/.test(f)) return `$${s}`;
  const whole = (w.replace(/^0+(?=\d)/, "") || "0").replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const frac = f.padEnd(9, "0").slice(0, 9);
  const zero = whole === "0" && /^0+$/.test(frac);
  const shown = /^\d{2}0{7}$/.test(frac) ? frac.slice(0, 2) : frac;
  return `${neg && !zero ? "−" : ""}$${whole}.${shown}`;
}

// A rounded USD amount for chart axes, whose ticks are labelled as approximate.
export function fmtUsdAxis(n) {
  if (!n) return "$0";
  return `$${n.toLocaleString("en-US", { maximumSignificantDigits: 3 })}`;
}

// Exact USD (nine decimals) from integer nano-dollars, without floating point.
export function nanosToUsd(nanos) {
  const b = BigInt(nanos || 0);
  const neg = b < 0n;
  const a = neg ? -b : b;
  const whole = a / 1000000000n;
  const frac = (a % 1000000000n).toString().padStart(9, "0");
  return `${neg ? "-" : ""}${whole}.${frac}`;
}

const dateTime = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const dateOnly = new Intl.DateTimeFormat("en-US", { year: "numeric", month: "short", day: "numeric" });
export const fmtTime = (ms) => (ms ? dateTime.format(new Date(ms)) : "—");
export const fmtDate = (ms) => (ms ? dateOnly.format(new Date(ms)) : "—");

export function fmtAgo(ms) {
  if (!ms) return "never";
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  if (s < 30 * 86400) return `${plural(Math.round(s / 86400), "day")} ago`;
  return fmtDate(ms);
}

export function badge(text, kind) {
  return h("span", { class: `badge badge-${kind || text}` }, text);
}

// A figure with its label; `money: true` sets an exact amount in a size that keeps its nine
// decimals on one line; `warn: true` marks it as needing attention.
export function card(label, value, sub, { money = false, warn = false, ...props } = {}) {
  return h("div", { class: ["card", money ? "card-money" : "", warn ? "card-warn" : ""].join(" ").trim(), ...props },
    h("div", { class: "card-label" }, label),
    h("div", { class: "card-value" }, value),
    sub ? h("div", { class: "card-sub" }, sub) : null);
}

// A model column's cell: requests refused before any model served them (no route, not
// allowed, limited) have no model, and say so.
export function modelCell(p) {
  if (!p.group) return h("span", { class: "muted", title: "refused before routing: unknown or disallowed model, region, limits or budget" }, "refused before routing");
  return h("code", {}, p.group);
}

// What each endpoint label of the usage records means to a person.
const ENDPOINTS = {
  "chat.completions": "Chat completions",
  completions: "Completions",
  embeddings: "Embeddings",
  responses: "Responses",
  messages: "Messages (Anthropic)",
  "audio.transcriptions": "Transcriptions",
};

export const endpointName = (label) => ENDPOINTS[label] || label || "—";

export function section(title, ...children) {
  return h("section", { class: "panel" }, title ? h("h2", {}, title) : null, ...children);
}

const cellClass = (c) => [c.num ? "num" : null, c.cls || null].filter(Boolean).join(" ") || null;

// A table; `columns` are {label, cell(row) → node|string, num?, cls?}. `empty` shows when no rows.
// `rowProps(row)` gives each <tr> its attributes.
export function table(columns, rows, empty, props = {}, rowProps = () => ({})) {
  if (!rows.length) return h("p", { class: "empty", id: props.id ? `${props.id}-empty` : null }, empty || "Nothing here yet.");
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": props["aria-label"] || null },
    h("table", props,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: cellClass(c) }, c.label)))),
      h("tbody", {}, rows.map((r) => h("tr", rowProps(r), columns.map((c) => h("td", { class: cellClass(c), "data-label": c.label }, c.cell(r))))))));
}

export function loading(text = "Loading…") {
  return h("div", { class: "loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), text);
}

export function errorBox(e) {
  return h("div", { class: "alert alert-error", role: "alert" }, e && e.message ? e.message : String(e));
}

export function toast(message, kind = "ok") {
  const box = document.getElementById("toasts");
  const t = h("div", { class: `toast toast-${kind}` }, message);
  box.append(t);
  setTimeout(() => t.remove(), 5000);
}

// A labelled form field. `input` props go to the <input>/<select>/<textarea>.
let fieldSeq = 0;
export function field(label, input, hint) {
  const id = input.id || `f${++fieldSeq}`;
  input.id = id;
  const hintEl = hint ? h("div", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hintEl);
}

// A modal dialog; resolves with the value `onSubmit` returns, or null when cancelled.
// `onSubmit` may throw to keep the dialog open and show the error.
export function dialog({ title, body, submit = "Save", danger = false, onSubmit, cancel = "Cancel", wide = false }) {
  return new Promise((resolve) => {
    const err = h("div", { class: "dialog-error", role: "alert" });
    const ok = h("button", { type: "submit", class: danger ? "btn btn-danger" : "btn btn-primary" }, submit);
    const form = h("form", { method: "dialog", class: "dialog-form" },
      h("h2", { class: "dialog-title" }, title),
      h("div", { class: "dialog-body" }, body),
      err,
      h("div", { class: "dialog-actions" },
        cancel ? h("button", { type: "button", class: "btn", onclick: () => close(null) }, cancel) : null,
        ok));
    const dlg = h("dialog", { class: wide ? "dialog dialog-wide" : "dialog", "aria-label": title }, form);
    let done = false;
    const close = (v) => {
      if (done) return;
      done = true;
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    dlg.addEventListener("cancel", (e) => { e.preventDefault(); close(null); });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      ok.disabled = true;
      err.textContent = "";
      try {
        const v = onSubmit ? await onSubmit(form) : true;
        close(v === undefined ? true : v);
      } catch (x) {
        err.textContent = x.message || String(x);
        ok.disabled = false;
      }
    });
    document.body.append(dlg);
    dlg.showModal();
    const first = form.querySelector("input:not([readonly]), select, textarea");
    (first || ok).focus();
  });
}

// Shows a secret once, with a copy button and the warning that it cannot be shown again.
export function secretPanel(secret, note) {
  const input = h("input", { id: "new-secret", class: "secret", readonly: true, value: secret, "aria-label": "Your new secret", spellcheck: "false" });
  const copy = h("button", {
    type: "button", class: "btn", id: "copy-secret", onclick: async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(secret);
        copy.textContent = "Copied";
      } catch (e) {
        copy.textContent = "Press Ctrl+C";
      }
    },
  }, "Copy");
  return h("div", { class: "secret-panel" },
    h("div", { class: "alert alert-warn", role: "alert" },
      h("strong", {}, "Copy this secret now. "),
      "It is shown only this once: InstaGen keeps only a keyed hash of it and cannot show it again. Store it in a secret manager, never in source code."),
    h("div", { class: "secret-row" }, input, copy),
    note ? h("p", { class: "hint" }, note) : null);
}

// A segmented control; returns the element; `onChange(value)` on click.
export function segmented(label, options, current, onChange) {
  return h("div", { class: "segmented", role: "group", "aria-label": label },
    options.map(([value, text]) => h("button", {
      type: "button", class: value === current ? "seg active" : "seg", "aria-pressed": value === current ? "true" : "false",
      dataset: { value }, onclick: () => onChange(value),
    }, text)));
}
