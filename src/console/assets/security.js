// Security: failed authentications with this account's keys, and the audit log of changes,
// naming keys, people and tokens (the raw id on hover).

import { get, getAll, acct } from "./api.js";
import { h, clear, section, table, fmtInt, fmtTime, badge } from "./ui.js";

export async function render(main, ctx) {
  const id = ctx.accountId;
  const head = h("div", { class: "page-head" }, h("h1", {}, "Security"), h("p", { class: "lede" }, "Refused requests with your keys and every change made to this account. Client addresses are truncated."));
  if (!["owner", "operator"].includes(ctx.role)) {
    clear(main, head, section(null, h("p", { class: "empty" }, "Only owners of this account can see its security log.")));
    return;
  }
  const none = { data: [] };
  const [events, audit, keys, members, tokens, alerts] = await Promise.all([
    get(acct(id, "/security-events")),
    get(acct(id, "/audit")),
    getAll(acct(id, "/keys?include_deleted=true")).catch(() => none),
    getAll(acct(id, "/members")).catch(() => none),
    getAll(acct(id, "/tokens")).catch(() => none),
    get(acct(id, "/alerts")).catch(() => none),
  ]);
  const names = new Map();
  for (const k of keys.data) names.set(k.id, `key “${k.name}”${k.status === "deleted" ? " (deleted)" : ""}`);
  for (const m of members.data) names.set(m.user_id, m.email);
  for (const t of tokens.data) names.set(t.id, `token “${t.name}”`);
  for (const a of alerts.data) names.set(a.id, `alert “${a.kind.replaceAll("_", " ")}”`);
  if (ctx.session.user) names.set(ctx.session.user.id, ctx.session.user.email);
  names.set(id, "this account");
  // A name with its id on hover; an id no longer known (a removed member) stays an id.
  const named = (raw, kind) => {
    if (!raw) return "—";
    const name = names.get(raw);
    return name ? h("span", { title: `${kind ? `${kind} ` : ""}${raw}` }, name) : h("code", { title: kind || "" }, raw);
  };
  const actor = (e) => {
    if (!e.actor_id) return e.actor_kind;
    if (e.actor_kind === "user" || e.actor_kind === "token") return named(e.actor_id, e.actor_kind);
    return h("span", {}, `${e.actor_kind} `, named(e.actor_id));
  };
  clear(main, head,
    section("Refused requests (last 30 days)", table([
      { label: "Hour", cell: (e) => fmtTime(e.bucket_ms) },
      { label: "What", cell: (e) => badge(e.kind.replaceAll("_", " "), "warn") },
      { label: "Key", cell: (e) => named(e.key_id, "key") },
      { label: "From", cell: (e) => e.client_ip || "—" },
      { label: "Count", num: true, cell: (e) => fmtInt(e.count) },
    ], events.data, "No refused requests. Disabled, expired or wrong keys would show up here.", { id: "security-events" })),
    section("Audit log", table([
      { label: "When", cell: (e) => fmtTime(e.ts_ms) },
      { label: "Who", cell: actor },
      { label: "Action", cell: (e) => h("code", {}, e.action) },
      { label: "Target", cell: (e) => (e.action.startsWith("billing.") && /^\d+$/.test(e.target_id || "") ? h("span", { title: "ledger entry" }, `ledger entry #${e.target_id}`) : named(e.target_id)) },
      { label: "From", cell: (e) => e.client_ip || "—" },
    ], audit.data, "Nothing changed yet.", { id: "audit-log" })));
}
