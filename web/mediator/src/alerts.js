// The alert list: conflict alerts for this device's zones, newest first, live
// from the gateway's stream; one opens at a time and is decrypted on this
// phone. Claim, release, resolve (with an outcome code) and the reply thread
// live in the opened alert; a supervisor's phone can also hand a claimed
// alert to another device that can open it (reassign).
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
//        (?last_event_id= when the app opens a new stream after a drop)
//   GET  /api/v1/alerts/{tip}/envelope    the sealed tip (age), opened here
//   POST /api/v1/alerts/{tip}/claim|release|resolve   (X-CSRF-Token)
//   GET  /api/v1/alerts/{tip}/assignees   supervisors: who can take it
//   POST /api/v1/alerts/{tip}/reassign    supervisors: {device_id}
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
const STREAM = "/api/v1/alerts/stream";
const RECONNECTING = "Reconnecting… alerts will catch up when the connection is back.";
// What a refused change means to the person holding the phone, by the
// gateway's stable error code (src/error.rs).
const REFUSED = {
  "alert-claimed": "Someone else claimed this alert first.",
  "alert-resolved": "This alert is already resolved.",
  "alert-not-claimed": "This alert is not claimed any more.",
  "not-claimant": "Someone else holds this alert now.",
  "cannot-open-alert": "This alert was not sealed to this phone, so it cannot be claimed or answered from here.",
  "not-supervisor": "Only a supervisor can reassign an alert.",
  "invalid-assignee": "That phone cannot take this alert any more (removed, or not in its zone). Choose another.",
  "unknown-outcome": "Choose one of the listed outcomes.",
  "not-found": "This alert is no longer available.",
  offline: "The gateway cannot be reached, so nothing changed. Check the connection and try again.",
};

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

const WITHHELD_KINDS = { photo: "A photo", pdf: "A PDF", other: "An attachment" };
const WITHHELD_REASONS = {
  "cannot-clean": "could carry the sender's name, phone or location, and the gateway cannot remove them",
  "not-accepted": "is not a type the tip line takes",
  "over-limit": "was over the size or number limit",
  "not-fetched": "could not be fetched from the phone company in time",
};

// The gateway names what it did not pass on, and why, from fixed words only.
export function withheldText(w) {
  const kind = WITHHELD_KINDS[w?.kind] ?? WITHHELD_KINDS.other;
  const reason = WITHHELD_REASONS[w?.reason] ?? "was not passed on";
  return `${kind} was sent but not passed on: it ${reason}. Ask the tipster for a screenshot if you need it.`;
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

/**
 * Remembers how far this phone has read (every event's id carries both
 * stream cursors). The browser resends it as Last-Event-ID when it
 * reconnects by itself; a stream the app opens anew passes it as
 * ?last_event_id=, so what was missed meanwhile is replayed once, not lost,
 * and the list is not rebuilt.
 */
function track(source, event) {
  if (mounted?.source === source && event.lastEventId) mounted.lastEventId = event.lastEventId;
}

function connect() {
  clearTimeout(mounted.retry);
  mounted.retry = null;
  const url = mounted.lastEventId ? `${STREAM}?last_event_id=${encodeURIComponent(mounted.lastEventId)}` : STREAM;
  const source = new EventSource(url, { withCredentials: true });
  mounted.source = source;
  if (mounted.root.dataset.stream !== "reconnecting") setStatus("Connecting to the alert service…", "connecting");
  // `ready` comes once the backlog (the latest alerts, or what was missed
  // since Last-Event-ID) is sent; from then on it is live.
  source.addEventListener("ready", (e) => {
    if (mounted?.source !== source) return;
    track(source, e);
    setStatus(
      mounted.alerts.size ? "Live: new alerts appear here." : "Live: no alerts for your zones yet. New ones appear here.",
      "live",
    );
  });
  source.addEventListener("alert", (e) => {
    if (mounted?.source !== source) return;
    track(source, e);
    onAlertEvent(e);
    if (mounted.root.dataset.stream === "live") setStatus("Live: new alerts appear here.", "live");
  });
  // `end` {code} comes just before the gateway closes the stream:
  // session-expired (revoked, signed out, expired), shutting-down (resume
  // elsewhere or after the restart), store-unavailable (the session could
  // not be checked: resume once the gateway answers) or resync (too far
  // behind: start afresh rather than resume).
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
      if (code !== "shutting-down" && code !== "store-unavailable") mounted.lastEventId = null;
      setStatus(RECONNECTING, "reconnecting");
      connect();
    }
  });
  source.addEventListener("state", (e) => {
    if (mounted?.source !== source) return;
    track(source, e);
    onStateEvent(e);
  });
  source.addEventListener("error", () => {
    if (mounted?.source !== source) return;
    setStatus(RECONNECTING, "reconnecting");
    // Connecting: the browser reconnects by itself and sends Last-Event-ID.
    if (source.readyState === EventSource.CONNECTING) return;
    // Closed: the gateway refused the stream (a 401, or an error page), or
    // the browser gave up on the network.
    source.close();
    checkSession(source);
  });
}

/**
 * Back online: a stream waiting out its retry delay is opened now rather
 * than a few seconds later.
 */
function onOnline() {
  if (mounted?.retry) connect();
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
      // Offline, or the gateway is down: try again (a 401 has unmounted).
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

/** What the last action did, or why it was refused (`error`: shown as one). */
function actionStatus(text, { error = false } = {}) {
  const s = mounted?.root.querySelector("#alert-action-status");
  if (!s) return;
  s.textContent = text;
  s.classList.toggle("error", error);
}

function refusal(e, fallback = "Not saved") {
  if (e instanceof ApiError && REFUSED[e.code]) return REFUSED[e.code];
  return `${fallback}: ${e.message}`;
}

/** A state change; `done` says what happened, from the gateway's answer. */
async function act(tipId, action, body, done) {
  actionStatus("Saving…");
  for (const b of mounted.root.querySelectorAll("#alert-actions button")) b.disabled = true;
  try {
    const answer = await request("POST", `/api/v1/alerts/${encodeURIComponent(tipId)}/${action}`, { body: body ?? {} });
    if (!mounted) return;
    if (answer && typeof answer.state === "string") applyState(answer);
    const said = { claim: "You claimed this alert.", release: "Released: it is open again.", resolve: "Resolved." }[action];
    actionStatus(done ? done(answer) : said || "Saved.");
    return answer;
  } catch (e) {
    if (!mounted) return;
    actionStatus(refusal(e), { error: true });
    throw e;
  } finally {
    if (mounted) renderActions();
  }
}

// ---------------------------------------------------------------- reassign

/** How a device shows in the picker: the mediator, and which phone. */
function assigneeLabel(device) {
  const me = device.device_id === mounted.context.session.device_id;
  const phone = device.device_name ? ` (${device.device_name})` : "";
  const duty = device.on_duty === false ? ", off duty" : "";
  return `${device.name}${phone}${me ? ": this phone" : ""}${duty}`;
}

/** Opens the picker: asks the gateway who can take the alert now. */
async function openReassign(open) {
  open.reassign = { loading: true };
  actionStatus("Finding who can take this alert…");
  renderActions();
  try {
    const answer = await request("GET", `/api/v1/alerts/${encodeURIComponent(open.tipId)}/assignees`);
    if (mounted?.open !== open || !open.reassign) return;
    const devices = Array.isArray(answer?.devices)
      ? answer.devices.filter((d) => d && typeof d.device_id === "string" && typeof d.name === "string")
      : [];
    open.reassign = { devices, selected: "" };
    actionStatus(devices.length ? "" : "Nobody else can open alerts of this zone.");
    renderActions();
    mounted.root.querySelector(devices.length ? "#alert-assignee" : "#alert-reassign-cancel")?.focus();
  } catch (e) {
    if (mounted?.open !== open) return;
    open.reassign = null;
    actionStatus(refusal(e, "Could not find who can take this alert"), { error: true });
    renderActions();
  }
}

function closeReassign(open) {
  open.reassign = null;
  actionStatus("");
  renderActions();
  mounted.root.querySelector("#alert-reassign-open")?.focus();
}

async function submitReassign(open) {
  const picked = open.reassign?.devices?.find((d) => d.device_id === open.reassign.selected);
  if (!picked) {
    actionStatus("Choose who takes this alert first.", { error: true });
    mounted.root.querySelector("#alert-assignee")?.focus();
    return;
  }
  try {
    await act(open.tipId, "reassign", { device_id: picked.device_id }, (answer) =>
      answer?.claimed_by_me ? "Reassigned to you." : `Reassigned to ${assigneeLabel(picked)}. Their phone now shows it as theirs.`,
    );
    if (mounted?.open === open) {
      open.reassign = null;
      renderActions();
      mounted.root.querySelector("#alert-reassign-open")?.focus();
    }
  } catch (e) {
    // The list may be stale (a device was removed): ask again.
    if (mounted?.open === open && e.code === "invalid-assignee") {
      const said = mounted.root.querySelector("#alert-action-status")?.textContent;
      await openReassign(open);
      if (mounted?.open === open) actionStatus(said, { error: true });
    }
  }
}

/** The supervisor's control on a claimed alert: a button, then the picker. */
function reassignControls(open) {
  const r = open.reassign;
  if (!r || r.loading) {
    const button = el("button", { type: "button", class: "secondary", id: "alert-reassign-open", disabled: !!r }, "Reassign…");
    button.addEventListener("click", () => openReassign(open));
    return [button];
  }
  const cancel = el("button", { type: "button", class: "secondary", id: "alert-reassign-cancel" }, "Cancel");
  cancel.addEventListener("click", () => closeReassign(open));
  if (!r.devices.length) return [cancel];
  const select = el("select", { id: "alert-assignee", name: "device_id", required: true });
  select.append(el("option", { value: "" }, "Choose who takes it…"));
  for (const d of r.devices) select.append(el("option", { value: d.device_id }, assigneeLabel(d)));
  select.value = r.devices.some((d) => d.device_id === r.selected) ? r.selected : "";
  select.addEventListener("change", () => {
    r.selected = select.value;
  });
  const submit = el("button", { type: "submit", class: "primary", id: "alert-reassign" }, "Reassign");
  const form = el(
    "form",
    { class: "reassign", id: "alert-reassign-form", noValidate: true },
    el("label", { htmlFor: "alert-assignee" }, "Hand this alert to"),
    select,
    el("div", { class: "reassign-buttons" }, submit, cancel),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submitReassign(open);
  });
  return [form];
}

function renderActions() {
  const box = mounted?.root.querySelector("#alert-actions");
  if (!box || !mounted.open) return;
  const open = mounted.open;
  const tipId = open.tipId;
  const { alert } = mounted.alerts.get(tipId) || { alert: open.alert };
  // Rebuilt on every change to the alert: keep what was focused and chosen.
  const focused = box.contains(document.activeElement) ? document.activeElement.id : null;
  const outcome = box.querySelector("#alert-outcome")?.value;
  const state = el("p", { class: `alert-state state-${alert.state}`, id: "alert-open-state" }, `State: ${stateText(alert)}`);
  const children = [state];
  if (alert.state === "open" && alert.can_open === false) {
    // Not sealed to this phone (enrolled after the tip came in): the gateway
    // would refuse the claim, and claiming would silence its escalation.
    children.push(
      el(
        "p",
        { class: "help", id: "alert-cannot-open" },
        "This alert came in before this phone was set up, so it cannot open or claim it. A supervisor can hand it to someone who can.",
      ),
    );
  } else if (alert.state === "open") {
    const claim = el("button", { type: "button", class: "primary", id: "alert-claim" }, "Claim");
    claim.addEventListener("click", () => act(tipId, "claim").catch(() => {}));
    children.push(claim);
  } else if (alert.state === "claimed" && alert.claimed_by_me) {
    const release = el("button", { type: "button", class: "secondary", id: "alert-release" }, "Release");
    release.addEventListener("click", () => act(tipId, "release").catch(() => {}));
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
      act(tipId, "resolve", { outcome: select.value }).catch(() => {});
    });
    children.push(release, form);
  } else if (alert.state === "resolved" && alert.outcome) {
    const label = OUTCOMES.find(([v]) => v === alert.outcome)?.[1] || alert.outcome;
    children.push(el("p", {}, `Outcome: ${label}`));
  }
  if (alert.state === "claimed" && mounted.context.session.supervisor) {
    children.push(...reassignControls(open));
  } else {
    open.reassign = null;
  }
  box.replaceChildren(...children);
  const select = box.querySelector("#alert-outcome");
  if (select && outcome) select.value = outcome;
  if (focused) box.querySelector(`#${CSS.escape(focused)}`)?.focus();
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
  if (Array.isArray(doc.withheld) && doc.withheld.length) {
    const list = el("ul", { class: "withheld", "aria-label": "Attachments not passed on" });
    doc.withheld.forEach((w) => list.append(el("li", {}, withheldText(w))));
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
  mounted = { root, context, status, list, alerts: new Map(), open: null, source: null, retry: null, lastEventId: null };
  mounted.ticker = setInterval(tickAges, AGE_TICK_MS);
  window.addEventListener("online", onOnline);
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
  window.removeEventListener("online", onOnline);
  m.list.replaceChildren();
  m.root.querySelector("#alerts-focus").hidden = true;
  delete m.root.dataset.stream;
  mounted = null;
}
