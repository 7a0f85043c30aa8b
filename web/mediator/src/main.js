// The mediator app: enrolment from an invite, automatic sign-in with the
// device's keys, and the home screen. Everything shown comes from the
// gateway's answers through textContent; nothing is parsed as HTML.

import * as api from "./api.js";
import { ApiError } from "./api.js";
import { describeKeys, forgetDevice, generateDeviceKeys, loadDevice, openEnvelope, saveDevice } from "./keys.js";
import { focusAlert, mountAlerts, unmountAlerts } from "./alerts.js";
import { mountPush, unmountPush } from "./push.js";

const $ = (id) => document.getElementById(id);
const screens = ["loading", "enrol", "home", "signed-out", "revoked", "problem"];
const diagnostics = [];
let device = null; // the stored record (keys and device id)
let retry = null;

function note(line) {
  diagnostics.push(line);
  const list = $("diagnostics");
  if (list) {
    const li = document.createElement("li");
    li.textContent = line;
    list.append(li);
  }
}

function show(name, { focus = true } = {}) {
  for (const s of screens) $(`screen-${s}`).hidden = s !== name;
  document.body.dataset.screen = name;
  if (focus) $(`screen-${name}`).querySelector("h1, h2")?.focus();
}

function loading(message) {
  $("loading-message").textContent = message;
  show("loading", { focus: false });
}

function problem(message, again) {
  $("problem-message").textContent = message;
  retry = again;
  $("problem-retry").hidden = !again;
  show("problem");
}

/** The #invite= and #alert= values of the address's fragment. */
function fragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  return { invite: params.get("invite"), alert: params.get("alert") };
}

function dropFragment() {
  history.replaceState(null, "", location.pathname);
}

function explain(error) {
  if (!(error instanceof ApiError)) return `Something went wrong on this phone: ${error.message}`;
  switch (error.code) {
    case "invite-invalid":
      return "This invite was already used, has expired, or is mistyped. Ask your administrator for a new one.";
    case "rate-limited":
      return "Too many attempts. Wait a minute, then try again.";
    case "store-unavailable":
    case "shutting-down":
      return "The gateway is busy or restarting. Try again in a moment.";
    case "origin-mismatch":
      return "The gateway refused this page's address. Open the app from the link your administrator gave you.";
    default:
      return error.message;
  }
}

async function start() {
  registerServiceWorker();
  window.addEventListener("hashchange", () => {
    const { alert } = fragment();
    if (alert) focusAlert(alert);
  });
  const { invite, alert } = fragment();
  if (alert) focusAlert(alert);
  try {
    device = await loadDevice();
  } catch (e) {
    problem(
      "This browser will not keep the app's keys (private browsing, or storage turned off). " +
        "Open the app in a normal window.",
      start,
    );
    note(`key store: ${e.message}`);
    return;
  }
  if (device && device.deviceId) {
    if (invite) {
      note("an invite link was opened on a phone that is already set up; it was not used");
      dropFragment();
    }
    if (device.signedOut) {
      show("signed-out");
      return;
    }
    await signInAndShowHome();
    return;
  }
  showEnrol(invite);
}

function showEnrol(invite) {
  const codeField = $("enrol-code-field");
  if (invite) {
    $("enrol-code").value = invite;
    codeField.hidden = true;
    $("enrol-invite-found").hidden = false;
  } else {
    codeField.hidden = false;
    $("enrol-invite-found").hidden = true;
  }
  $("enrol-status").textContent = "";
  show("enrol");
}

async function onEnrol(event) {
  event.preventDefault();
  const form = $("enrol-form");
  const status = $("enrol-status");
  const invite = $("enrol-code").value.trim();
  const deviceName = $("enrol-name").value.trim();
  if (!invite) {
    status.textContent = "Enter the invite code from your administrator.";
    $("enrol-code").focus();
    return;
  }
  form.setAttribute("aria-busy", "true");
  $("enrol-submit").disabled = true;
  try {
    status.textContent = "Making this phone's keys…";
    const { record, publicKeys } = await generateDeviceKeys();
    // Kept before registering: if the answer is lost, nothing on the
    // gateway points at keys this phone no longer has.
    await saveDevice(record);
    status.textContent = "Registering this phone with the gateway…";
    const answer = await api.enrol({ invite, ...publicKeys, device_name: deviceName || undefined });
    record.deviceId = answer.device_id;
    record.deviceName = deviceName || null;
    await saveDevice(record);
    device = record;
    dropFragment(); // the invite is used up; keep it out of history and bookmarks
    note(`enrolled as ${answer.device_id}`);
    await signInAndShowHome();
  } catch (e) {
    status.textContent = explain(e);
    if (e instanceof ApiError && e.code === "invite-invalid" && $("enrol-code-field").hidden) {
      $("enrol-code-field").hidden = false;
      $("enrol-code").value = "";
      dropFragment();
    }
  } finally {
    form.removeAttribute("aria-busy");
    $("enrol-submit").disabled = false;
  }
}

/** Uses the session cookie if it is still good, else signs a new challenge. */
async function signInAndShowHome() {
  loading("Signing in…");
  try {
    let session;
    let method = "session";
    try {
      session = await api.currentSession();
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) throw e;
      await api.signIn(device.deviceId, device.signingKey);
      session = await api.currentSession();
      method = "signature";
    }
    if (device.signedOut) {
      device.signedOut = false;
      await saveDevice(device);
    }
    showHome(session, method);
  } catch (e) {
    if (e instanceof ApiError && (e.code === "unknown-device" || e.code === "session-expired")) {
      show("revoked");
      return;
    }
    problem(explain(e), signInAndShowHome);
  }
}

function showHome(session, method) {
  $("home-name").textContent = session.name;
  $("home-role").textContent = session.supervisor ? "Supervisor" : "Mediator";
  const zones = $("home-zones");
  zones.replaceChildren();
  const list = session.zones.length ? session.zones : [];
  for (const zone of list) {
    const li = document.createElement("li");
    li.textContent = zone;
    li.dataset.zone = zone;
    zones.append(li);
  }
  $("home-zones-all").hidden = list.length > 0;
  const duty = $("home-duty");
  duty.checked = !!session.on_duty;
  duty.setAttribute("aria-checked", String(duty.checked));
  $("home-duty-status").textContent = "";
  $("home").dataset.loginMethod = method;
  $("home").dataset.deviceId = session.device_id;

  const details = $("home-details");
  details.replaceChildren();
  const rows = [
    ["Device id", session.device_id],
    ["This phone", session.device_name || device.deviceName || "(no name given)"],
    ...describeKeys(device).map((line) => ["Keys", line]),
    ["Signed in", method === "signature" ? "with this phone's key, just now" : "with the current session"],
  ];
  for (const [term, value] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    details.append(dt, dd);
  }
  $("home").dataset.ageKey = device.ageKind;

  mountAlerts($("alerts"), {
    session,
    openEnvelope: (bytes) => openEnvelope(device, bytes),
    onSessionLost: signInAndShowHome,
  });
  mountPush($("push"), { session, onSessionLost: signInAndShowHome, note });
  show("home");
}

async function onDutyChange() {
  const duty = $("home-duty");
  const wanted = duty.checked;
  const status = $("home-duty-status");
  duty.disabled = true;
  status.textContent = "Saving…";
  try {
    const answer = await api.setOnDuty(wanted);
    duty.checked = answer.on_duty;
    status.textContent = answer.on_duty ? "You are on duty." : "You are off duty: no alert will buzz this phone.";
  } catch (e) {
    duty.checked = !wanted;
    if (e instanceof ApiError && e.status === 401) {
      await signInAndShowHome();
      return;
    }
    status.textContent = `Not saved: ${explain(e)}`;
  } finally {
    duty.setAttribute("aria-checked", String(duty.checked));
    duty.disabled = false;
  }
}

async function onSignOut() {
  unmountAlerts();
  unmountPush();
  try {
    await api.signOut();
  } catch (e) {
    note(`sign-out: ${e.message}`);
  }
  device.signedOut = true;
  await saveDevice(device);
  show("signed-out");
}

async function onForget() {
  const ok = confirm(
    "Remove this phone's keys? Tips already sealed to this phone can then not be opened here. " +
      "You will need a new invite to set the phone up again.",
  );
  if (!ok) return;
  await forgetDevice();
  device = null;
  showEnrol(null);
}

function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) {
    note("service worker: not supported by this browser");
    return;
  }
  // A tapped notification while the app is open (sw.js).
  navigator.serviceWorker.addEventListener("message", (event) => {
    const data = event.data || {};
    if (data.type === "open-alert" && typeof data.alert === "string") {
      history.replaceState(null, "", `/m/#alert=${encodeURIComponent(data.alert)}`);
      focusAlert(data.alert);
    }
  });
  navigator.serviceWorker
    .register("/m/sw.js", { scope: "/m/" })
    .then(() => note("service worker: registered"))
    .catch((e) => note(`service worker: ${e.message}`));
}

$("enrol-form").addEventListener("submit", onEnrol);
$("home-duty").addEventListener("change", onDutyChange);
$("home-sign-out").addEventListener("click", onSignOut);
$("signed-out-sign-in").addEventListener("click", signInAndShowHome);
$("revoked-forget").addEventListener("click", onForget);
$("problem-retry").addEventListener("click", () => retry && retry());
start();
