// Dashboard: totals, a chart over time and breakdowns by model and key, for a chosen period.

import { get, getAll, acct } from "./api.js";
import { h, clear, card, section, table, fmtInt, fmtUsd, fmtUsdAxis, segmented, loading, errorBox, field, modelCell, endpointName } from "./ui.js";
import { barChart } from "./chart.js";

const BUCKET_MS = { minute: 60000, hour: 3600000, day: 86400000 };
const view = { range: "7d", metric: "requests", from: "", to: "" };

const METRICS = {
  requests: { name: "Requests", series: [{ name: "Requests", cls: "s1" }], values: (p) => [p.requests], tips: (p) => [fmtInt(p.requests)], axis: (v) => fmtInt(Math.round(v)) },
  tokens: {
    name: "Tokens",
    series: [{ name: "Input tokens", cls: "s1" }, { name: "Output tokens", cls: "s2" }],
    values: (p) => [p.input_tokens, p.output_tokens],
    tips: (p) => [fmtInt(p.input_tokens), fmtInt(p.output_tokens)],
    axis: (v) => compact(v),
  },
  // Bar heights are approximate by nature; each bar's tooltip carries the exact amount.
  cost: { name: "Cost", series: [{ name: "Cost", cls: "s3" }], values: (p) => [Number(p.cost_usd)], tips: (p) => [fmtUsd(p.cost_usd)], axis: fmtUsdAxis },
};

function compact(v) {
  if (v >= 1e6) return `${(v / 1e6).toLocaleString("en-US", { maximumFractionDigits: 1 })}M`;
  if (v >= 1e4) return `${(v / 1e3).toLocaleString("en-US", { maximumFractionDigits: 1 })}k`;
  return fmtInt(Math.round(v));
}

function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

// A UTC day `days` before today, as YYYY-MM-DD.
function daysAgo(days) {
  const d = new Date();
  d.setUTCDate(d.getUTCDate() - days);
  return isoDay(d);
}

// The chosen period as whole UTC days [from, to) — the last 7 or 30 days end with today —
// or the last 24 hours.
function period() {
  if (view.range === "24h") return { query: "range=24h", days: 1 };
  if (view.range === "custom") {
    const to = new Date(`${view.to}T00:00:00Z`);
    to.setUTCDate(to.getUTCDate() + 1);
    const days = Math.round((to - new Date(`${view.from}T00:00:00Z`)) / BUCKET_MS.day);
    return { query: `from=${view.from}&to=${isoDay(to)}`, days };
  }
  const days = view.range === "30d" ? 30 : 7;
  return { query: `from=${daysAgo(days - 1)}&to=${daysAgo(-1)}`, days };
}

// The bucket that fits the period: hours for a day or two, days beyond.
function bucket(days) {
  return days <= 2 ? "hour" : "day";
}

export async function render(main, ctx) {
  const id = ctx.accountId;
  const results = h("div", { class: "dash-results" }, loading());
  const controls = h("div", { class: "toolbar" });
  clear(main, h("div", { class: "page-head" }, h("h1", {}, "Dashboard"), h("p", { class: "lede" }, "Requests, tokens and cost of every access key in this account.")), controls, results);

  const drawControls = () => {
    const custom = view.range === "custom"
      ? h("form", {
        class: "custom-range", onsubmit: (e) => {
          e.preventDefault();
          view.from = e.target.elements.from.value;
          view.to = e.target.elements.to.value;
          if (view.from && view.to && view.from <= view.to) load();
        },
      },
        field("From", h("input", { type: "date", name: "from", value: view.from, required: true, id: "range-from" })),
        field("To", h("input", { type: "date", name: "to", value: view.to, required: true, id: "range-to" })),
        h("button", { type: "submit", class: "btn btn-small" }, "Apply"))
      : null;
    clear(controls,
      segmented("Period", [["24h", "24h"], ["7d", "7 days"], ["30d", "30 days"], ["custom", "Custom"]], view.range, (v) => {
        view.range = v;
        if (v === "custom" && !view.from) {
          const now = new Date();
          view.to = isoDay(now);
          now.setUTCDate(now.getUTCDate() - 13);
          view.from = isoDay(now);
        }
        drawControls();
        load();
      }),
      custom,
      h("div", { class: "toolbar-end" },
        h("a", { class: "btn", id: "export-csv", href: acct(id, `/usage/export?format=csv&${period().query}`), download: `instagen-usage-${view.range}.csv` }, "Export CSV"),
        h("a", { class: "btn btn-quiet", id: "export-json", href: acct(id, `/usage/export?format=json&${period().query}`), download: `instagen-usage-${view.range}.json` }, "JSON")));
  };

  const load = async () => {
    drawControls();
    clear(results, loading());
    try {
      const p = period();
      const q = `${p.query}&bucket=${bucket(p.days)}`;
      const [all, byModel, byKey, byEndpoint, keyList] = await Promise.all([
        get(acct(id, `/usage?${q}`)),
        get(acct(id, `/usage?${q}&group_by=model`)),
        get(acct(id, `/usage?${q}&group_by=key`)),
        get(acct(id, `/usage?${q}&group_by=endpoint`)),
        getAll(acct(id, "/keys?include_deleted=true")),
      ]);
      draw(results, all, { models: byModel.groups, keys: byKey.groups, endpoints: byEndpoint.groups }, keyList.data);
    } catch (e) {
      clear(results, errorBox(e));
    }
  };
  await load();
}

const utc = (opts) => new Intl.DateTimeFormat("en-US", { timeZone: "UTC", ...opts });
const DAY = utc({ weekday: "short", month: "short", day: "numeric" });
const DAY_SHORT = utc({ month: "short", day: "numeric" });
const HOUR = utc({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

// Axis and tooltip labels of a bucket starting at `ms` (UTC, as the buckets are cut): days
// by date; hours by time, with the date where a day begins and on the first bar.
function labels(ms, bucketName, first) {
  const d = new Date(ms);
  if (bucketName === "day") return { label: `${DAY.format(d)} (UTC)`, short: DAY_SHORT.format(d), major: false };
  const midnight = d.getUTCHours() === 0;
  return {
    label: `${DAY_SHORT.format(d)}, ${HOUR.format(d)} UTC`,
    short: midnight || first ? DAY_SHORT.format(d) : HOUR.format(d),
    major: midnight || first,
  };
}

function draw(results, all, groups, keyList) {
  const t = all.totals;
  const names = new Map(keyList.map((k) => [k.id, k]));
  const writes = (p) => p.cache_write_5m_tokens + p.cache_write_1h_tokens;
  const cards = h("div", { class: "cards" },
    card("Requests", fmtInt(t.requests), t.error_requests ? `${fmtInt(t.error_requests)} failed` : "all succeeded", { id: "card-requests" }),
    card("Cost", fmtUsd(t.cost_usd), t.estimated_requests ? `${fmtInt(t.estimated_requests)} estimated` : "exact, as billed", { id: "card-cost", money: true }),
    card("Input tokens", fmtInt(t.input_tokens), "cache reads included", { id: "card-input" }),
    card("Output tokens", fmtInt(t.output_tokens), "reasoning included", { id: "card-output" }),
    card("Cache reads", fmtInt(t.cached_input_tokens), "input tokens served from cache", { id: "card-cache-reads" }),
    card("Cache writes", fmtInt(writes(t)), `${fmtInt(t.cache_write_5m_tokens)} for 5 min, ${fmtInt(t.cache_write_1h_tokens)} for 1 h`, { id: "card-cache-writes" }),
    card("Reasoning", fmtInt(t.reasoning_tokens), "output tokens spent thinking", { id: "card-reasoning" }));
  if (!t.requests) {
    clear(results, cards, section("Nothing in this period yet",
      h("p", {}, "Create an access key, point any OpenAI SDK at InstaGen and your requests show up here within a second."),
      h("pre", { class: "code" }, `from openai import OpenAI\nclient = OpenAI(base_url="${location.origin}/v1", api_key="ig-…")\nclient.chat.completions.create(model="…", messages=[{"role": "user", "content": "Hello"}])`),
      h("a", { href: "#/keys", class: "btn btn-primary" }, "Create an access key")));
    return;
  }
  const step = BUCKET_MS[all.bucket] || BUCKET_MS.hour;
  const byBucket = new Map(all.series.map((p) => [p.bucket_ms, p]));
  const zero = { requests: 0, input_tokens: 0, output_tokens: 0, cost_usd: "0" };
  const buckets = [];
  for (let b = all.from_ms; b < all.to_ms; b += step) buckets.push([b, byBucket.get(b) || zero]);
  const chartBox = h("div", { class: "chart", id: "usage-chart" });
  const chartHead = h("div", { class: "panel-head" }, h("h2", {}, "Over time"));
  const drawChart = () => {
    const m = METRICS[view.metric];
    const title = `${m.name} per ${all.bucket} (UTC)`;
    clear(chartHead, h("h2", {}, title),
      segmented("Chart metric", [["requests", "Requests"], ["tokens", "Tokens"], ["cost", "Cost"]], view.metric, (v) => { view.metric = v; drawChart(); }));
    barChart(chartBox, {
      title,
      series: m.series,
      axis: m.axis,
      points: buckets.map(([at, p], i) => ({ ...labels(at, all.bucket, i === 0), values: m.values(p), tips: m.tips(p) })),
    });
    const legend = m.series.length > 1
      ? h("div", { class: "legend" }, m.series.map((se) => h("span", {}, h("i", { class: `swatch ${se.cls}` }), se.name)))
      : null;
    if (legend) chartBox.append(legend);
  };
  const share = (p) => (t.cost_nanos ? `${((100 * p.cost_nanos) / t.cost_nanos).toFixed(1)}%` : "—");
  const cols = (label, cell) => [
    { label, cell },
    { label: "Requests", num: true, cell: (p) => fmtInt(p.requests) },
    { label: "Input tokens", num: true, cell: (p) => fmtInt(p.input_tokens) },
    { label: "Cache reads", num: true, cell: (p) => fmtInt(p.cached_input_tokens) },
    { label: "Cache writes", num: true, cell: (p) => h("span", { title: `${fmtInt(p.cache_write_5m_tokens)} for 5 minutes, ${fmtInt(p.cache_write_1h_tokens)} for an hour` }, fmtInt(writes(p))) },
    { label: "Output tokens", num: true, cell: (p) => fmtInt(p.output_tokens) },
    { label: "Reasoning", num: true, cell: (p) => fmtInt(p.reasoning_tokens) },
    { label: "Cost", num: true, cell: (p) => fmtUsd(p.cost_usd) },
    { label: "Share of cost (rounded)", num: true, cell: share },
  ];
  const keyCell = (p) => {
    const k = names.get(p.group);
    if (!k) return h("span", { class: "muted" }, p.group || "—");
    return h("span", {}, h("a", { href: `#/keys/${encodeURIComponent(k.id)}` }, k.name), " ", h("code", { class: "muted" }, k.prefix), k.status === "deleted" ? h("span", { class: "muted" }, " (deleted)") : null);
  };
  const endpointCell = (p) => h("span", { title: p.group }, endpointName(p.group));
  clear(results,
    cards,
    h("section", { class: "panel" }, chartHead, chartBox),
    section("By model", table(cols("Model", modelCell), groups.models, "No usage.", { id: "by-model", "aria-label": "Usage by model" })),
    section("By key", table(cols("Key", keyCell), groups.keys, "No usage.", { id: "by-key", "aria-label": "Usage by key" })),
    section("By endpoint", table(cols("Endpoint", endpointCell), groups.endpoints, "No per-request records in this period (they are kept for the retention period only).", { id: "by-endpoint", "aria-label": "Usage by endpoint" })));
  drawChart();
  let width = chartBox.clientWidth;
  const ro = new ResizeObserver(() => {
    if (Math.abs(chartBox.clientWidth - width) > 20) {
      width = chartBox.clientWidth;
      drawChart();
    }
  });
  ro.observe(chartBox);
}
