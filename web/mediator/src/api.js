// The gateway's device API (see src/mediator/devices/routes.rs). The session
// cookie is HttpOnly and never seen here; the CSRF token the gateway returns
// is kept in memory and sent on every state-changing call.

import { fromBase64url, toBase64url } from "./b64.js";

/** Prefixed to the challenge before signing (src/mediator/devices/keys.rs). */
const SESSION_CONTEXT = new TextEncoder().encode("tipwire-session-v1\0");

let csrfToken = null;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * One request to the gateway: JSON in, JSON (or, with `bytes`, raw bytes)
 * out, the CSRF token on every state-changing call; ApiError on failure.
 */
export async function send(method, path, { body, bytes = false, csrf = csrfToken } = {}) {
  const headers = { Accept: bytes ? "application/octet-stream" : "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "offline", "The gateway cannot be reached. Check the connection.");
  }
  if (response.ok && bytes) return new Uint8Array(await response.arrayBuffer());
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    // An error page from something in between; the status says enough.
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiError(
      response.status,
      error.code || `http-${response.status}`,
      error.message || `The gateway answered ${response.status}.`,
    );
  }
  return data;
}

function call(method, path, body) {
  return send(method, path, { body });
}

export function enrol({ invite, age_recipient, signing_key, device_name }) {
  return call("POST", "/api/v1/devices", { invite, age_recipient, signing_key, device_name });
}

/** Challenge, signature, session: the gateway sets the cookie. */
export async function signIn(deviceId, signingKey) {
  const { challenge } = await call("POST", "/api/v1/session/challenge", { device_id: deviceId });
  const bytes = fromBase64url(challenge);
  const message = new Uint8Array(SESSION_CONTEXT.length + bytes.length);
  message.set(SESSION_CONTEXT);
  message.set(bytes, SESSION_CONTEXT.length);
  // WebCrypto returns ECDSA signatures as r || s (IEEE P1363), as the gateway wants.
  const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, signingKey, message);
  const session = await call("POST", "/api/v1/session", {
    device_id: deviceId,
    challenge,
    signature: toBase64url(signature),
  });
  csrfToken = session.csrf_token;
  return session;
}

/** Who this session is: {device_id, name, device_name, zones, supervisor, on_duty}. */
export async function currentSession() {
  const session = await call("GET", "/api/v1/session");
  csrfToken = session.csrf_token;
  return session;
}

export async function signOut() {
  try {
    await call("POST", "/api/v1/session/logout");
  } finally {
    csrfToken = null;
  }
}

export function setOnDuty(onDuty) {
  return call("POST", "/api/v1/devices/me/duty", { on_duty: onDuty });
}
