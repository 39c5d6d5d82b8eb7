// Billing: balance, this month's spend by model, and the ledger (credits, usage, adjustments).

import { get, acct } from "./api.js";
import { h, clear, card, section, table, fmtInt, fmtUsd, fmtTime, nanosToUsd, badge, modelCell, plural } from "./ui.js";

export async function render(main, ctx) {
  const id = ctx.accountId;
  if (!["owner", "operator"].includes(ctx.role)) {
    clear(main, h("div", { class: "page-head" }, h("h1", {}, "Billing")),
      section(null, h("p", { class: "empty" }, "Only owners of this account can see its balance and ledger. Your usage and its cost are on the dashboard.")));
    return;
  }
  const now = new Date();
  const monthStart = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, "0")}-01`;
  const monthName = now.toLocaleString("en-US", { month: "long", year: "numeric", timeZone: "UTC" });
  const [bill, month] = await Promise.all([
    get(acct(id, "/billing")),
    get(acct(id, `/usage?from=${monthStart}&bucket=day&group_by=model`)),
  ]);
  const balance = Number(bill.balance_usd);
  const ledger = bill.ledger.slice().sort((a, b) => b.seq - a.seq);
  clear(main,
    h("div", { class: "page-head" }, h("h1", {}, "Billing"), h("p", { class: "lede" }, "Every amount is exact to the nano-dollar; the ledger is append-only and hash-chained.")),
    h("div", { class: "cards" },
      card("Balance", fmtUsd(bill.balance_usd), balance < 0 ? "owed" : "available credit", { id: "card-balance", money: true, warn: balance < 0 }),
      card("Not yet posted", fmtUsd(bill.unposted_usage_usd), "usage since the last posting", { money: true }),
      card(`Spend in ${monthName}`, fmtUsd(month.totals.cost_usd), plural(month.totals.requests, "request"), { id: "card-month", money: true })),
    section(`Spend by model, ${monthName}`, table([
      { label: "Model", cell: modelCell },
      { label: "Requests", num: true, cell: (p) => fmtInt(p.requests) },
      { label: "Input tokens", num: true, cell: (p) => fmtInt(p.input_tokens) },
      { label: "Cache reads", num: true, cell: (p) => fmtInt(p.cached_input_tokens) },
      { label: "Cache writes", num: true, cell: (p) => h("span", { title: `${fmtInt(p.cache_write_5m_tokens)} for 5 minutes, ${fmtInt(p.cache_write_1h_tokens)} for an hour` }, fmtInt(p.cache_write_5m_tokens + p.cache_write_1h_tokens)) },
      { label: "Output tokens", num: true, cell: (p) => fmtInt(p.output_tokens) },
      { label: "Reasoning", num: true, cell: (p) => fmtInt(p.reasoning_tokens) },
      { label: "Cost", num: true, cell: (p) => h("span", { title: `$${p.cost_usd}` }, fmtUsd(p.cost_usd)) },
    ], month.groups, "No spend this month.", { id: "spend-by-model" })),
    section("Ledger", table([
      { label: "Date", cell: (e) => fmtTime(e.ts_ms) },
      { label: "Kind", cell: (e) => badge(e.kind) },
      { label: "Description", cell: (e) => e.memo || (e.period_start_ms ? `usage ${fmtTime(e.period_start_ms)} – ${fmtTime(e.period_end_ms)}` : "") },
      { label: "Amount", num: true, cell: (e) => h("span", { class: e.amount_nanos < 0 ? "neg" : "pos", title: `$${nanosToUsd(e.amount_nanos)}` }, fmtUsd(nanosToUsd(e.amount_nanos))) },
      { label: "Entry", cell: (e) => h("code", { class: "muted", title: `hash ${e.hash}` }, `#${e.seq}`) },
    ], ledger, "No ledger entries yet. Credits and posted usage appear here.", { id: "ledger" })));
}
