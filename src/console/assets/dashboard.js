// Dashboard: totals, a chart over time and breakdowns by model and key, for a chosen period.

import { get, getAll, acct } from "./api.js";
import { h, clear, card, section, table, fmtInt, fmtUsd, segmented, loading, errorBox, field, modelCell } from "./ui.js";
import { barChart } from "./chart.js";

const BUCKET_MS = { minute: 60000, hour: 3600000, day: 86400000 };
const view = { range: "7d", metric: "requests", from: "", to: "" };

const METRICS = {
  requests: { name: "Requests", series: [{ name: "Requests", cls: "s1" }], values: (p) => [p.requests], fmt: (v) => fmtInt(Math.round(v)) },
  tokens: { name: "Tokens", series: [{ name: "Input tokens", cls: "s1" }, { name: "Output tokens", cls: "s2" }], values: (p) => [p.input_tokens, p.output_tokens], fmt: (v) => compact(v) },
  cost: { name: "Cost", series: [{ name: "Cost", cls: "s3" }], values: (p) => [Number(p.cost_usd)], fmt: (v) => fmtUsd(v.toFixed(9)) },
};

function compact(v) {
  if (v >= 1e6) return `${(v / 1e6).toLocaleString("en-US", { maximumFractionDigits: 1 })}M`;
  if (v >= 1e4) return `${(v / 1e3).toLocaleString("en-US", { maximumFractionDigits: 1 })}k`;
  return fmtInt(Math.round(v));
}

function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

// The query string of the chosen period (custom dates are whole UTC days, `to` inclusive).
function periodQuery() {
  if (view.range !== "custom") return `range=${view.range}`;
  const to = new Date(`${view.to}T00:00:00Z`);
  to.setUTCDate(to.getUTCDate() + 1);
  return `from=${view.from}&to=${isoDay(to)}`;
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
        h("a", { class: "btn", id: "export-csv", href: acct(id, `/usage/export?format=csv&${periodQuery()}`), download: `instagen-usage-${view.range}.csv` }, "Export CSV"),
        h("a", { class: "btn btn-quiet", id: "export-json", href: acct(id, `/usage/export?format=json&${periodQuery()}`), download: `instagen-usage-${view.range}.json` }, "JSON")));
  };

  const load = async () => {
    drawControls();
    clear(results, loading());
    try {
      const q = periodQuery();
      const [all, byModel, byKey, keyList] = await Promise.all([
        get(acct(id, `/usage?${q}`)),
        get(acct(id, `/usage?${q}&group_by=model`)),
        get(acct(id, `/usage?${q}&group_by=key`)),
        getAll(acct(id, "/keys?include_deleted=true")),
      ]);
      draw(results, all, byModel.groups, byKey.groups, keyList.data);
    } catch (e) {
      clear(results, errorBox(e));
    }
  };
  await load();
}

function draw(results, all, models, keys, keyList) {
  const t = all.totals;
  const names = new Map(keyList.map((k) => [k.id, k]));
  const cards = h("div", { class: "cards" },
    card("Requests", fmtInt(t.requests), t.error_requests ? `${fmtInt(t.error_requests)} failed` : "all succeeded", { id: "card-requests" }),
    card("Input tokens", fmtInt(t.input_tokens), t.cached_input_tokens ? `${fmtInt(t.cached_input_tokens)} from cache` : "prompt tokens", { id: "card-input" }),
    card("Output tokens", fmtInt(t.output_tokens), "completion tokens", { id: "card-output" }),
    card("Cost", fmtUsd(t.cost_usd), `exact: $${t.cost_usd}`, { id: "card-cost", title: `$${t.cost_usd}` }));
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
  const fmtLabel = all.bucket === "day"
    ? new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric" })
    : new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  const fmtShort = all.bucket === "day"
    ? fmtLabel
    : new Intl.DateTimeFormat("en-US", { hour: "2-digit", minute: "2-digit" });
  const buckets = [];
  for (let b = all.from_ms; b < all.to_ms; b += step) buckets.push(byBucket.get(b) || zero);
  const chartBox = h("div", { class: "chart", id: "usage-chart" });
  const chartHead = h("div", { class: "panel-head" }, h("h2", {}, "Over time"));
  const drawChart = () => {
    const m = METRICS[view.metric];
    clear(chartHead, h("h2", {}, `${m.name} per ${all.bucket}`),
      segmented("Chart metric", [["requests", "Requests"], ["tokens", "Tokens"], ["cost", "Cost"]], view.metric, (v) => { view.metric = v; drawChart(); }));
    barChart(chartBox, {
      title: `${m.name} per ${all.bucket}`,
      series: m.series,
      fmt: m.fmt,
      points: buckets.map((p, i) => {
        const at = all.from_ms + i * step;
        return { label: fmtLabel.format(new Date(at)), short: fmtShort.format(new Date(at)), values: m.values(p) };
      }),
    });
    const legend = m.series.length > 1
      ? h("div", { class: "legend" }, m.series.map((s) => h("span", {}, h("i", { class: `swatch ${s.cls}` }), s.name)))
      : null;
    if (legend) chartBox.append(legend);
  };
  const share = (p) => (t.cost_nanos ? `${((100 * p.cost_nanos) / t.cost_nanos).toFixed(1)}%` : "—");
  const cols = (label, cell) => [
    { label, cell },
    { label: "Requests", num: true, cell: (p) => fmtInt(p.requests) },
    { label: "Input tokens", num: true, cell: (p) => fmtInt(p.input_tokens) },
    { label: "Output tokens", num: true, cell: (p) => fmtInt(p.output_tokens) },
    { label: "Cost", num: true, cell: (p) => h("span", { title: `$${p.cost_usd}` }, fmtUsd(p.cost_usd)) },
    { label: "Share of cost", num: true, cell: share },
  ];
  const keyCell = (p) => {
    const k = names.get(p.group);
    if (!k) return h("span", { class: "muted" }, p.group || "—");
    return h("span", {}, k.name, " ", h("code", { class: "muted" }, k.prefix), k.status === "deleted" ? h("span", { class: "muted" }, " (deleted)") : null);
  };
  clear(results,
    cards,
    h("section", { class: "panel" }, chartHead, chartBox),
    section("By model", table(cols("Model", modelCell), models, "No usage.", { id: "by-model" })),
    section("By key", table(cols("Key", keyCell), keys, "No usage.", { id: "by-key" })));
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
