// Operator pages: every account (create, suspend, credit), models and prices, provider health.

import { get, post, acct } from "./api.js";
import { h, clear, section, table, badge, fmtInt, fmtDate, fmtUsd, field, dialog, toast } from "./ui.js";

export async function accounts(main, ctx) {
  const box = h("div", {});
  const refresh = async () => {
    const list = (await get("/api/v1/accounts")).data;
    clear(box, table([
      { label: "Name", cell: (a) => h("strong", {}, a.name) },
      { label: "Id", cell: (a) => h("code", {}, a.id) },
      { label: "Status", cell: (a) => badge(a.status) },
      { label: "Limits", cell: (a) => (a.rpm || a.tpm ? `${a.rpm ? `${fmtInt(a.rpm)} rpm` : ""} ${a.tpm ? `${fmtInt(a.tpm)} tpm` : ""}`.trim() : "—") },
      { label: "Created", cell: (a) => fmtDate(a.created_ms) },
      {
        label: "Actions", cell: (a) => h("div", { class: "row-actions" },
          h("button", { type: "button", class: "btn btn-small", onclick: () => { ctx.setAccount(a.id); ctx.go("dashboard"); } }, "Open"),
          h("button", { type: "button", class: "btn btn-small", onclick: () => credit(a) }, "Credit"),
          a.status === "active"
            ? h("button", { type: "button", class: "btn btn-small btn-danger-quiet", onclick: () => suspend(a, true, refresh) }, "Suspend")
            : h("button", { type: "button", class: "btn btn-small", onclick: () => suspend(a, false, refresh) }, "Unsuspend")),
      },
    ], list, "No accounts yet.", { id: "ops-accounts" }, (a) => ({ "data-account-id": a.id })));
  };
  clear(main,
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "All accounts"), h("p", { class: "lede" }, "Operator view of every account on this InstaGen.")),
      h("button", { type: "button", class: "btn btn-primary", onclick: () => create(refresh) }, "New account")),
    h("section", { class: "panel" }, box));
  await refresh();
}

async function create(refresh) {
  const name = h("input", { required: true, maxlength: 128 });
  const email = h("input", { type: "email", autocomplete: "off" });
  const password = h("input", { type: "password", minlength: 10, autocomplete: "new-password" });
  const made = await dialog({
    title: "New account",
    body: h("div", { class: "form-grid" }, field("Account name", name), field("Owner email", email, "Optional: becomes the account's owner."), field("Owner's initial password", password, "Needed when the owner has no login yet.")),
    submit: "Create account",
    onSubmit: () => post("/api/v1/accounts", { name: name.value.trim(), ...(email.value ? { owner_email: email.value.trim() } : {}), ...(password.value ? { owner_password: password.value } : {}) }),
  });
  if (made) {
    toast(`Account “${made.name}” created.`);
    await refresh();
  }
}

async function suspend(a, on, refresh) {
  const ok = await dialog({
    title: on ? `Suspend “${a.name}”?` : `Unsuspend “${a.name}”?`,
    body: h("p", {}, on ? "All of its keys are refused within a second until you unsuspend it. Nothing is deleted." : "Its keys work again within a second."),
    submit: on ? "Suspend" : "Unsuspend",
    danger: on,
    onSubmit: () => post(acct(a.id, on ? "/suspend" : "/unsuspend")),
  });
  if (ok) await refresh();
}

async function credit(a) {
  const usd = h("input", { required: true, inputmode: "decimal", pattern: "^[0-9]+(\\.[0-9]{1,9})?$", placeholder: "25.00" });
  const memo = h("input", { maxlength: 256, placeholder: "e.g. invoice 2026-11" });
  const entry = await dialog({
    title: `Credit “${a.name}”`,
    body: h("div", { class: "form-grid" }, field("Amount (USD)", usd, "Up to nine decimals; added to the ledger, never edited later."), field("Memo", memo)),
    submit: "Add credit",
    onSubmit: () => post(acct(a.id, "/billing/credits"), { usd: usd.value.trim(), memo: memo.value.trim() }),
  });
  if (entry) toast(`Credited ${fmtUsd(usd.value.trim())} to “${a.name}”.`);
}

export async function models(main) {
  const list = (await get("/api/v1/models")).data;
  const price = (v) => (v === null || v === undefined ? "—" : `$${v}`);
  clear(main,
    h("div", { class: "page-head" }, h("h1", {}, "Models & prices"), h("p", { class: "lede" }, "From the operator's configuration. Prices are USD per million tokens; scheduled changes apply to requests from their date on.")),
    section(null, table([
      { label: "Model", cell: (m) => h("code", {}, m.id) },
      { label: "Input", num: true, cell: (m) => price(m.input_usd_per_mtok) },
      { label: "Cached input", num: true, cell: (m) => price(m.cached_input_usd_per_mtok) },
      { label: "Output", num: true, cell: (m) => price(m.output_usd_per_mtok) },
      { label: "Context", num: true, cell: (m) => (m.context_length ? fmtInt(m.context_length) : "—") },
      { label: "Routes", cell: (m) => ((m.routes || []).length ? (m.routes || []).map((r) => h("div", {}, h("code", {}, r.provider), ` weight ${r.weight}, tier ${r.priority}`)) : "—") },
      { label: "Scheduled", cell: (m) => ((m.price_changes || []).length ? m.price_changes.map((c) => h("div", {}, `${c.effective_from}: $${c.input_usd_per_mtok} / $${c.output_usd_per_mtok}`)) : "—") },
    ], list, "No models configured.", { id: "ops-models" })));
}

export async function routes(main) {
  const health = h("div", {});
  const providers = h("div", {});
  const refresh = async () => {
    const [r, p] = await Promise.all([get("/api/v1/routes"), get("/api/v1/providers")]);
    clear(health, r.data.length ? r.data.map((m) => h("div", { class: "route-model" },
      h("h3", {}, h("code", {}, m.model)),
      table([
        { label: "Provider", cell: (x) => h("code", {}, x.provider) },
        { label: "Health", cell: (x) => badge(x.healthy ? "healthy" : "ejected", x.healthy ? "active" : "disabled") },
        { label: "In flight", num: true, cell: (x) => fmtInt(x.in_flight) },
        { label: "Latency (EWMA)", num: true, cell: (x) => (x.latency_ewma_us ? `${fmtInt(Math.round(x.latency_ewma_us / 1000))} ms` : "—") },
        { label: "Weight", num: true, cell: (x) => x.weight },
        { label: "Tier", num: true, cell: (x) => x.priority },
      ], m.routes, "No routes."))) : h("p", { class: "empty" }, "No models configured."));
    clear(providers, table([
      { label: "Name", cell: (x) => h("code", {}, x.name) },
      { label: "Kind", cell: (x) => x.kind },
      { label: "Base URL", cell: (x) => (x.base_url ? h("code", {}, x.base_url) : "built-in engine") },
      { label: "Region", cell: (x) => x.region || "—" },
      { label: "Third party", cell: (x) => (x.third_party ? "yes — minimised requests" : "no") },
      { label: "Credential", cell: (x) => (x.has_api_key ? "set (sealed)" : "none") },
      { label: "From", cell: (x) => x.source },
    ], p.data, "No providers.", { id: "ops-providers" }));
  };
  clear(main,
    h("div", { class: "page-head" }, h("h1", {}, "Provider health"), h("p", { class: "lede" }, "Live route state of this instance; refreshed every 5 seconds.")),
    section("Routes", health),
    section("Providers", providers));
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), 5000);
  return () => clearInterval(timer);
}
