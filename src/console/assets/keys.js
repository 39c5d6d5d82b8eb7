// Access keys: list with 30-day usage; create, edit, disable/enable, rotate and delete.

import { get, getAll, post, patch, del, acct } from "./api.js";
import { h, clear, table, badge, fmtInt, fmtUsd, fmtAgo, fmtDate, field, dialog, secretPanel, toast, loading, errorBox, section } from "./ui.js";
import { connectTools } from "./connect.js";

let modelsCache = null;

export async function models() {
  if (!modelsCache) {
    modelsCache = get("/api/v1/models").then((r) => r.data.map((m) => m.id)).catch(() => []);
  }
  return modelsCache;
}

export async function render(main, ctx) {
  const id = ctx.accountId;
  const canWrite = ["owner", "member", "operator"].includes(ctx.role);
  const list = h("div", {}, loading());
  const create = canWrite ? h("button", { type: "button", class: "btn btn-primary", id: "create-key", onclick: () => createKey(id, refresh) }, "Create key") : null;
  clear(main,
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Access keys"), h("p", { class: "lede" }, "Keys call the OpenAI-compatible API at ", h("code", {}, `${location.origin}/v1`), ". We keep only a keyed hash of each secret.")),
      create),
    h("section", { class: "panel" }, list),
    section("Connect your tools", h("p", { class: "muted" }, "Use any key with the tools you already have. A new key's own setup is shown when you create it."), connectTools(null, (await models())[0])));
  const refresh = async () => {
    try {
      const keys = (await getAll(acct(id, "/keys"))).data;
      clear(list, keyTable(id, keys, canWrite, refresh));
    } catch (e) {
      clear(list, errorBox(e));
    }
  };
  await refresh();
}

function keyTable(account, keys, canWrite, refresh) {
  const status = (k) => {
    if (k.status === "active" && k.expires_ms && k.expires_ms < Date.now()) return badge("expired", "disabled");
    return badge(k.status);
  };
  const columns = [
    {
      label: "Key", cell: (k) => h("div", {},
        h("div", { class: "key-name" }, h("a", { href: `#/keys/${encodeURIComponent(k.id)}`, title: `Usage, limits and recent requests of ${k.name}` }, k.name), " ", h("code", { class: "prefix muted small", title: "the key's public prefix" }, `${k.prefix}…`)),
        k.description ? h("div", { class: "muted small" }, k.description) : null),
    },
    { label: "Status", cell: status },
    { label: "Limits and access", cell: restrictions, cls: "col-limits" },
    { label: "Last used", cell: (k) => h("span", { class: "nowrap", title: k.usage.last_used_ms ? new Date(k.usage.last_used_ms).toISOString() : "" }, fmtAgo(k.usage.last_used_ms)) },
    { label: "Requests, 30 days", num: true, cell: (k) => h("span", { title: `${fmtInt(k.usage.last_30d.input_tokens + k.usage.last_30d.output_tokens)} tokens` }, fmtInt(k.usage.last_30d.requests)) },
    { label: "Cost, 30 days", num: true, cell: (k) => h("span", { title: `$${k.usage.last_30d.cost_usd}` }, fmtUsd(k.usage.last_30d.cost_usd)) },
  ];
  if (canWrite) {
    columns.push({
      label: "Actions", cell: (k) => {
        const act = (action, text, f, cls = "btn btn-small") => h("button", { type: "button", class: cls, dataset: { action, key: k.id }, "aria-label": `${text} ${k.name}`, onclick: f }, text);
        return h("div", { class: "row-actions" },
          act("edit", "Edit", () => editKey(account, k, refresh)),
          k.status === "active"
            ? act("disable", "Disable", () => setEnabled(account, k, false, refresh))
            : act("enable", "Enable", () => setEnabled(account, k, true, refresh)),
          act("rotate", "Rotate", () => rotateKey(account, k, refresh)),
          act("delete", "Delete", () => deleteKey(account, k, refresh), "btn btn-small btn-danger-quiet"));
      },
    });
  }
  return table(columns, keys, "No keys yet. Create one to start calling the API.", { id: "keys-table", "aria-label": "Access keys" }, (k) => ({ "data-key-id": k.id, "data-status": k.status }));
}

// What a key may do, in a few words: its rate and spend limits, models, regions, expiry.
export function restrictions(k) {
  const lim = k.limits || {};
  const rate = [
    lim.rpm ? `${fmtInt(lim.rpm)} req/min` : null,
    lim.tpm ? `${fmtInt(lim.tpm)} tokens/min` : null,
    lim.max_concurrent ? `${fmtInt(lim.max_concurrent)} at once` : null,
  ].filter(Boolean);
  const period = { day: "per day", month: "per month", total: "in total" }[lim.spend_limit_period || "total"];
  const expired = k.expires_ms && k.expires_ms < Date.now();
  const lines = [
    rate.length ? rate.join(" · ") : null,
    lim.spend_limit_usd ? `spend ≤ ${fmtUsd(lim.spend_limit_usd)} ${period}` : null,
    k.allowed_models && k.allowed_models.length ? `models: ${k.allowed_models.join(", ")}` : null,
    k.allowed_regions && k.allowed_regions.length ? `regions: ${k.allowed_regions.join(", ")}` : null,
    k.expires_ms ? `${expired ? "expired" : "expires"} ${fmtDate(k.expires_ms)}` : null,
  ].filter(Boolean);
  if (!lines.length) return h("span", { class: "muted" }, "no limits · every model");
  return h("ul", { class: "plain small" }, lines.map((l) => h("li", {}, l)));
}

async function setEnabled(account, k, enabled, refresh) {
  try {
    await post(acct(account, `/keys/${encodeURIComponent(k.id)}/${enabled ? "enable" : "disable"}`));
    toast(enabled ? `“${k.name}” is enabled again.` : `“${k.name}” is disabled: requests with it are refused within a second.`);
    await refresh();
  } catch (e) {
    toast(e.message, "error");
  }
}

// A comma-separated list, or null (no restriction) when empty.
function listOrNull(text) {
  const items = text.split(",").map((s) => s.trim()).filter(Boolean);
  return items.length ? items : null;
}

// The key form's fields, pre-filled from `k` when editing; `read()` gives the request body.
async function keyForm(k) {
  const lim = (k && k.limits) || {};
  const name = h("input", { name: "name", required: true, maxlength: 128, value: k ? k.name : "", autocomplete: "off" });
  const description = h("textarea", { name: "description", maxlength: 1024, rows: 2 });
  description.value = k ? k.description || "" : "";
  const known = await models();
  const allowed = new Set((k && k.allowed_models) || []);
  let modelBox;
  let readModels;
  if (known.length) {
    const boxes = known.map((m) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "model", value: m, checked: allowed.has(m) }), h("code", {}, m)));
    modelBox = h("fieldset", { class: "field" }, h("legend", {}, "Allowed models"), h("div", { class: "hint" }, "None ticked: every model."), h("div", { class: "checks" }, boxes));
    readModels = () => {
      const picked = boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
      return picked.length ? picked : null;
    };
  } else {
    const input = h("input", { name: "models", value: [...allowed].join(", "), placeholder: "all models" });
    modelBox = field("Allowed models", input, "Comma-separated model ids; empty means every model.");
    readModels = () => listOrNull(input.value);
  }
  const regions = h("input", { name: "regions", value: ((k && k.allowed_regions) || []).join(", "), placeholder: "any region", autocomplete: "off" });
  const expires = h("input", { type: "date", name: "expires", value: k && k.expires_ms ? new Date(k.expires_ms).toISOString().slice(0, 10) : "" });
  const num = (n, v) => h("input", { type: "number", name: n, min: 1, step: 1, inputmode: "numeric", value: v ?? "", placeholder: "no limit" });
  const rpm = num("rpm", lim.rpm);
  const tpm = num("tpm", lim.tpm);
  const conc = num("max_concurrent", lim.max_concurrent);
  const spend = h("input", { name: "spend", inputmode: "decimal", pattern: "^[0-9]+(\\.[0-9]{1,9})?$", value: lim.spend_limit_usd ?? "", placeholder: "no limit" });
  const period = h("select", { name: "period" }, ["month", "day", "total"].map((p) => h("option", { value: p, selected: lim.spend_limit_period === p ? "selected" : null }, p === "total" ? "in total" : `per ${p}`)));
  const body = h("div", { class: "form-grid" },
    field("Name", name, "Shown in usage and exports, e.g. “backend-prod”."),
    field("Description", description),
    modelBox,
    field("Allowed regions", regions, "Comma-separated provider regions (e.g. eu); empty means any."),
    field("Expires on", expires, "Optional; the key stops working at 00:00 UTC that day."),
    h("fieldset", { class: "field" }, h("legend", {}, "Limits"),
      h("div", { class: "grid-3" },
        field("Requests / min", rpm),
        field("Tokens / min", tpm),
        field("Concurrent", conc)),
      h("div", { class: "grid-2" },
        field("Spend limit (USD)", spend),
        field("Period", period))));
  const int = (i) => (i.value === "" ? null : Number.parseInt(i.value, 10));
  const read = () => ({
    name: name.value.trim(),
    description: description.value.trim(),
    allowed_models: readModels(),
    allowed_regions: listOrNull(regions.value),
    expires_ms: expires.value ? Date.parse(`${expires.value}T00:00:00Z`) : null,
    limits: {
      rpm: int(rpm),
      tpm: int(tpm),
      max_concurrent: int(conc),
      spend_limit_usd: spend.value.trim() || null,
      spend_limit_period: spend.value.trim() ? period.value : null,
    },
  });
  return { body, read };
}

async function createKey(account, refresh) {
  const form = await keyForm(null);
  const created = await dialog({
    title: "Create an access key",
    body: form.body,
    submit: "Create key",
    wide: true,
    onSubmit: () => post(acct(account, "/keys"), form.read()),
  });
  if (!created) return;
  await refresh();
  const model = (created.key.allowed_models || [])[0] || (await models())[0];
  await dialog({
    title: `Key “${created.key.name}” created`,
    body: h("div", {},
      secretPanel(created.secret, "Use it as the API key of any OpenAI or Anthropic SDK, with the base URL below."),
      h("h3", {}, "Connect your tools"),
      connectTools(created.secret, model)),
    submit: "I have copied it",
    cancel: null,
    wide: true,
  });
}

async function editKey(account, k, refresh) {
  const form = await keyForm(k);
  const saved = await dialog({
    title: `Edit “${k.name}”`,
    body: form.body,
    wide: true,
    onSubmit: () => patch(acct(account, `/keys/${encodeURIComponent(k.id)}`), form.read()),
  });
  if (saved) {
    toast("Key saved.");
    await refresh();
  }
}

async function rotateKey(account, k, refresh) {
  const grace = h("select", { name: "grace", id: "rotate-grace" },
    [[0, "stops at once"], [3600, "works 1 more hour"], [86400, "works 24 more hours"], [604800, "works 7 more days"]]
      .map(([v, t]) => h("option", { value: v, selected: v === 86400 ? "selected" : null }, t)));
  const rotated = await dialog({
    title: `Rotate “${k.name}”`,
    body: h("div", {},
      h("p", {}, "A new secret replaces the current one. The key keeps its id, settings and usage history."),
      field("The old secret", grace, "A grace period lets you roll the new secret out without downtime.")),
    submit: "Rotate",
    onSubmit: () => post(acct(account, `/keys/${encodeURIComponent(k.id)}/rotate`), { grace_seconds: Number(grace.value) }),
  });
  if (!rotated) return;
  await refresh();
  const until = rotated.previous_secret_valid_until_ms;
  await dialog({
    title: `New secret for “${k.name}”`,
    body: secretPanel(rotated.secret, until ? `The old secret keeps working until ${new Date(until).toLocaleString("en-US")}.` : "The old secret no longer works."),
    submit: "I have copied it",
    cancel: null,
  });
}

async function deleteKey(account, k, refresh) {
  const ok = await dialog({
    title: `Delete “${k.name}”?`,
    body: h("div", {},
      h("p", {}, "Requests with this key are refused within a second, and it cannot be restored. Its usage and billing history stay in your reports."),
      h("p", { class: "muted" }, "To pause a key instead, disable it.")),
    submit: "Delete key",
    danger: true,
    onSubmit: () => del(acct(account, `/keys/${encodeURIComponent(k.id)}`)),
  });
  if (ok) {
    toast(`“${k.name}” deleted.`);
    await refresh();
  }
}

