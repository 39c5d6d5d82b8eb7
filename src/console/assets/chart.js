// A small SVG bar chart (stacked when given several series), sized to its container.

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// Rounds a maximum up to 1, 2 or 5 × 10^n so the axis reads well.
function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// `points`: [{label, short, major, values: [number per series], tips: [exact text per
// series]}]; `series`: [{name, cls}]; `axis`: the y-axis tick formatter (ticks are round
// numbers; each bar's tooltip carries its exact figures). Major points (a day's start)
// always get an x label; the others where there is room.
export function barChart(container, { points, series, axis, title }) {
  const width = Math.max(280, container.clientWidth || 800);
  const height = 240;
  const totals = points.map((p) => p.values.reduce((a, b) => a + b, 0));
  const max = niceMax(Math.max(0, ...totals));
  const ticks = [0, 1, 2, 3, 4].map((i) => axis((max * i) / 4));
  // Room for the widest y label (11px text is about 6.5px a character).
  const pad = { l: Math.max(40, 12 + 6.5 * Math.max(...ticks.map((t) => t.length))), r: 12, t: 12, b: 28 };
  const innerW = width - pad.l - pad.r;
  const innerH = height - pad.t - pad.b;
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "chart-svg" });
  svg.append(s("title", {}, title));
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + innerH - (innerH * i) / 4;
    svg.append(s("line", { x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: "grid" }));
    svg.append(s("text", { x: pad.l - 8, y: y + 4, class: "axis", "text-anchor": "end" }, ticks[i]));
  }
  const n = Math.max(points.length, 1);
  const slot = innerW / n;
  const bar = Math.max(1, Math.min(48, slot * 0.7));
  const every = Math.ceil(n / Math.max(1, Math.floor(innerW / 64)));
  const majors = points.map((p, i) => (p.major ? i : -1)).filter((i) => i >= 0);
  const labelled = (i) => points[i].major || (i % every === 0 && majors.every((m) => Math.abs(m - i) >= every));
  points.forEach((p, i) => {
    const x = pad.l + i * slot + (slot - bar) / 2;
    let y = pad.t + innerH;
    const g = s("g", { class: "bar" });
    p.values.forEach((v, k) => {
      const hgt = (innerH * v) / max;
      if (hgt <= 0) return;
      y -= hgt;
      g.append(s("rect", { x, y, width: bar, height: hgt, class: series[k].cls, rx: Math.min(3, bar / 4) }));
    });
    const tip = series.map((se, k) => `${se.name}: ${p.tips[k]}`).join("\n");
    g.append(s("title", {}, `${p.label}\n${tip}`));
    // A full-height transparent target so thin bars still show their tooltip.
    g.append(s("rect", { x: pad.l + i * slot, y: pad.t, width: slot, height: innerH, class: "hit" }));
    svg.append(g);
    if (labelled(i)) {
      svg.append(s("text", { x: pad.l + i * slot + slot / 2, y: height - 8, class: p.major ? "axis major" : "axis", "text-anchor": "middle" }, p.short || p.label));
    }
  });
  container.replaceChildren(svg);
}
