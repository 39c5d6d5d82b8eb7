// Account: members and roles, management tokens, data export and account deletion.

import { get, getAll, post, del, acct } from "./api.js";
import { h, clear, section, table, badge, fmtDate, fmtAgo, field, dialog, secretPanel, toast, plural } from "./ui.js";

export async function render(main, ctx) {
  const id = ctx.accountId;
  const owner = ["owner", "operator"].includes(ctx.role);
  const view = await get(acct(id));
  const a = view.account;
  const membersBox = h("div", {});
  const tokensBox = h("div", {});
  clear(main,
    h("div", { class: "page-head" }, h("h1", {}, "Account"), h("p", { class: "lede" }, "Who can use this account, its management tokens, and your data.")),
    section("Details", h("dl", { class: "facts" },
      h("dt", {}, "Name"), h("dd", { id: "account-name" }, a.name),
      h("dt", {}, "Account id"), h("dd", {}, h("code", {}, a.id)),
      h("dt", {}, "Status"), h("dd", {}, badge(a.status)),
      h("dt", {}, "Your role"), h("dd", {}, view.your_role),
      h("dt", {}, "Created"), h("dd", {}, fmtDate(a.created_ms)))),
    section("Members", membersBox),
    section("Management tokens", h("p", { class: "hint" }, "Tokens (igm-…) call the management API from scripts and CI. They cannot call /v1."), tokensBox),
    section("Your data",
      h("p", {}, "Download everything InstaGen holds about this account: the account, members, keys (never their secrets), usage records, ledger and audit log. Prompts and outputs are never stored, so there are none to export."),
      h("div", { class: "button-row" },
        owner ? h("a", { class: "btn", id: "export-all", href: acct(id, "/export-all"), download: `instagen-account-${id}.json` }, "Export all my data (JSON)") : null,
        h("a", { class: "btn", href: acct(id, "/usage/export?format=csv&from=1970-01-01"), download: `instagen-usage-${id}.csv` }, "All usage (CSV)"),
        h("a", { class: "btn", href: acct(id, "/usage/export?format=json&from=1970-01-01"), download: `instagen-usage-${id}.json` }, "All usage (JSON)"))),
    owner ? dangerZone(a, ctx) : null);
  await Promise.all([members(id, owner, membersBox), tokens(id, owner, tokensBox)]);
}

async function members(id, owner, box) {
  const list = (await getAll(acct(id, "/members"))).data;
  const columns = [
    { label: "Email", cell: (m) => m.email },
    { label: "Role", cell: (m) => badge(m.role, "role") },
    { label: "Since", cell: (m) => fmtDate(m.created_ms) },
  ];
  // An account always keeps an owner: the last one is not offered for removal.
  const owners = list.filter((m) => m.role === "owner").length;
  if (owner) {
    columns.push({
      label: "", cell: (m) => (m.role === "owner" && owners <= 1) ? h("span", { class: "muted", title: "An account must keep at least one owner: make another member an owner first." }, "Last owner") : h("button", {
        type: "button", class: "btn btn-small btn-danger-quiet", "aria-label": `Remove ${m.email}`, onclick: async () => {
          const ok = await dialog({ title: `Remove ${m.email}?`, body: h("p", {}, "They lose access to this account at once."), submit: "Remove", danger: true, onSubmit: () => del(acct(id, `/members/${encodeURIComponent(m.user_id)}`)) });
          if (ok) await members(id, owner, box);
        },
      }, "Remove"),
    });
  }
  const refresh = () => members(id, owner, box);
  const add = owner ? h("button", { type: "button", class: "btn", id: "invite-member", onclick: () => addMember(id, refresh) }, "Invite member") : null;
  const pending = owner ? await invitations(id, refresh) : null;
  clear(box, table(columns, list, "No members.", { id: "members" }), pending, add);
}

// Invitations not yet accepted (owners): who, which role, until when; revocable.
async function invitations(id, refresh) {
  const list = (await getAll(acct(id, "/invitations")).catch(() => ({ data: [] }))).data;
  if (!list.length) return null;
  return h("div", { class: "stack" }, h("h3", {}, "Pending invitations"), table([
    { label: "Email", cell: (i) => i.email },
    { label: "Role", cell: (i) => badge(i.role, "role") },
    { label: "Expires", cell: (i) => fmtDate(i.expires_ms) },
    {
      label: "", cell: (i) => h("button", {
        type: "button", class: "btn btn-small btn-danger-quiet", "aria-label": `Revoke the invitation of ${i.email}`, onclick: async () => {
          await del(acct(id, `/invitations/${encodeURIComponent(i.id)}`));
          await refresh();
        },
      }, "Revoke"),
    },
  ], list, "", { id: "invitations" }));
}

async function addMember(id, refresh) {
  const email = h("input", { type: "email", name: "email", required: true, autocomplete: "off" });
  const role = h("select", { name: "role" }, [["member", "Member — manage keys, see usage"], ["viewer", "Viewer — read only"], ["owner", "Owner — everything, incl. billing and deletion"]].map(([v, t]) => h("option", { value: v }, t)));
  let result = null;
  const ok = await dialog({
    title: "Invite a member",
    body: h("div", { class: "form-grid" }, field("Email", email), field("Role", role),
      h("p", { class: "muted" }, "They join only when they accept. Someone already in this account gets the new role at once.")),
    submit: "Invite",
    onSubmit: async () => {
      result = await post(acct(id, "/members"), { email: email.value.trim(), role: role.value });
      return result;
    },
  });
  if (!ok) return;
  if (result && result.token) {
    await dialog({
      title: `Invitation for ${result.invitation.email}`,
      body: h("div", {}, secretPanel(result.token),
        h("p", {}, "Send them this code. With an InstaGen login they also see the invitation when they sign in; without one they choose a password with it on the login page (“Have an invitation code?”). It expires in 7 days.")),
      submit: "Done", cancel: null,
    });
  } else {
    toast("Role changed.");
  }
  await refresh();
}

async function tokens(id, owner, box) {
  if (!owner) {
    clear(box, h("p", { class: "empty" }, "Only owners manage tokens."));
    return;
  }
  let list;
  try {
    list = (await getAll(acct(id, "/tokens"))).data;
  } catch (e) {
    clear(box, h("p", { class: "empty" }, e.status === 403 ? "Only owners manage tokens." : e.message));
    return;
  }
  const refresh = () => tokens(id, owner, box);
  const columns = [
    { label: "Name", cell: (t) => t.name },
    { label: "Role", cell: (t) => badge(t.role, "role") },
    { label: "Status", cell: (t) => badge(t.status) },
    { label: "Last used", cell: (t) => fmtAgo(t.last_used_ms) },
  ];
  if (owner) {
    columns.push({
      label: "", cell: (t) => (t.status === "active" ? h("button", {
        type: "button", class: "btn btn-small btn-danger-quiet", "aria-label": `Revoke ${t.name}`, onclick: async () => {
          const ok = await dialog({ title: `Revoke “${t.name}”?`, body: h("p", {}, "Scripts using it stop working at once."), submit: "Revoke", danger: true, onSubmit: () => del(acct(id, `/tokens/${encodeURIComponent(t.id)}`)) });
          if (ok) await refresh();
        },
      }, "Revoke") : ""),
    });
  }
  const create = owner ? h("button", {
    type: "button", class: "btn", onclick: async () => {
      const name = h("input", { required: true, maxlength: 128 });
      const role = h("select", {}, ["viewer", "member", "owner"].map((r) => h("option", { value: r }, r)));
      const made = await dialog({ title: "Create a management token", body: h("div", { class: "form-grid" }, field("Name", name), field("Role", role)), submit: "Create", onSubmit: () => post(acct(id, "/tokens"), { name: name.value.trim(), role: role.value }) });
      if (!made) return;
      await refresh();
      await dialog({ title: `Token “${made.name}” created`, body: secretPanel(made.secret), submit: "I have copied it", cancel: null });
    },
  }, "Create token") : null;
  clear(box, table(columns, list, "No management tokens.", { id: "tokens" }), create);
}

function dangerZone(a, ctx) {
  return h("section", { class: "panel danger" },
    h("h2", {}, "Delete this account"),
    h("p", {}, "Deleting erases, at once and for good:"),
    h("ul", {},
      h("li", {}, "every access key (requests with them are refused) and management token;"),
      h("li", {}, "members' logins and sessions, where they belong to no other account;"),
      h("li", {}, "per-request usage records and security events.")),
    h("p", {}, "We keep, as the law requires, the billing ledger and daily totals, under an anonymous id that no longer points to you or your email."),
    h("button", { type: "button", class: "btn btn-danger", id: "delete-account", onclick: () => deleteAccount(a, ctx) }, "Delete account…"));
}

async function deleteAccount(a, ctx) {
  const typed = h("input", { id: "confirm-name", autocomplete: "off", spellcheck: "false" });
  const pending = dialog({
    title: "Delete this account for good?",
    danger: true,
    submit: "Delete account",
    body: h("div", {},
      h("p", {}, "This cannot be undone. Keys stop working within seconds; usage records are erased; billing records are kept anonymised."),
      field(`Type the account name, “${a.name}”, to confirm`, typed)),
    onSubmit: () => {
      if (typed.value !== a.name) throw new Error("The name does not match.");
      return del(acct(a.id), { confirm: typed.value });
    },
  });
  const ok = typed.closest("form").querySelector("button[type=submit]");
  ok.disabled = true;
  typed.addEventListener("input", () => { ok.disabled = typed.value !== a.name; });
  const result = await pending;
  if (!result) return;
  localStorage.removeItem("ig.account");
  const note = `Account “${a.name}” deleted: ${plural(result.erased.keys, "key")} and ${plural(result.erased.usage_records, "usage record")} erased; billing records kept anonymised (${result.erased.tombstone_id}).`;
  toast(note);
  ctx.reload(note);
}
