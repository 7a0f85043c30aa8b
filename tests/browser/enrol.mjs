#!/usr/bin/env node
// Enrols the mediator app as a phone would, in Debian's Chromium driven by
// playwright-core, and prints one JSON line with what it saw. Run by
// tests/api/browser.rs; by hand:
//
//   node tests/browser/enrol.mjs BASE_URL INVITE_LINK
//
// Arguments (or environment):
//   BASE_URL     TIPWIRE_BASE_URL     the gateway, e.g. https://localhost:8443
//   INVITE_LINK  TIPWIRE_INVITE_LINK  <BASE_URL>/m/#invite=CODE
//   TIPWIRE_TRUST_PEMS   colon-separated PEM files (the test CA, the server's
//                        certificate): Chromium ignores certificate errors for
//                        these keys only (--ignore-certificate-errors-spki-list)
//   TIPWIRE_TEST_CHROMIUM  the browser (default /usr/bin/chromium)
//   TIPWIRE_DEVICE_NAME    what to call the phone (default "Test phone")
//   TIPWIRE_SCREENSHOT_DIR if set, screenshots of each screen go there
//   TIPWIRE_NO_WEBCRYPTO_X25519=1  the page's WebCrypto refuses to make
//                        X25519 keys, as in browsers without it, so the app
//                        falls back to an age identity string
//
// Steps: open the invite link, give a device name, set up, wait for the home
// screen with the zones; turn duty off; reload (the session cookie signs in);
// clear cookies and reload (the stored key signs a new challenge); turn duty
// back on. Exits 0 with {"ok": true, ...} or 1 with {"ok": false, step, error}.

import { join } from "node:path";
import { chromium } from "playwright-core";
import { chromiumArgs } from "./common.mjs";

const base = process.argv[2] ?? process.env.TIPWIRE_BASE_URL;
const inviteLink = process.argv[3] ?? process.env.TIPWIRE_INVITE_LINK;
const executablePath = process.env.TIPWIRE_TEST_CHROMIUM || "/usr/bin/chromium";
const deviceName = process.env.TIPWIRE_DEVICE_NAME || "Test phone";
const shots = process.env.TIPWIRE_SCREENSHOT_DIR;
const STEP_TIMEOUT_MS = 20_000;

if (!base || !inviteLink) {
  console.error("usage: node tests/browser/enrol.mjs BASE_URL INVITE_LINK");
  process.exit(2);
}

const args = chromiumArgs();

const consoleLines = [];
const cspViolations = [];
const pageErrors = [];
let step = "launch";
const result = { ok: false };

async function shot(page, name) {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

async function home(page) {
  await page.locator("#screen-home:not([hidden]) #home-zones li").first().waitFor({ timeout: STEP_TIMEOUT_MS });
  return page.evaluate(() => ({
    name: document.getElementById("home-name").textContent,
    role: document.getElementById("home-role").textContent,
    zones: [...document.querySelectorAll("#home-zones li")].map((li) => li.dataset.zone),
    login: document.getElementById("home").dataset.loginMethod,
    device_id: document.getElementById("home").dataset.deviceId,
    age_key: document.getElementById("home").dataset.ageKey,
    on_duty: document.getElementById("home-duty").checked,
    alerts_status: document.getElementById("alerts-status").textContent,
    alert_items: document.querySelectorAll("#alert-list li").length,
    details: document.getElementById("home-details").textContent,
    url: location.href,
  }));
}

async function setDuty(page, on) {
  const duty = page.locator("#home-duty");
  if ((await duty.isChecked()) === on) return;
  const saved = page.waitForResponse((r) => r.url().endsWith("/api/v1/devices/me/duty"), { timeout: STEP_TIMEOUT_MS });
  await page.locator("label.switch").click();
  const response = await saved;
  if (response.status() !== 200) throw new Error(`duty change answered ${response.status()}`);
  await page.waitForFunction((want) => document.getElementById("home-duty").checked === want && !document.getElementById("home-duty").disabled, on);
}

/** What IndexedDB holds, as the app stored it (CryptoKey properties only). */
function storedKeys(page) {
  return page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open("tipwire-mediator");
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const get = open.result.transaction("keys").objectStore("keys").get("device");
          get.onerror = () => reject(get.error);
          get.onsuccess = () => {
            const r = get.result;
            const key = (k) =>
              k instanceof CryptoKey
                ? { crypto_key: true, algorithm: k.algorithm.name, extractable: k.extractable, type: k.type }
                : { crypto_key: false, string_prefix: String(k).slice(0, 15) };
            resolve({ device_id: r.deviceId, recipient: r.recipient, signing: key(r.signingKey), age: key(r.ageIdentity) });
          };
        };
      }),
  );
}

/**
 * Delivers a push message to the app's service worker (as the push service
 * would, through DevTools) and returns the notifications it then shows.
 */
async function pushAndRead(context, page, payload) {
  const origin = new URL(base).origin;
  await context.grantPermissions(["notifications"], { origin });
  const cdp = await context.newCDPSession(page);
  const registrations = new Map();
  cdp.on("ServiceWorker.workerRegistrationUpdated", (e) => {
    for (const r of e.registrations) registrations.set(r.registrationId, r);
  });
  await cdp.send("ServiceWorker.enable");
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let registrationId;
  while (!registrationId && Date.now() < deadline) {
    registrationId = [...registrations.values()].find((r) => r.scopeURL === `${origin}/m/` && !r.isDeleted)?.registrationId;
    if (!registrationId) await new Promise((r) => setTimeout(r, 100));
  }
  if (!registrationId) throw new Error("no service worker registration for /m/");
  await cdp.send("ServiceWorker.deliverPushMessage", { origin, registrationId, data: JSON.stringify(payload) });
  // Polled until the step's deadline, not a fixed count: on a loaded machine
  // the worker may take seconds to wake for the push.
  return page.evaluate(async (waitMs) => {
    const registration = await navigator.serviceWorker.ready;
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline) {
      const shown = await registration.getNotifications();
      if (shown.length) return shown.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }));
      await new Promise((r) => setTimeout(r, 100));
    }
    return [];
  }, STEP_TIMEOUT_MS);
}

let browser;
try {
  browser = await chromium.launch({ executablePath, headless: true, args, timeout: 30_000 });
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 390, height: 844 },
    colorScheme: "dark",
  });
  if (process.env.TIPWIRE_NO_WEBCRYPTO_X25519 === "1") {
    await context.addInitScript(() => {
      const generateKey = SubtleCrypto.prototype.generateKey;
      SubtleCrypto.prototype.generateKey = function (algorithm, ...rest) {
        const name = typeof algorithm === "string" ? algorithm : algorithm && algorithm.name;
        if (String(name).toUpperCase() === "X25519") {
          return Promise.reject(new DOMException("Algorithm: Unrecognized name", "NotSupportedError"));
        }
        return generateKey.call(this, algorithm, ...rest);
      };
    });
  }
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("console", (m) => {
    consoleLines.push(`${m.type()}: ${m.text()}`);
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  page.on("pageerror", (e) => pageErrors.push(String(e)));

  step = "open the invite link";
  const response = await page.goto(inviteLink, { waitUntil: "domcontentloaded" });
  result.page_csp = response ? await response.headerValue("content-security-policy") : null;
  await page.locator("#screen-enrol:not([hidden])").waitFor();
  result.invite_prefilled = await page.locator("#enrol-code-field").isHidden();
  await shot(page, "1-enrol");

  step = "enrol";
  await page.getByLabel("Name for this phone").fill(deviceName);
  await page.getByRole("button", { name: "Set up this phone" }).click();
  const enrolled = await home(page);
  Object.assign(result, {
    device_id: enrolled.device_id,
    name: enrolled.name,
    role: enrolled.role,
    zones: enrolled.zones,
    age_key: enrolled.age_key,
    login_after_enrol: enrolled.login,
    invite_left_in_url: enrolled.url.includes("invite="),
    alerts_status: enrolled.alerts_status,
    alert_items: enrolled.alert_items,
    details: enrolled.details,
  });
  await shot(page, "2-home");

  step = "turn duty off";
  await setDuty(page, false);

  step = "reload with the session cookie";
  await page.reload({ waitUntil: "domcontentloaded" });
  const reloaded = await home(page);
  result.login_after_reload = reloaded.login;
  result.duty_off_after_reload = reloaded.on_duty === false;
  result.same_device_after_reload = reloaded.device_id === enrolled.device_id;

  step = "reload without cookies (sign a new challenge)";
  await context.clearCookies();
  await page.reload({ waitUntil: "domcontentloaded" });
  const signed = await home(page);
  result.login_without_cookie = signed.login;
  result.same_device_without_cookie = signed.device_id === enrolled.device_id;

  step = "turn duty on";
  await setDuty(page, true);

  step = "inspect the stored keys";
  result.stored = await storedKeys(page);

  step = "service worker";
  result.service_worker = await page.evaluate(async () => {
    if (!("serviceWorker" in navigator)) return "unsupported";
    const ready = await Promise.race([
      navigator.serviceWorker.ready.then((r) => r.scope),
      new Promise((resolve) => setTimeout(() => resolve(null), 10_000)),
    ]);
    return ready ?? "not ready after 10 s";
  });
  await shot(page, "3-home-again");

  step = "push";
  result.notifications = await pushAndRead(context, page, {
    alert: "a_browser_test",
    zone: "north",
    urgency: "now",
  });

  result.ok = true;
} catch (e) {
  result.step = step;
  result.error = String(e && e.message ? e.message : e).split("\n").slice(0, 6).join("\n");
  result.console = consoleLines.slice(-20);
} finally {
  result.csp_violations = cspViolations;
  result.page_errors = pageErrors;
  if (browser) await browser.close().catch(() => {});
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
