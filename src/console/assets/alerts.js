// Alerts: thresholds that send a signed webhook and/or email the owners before the money
// runs out, and the delivery log of every webhook call and email.

import { get, getAll, post, del, acct } from "./api.js";
import { h, clear, section, table, badge, fmtTime, fmtUsd, field, dialog, secretPanel, toast, loading, errorBox } from "./ui.js";

const KINDS = {
  key_spend: "A key's spend reaches a share of its limit",
  balance_below: "The prepaid balance falls below",
  daily_spend: "A day's spend goes over",
};

// The threshold in words, naming the key (its id on hover) of a key-spend alert.
function threshold(r, names) {
  if (r.kind === "key_spend") {
    const name = names.get(r.key_id);
    return h("span", { title: `key ${r.key_id}` }, `${r.threshold_percent}% of ${name ? `“${name}”` : `key ${r.key_id}`}'s limit`);
  }
  return fmtUsd(r.threshold_usd);
}

// The period an alert last fired in, for people.
function fired(f) {
  if (!f) return "—";
  if (f === "below") return "yes, until topped up";
  if (f === "total") return "yes (all time)";
  const [period, at] = f.split(":");
  return `${period === "day" ? "on" : "in"} ${at ? at.slice(0, period === "day" ? 10 : 7) : f}`;
}

export async function render(main, ctx) {
  const id = ctx.accountId;
  const head = h("div", { class: "page-head" },
    h("div", {}, h("h1", {}, "Alerts"), h("p", { class: "lede" }, "Each alert fires once per period. Webhooks are signed (", h("code", {}, "x-instagen-signature"), ") and retried until your receiver takes them; alerts carry amounts and ids, never content.")));
  if (!["owner", "operator"].includes(ctx.role)) {
    clear(main, head, section(null, h("p", { class: "empty" }, "Only owners of this account can manage its alerts.")));
    return;
  }
  const rules = h("div", {}, loading());
  const log = h("div", {}, loading());
  head.append(h("button", { type: "button", class: "btn btn-primary", id: "create-alert", onclick: () => createAlert(id, refresh) }, "Create alert"));
  clear(main, head, section("Alerts", rules), section("Deliveries", log));
  const refresh = async () => {
    try {
      const [list, deliveries, keys] = await Promise.all([
        get(acct(id, "/alerts")),
        get(acct(id, "/alert-deliveries")),
        getAll(acct(id, "/keys?include_deleted=true")).catch(() => ({ data: [] })),
      ]);
      const names = new Map(keys.data.map((k) => [k.id, k.name]));
      clear(rules, table([
        { label: "When", cell: (r) => h("span", {}, KINDS[r.kind], ": ", h("strong", {}, threshold(r, names))) },
        { label: "Sends to", cell: (r) => [r.webhook_url ? h("code", {}, r.webhook_url) : null, r.email ? badge("email owners") : null] },
        { label: "Last fired", cell: (r) => fired(r.fired) },
        { label: "Actions", cell: (r) => h("button", { type: "button", class: "btn btn-small btn-danger-quiet", dataset: { action: "delete", alert: r.id }, "aria-label": `Delete the alert: ${KINDS[r.kind]}`, onclick: () => deleteAlert(id, r, refresh) }, "Delete") },
      ], list.data, "No alerts yet. Create one to hear about spend before it runs out.", { id: "alerts-table" }, (r) => ({ "data-alert-id": r.id })));
      clear(log, table([
        { label: "Created", cell: (d) => fmtTime(d.created_ms) },
        { label: "Event", cell: (d) => h("code", {}, d.event) },
        { label: "Channel", cell: (d) => badge(d.channel) },
        { label: "To", cell: (d) => h("code", {}, d.target) },
        { label: "Status", cell: (d) => badge(d.status, d.status === "failed" ? "warn" : d.status === "pending" ? "disabled" : null) },
        { label: "Attempts", num: true, cell: (d) => String(d.attempts) },
        { label: "Last answer", cell: (d) => [d.last_status ? h("code", {}, String(d.last_status)) : null, d.last_error ? h("span", { class: "muted small" }, ` ${d.last_error}`) : null] },
      ], deliveries.data, "Nothing sent yet.", { id: "deliveries-table" }, (d) => ({ "data-delivery-id": d.id, "data-status": d.status })));
    } catch (e) {
      clear(rules, errorBox(e));
    }
  };
  await refresh();
}

async function createAlert(account, refresh) {
  const keys = (await getAll(acct(account, "/keys"))).data.filter((k) => k.limits.spend_limit_usd);
  const kind = h("select", { name: "kind", id: "alert-kind" }, Object.entries(KINDS).map(([v, t]) => h("option", { value: v }, t)));
  const key = h("select", { name: "key_id", id: "alert-key" }, keys.map((k) => h("option", { value: k.id }, `${k.name} (limit $${k.limits.spend_limit_usd} per ${k.limits.spend_limit_period || "total"})`)));
  const amount = h("input", { name: "threshold", id: "alert-threshold", inputmode: "decimal", value: "80", required: true });
  const url = h("input", { name: "webhook_url", id: "alert-webhook", type: "url", placeholder: "https address of your receiver" });
  const email = h("input", { type: "checkbox", name: "email", id: "alert-email", checked: true });
  const keyField = field("Key", key, keys.length ? null : "No key of this account has a spend limit.");
  const amountField = field("Threshold", amount, "Percent of the key's limit");
  const sync = () => {
    const percent = kind.value === "key_spend";
    keyField.hidden = !percent;
    amountField.querySelector(".hint").textContent = percent ? "Percent of the key's limit" : "USD, e.g. 5 or 12.50";
    amount.value = percent ? "80" : "5";
  };
  kind.onchange = sync;
  const body = h("div", {}, field("Alert when", kind), keyField, amountField, field("Webhook URL", url, "Optional: where the signed JSON is POSTed"),
    h("label", { class: "check" }, email, " Email the account's owners"));
  const created = await dialog({
    title: "Create an alert",
    body,
    submit: "Create alert",
    wide: true,
    onSubmit: () => {
      const spec = { kind: kind.value, email: email.checked };
      if (kind.value === "key_spend") {
        spec.key_id = key.value;
        spec.threshold_percent = Number(amount.value);
      } else {
        spec.threshold_usd = amount.value.trim();
      }
      if (url.value.trim()) spec.webhook_url = url.value.trim();
      return post(acct(account, "/alerts"), spec);
    },
  });
  if (!created) return;
  await refresh();
  if (created.webhook_secret) {
    await dialog({
      title: "Webhook signing secret",
      body: secretPanel(created.webhook_secret, "Verify x-instagen-signature (t=…,v1=HMAC-SHA-256 of \"t.body\") with this secret. It is shown only now."),
      submit: "I have copied it",
      cancel: null,
    });
  } else {
    toast("Alert created.");
  }
}

async function deleteAlert(account, r, refresh) {
  const ok = await dialog({
    title: "Delete this alert?",
    body: h("p", {}, `${KINDS[r.kind]}: ${threshold(r)}. Its delivery log stays.`),
    submit: "Delete alert",
    danger: true,
    onSubmit: () => del(acct(account, `/alerts/${encodeURIComponent(r.id)}`)),
  });
  if (ok) {
    toast("Alert deleted.");
    await refresh();
  }
}

