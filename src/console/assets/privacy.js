// The operator's privacy policy, rendered as plain text with headings, lists and paragraphs.

import { get } from "./api.js";
import { h, clear } from "./ui.js";

export async function render(main, ctx) {
  const p = ctx.privacy || (await get("/api/v1/privacy"));
  const doc = h("article", { class: "policy", id: "privacy-text" });
  let list = null;
  for (const block of p.text.split(/\n\s*\n/)) {
    for (const line of block.split("\n")) {
      const t = line.trim();
      if (!t) continue;
      if (/^[-*] /.test(t)) {
        if (!list) doc.append((list = h("ul", {})));
        list.append(h("li", {}, t.slice(2)));
        continue;
      }
      list = null;
      const m = /^(#{1,3}) (.*)$/.exec(t);
      doc.append(m ? h(m[1].length === 1 ? "h2" : "h3", {}, m[2]) : h("p", {}, t));
    }
    list = null;
  }
  clear(main,
    h("div", { class: "page-head" },
      h("h1", {}, "Privacy policy"),
      h("p", { class: "lede" }, `Version ${p.version}`, p.contact ? h("span", {}, " · Questions: ", h("a", { href: `mailto:${p.contact}` }, p.contact)) : null)),
    h("section", { class: "panel" }, doc, acknowledge(p, ctx)));
}

// A signed-in reader who has not yet acknowledged this version does so here.
function acknowledge(p, ctx) {
  if (!ctx.session || !ctx.acknowledgePrivacy || ctx.session.privacy_seen_version === p.version) return null;
  const done = h("button", {
    type: "button", class: "btn btn-primary", id: "privacy-ack-page", onclick: async () => {
      if (await ctx.acknowledgePrivacy()) done.replaceWith(h("p", { class: "muted", role: "status" }, "Thank you: you have read this version."));
    },
  }, "I have read it");
  return h("div", { class: "button-row" }, done);
}
