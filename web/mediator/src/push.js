// Alerts on this phone while the app is closed: Web Push. After each sign-in
// the app says whether this phone gets them and offers to turn them on or
// off. Browsers ask for notification permission only from a tap (Safari
// insists), and an iPhone only in the app added to the Home Screen, so
// nothing here asks on its own.
//
// While alerts are on, every sign-in posts the subscription again, which
// heals a gateway that lost it; a subscription made for another VAPID key
// (the gateway's key was rotated: `tipwire keys rotate vapid`) is dropped
// and made anew, as the old one no longer receives. A push carries only
// {kind, alert, zone, urgency}; sw.js turns it into the notification.
// Nothing here sees tip text.
//
// Contract with main.js:
// - mountPush(root, context) runs after every sign-in. `root` is #push, with
//   #push-status, #push-help and the buttons #push-on, #push-off and
//   #push-retry. `context` is {session, onSessionLost, note}: what
//   GET /api/v1/session answered (its csrf_token), the sign-in to run on a
//   401, and a line for the "This phone" log.
// - unmountPush() runs on sign-out.
//
// Gateway routes (src/push/routes.rs):
//   GET    /api/v1/push/key          {public_key}: the applicationServerKey;
//                                    404 push-disabled while push is off
//   POST   /api/v1/devices/me/push   {subscription: PushSubscription JSON}
//   DELETE /api/v1/devices/me/push
//
// Every failure ends in a state on screen; nothing is thrown past a handler.

import { ApiError, send } from "./api.js";
import { fromBase64url } from "./b64.js";

const SUBSCRIPTION = "/api/v1/devices/me/push";
const READY_MS = 10_000;
const WHAT_SHOWS = "An alert shows only the zone and the urgency, never what the tip says.";

/** Each state: its status line, its help line, and which button shows. */
const STATES = {
  checking: { status: "Checking alerts on this phone…" },
  off: {
    status: "Alerts are off on this phone.",
    help: `Turn them on to be alerted while the app is closed. ${WHAT_SHOWS}`,
    button: "push-on",
  },
  working: { status: "One moment…" },
  on: {
    status: "Alerts are on: this phone is alerted to new alerts while you are on duty.",
    help: WHAT_SHOWS,
    button: "push-off",
  },
  blocked: {
    status: "Notifications are blocked for this app in the browser's settings.",
    help:
      "To allow them on Android: in Chrome, tap the icon left of the address (or, for the installed app, " +
      "press its icon and tap App info), open Notifications and allow them. On iPhone: Settings → " +
      "Notifications → tipwire → Allow Notifications. Then tap Check again.",
    button: "push-retry",
    retry: "Check again",
  },
  install: {
    status: "On iPhone, alerts work only in the app on your Home Screen.",
    help:
      "In Safari, tap Share, then Add to Home Screen, and open tipwire from that icon (iOS 16.4 or newer). " +
      "Turn alerts on there. Until then, keep the app open during your shift.",
  },
  unavailable: {
    status: "This browser cannot alert you while the app is closed.",
    help:
      "Keep the app open during your shift. Chrome on Android, and the Home Screen app on an iPhone " +
      "with iOS 16.4 or newer, can show alerts.",
  },
  disabled: {
    status: "This gateway does not send alerts to phones.",
    help: "Keep the app open during your shift. Your administrator can turn alerts on.",
  },
  failed: { button: "push-retry", retry: "Try again" },
};

let mounted = null;

function supported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

/** iPhone and iPad Safari give web apps push only when opened from the Home Screen. */
function iosOutsideHomeScreen() {
  const ios = /iPad|iPhone|iPod/.test(navigator.userAgent) || (/Macintosh/.test(navigator.userAgent) && navigator.maxTouchPoints > 1);
  const standalone = navigator.standalone === true || window.matchMedia("(display-mode: standalone)").matches;
  return ios && !standalone;
}

function set(m, state, { status, help } = {}) {
  if (mounted !== m) return;
  const s = STATES[state];
  m.root.dataset.state = state;
  m.status.textContent = status ?? s.status;
  m.help.textContent = help ?? s.help ?? "";
  for (const id of ["push-on", "push-off", "push-retry"]) m.buttons[id].hidden = s.button !== id;
  if (s.retry) m.buttons["push-retry"].textContent = s.retry;
}

function note(m, line) {
  if (mounted === m && m.context.note) m.context.note(`alerts on this phone: ${line}`);
}

/** A gateway call with this session's CSRF token; a 401 signs in again. */
async function call(m, method, path, body) {
  try {
    return await send(method, path, { body, csrf: m.context.session.csrf_token });
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && mounted === m) {
      unmountPush();
      m.context.onSessionLost();
    }
    throw e;
  }
}

/** The service worker's registration, or null when it does not start. */
function ready() {
  return Promise.race([navigator.serviceWorker.ready, new Promise((resolve) => setTimeout(() => resolve(null), READY_MS))]);
}

function sameKey(subscription, key) {
  // A browser that does not say which key a subscription has: it is kept.
  if (!subscription.options) return true;
  const held = subscription.options.applicationServerKey;
  if (!held) return false;
  const a = new Uint8Array(held);
  return a.length === key.length && a.every((b, i) => b === key[i]);
}

/**
 * Brings this phone's subscription in line with the gateway's key and posts
 * it: the existing one when it was made for this key, otherwise a new one.
 */
async function subscribeAndPost(m, registration, key) {
  const applicationServerKey = fromBase64url(key);
  let subscription = await registration.pushManager.getSubscription();
  if (subscription && !sameKey(subscription, applicationServerKey)) {
    note(m, "the gateway's key changed; subscribing again");
    await subscription.unsubscribe();
    subscription = null;
  }
  if (!subscription) {
    subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey });
  }
  await call(m, "POST", SUBSCRIPTION, { subscription: subscription.toJSON() });
}

/**
 * Shows what a failure means to the mediator: `status` says what did not
 * happen, `again` is what Try again runs.
 */
function failed(m, error, { again, status }) {
  m.again = again;
  if (error instanceof ApiError) {
    if (error.code === "push-disabled") return set(m, "disabled");
    note(m, `gateway: ${error.code}`);
    const help =
      error.code === "invalid-push-subscription"
        ? "The gateway refused this browser's subscription. Tell your administrator."
        : error.message;
    return set(m, "failed", { status, help });
  }
  const name = error && error.name;
  note(m, `browser: ${name || "error"}: ${error && error.message}`);
  if (name === "NotAllowedError") return set(m, "blocked");
  return set(m, "failed", {
    status,
    help: "This phone's push service could not be reached. Check the connection and try again.",
  });
}

/** At sign-in: what this phone's state is, and keeping the gateway's copy current. */
async function refresh(m) {
  try {
    set(m, "checking");
    if (iosOutsideHomeScreen()) return set(m, "install");
    if (!supported()) return set(m, "unavailable");
    const { public_key: key } = await call(m, "GET", "/api/v1/push/key");
    m.key = key;
    if (Notification.permission === "denied") return set(m, "blocked");
    const registration = await ready();
    if (!registration) return set(m, "unavailable", { help: "The app's service worker did not start in this browser." });
    const existing = await registration.pushManager.getSubscription();
    if (!existing || Notification.permission !== "granted") return set(m, "off");
    await subscribeAndPost(m, registration, key);
    note(m, "on");
    set(m, "on");
  } catch (e) {
    failed(m, e, { again: refresh, status: "Alerts on this phone could not be checked." });
  }
}

async function turnOn(m) {
  try {
    // Asked first, straight from the tap: browsers show the question only then.
    const asked = Notification.requestPermission();
    set(m, "working", { status: "Turning alerts on…" });
    const permission = await asked;
    if (permission === "denied") return set(m, "blocked");
    if (permission !== "granted") {
      return set(m, "off", { status: "Notifications were not allowed. Tap the button again to be asked once more." });
    }
    const key = m.key ?? (await call(m, "GET", "/api/v1/push/key")).public_key;
    m.key = key;
    const registration = await ready();
    if (!registration) return set(m, "unavailable", { help: "The app's service worker did not start in this browser." });
    await subscribeAndPost(m, registration, key);
    note(m, "turned on");
    set(m, "on");
  } catch (e) {
    failed(m, e, { again: turnOn, status: "Alerts could not be turned on." });
  }
}

async function turnOff(m) {
  set(m, "working", { status: "Turning alerts off…" });
  // Both, whatever happens to the other: the phone's own unsubscription
  // stops the alerts at its push service; the gateway forgets the endpoint.
  const [local, gateway] = await Promise.allSettled([
    (async () => {
      const registration = await ready();
      const subscription = registration && (await registration.pushManager.getSubscription());
      if (subscription) await subscription.unsubscribe();
    })(),
    call(m, "DELETE", SUBSCRIPTION).catch((e) => {
      if (!(e instanceof ApiError && e.code === "push-disabled")) throw e;
    }),
  ]);
  if (local.status === "rejected") {
    return failed(m, local.reason, { again: turnOff, status: "Alerts could not be turned off." });
  }
  note(m, "turned off");
  set(m, "off", {
    help:
      gateway.status === "rejected"
        ? "The gateway was not told, but this phone no longer receives alerts; the gateway forgets it on its next try."
        : undefined,
  });
}

export function mountPush(root, context) {
  unmountPush();
  const m = {
    root,
    context,
    status: root.querySelector("#push-status"),
    help: root.querySelector("#push-help"),
    buttons: Object.fromEntries(["push-on", "push-off", "push-retry"].map((id) => [id, root.querySelector(`#${id}`)])),
    key: null,
    again: refresh,
    stop: new AbortController(),
  };
  mounted = m;
  const signal = m.stop.signal;
  m.buttons["push-on"].addEventListener("click", () => turnOn(m), { signal });
  m.buttons["push-off"].addEventListener("click", () => turnOff(m), { signal });
  m.buttons["push-retry"].addEventListener("click", () => (root.dataset.state === "blocked" ? refresh(m) : m.again(m)), { signal });
  // Back from the browser's settings: blocked may be allowed now.
  document.addEventListener(
    "visibilitychange",
    () => {
      if (document.visibilityState === "visible" && root.dataset.state === "blocked") refresh(m);
    },
    { signal },
  );
  refresh(m);
}

export function unmountPush() {
  if (!mounted) return;
  mounted.stop.abort();
  mounted = null;
}
