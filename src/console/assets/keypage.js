// One access key's page: its limits and restrictions, spend against its spend limit, usage
// today, this month and in total, and its recent requests (metadata only), each of which
// opens its full record — the same one `GET /v1/generations/{id}` gives.

import { get, acct } from "./api.js";
import { h, clear, card, section, table, badge, fmtInt, fmtUsd, fmtDate, fmtAgo, dialog, modelCell, endpointName, plural } from "./ui.js";
import { restrictions, models } from "./keys.js";
import { connectTools } from "./connect.js";

const PAGE = 50;
const when = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
const PERIOD = { day: "today (UTC)", month: "this month (UTC)", total: "in total" };

export async function render(main, ctx) {
  const id = ctx.accountId;
  const keyId = ctx.param;
  const path = (rest) => acct(id, `/keys/${encodeURIComponent(keyId)}${rest}`);
  const [k, first] = await Promise.all([
    get(path("")),
    get(acct(id, `/requests?key_id=${encodeURIComponent(keyId)}&limit=${PAGE}`)),
  ]);
  document.title = `${k.name} · Access keys · InstaGen`;
  const sp = k.spend;
  const lim = k.limits || {};
  const spendCard = sp.limit_usd
    ? card(`Spend limit, ${PERIOD[sp.period]}`, fmtUsd(sp.spent_in_period_usd),
      h("span", {}, h("meter", { min: 0, max: Number(sp.limit_usd), value: Number(sp.spent_in_period_usd), low: Number(sp.limit_usd) * 0.8, high: Number(sp.limit_usd) * 0.95, optimum: 0, "aria-label": "Share of the spend limit used" }),
        ` of ${fmtUsd(sp.limit_usd)}; ${fmtUsd(sp.remaining_usd)} left`),
      { id: "card-spend-limit", money: true })
    : card("Spend limit", "none", `${fmtUsd(sp.spent_in_period_usd)} spent in total`, { id: "card-spend-limit" });
  const stat = (label, s, cardId) => card(label, fmtUsd(s.cost_usd), `${plural(s.requests, "request")} · ${plural(s.input_tokens + s.output_tokens, "token")}`, { id: cardId, money: true });
  const log = h("div", {});
  const model = (k.allowed_models || [])[0] || (await models())[0];
  clear(main,
    h("p", {}, h("a", { href: "#/keys" }, "← Access keys")),
    h("div", { class: "page-head" },
      h("div", {},
        h("h1", { id: "key-title" }, k.name, " ", h("code", { class: "prefix muted small" }, `${k.prefix}…`), " ", badge(k.status)),
        h("p", { class: "lede" }, k.description || "No description."))),
    h("div", { class: "cards" },
      spendCard,
      stat("Today (UTC)", sp.today, "card-today"),
      stat("This month (UTC)", sp.this_month, "card-month"),
      stat("All time", k.usage.all_time, "card-all-time")),
    section("Limits and access", h("dl", { class: "facts", id: "key-facts" },
      h("dt", {}, "Requests per minute"), h("dd", {}, lim.rpm ? fmtInt(lim.rpm) : "no limit"),
      h("dt", {}, "Tokens per minute"), h("dd", {}, lim.tpm ? fmtInt(lim.tpm) : "no limit"),
      h("dt", {}, "Concurrent requests"), h("dd", {}, lim.max_concurrent ? fmtInt(lim.max_concurrent) : "no limit"),
      h("dt", {}, "Spend limit"), h("dd", {}, lim.spend_limit_usd ? `${fmtUsd(lim.spend_limit_usd)} ${PERIOD[lim.spend_limit_period || "total"]}` : "none"),
      h("dt", {}, "Models"), h("dd", {}, k.allowed_models && k.allowed_models.length ? k.allowed_models.join(", ") : "every model"),
      h("dt", {}, "Regions"), h("dd", {}, k.allowed_regions && k.allowed_regions.length ? k.allowed_regions.join(", ") : "any region"),
      h("dt", {}, "Expires"), h("dd", {}, k.expires_ms ? fmtDate(k.expires_ms) : "never"),
      h("dt", {}, "Created"), h("dd", {}, fmtDate(k.created_ms)),
      h("dt", {}, "Last used"), h("dd", {}, fmtAgo(k.usage.last_used_ms))),
    h("p", { class: "hint" }, "In short: ", restrictions(k))),
    section("Recent requests", h("p", { class: "muted" }, "Metadata only: InstaGen never keeps prompts or outputs. Open a request for its full record."), log),
    section("Connect your tools", connectTools(null, model)));
  let rows = first.data;
  let cursor = first.next_cursor;
  const more = async () => {
    const page = await get(acct(id, `/requests?key_id=${encodeURIComponent(keyId)}&limit=${PAGE}&cursor=${encodeURIComponent(cursor)}`));
    rows = rows.concat(page.data);
    cursor = page.next_cursor;
    draw();
  };
  const draw = () => clear(log,
    requestTable(id, rows),
    cursor ? h("button", { type: "button", class: "btn", id: "more-requests", onclick: more }, "Show older requests") : null);
  draw();
}

function status(r) {
  if (r.status < 400) return badge(String(r.status), "active");
  return h("span", { title: r.error || "" }, badge(`${r.status} ${(r.error || "").replaceAll("_", " ")}`.trim(), "disabled"));
}

function requestTable(account, rows) {
  return table([
    { label: "When", cell: (r) => h("span", { class: "nowrap", title: r.created_at }, when.format(new Date(r.started_ms))) },
    {
      label: "Request", cell: (r) => h("button", {
        type: "button", class: "btn btn-small btn-quiet mono request-id", dataset: { request: r.id }, title: `Details of request ${r.id}`,
        onclick: () => requestDetails(account, r.id),
      }, r.id),
    },
    { label: "Endpoint", cell: (r) => h("span", { title: r.endpoint }, endpointName(r.endpoint)) },
    { label: "Model", cell: (r) => modelCell({ group: r.model }) },
    { label: "Status", cell: status },
    { label: "Input", num: true, cell: (r) => fmtInt(r.tokens.input) },
    { label: "Output", num: true, cell: (r) => fmtInt(r.tokens.output) },
    { label: "Latency", num: true, cell: (r) => `${fmtInt(Math.round(r.latency_us / 1000))} ms` },
    { label: "Cost", num: true, cell: (r) => h("span", { title: r.estimated ? "estimated: the provider reported no usage" : "" }, fmtUsd(r.cost_usd), r.estimated ? "*" : "") },
  ], rows, "No requests with this key yet.", { id: "key-requests", "aria-label": "Recent requests" }, (r) => ({ "data-request-id": r.id }));
}

// The full metadata record of one request, fetched fresh.
async function requestDetails(account, requestId) {
  const r = await get(acct(account, `/requests/${encodeURIComponent(requestId)}`));
  const t = r.tokens;
  const row = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
  await dialog({
    title: "Request details",
    wide: true,
    submit: "Close",
    cancel: null,
    body: h("div", {},
      h("dl", { class: "facts", id: "request-facts" },
        row("Request id", h("code", {}, r.id)),
        row("Started", `${r.created_at}`),
        row("Endpoint", `${endpointName(r.endpoint)} (${r.endpoint})`),
        row("Model", r.model || "refused before routing"),
        row("Provider", r.provider ? `${r.provider}${r.region ? ` (${r.region})` : ""}` : "—"),
        row("Status", status(r)),
        row("Streamed", r.stream ? "yes" : "no"),
        row("Attempts", fmtInt(r.attempts)),
        row("Latency", `${fmtInt(Math.round(r.latency_us / 1000))} ms${r.time_to_first_token_us != null ? `, first token after ${fmtInt(Math.round(r.time_to_first_token_us / 1000))} ms` : ""}`),
        row("Input tokens", fmtInt(t.input)),
        row("Cache reads", fmtInt(t.cached_input)),
        row("Cache writes", `${fmtInt(t.cache_write_5m)} for 5 minutes, ${fmtInt(t.cache_write_1h)} for an hour`),
        row("Output tokens", fmtInt(t.output)),
        row("Reasoning tokens", fmtInt(t.reasoning)),
        row("Cost", `${fmtUsd(r.cost_usd)}${r.estimated ? " (estimated: the provider reported no usage)" : ""}`)),
      h("p", { class: "hint" }, "Any key of this account reads the same record at ", h("code", {}, `GET /v1/generations/${r.id}`), ".")),
  });
}
