// The alert list: conflict alerts for this device's zones, newest first, live
// from the gateway's stream; one opens at a time and is decrypted on this
// phone. Claim, release, resolve (with an outcome code) and the reply thread
// live in the opened alert.
//
// Contract with main.js:
// - mountAlerts(root, context) runs once after every sign-in. `root` is the
//   <section id="alerts"> with its status line (#alerts-status) and the list
//   (#alert-list). `context` is:
//     session       what GET /api/v1/session answered (device_id, zones,
//                   supervisor, csrf_token, ...)
//     openEnvelope  async (Uint8Array) => Uint8Array: opens a tip with the
//                   device's identity (keys.js); nothing leaves the phone
//     onSessionLost () => void: called on a 401, and the app signs in again
//                   (or shows "no longer set up" when the device is revoked)
// - focusAlert(id) runs when the app is opened at /m/#alert=<id>, which is
//   where a tap on a push notification lands (sw.js).
// - unmountAlerts() runs on sign-out: closes the stream, forgets opened tips.
//
// Gateway routes used (src/mediator/alerts_api.rs, src/mediator/live.rs):
//   GET  /api/v1/alerts/stream            SSE: `alert` and `state` events
//   GET  /api/v1/alerts/{tip}/envelope    the sealed tip (age), opened here
//   POST /api/v1/alerts/{tip}/claim|release|resolve   (X-CSRF-Token)
//   POST /api/v1/threads/{thread}/replies, GET /api/v1/threads/{thread}
//
// Everything shown goes through textContent; a tip's text is never parsed as
// HTML. Attachments become blob: URLs, revoked when the alert closes.

import { ApiError, send } from "./api.js";
import { loadThread, mountThread } from "./thread.js";

const URGENCY = {
  now: { word: "Urgent", cls: "now" },
  today: { word: "Today", cls: "today" },
  fyi: { word: "For information", cls: "fyi" },
};
const CHANNEL = { web: "Web form", sms: "SMS", email: "Email" };
const OUTCOMES = [
  ["mediated", "Mediated: the conflict was calmed"],
  ["referred", "Referred to another service"],
  ["no-conflict", "No conflict to act on"],
  ["unreachable", "People could not be reached"],
  ["duplicate", "Duplicate of another alert"],
  ["other", "Other"],
];
const AGE_TICK_MS = 30_000;

let mounted = null;
let pendingFocus = null;

// ---------------------------------------------------------------- requests

/** A request with this session's CSRF token; a 401 ends the session here. */
export async function request(method, path, { body, bytes = false } = {}) {
  if (!mounted) throw new ApiError(0, "signed-out", "Signed out.");
  try {
    return await send(method, path, { body, bytes, csrf: mounted.context.session.csrf_token });
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) sessionLost();
    throw e;
  }
}

function sessionLost() {
  if (!mounted) return;
  const { onSessionLost } = mounted.context;
  unmountAlerts();
  onSessionLost();
}

// ---------------------------------------------------------------- helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "data") Object.assign(node.dataset, v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

export function ageText(received, now = Date.now() / 1000) {
  const minutes = Math.max(0, Math.floor((now - received) / 60));
  if (minutes < 1) return "just now";
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  return new Date(received * 1000).toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
}

function stateText(alert) {
  switch (alert.state) {
    case "claimed":
      return alert.claimed_by_me ? "Claimed by you" : "Claimed by someone else";
    case "resolved":
      return alert.claimed_by_me ? "Resolved by you" : "Resolved";
    default:
      return "Open";
  }
}

function setStatus(text, stream) {
  if (!mounted) return;
  mounted.status.textContent = text;
  mounted.root.dataset.stream = stream;
}

// ---------------------------------------------------------------- the list

/** What a screen reader says for a row: the same words, with pauses. */
function rowLabel(alert) {
  const u = URGENCY[alert.priority];
  return [u ? u.word : alert.priority, `zone ${alert.zone}`, CHANNEL[alert.channel] || alert.channel, ageText(alert.received), stateText(alert)].join(", ");
}

function renderRow(alert) {
  const u = URGENCY[alert.priority] || { word: alert.priority, cls: "fyi" };
  const button = el(
    "button",
    { type: "button", class: "alert-row" },
    el("span", { class: `urgency urgency-${u.cls}` }, u.word),
    el("span", { class: "alert-zone" }, `Zone: ${alert.zone}`),
    el("span", { class: "alert-channel" }, CHANNEL[alert.channel] || alert.channel),
    el("time", { class: "alert-age", dateTime: new Date(alert.received * 1000).toISOString() }, ageText(alert.received)),
    el("span", { class: `alert-state state-${alert.state}` }, stateText(alert)),
  );
  button.setAttribute("aria-label", rowLabel(alert));
  button.addEventListener("click", () => openAlert(alert.tip_id));
  const li = el("li", { data: { tipId: alert.tip_id, state: alert.state, priority: alert.priority } }, button);
  li.dataset.mine = String(!!alert.claimed_by_me);
  return li;
}

function upsert(alert) {
  const known = mounted.alerts.get(alert.tip_id);
  if (known) {
    // Updated in place, so a row that has focus keeps it.
    const fresh = renderRow(alert);
    const button = known.row.querySelector("button");
    button.replaceChildren(...fresh.querySelector("button").childNodes);
    button.setAttribute("aria-label", rowLabel(alert));
    Object.assign(known.row.dataset, fresh.dataset);
    mounted.alerts.set(alert.tip_id, { alert, row: known.row });
  } else {
    const row = renderRow(alert);
    mounted.alerts.set(alert.tip_id, { alert, row });
    // Newest first: before the first row received no later than this one.
    const before = [...mounted.list.children].find((li) => {
      const other = mounted.alerts.get(li.dataset.tipId);
      return other && other.alert.received <= alert.received;
    });
    mounted.list.insertBefore(row, before || null);
  }
  if (mounted.open && mounted.open.tipId === alert.tip_id) renderActions();
}

/** A change to a listed alert: the stream's `state` event, or an action's answer. */
function applyState(change) {
  const known = change && mounted?.alerts.get(change.tip_id);
  if (!known) return;
  if (typeof change.version === "number" && typeof known.alert.version === "number" && change.version < known.alert.version) {
    return; // older than what this phone already shows
  }
  upsert({
    ...known.alert,
    state: change.state,
    outcome: change.outcome ?? null,
    claimed_by_me: !!change.claimed_by_me,
    version: change.version ?? known.alert.version,
  });
}

function onAlertEvent(event) {
  let alert;
  try {
    alert = JSON.parse(event.data);
  } catch {
    return;
  }
  if (!alert || typeof alert.tip_id !== "string") return;
  const known = mounted.alerts.get(alert.tip_id);
  if (known && typeof known.alert.version === "number" && typeof alert.version === "number" && alert.version < known.alert.version) {
    return;
  }
  upsert(alert);
  if (pendingFocus === alert.tip_id) focusAlert(alert.tip_id);
}

function onStateEvent(event) {
  try {
    applyState(JSON.parse(event.data));
  } catch {
    // not JSON: ignored
  }
}

function tickAges() {
  if (!mounted) return;
  for (const { alert, row } of mounted.alerts.values()) {
    const t = row.querySelector(".alert-age");
    if (t) t.textContent = ageText(alert.received);
    row.querySelector("button")?.setAttribute("aria-label", rowLabel(alert));
  }
  const openAge = mounted.root.querySelector("#alert-open .alert-age");
  if (openAge && mounted.open) {
    const a = mounted.alerts.get(mounted.open.tipId);
    if (a) openAge.textContent = ageText(a.alert.received);
  }
}

function connect() {
  const source = new EventSource("/api/v1/alerts/stream", { withCredentials: true });
  mounted.source = source;
  setStatus("Connecting to the alert service…", "connecting");
  // `ready` comes once the backlog (the latest alerts, or what was missed
  // since Last-Event-ID) is sent; from then on it is live.
  source.addEventListener("ready", () => {
    if (mounted?.source !== source) return;
    setStatus(
      mounted.alerts.size ? "Live: new alerts appear here." : "Live: no alerts for your zones yet. New ones appear here.",
      "live",
    );
  });
  source.addEventListener("alert", (e) => {
    if (mounted?.source !== source) return;
    onAlertEvent(e);
    if (mounted.root.dataset.stream === "live") setStatus("Live: new alerts appear here.", "live");
  });
  // `end` {code} comes just before the gateway closes the stream:
  // session-expired (revoked, signed out, expired) or resync (too far behind:
  // start afresh rather than resume).
  source.addEventListener("end", (e) => {
    if (mounted?.source !== source) return;
    let code = null;
    try {
      code = JSON.parse(e.data).code;
    } catch {
      // treated as a resync
    }
    source.close();
    if (code === "session-expired") {
      setStatus("Signing in again…", "reconnecting");
      checkSession(source);
    } else {
      setStatus("Reconnecting… alerts will catch up when the connection is back.", "reconnecting");
      connect();
    }
  });
  source.addEventListener("state", (e) => mounted?.source === source && onStateEvent(e));
  source.addEventListener("error", () => {
    if (mounted?.source !== source) return;
    if (source.readyState === EventSource.CONNECTING) {
      // The browser reconnects by itself and sends Last-Event-ID.
      setStatus("Reconnecting… alerts will catch up when the connection is back.", "reconnecting");
      return;
    }
    // Closed: the gateway refused the stream (a 401, or an error page).
    setStatus("Reconnecting… alerts will catch up when the connection is back.", "reconnecting");
    source.close();
    checkSession(source);
  });
}

/**
 * Asks the gateway whether the session still stands: a 401 ends in
 * onSessionLost (sign in again, or "no longer set up"); otherwise the stream
 * is opened again shortly.
 */
function checkSession(source) {
  request("GET", "/api/v1/session")
    .then(() => {
      if (mounted?.source === source) mounted.retry = setTimeout(() => mounted && connect(), 3000);
    })
    .catch(() => {
      if (mounted?.source === source) mounted.retry = setTimeout(() => mounted && connect(), 5000);
    });
}

// ---------------------------------------------------------------- one alert

function closeOpen() {
  if (!mounted || !mounted.open) return;
  for (const url of mounted.open.urls) URL.revokeObjectURL(url);
  mounted.open = null;
  mounted.root.querySelector("#alert-open")?.remove();
  mounted.list.hidden = false;
  mounted.status.hidden = false;
}

function actionStatus(text) {
  const s = mounted?.root.querySelector("#alert-action-status");
  if (s) s.textContent = text;
}

async function act(tipId, action, body) {
  actionStatus("Saving…");
  for (const b of mounted.root.querySelectorAll("#alert-actions button")) b.disabled = true;
  try {
    const answer = await request("POST", `/api/v1/alerts/${encodeURIComponent(tipId)}/${action}`, { body: body ?? {} });
    if (answer && typeof answer.state === "string") applyState(answer);
    actionStatus({ claim: "You claimed this alert.", release: "Released: it is open again.", resolve: "Resolved." }[action] || "Saved.");
  } catch (e) {
    if (!mounted) return;
    if (e.status === 409 || e.status === 403) actionStatus("Someone else holds this alert, or it is already closed.");
    else actionStatus(`Not saved: ${e.message}`);
  } finally {
    if (mounted) renderActions();
  }
}

function renderActions() {
  const box = mounted?.root.querySelector("#alert-actions");
  if (!box || !mounted.open) return;
  const tipId = mounted.open.tipId;
  const { alert } = mounted.alerts.get(tipId) || { alert: mounted.open.alert };
  const state = el("p", { class: `alert-state state-${alert.state}`, id: "alert-open-state" }, `State: ${stateText(alert)}`);
  const children = [state];
  if (alert.state === "open") {
    const claim = el("button", { type: "button", class: "primary", id: "alert-claim" }, "Claim");
    claim.addEventListener("click", () => act(tipId, "claim"));
    children.push(claim);
  } else if (alert.state === "claimed" && alert.claimed_by_me) {
    const release = el("button", { type: "button", class: "secondary", id: "alert-release" }, "Release");
    release.addEventListener("click", () => act(tipId, "release"));
    const select = el("select", { id: "alert-outcome", name: "outcome", required: true });
    select.append(el("option", { value: "" }, "Choose how it ended…"));
    for (const [value, label] of OUTCOMES) select.append(el("option", { value }, label));
    const resolve = el("button", { type: "submit", class: "primary", id: "alert-resolve" }, "Resolve");
    const form = el(
      "form",
      { class: "resolve", noValidate: true },
      el("label", { htmlFor: "alert-outcome" }, "Outcome"),
      select,
      resolve,
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!select.value) {
        actionStatus("Choose an outcome first.");
        select.focus();
        return;
      }
      act(tipId, "resolve", { outcome: select.value });
    });
    children.push(release, form);
  } else if (alert.state === "resolved" && alert.outcome) {
    const label = OUTCOMES.find(([v]) => v === alert.outcome)?.[1] || alert.outcome;
    children.push(el("p", {}, `Outcome: ${label}`));
  }
  box.replaceChildren(...children);
}

function attachmentNode(att, urls, index) {
  let bytes;
  try {
    bytes = Uint8Array.from(atob(att.data), (c) => c.charCodeAt(0));
  } catch {
    return el("li", {}, `Attachment ${index + 1}: could not be read`);
  }
  const type = String(att.content_type || "application/octet-stream");
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  urls.push(url);
  if (/^image\/(png|jpeg|gif|webp)$/i.test(type)) {
    return el("li", {}, el("img", { src: url, alt: `Attachment ${index + 1} (${type})`, class: "attachment-image" }));
  }
  return el("li", {}, el("a", { href: url, download: `attachment-${index + 1}` }, `Attachment ${index + 1} (${type}, ${bytes.length} bytes)`));
}

async function openAlert(tipId) {
  if (!mounted) return;
  closeOpen();
  const entry = mounted.alerts.get(tipId);
  const alert = entry ? entry.alert : { tip_id: tipId, state: "open" };
  const open = { tipId, alert, urls: [] };
  mounted.open = open;
  const u = URGENCY[alert.priority];
  const back = el("button", { type: "button", class: "secondary back", id: "alert-back" }, "← All alerts");
  back.addEventListener("click", () => {
    closeOpen();
    mounted?.list.querySelector(`li[data-tip-id="${CSS.escape(tipId)}"] button`)?.focus();
  });
  const heading = el("h3", { tabIndex: -1, id: "alert-open-heading" }, "Alert");
  const meta = el(
    "p",
    { class: "alert-meta" },
    u ? el("span", { class: `urgency urgency-${u.cls}` }, u.word) : null,
    alert.zone ? el("span", {}, `Zone: ${alert.zone}`) : null,
    alert.channel ? el("span", {}, CHANNEL[alert.channel] || alert.channel) : null,
    alert.received ? el("time", { class: "alert-age" }, ageText(alert.received)) : null,
  );
  const body = el("div", { id: "alert-body", "aria-live": "polite" }, el("p", { class: "help" }, "Opening on this phone…"));
  const actions = el("div", { id: "alert-actions" });
  const status = el("p", { id: "alert-action-status", role: "status", "aria-live": "polite" });
  const thread = el("section", { id: "alert-thread", "aria-labelledby": "thread-heading" });
  const panel = el("article", { id: "alert-open", class: "alert-open", data: { tipId } }, back, heading, meta, body, actions, status, thread);
  mounted.list.hidden = true;
  mounted.status.hidden = true;
  mounted.root.append(panel);
  heading.focus();
  renderActions();

  let doc;
  try {
    const sealed = await request("GET", `/api/v1/alerts/${encodeURIComponent(tipId)}/envelope`, { bytes: true });
    const plain = await mounted.context.openEnvelope(sealed);
    doc = JSON.parse(new TextDecoder().decode(plain));
  } catch (e) {
    if (mounted?.open !== open) return;
    body.replaceChildren(
      el(
        "p",
        { class: "error", role: "alert" },
        e instanceof ApiError
          ? e.status === 404
            ? "This alert is no longer available."
            : `Could not fetch the alert: ${e.message}`
          : "This phone could not open the alert: it was not sealed to this phone's key.",
      ),
    );
    return;
  }
  if (mounted?.open !== open) return;
  const parts = [];
  if (doc.subject) parts.push(el("p", { class: "tip-subject", id: "alert-subject" }, doc.subject));
  parts.push(el("p", { class: "tip-text", id: "alert-text" }, String(doc.text ?? "")));
  if (Array.isArray(doc.attachments) && doc.attachments.length) {
    const list = el("ul", { class: "attachments", "aria-label": "Attachments" });
    doc.attachments.forEach((att, i) => list.append(attachmentNode(att, open.urls, i)));
    parts.push(list);
  }
  body.replaceChildren(...parts);
  if (doc.thread) {
    open.thread = doc.thread;
    mountThread(thread, { thread: doc.thread, request, openEnvelope: mounted.context.openEnvelope, isCurrent: () => mounted?.open === open });
    loadThread(thread);
  }
}

// ---------------------------------------------------------------- contract

export function mountAlerts(root, context) {
  if (mounted) unmountAlerts();
  const status = root.querySelector("#alerts-status");
  const list = root.querySelector("#alert-list");
  list.replaceChildren();
  root.querySelector("#alerts-focus").hidden = true;
  mounted = { root, context, status, list, alerts: new Map(), open: null, source: null, retry: null };
  mounted.ticker = setInterval(tickAges, AGE_TICK_MS);
  connect();
  if (pendingFocus) focusAlert(pendingFocus);
}

export function focusAlert(id) {
  pendingFocus = id;
  if (!mounted) return;
  if (mounted.alerts.has(id)) {
    pendingFocus = null;
    mounted.root.querySelector("#alerts-focus").hidden = true;
    openAlert(id);
    return;
  }
  // Not (yet) in the list: the stream may still be sending it.
  const note = mounted.root.querySelector("#alerts-focus");
  note.textContent = "Opening the alert from the notification as soon as it arrives…";
  note.hidden = false;
}

export function unmountAlerts() {
  if (!mounted) return;
  const m = mounted;
  closeOpen();
  m.source?.close();
  clearTimeout(m.retry);
  clearInterval(m.ticker);
  m.list.replaceChildren();
  m.root.querySelector("#alerts-focus").hidden = true;
  delete m.root.dataset.stream;
  mounted = null;
}
