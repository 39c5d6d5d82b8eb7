// The console shell: session, account switcher, navigation, privacy notice and the hash router.

import { api, get, post, setCsrf, whenSignedOut, ApiError } from "./api.js";
import { h, clear, field, errorBox, loading, toast } from "./ui.js";
import * as dashboard from "./dashboard.js";
import * as keys from "./keys.js";
import * as keyPage from "./keypage.js";
import * as billing from "./billing.js";
import * as security from "./security.js";
import * as alerts from "./alerts.js";
import * as account from "./account.js";
import * as operator from "./operator.js";
import * as privacy from "./privacy.js";

const PAGES = [
  { path: "dashboard", title: "Dashboard", render: dashboard.render, scoped: true },
  { path: "keys", title: "Access keys", render: keys.render, scoped: true },
  { path: "keys/", title: "Access key", render: keyPage.render, scoped: true, param: true, under: "keys" },
  { path: "billing", title: "Billing", render: billing.render, scoped: true },
  { path: "alerts", title: "Alerts", render: alerts.render, scoped: true },
  { path: "security", title: "Security", render: security.render, scoped: true },
  { path: "account", title: "Account", render: account.render, scoped: true },
  { path: "ops/accounts", title: "All accounts", render: operator.accounts, operator: true },
  { path: "ops/models", title: "Models & prices", render: operator.models, operator: true },
  { path: "ops/routes", title: "Provider health", render: operator.routes, operator: true },
  { path: "privacy", title: "Privacy", render: privacy.render, open: true },
];

const root = document.getElementById("app");
const ctx = {
  session: null,
  accounts: [],
  accountId: null,
  role: null,
  privacy: null,
  cleanup: null,
  go: (path) => { location.hash = `#/${path}`; },
  setAccount: (id) => {
    ctx.accountId = id;
    localStorage.setItem("ig.account", id);
    ctx.role = roleIn(id);
    route();
  },
  reload: (message) => boot(message),
};

function roleIn(id) {
  const m = (ctx.session.memberships || []).find((x) => x.account_id === id);
  if (m) return m.role;
  return ctx.session.operator ? "operator" : null;
}

whenSignedOut(() => {
  if (ctx.session) {
    ctx.session = null;
    toast("Your session has ended. Please log in again.", "warn");
    showLogin();
  }
});

// Loads the session (or shows the login page, with `message` when given) and routes.
async function boot(message) {
  root.setAttribute("aria-busy", "true");
  try {
    ctx.privacy = await get("/api/v1/privacy").catch(() => null);
    ctx.session = await get("/api/v1/session");
  } catch (e) {
    ctx.session = null;
    if (e instanceof ApiError && (e.status === 401 || e.status === 400)) return showLogin(message);
    return clear(root, h("main", { class: "center" }, errorBox(e)));
  }
  setCsrf(ctx.session.csrf_token);
  ctx.invitations = (await get("/api/v1/me/invitations").catch(() => ({ data: [] }))).data;
  if (ctx.session.operator) {
    const all = await get("/api/v1/accounts").catch(() => ({ data: [] }));
    ctx.accounts = all.data.map((a) => ({ id: a.id, name: a.name }));
  } else {
    ctx.accounts = (ctx.session.memberships || []).map((m) => ({ id: m.account_id, name: m.account_name }));
  }
  const saved = localStorage.getItem("ig.account");
  ctx.accountId = ctx.accounts.some((a) => a.id === saved) ? saved : ctx.accounts[0] ? ctx.accounts[0].id : null;
  ctx.role = ctx.accountId ? roleIn(ctx.accountId) : null;
  if (!location.hash || location.hash === "#/" || location.hash === "#/login") {
    location.replace(`#/${ctx.accountId ? "dashboard" : ctx.session.operator ? "ops/accounts" : "privacy"}`);
  }
  route();
}

function showLogin(message) {
  if (ctx.cleanup) ctx.cleanup();
  ctx.cleanup = null;
  setCsrf(null);
  document.title = "Log in · InstaGen";
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const err = h("div", { class: "form-error", role: "alert", id: "login-error" });
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-block" }, "Log in");
  const form = h("form", {
    class: "login-form", id: "login-form", onsubmit: async (e) => {
      e.preventDefault();
      submit.disabled = true;
      err.textContent = "";
      try {
        await post("/api/v1/session", { email: email.value.trim(), password: password.value });
        location.replace("#/dashboard");
        await boot();
      } catch (x) {
        err.textContent = x.status === 401 ? "Wrong email or password." : x.message;
        submit.disabled = false;
        password.select();
      }
    },
  },
    field("Email", email),
    field("Password", password),
    err,
    submit);
  root.removeAttribute("aria-busy");
  clear(root, h("main", { class: "login", id: "main", tabindex: "-1" },
    h("div", { class: "login-card" },
      h("div", { class: "brand brand-large" }, h("img", { src: "icon.svg", alt: "", width: 36, height: 36 }), "InstaGen"),
      h("h1", {}, "Log in to your console"),
      message ? h("div", { class: "alert alert-ok", role: "status" }, message) : null,
      form,
      h("p", { class: "login-foot" },
        h("a", { href: "#/join", id: "join-link", onclick: (e) => { e.preventDefault(); showJoin(); } }, "Have an invitation code?"), " ",
        "We never store your prompts or outputs. ",
        h("a", { href: "#/privacy", onclick: (e) => { e.preventDefault(); showPublicPrivacy(); } }, "Read our privacy policy")))));
  email.focus();
}

async function showPublicPrivacy() {
  const main = h("main", { class: "content narrow", id: "main", tabindex: "-1" });
  clear(root, main);
  await privacy.render(main, ctx);
  main.prepend(h("p", {}, h("a", { href: "#/login", onclick: (e) => { e.preventDefault(); showLogin(); } }, "← Back to log in")));
}

function nav(current) {
  const item = (p) => h("a", { href: `#/${p.path}`, class: p.path === current ? "nav-item active" : "nav-item", "aria-current": p.path === current ? "page" : null }, p.title);
  const scoped = PAGES.filter((p) => p.scoped && !p.param && ctx.accountId);
  const ops = ctx.session.operator ? PAGES.filter((p) => p.operator) : [];
  return h("nav", { class: "nav", "aria-label": "Main" },
    scoped.map(item),
    ops.length ? h("div", { class: "nav-group" }, "Operator") : null,
    ops.map(item),
    h("div", { class: "nav-group" }, "About"),
    item(PAGES.find((p) => p.path === "privacy")));
}

function header() {
  const picker = ctx.accounts.length > 1 || ctx.session.operator
    ? h("select", { id: "account-picker", "aria-label": "Account", onchange: (e) => ctx.setAccount(e.target.value) },
      ctx.accounts.map((a) => h("option", { value: a.id, selected: a.id === ctx.accountId ? "selected" : null }, a.name)))
    : h("span", { class: "account-name" }, ctx.accounts[0] ? ctx.accounts[0].name : "");
  return h("header", { class: "topbar" },
    h("a", { class: "brand", href: "#/dashboard", "aria-label": "InstaGen: dashboard" }, h("img", { src: "icon.svg", alt: "", width: 28, height: 28 }), h("span", {}, "InstaGen")),
    h("div", { class: "topbar-right" },
      ctx.accountId ? picker : null,
      h("span", { class: "who", id: "who", title: `Signed in as ${ctx.session.user.email}` }, ctx.session.user.email),
      h("button", { type: "button", class: "btn btn-small", id: "logout", onclick: logout }, "Log out")));
}

async function logout() {
  try {
    await api("DELETE", "/api/v1/session");
  } catch (e) {
    // Already gone: the login page is where we go either way.
  }
  ctx.session = null;
  showLogin("You are logged out.");
}

// Invitations addressed to the signed-in user: they join an account only by accepting.
function invitationNotices() {
  return (ctx.invitations || []).map((inv) => {
    const note = h("div", { class: "notice", role: "region", "aria-label": "Invitation" },
      h("p", {}, h("strong", {}, `You are invited to ${inv.account_name}`), ` as ${inv.role}. You join only if you accept.`),
      h("div", { class: "notice-actions" },
        h("button", {
          type: "button", class: "btn btn-small", onclick: () => {
            ctx.invitations = ctx.invitations.filter((x) => x.id !== inv.id);
            note.remove();
          },
        }, "Not now"),
        h("button", {
          type: "button", class: "btn btn-small btn-primary", onclick: async () => {
            try {
              await post(`/api/v1/me/invitations/${encodeURIComponent(inv.id)}/accept`);
              toast(`You joined ${inv.account_name}.`);
              await boot();
            } catch (e) {
              toast(e.message, "error");
            }
          },
        }, "Accept")));
    return note;
  });
}

// Someone without a login joins with the invitation code an owner gave them.
function showJoin() {
  document.title = "Join · InstaGen";
  const code = h("input", { type: "text", name: "code", autocomplete: "off", required: true, spellcheck: "false" });
  const password = h("input", { type: "password", name: "password", autocomplete: "new-password", minlength: 10, required: true });
  const err = h("div", { class: "form-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-block" }, "Join");
  const form = h("form", {
    class: "login-form", id: "join-form", onsubmit: async (e) => {
      e.preventDefault();
      submit.disabled = true;
      err.textContent = "";
      try {
        const joined = await post("/api/v1/invitations/accept", { token: code.value.trim(), password: password.value });
        await post("/api/v1/session", { email: joined.user.email, password: password.value });
        location.replace("#/dashboard");
        await boot();
      } catch (x) {
        err.textContent = x.status === 404 ? "This invitation code is not valid or has expired." : x.message;
        submit.disabled = false;
      }
    },
  },
    field("Invitation code", code),
    field("Choose a password", password, "10 or more characters."),
    err,
    submit);
  clear(root, h("main", { class: "login", id: "main", tabindex: "-1" },
    h("div", { class: "login-card" },
      h("div", { class: "brand brand-large" }, h("img", { src: "icon.svg", alt: "", width: 36, height: 36 }), "InstaGen"),
      h("h1", {}, "Join with an invitation"),
      form,
      h("p", { class: "login-foot" }, h("a", { href: "#/login", onclick: (e) => { e.preventDefault(); showLogin(); } }, "← Back to log in")))));
  code.focus();
}

// The notice of a policy the user has not acknowledged: a first visit is asked to read it,
// a returning user is told it changed. The privacy page itself carries no notice.
function privacyNotice(page) {
  const p = ctx.privacy;
  if (!p || page.path === "privacy" || ctx.session.privacy_seen_version === p.version) return null;
  const first = !ctx.session.privacy_seen_version;
  const note = h("div", { class: "notice", id: "privacy-notice", role: "region", "aria-label": first ? "Our privacy policy" : "Privacy policy update" },
    h("p", {},
      h("strong", {}, first ? "Please read our privacy policy " : "Our privacy policy has changed "),
      `(version ${p.version}): what we collect, and the prompts and outputs we never keep.`),
    h("div", { class: "notice-actions" },
      h("a", { href: "#/privacy", class: "btn btn-small" }, "Read the policy"),
      h("button", {
        type: "button", class: "btn btn-small btn-primary", id: "privacy-ack", onclick: async () => {
          if (await acknowledgePrivacy()) note.remove();
        },
      }, "Got it")));
  return note;
}

// Records that the user has read the current policy; false (and a toast) when that failed.
async function acknowledgePrivacy() {
  try {
    await post("/api/v1/me/privacy", { version: ctx.privacy.version });
    ctx.session.privacy_seen_version = ctx.privacy.version;
    return true;
  } catch (e) {
    toast(e.message, "error");
    return false;
  }
}
ctx.acknowledgePrivacy = acknowledgePrivacy;

async function route() {
  if (!ctx.session) return;
  if (ctx.cleanup) ctx.cleanup();
  ctx.cleanup = null;
  const path = (location.hash || "").replace(/^#\/?/, "").split("?")[0] || "dashboard";
  // A page with a parameter (`keys/<id>`) matches by its prefix and gets the rest.
  let page = PAGES.find((p) => (p.param ? path.startsWith(p.path) && path.length > p.path.length : p.path === path));
  ctx.param = page && page.param ? decodeURIComponent(path.slice(page.path.length)) : null;
  if (!page || (page.operator && !ctx.session.operator) || (page.scoped && !ctx.accountId)) {
    page = ctx.accountId ? PAGES[0] : PAGES.find((p) => p.path === (ctx.session.operator ? "ops/accounts" : "privacy"));
  }
  document.title = `${page.title} · InstaGen`;
  const main = h("main", { class: "content", id: "main", tabindex: "-1" }, loading());
  root.removeAttribute("aria-busy");
  root.className = "shell";
  clear(root, header(), h("div", { class: "body" }, nav(page.under || page.path), h("div", { class: "main-col" }, privacyNotice(page), ...invitationNotices(), main)));
  try {
    const cleanup = await page.render(main, ctx);
    if (typeof cleanup === "function") ctx.cleanup = cleanup;
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) clear(main, h("h1", {}, page.title), errorBox(e));
  }
  main.focus({ preventScroll: true });
}

// The skip link moves focus to the page's content without touching the hash (the router's).
const skip = document.querySelector(".skip");
if (skip) {
  skip.addEventListener("click", (e) => {
    e.preventDefault();
    const main = document.getElementById("main");
    if (main) main.focus();
  });
}

window.addEventListener("hashchange", () => {
  if (ctx.session) route();
  else if (location.hash === "#/privacy") showPublicPrivacy();
});
boot();
