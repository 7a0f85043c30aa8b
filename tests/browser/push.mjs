#!/usr/bin/env node
// The mediator app turns on alerts for a closed app (Web Push), in Debian's
// Chromium driven by playwright-core. Run by tests/api/browser.rs; by hand:
//
//   node tests/browser/push.mjs BASE_URL push-on INVITE_A INVITE_B SUBSCRIPTION_JSON
//   node tests/browser/push.mjs BASE_URL push-off INVITE_GATEWAY INVITE_IPHONE INVITE_OLD
//
// Environment as in enrol.mjs: TIPWIRE_TRUST_PEMS, TIPWIRE_TEST_CHROMIUM,
// TIPWIRE_SCREENSHOT_DIR.
//
// Headless Chromium has no push service (its own pushManager.subscribe
// fails), so phone A's pages get a stand-in by an init script:
// PushManager.prototype.subscribe and getSubscription return a subscription
// whose endpoint is SUBSCRIPTION_JSON's (tests/peers/push_endpoint.py, which
// holds the matching keys and decrypts what the gateway sends), suffixed -N
// for the Nth subscribe. It keeps what the app asked for (the
// applicationServerKey, userVisibleOnly) in the page's localStorage, and
// behaves as Chromium's does where the app could tell: NotAllowedError
// without permission or without userVisibleOnly, InvalidStateError when a
// subscription for another key exists. Everything else is the real browser:
// the permission, the service worker, the notifications it shows (a push is
// delivered to it through DevTools, ServiceWorker.deliverPushMessage).
//
// push-on talks with the test in JSON lines ({"event": …} out, {"cmd": …} in):
//
//   → {"event":"subscribed","device","calls","state","posts"}
//        phone A (notifications granted) enrolled, saw "off", tapped Turn on
//   ← {"cmd":"push","payload":P}  P: the plaintext the push endpoint decrypted
//        delivered to A's service worker, twice (delivery is at least once)
//   → {"event":"notified","notifications","page_text"}
//   ← {"cmd":"reload"}    the test removed the gateway's copy
//   → {"event":"reloaded","calls","posts"}   the app posted it again at sign-in
//   ← {"cmd":"rotate"}    the stand-in's subscription now holds another key
//   → {"event":"rotated","calls","endpoint"} the app unsubscribed and subscribed anew
//   ← {"cmd":"off"}
//   → {"event":"off","stand_in","deletes"}   tapped Turn off
//        phone B (Chromium's own push, no permission): Turn on, refused by
//        the permission (set to denied through DevTools, as a user who
//        blocks): blocked; allowed meanwhile, Check again: off; Turn on:
//        Chromium's push service fails: failed; Try again: failed again
//
// push-off enrols three phones on a gateway with push off and reads the
// control: one with everything (the gateway says push-disabled), one with an
// iPhone's user agent outside the Home Screen, one without PushManager.
//
// The last line is {"ok": true, ...what was seen} or {"ok": false, step, error}.

import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { chromiumArgs, command, emit } from "./common.mjs";

const [base, mode, ...rest] = process.argv.slice(2);
const executablePath = process.env.TIPWIRE_TEST_CHROMIUM || "/usr/bin/chromium";
const shots = process.env.TIPWIRE_SCREENSHOT_DIR;
const STEP_TIMEOUT_MS = 20_000;
const IPHONE_UA =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

if (!base || !["push-on", "push-off"].includes(mode) || rest.length !== 3) {
  console.error(
    "usage: node tests/browser/push.mjs BASE_URL push-on INVITE_A INVITE_B SUBSCRIPTION_JSON\n" +
      "       node tests/browser/push.mjs BASE_URL push-off INVITE_GATEWAY INVITE_IPHONE INVITE_OLD",
  );
  process.exit(2);
}
const origin = new URL(base).origin;

const args = chromiumArgs();

const consoleLines = [];
const cspViolations = [];
const pageErrors = [];
let step = "launch";
const result = { ok: false };

async function shot(page, name) {
  if (shots) await page.screenshot({ path: join(shots, `push-${name}.png`), fullPage: true });
}

/** The stand-in push service (see the top of this file); runs in the page. */
function standIn({ subscription }) {
  if (!("PushManager" in self)) return;
  const STORE = "tipwire-test-push-subscription";
  const CALLS = "tipwire-test-push-calls";
  const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
  const unb64url = (text) => {
    const b64 = text.replaceAll("-", "+").replaceAll("_", "/");
    return Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
  };
  const bytes = (key) => {
    if (typeof key === "string") return unb64url(key);
    if (key instanceof ArrayBuffer) return new Uint8Array(key);
    if (ArrayBuffer.isView(key)) return new Uint8Array(key.buffer, key.byteOffset, key.byteLength);
    throw new TypeError("applicationServerKey is not a BufferSource or string");
  };
  const calls = () => JSON.parse(localStorage.getItem(CALLS) || "[]");
  const log = (call) => localStorage.setItem(CALLS, JSON.stringify([...calls(), call]));
  const held = () => JSON.parse(localStorage.getItem(STORE) || "null");
  const wrap = (record) => {
    const json = { endpoint: record.endpoint, expirationTime: null, keys: { ...subscription.keys } };
    return {
      endpoint: record.endpoint,
      expirationTime: null,
      options: { userVisibleOnly: true, applicationServerKey: unb64url(record.key).buffer },
      getKey: (name) => (subscription.keys[name] ? unb64url(subscription.keys[name]).buffer : null),
      toJSON: () => json,
      unsubscribe: async () => {
        log({ call: "unsubscribe", endpoint: record.endpoint });
        if (held()?.endpoint === record.endpoint) localStorage.removeItem(STORE);
        return true;
      },
    };
  };
  PushManager.prototype.subscribe = async function (options = {}) {
    const key = b64url(bytes(options.applicationServerKey));
    log({ call: "subscribe", key, user_visible_only: options.userVisibleOnly === true });
    if (Notification.permission !== "granted" || options.userVisibleOnly !== true) {
      throw new DOMException("Registration failed - permission denied", "NotAllowedError");
    }
    const record = held();
    if (record && record.key !== key) {
      throw new DOMException("A subscription with a different applicationServerKey already exists.", "InvalidStateError");
    }
    if (record) return wrap(record);
    const n = calls().filter((c) => c.call === "subscribe").length;
    const made = { endpoint: `${subscription.endpoint}-${n}`, key };
    localStorage.setItem(STORE, JSON.stringify(made));
    return wrap(made);
  };
  PushManager.prototype.getSubscription = async function () {
    const record = held();
    return record ? wrap(record) : null;
  };
}

async function phone(browser, label, { grant = false, init = [], userAgent } = {}) {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 390, height: 844 },
    colorScheme: "dark",
    userAgent,
  });
  if (grant) await context.grantPermissions(["notifications"], { origin });
  for (const [script, arg] of init) await context.addInitScript(script, arg);
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("console", (m) => {
    consoleLines.push(`${label} ${m.type()}: ${m.text()}`);
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(`${label}: ${m.text()}`);
  });
  page.on("pageerror", (e) => pageErrors.push(`${label}: ${e}`));
  // Every state the control passes through, in order (survives until a reload).
  await context.addInitScript(() => {
    window.tipwirePushStates = [];
    document.addEventListener("DOMContentLoaded", () => {
      const push = document.getElementById("push");
      if (!push) return;
      new MutationObserver(() => window.tipwirePushStates.push(push.dataset.state)).observe(push, {
        attributes: true,
        attributeFilter: ["data-state"],
      });
    });
  });
  const calls = [];
  page.on("response", (r) => {
    if (new URL(r.url()).pathname === "/api/v1/devices/me/push") calls.push({ method: r.request().method(), status: r.status() });
  });
  return { context, page, pushCalls: calls };
}

async function enrol(page, link, name) {
  await page.goto(link, { waitUntil: "domcontentloaded" });
  await page.locator("#screen-enrol:not([hidden])").waitFor();
  await page.getByLabel("Name for this phone").fill(name);
  await page.getByRole("button", { name: "Set up this phone" }).click();
  await page.locator("#screen-home:not([hidden]) #home-zones li").first().waitFor();
  return page.evaluate(() => document.getElementById("home").dataset.deviceId);
}

/** Waits for the control to settle in `state`; returns what it shows. */
async function control(page, state) {
  await page.locator(`#push[data-state="${state}"]`).waitFor();
  return page.evaluate(() => ({
    state: document.getElementById("push").dataset.state,
    status: document.getElementById("push-status").textContent,
    help: document.getElementById("push-help").textContent,
    buttons: [...document.querySelectorAll("#push button")].filter((b) => !b.hidden).map((b) => b.textContent),
  }));
}

const standInCalls = (page) => page.evaluate(() => JSON.parse(localStorage.getItem("tipwire-test-push-calls") || "[]"));
const standInHeld = (page) => page.evaluate(() => JSON.parse(localStorage.getItem("tipwire-test-push-subscription") || "null"));

/** The app's service worker registration id, through DevTools. */
async function registrationId(cdp) {
  const registrations = new Map();
  cdp.on("ServiceWorker.workerRegistrationUpdated", (e) => {
    for (const r of e.registrations) registrations.set(r.registrationId, r);
  });
  await cdp.send("ServiceWorker.enable");
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const found = [...registrations.values()].find((r) => r.scopeURL === `${origin}/m/` && !r.isDeleted);
    if (found) return found.registrationId;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("no service worker registration for /m/");
}

/** The notifications the service worker shows, once one was shown after `after` (ms). */
function shownAfter(page, after) {
  // Polled until the step's deadline, not a fixed count (a loaded machine).
  return page.evaluate(async ([after, waitMs]) => {
    const registration = await navigator.serviceWorker.ready;
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline) {
      const shown = await registration.getNotifications();
      if (shown.some((n) => n.timestamp > after)) {
        return shown.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data, timestamp: n.timestamp }));
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return null;
  }, [after, STEP_TIMEOUT_MS]);
}

async function pushOn(browser, [inviteA, inviteB, subscriptionJson]) {
  const subscription = JSON.parse(subscriptionJson);

  step = "phone A enrols and sees alerts off";
  const a = await phone(browser, "A", { grant: true, init: [[standIn, { subscription }]] });
  const device = await enrol(a.page, inviteA, "Phone A");
  result.a_before = await control(a.page, "off");
  await shot(a.page, "1-off");

  step = "phone A turns alerts on";
  await a.page.getByRole("button", { name: "Turn on alerts on this phone" }).click();
  result.a_on = await control(a.page, "on");
  await shot(a.page, "2-on");
  emit({ event: "subscribed", device, calls: await standInCalls(a.page), state: result.a_on, posts: a.pushCalls.splice(0) });

  step = "a push reaches the service worker";
  const { payload } = await command("push");
  const cdp = await a.context.newCDPSession(a.page);
  const id = await registrationId(cdp);
  let t = Date.now();
  await cdp.send("ServiceWorker.deliverPushMessage", { origin, registrationId: id, data: payload });
  const first = await shownAfter(a.page, t - 1);
  if (!first) throw new Error("no notification after the first push");
  // Delivery is at least once: the same push again replaces, by its tag.
  t = Math.max(...first.map((n) => n.timestamp));
  await cdp.send("ServiceWorker.deliverPushMessage", { origin, registrationId: id, data: payload });
  const second = await shownAfter(a.page, t);
  if (!second) throw new Error("no notification after the second push");
  emit({
    event: "notified",
    first: first.map(({ timestamp, ...n }) => n),
    notifications: second.map(({ timestamp, ...n }) => n),
    page_text: await a.page.evaluate(() => document.body.innerText),
  });

  step = "a sign-in posts the subscription again";
  await command("reload");
  await a.page.reload({ waitUntil: "domcontentloaded" });
  await control(a.page, "on");
  emit({ event: "reloaded", calls: await standInCalls(a.page), posts: a.pushCalls.splice(0) });

  step = "a subscription for another key is made anew";
  await command("rotate");
  const stale = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey.export({ type: "spki", format: "der" });
  // The last 65 bytes of a P-256 SPKI: the uncompressed point.
  const staleKey = Buffer.from(stale.subarray(stale.length - 65)).toString("base64url");
  await a.page.evaluate((key) => {
    const record = JSON.parse(localStorage.getItem("tipwire-test-push-subscription"));
    localStorage.setItem("tipwire-test-push-subscription", JSON.stringify({ ...record, key }));
  }, staleKey);
  await a.page.reload({ waitUntil: "domcontentloaded" });
  const rotated = await control(a.page, "on");
  emit({
    event: "rotated",
    stale_key: staleKey,
    calls: await standInCalls(a.page),
    endpoint: (await standInHeld(a.page))?.endpoint ?? null,
    state: rotated,
    states: await a.page.evaluate(() => window.tipwirePushStates),
    posts: a.pushCalls.splice(0),
  });

  step = "phone A turns alerts off";
  await command("off");
  await a.page.getByRole("button", { name: "Turn off alerts on this phone" }).click();
  result.a_off = await control(a.page, "off");
  await shot(a.page, "3-turned-off");
  emit({ event: "off", stand_in: await standInHeld(a.page), calls: await standInCalls(a.page), requests: a.pushCalls.splice(0) });

  step = "phone B enrols, without permission and with Chromium's own push";
  const b = await phone(browser, "B");
  await enrol(b.page, inviteB, "Phone B");
  result.b_before = await control(b.page, "off");

  step = "phone B: the permission is refused";
  // As a user who answers Block: DevTools sets the permission to denied.
  const bcdp = await b.context.newCDPSession(b.page);
  const { targetInfo } = await bcdp.send("Target.getTargetInfo");
  const browserCdp = await browser.newBrowserCDPSession();
  await browserCdp.send("Browser.setPermission", {
    permission: { name: "notifications" },
    setting: "denied",
    origin,
    browserContextId: targetInfo.browserContextId,
  });
  await b.page.getByRole("button", { name: "Turn on alerts on this phone" }).click();
  result.b_blocked = await control(b.page, "blocked");
  await shot(b.page, "4-blocked");

  step = "phone B: allowed in the settings, Check again";
  await b.context.grantPermissions(["notifications"], { origin });
  await b.page.getByRole("button", { name: "Check again" }).click();
  result.b_allowed = await control(b.page, "off");

  step = "phone B: Chromium's push service fails";
  await b.page.getByRole("button", { name: "Turn on alerts on this phone" }).click();
  result.b_failed = await control(b.page, "failed");
  await shot(b.page, "5-failed");
  const failures = await b.page.evaluate(() => window.tipwirePushStates.filter((s) => s === "failed").length);
  await b.page.getByRole("button", { name: "Try again" }).click();
  await b.page.waitForFunction((n) => window.tipwirePushStates.filter((s) => s === "failed").length > n, failures);
  result.b_retried = await control(b.page, "failed");
  result.b_states = await b.page.evaluate(() => window.tipwirePushStates);
  result.b_requests = b.pushCalls;
  result.b_log = await b.page.evaluate(() => [...document.querySelectorAll("#diagnostics li")].map((li) => li.textContent));
}

async function pushOff(browser, [inviteGateway, inviteIphone, inviteOld]) {
  step = "three phones on a gateway with push off";
  const noPush = () => {
    delete window.PushManager;
  };
  const phones = {
    gateway: [await phone(browser, "gateway", { grant: true }), inviteGateway, "disabled"],
    iphone: [await phone(browser, "iphone", { grant: true, userAgent: IPHONE_UA }), inviteIphone, "install"],
    old: [await phone(browser, "old", { grant: true, init: [[noPush, null]] }), inviteOld, "unavailable"],
  };
  await Promise.all(
    Object.entries(phones).map(async ([label, [p, link, state]]) => {
      await enrol(p.page, link, `Phone ${label}`);
      result[label] = await control(p.page, state);
      result[`${label}_requests`] = p.pushCalls;
      await shot(p.page, `off-${label}`);
    }),
  );
}

let browser;
try {
  browser = await chromium.launch({ executablePath, headless: true, args, timeout: 30_000 });
  await (mode === "push-on" ? pushOn : pushOff)(browser, rest);
  result.ok = true;
} catch (e) {
  result.step = step;
  result.error = String(e && e.message ? e.message : e).split("\n").slice(0, 6).join("\n");
  result.console = consoleLines.slice(-30);
} finally {
  result.csp_violations = cspViolations;
  result.page_errors = pageErrors;
  if (browser) await browser.close().catch(() => {});
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
