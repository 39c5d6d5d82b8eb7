// Security: failed authentications with this account's keys, and the audit log of changes.

import { get, acct } from "./api.js";
import { h, clear, section, table, fmtInt, fmtTime, badge } from "./ui.js";

export async function render(main, ctx) {
  const id = ctx.accountId;
  const head = h("div", { class: "page-head" }, h("h1", {}, "Security"), h("p", { class: "lede" }, "Refused requests with your keys and every change made to this account. Client addresses are truncated."));
  if (!["owner", "operator"].includes(ctx.role)) {
    clear(main, head, section(null, h("p", { class: "empty" }, "Only owners of this account can see its security log.")));
    return;
  }
  const [events, audit] = await Promise.all([get(acct(id, "/security-events")), get(acct(id, "/audit"))]);
  clear(main, head,
    section("Refused requests (last 30 days)", table([
      { label: "Hour", cell: (e) => fmtTime(e.bucket_ms) },
      { label: "What", cell: (e) => badge(e.kind.replaceAll("_", " "), "warn") },
      { label: "Key", cell: (e) => (e.key_id ? h("code", {}, e.key_id) : "—") },
      { label: "From", cell: (e) => e.client_ip || "—" },
      { label: "Count", num: true, cell: (e) => fmtInt(e.count) },
    ], events.data, "No refused requests. Disabled, expired or wrong keys would show up here.", { id: "security-events" })),
    section("Audit log", table([
      { label: "When", cell: (e) => fmtTime(e.ts_ms) },
      { label: "Who", cell: (e) => (e.actor_id ? h("span", {}, `${e.actor_kind} `, h("code", {}, e.actor_id)) : e.actor_kind) },
      { label: "Action", cell: (e) => h("code", {}, e.action) },
      { label: "Target", cell: (e) => (e.target_id ? h("code", {}, e.target_id) : "—") },
      { label: "From", cell: (e) => e.client_ip || "—" },
    ], audit.data, "Nothing changed yet.", { id: "audit-log" })));
}
