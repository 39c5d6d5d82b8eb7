// The management API client: the session's CSRF token, JSON in and out, errors as ApiError.

let csrf = null;

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export function setCsrf(token) {
  csrf = token;
}

// Called when a request finds the session gone (set by the app shell).
let onUnauthenticated = () => {};
export function whenSignedOut(f) {
  onUnauthenticated = f;
}

export async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers["x-csrf-token"] = csrf;
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, "network", "Cannot reach InstaGen. Check your connection and try again.");
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    const error = new ApiError(resp.status, err.code || "error", err.message || `Request failed (${resp.status})`, err.field);
    if (resp.status === 401 && path !== "/api/v1/session") onUnauthenticated(error);
    throw error;
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path, body) => api("DELETE", path, body);

// Path of an account-scoped resource.
export function acct(id, rest = "") {
  return `/api/v1/accounts/${encodeURIComponent(id)}${rest}`;
}

// Every item of a paged list, following `next_cursor` (lists are capped, so this ends).
export async function getAll(path) {
  const sep = path.includes("?") ? "&" : "?";
  let data = [];
  let cursor = null;
  for (;;) {
    const page = await get(`${path}${sep}limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    data = data.concat(page.data);
    if (!page.next_cursor) return { data };
    cursor = page.next_cursor;
  }
}
