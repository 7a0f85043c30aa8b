#!/usr/bin/env node
// Two phones (two browser contexts of Debian's Chromium, driven by
// playwright-core) enrol in the same zone, A as a mediator and B as a
// supervisor, then follow the alert list while the test on the other end
// (tests/api/browser.rs) posts tips, runs the reply relay and revokes a
// device. Run by that test; by hand:
//
//   node tests/browser/alerts.mjs BASE_URL INVITE_LINK_A INVITE_LINK_B
//
// Environment as in enrol.mjs: TIPWIRE_TRUST_PEMS, TIPWIRE_TEST_CHROMIUM,
// TIPWIRE_SCREENSHOT_DIR.
//
// The two sides talk in JSON lines. This script prints {"event": ...} lines
// on stdout and reads {"cmd": ...} lines on stdin:
//
//   → {"event":"ready","a":DEVICE_A,"b":DEVICE_B}   both phones live, lists empty
//   ← {"cmd":"tip","text":T}    sent just before the test posts an SMS tip
//       A and B each see a new row (timed from this line); A opens it and
//       reads the text; A claims, B sees "Claimed by someone else"; A
//       releases, B sees "Open"; B claims, then reassigns it to A from its
//       picker: A sees "Claimed by you", B "Claimed by someone else"; A
//       replies R and sees it in the thread; A resolves (outcome
//       "mediated"), B sees "Resolved"
//   → {"event":"replied","tip_id":ID,"reply":R}
//       B goes offline: context.setOffline (in Chromium it fails new
//       requests but leaves a response already streaming alone) and its
//       connections through this script's proxy are cut, as a phone that
//       loses its network finds them
//   → {"event":"offline"}
//   ← {"cmd":"missed","tip_id":M}   the test posted tip M meanwhile
//       A lists M and claims it; B, still offline, does not list it; B
//       comes back online, where its first stream is refused with a 503
//       (as by a gateway mid-restart), so the browser gives that stream up
//       and the app opens one itself; without a reload, B lists M once,
//       claimed by someone else (each stream resumed from B's cursor)
//   → {"event":"resumed"}
//   ← {"cmd":"revoked"}         device B has been revoked
//       B taps its alert: the call is refused and B shows "no longer set up"
//   → {"event":"refused"}
//   ← {"cmd":"tip2"}            sent just before the test posts another tip
//       A sees a third row, on top (an MMS with a photo); #alert=ID
//       (where a notification tap lands) opens it and shows the photo; a
//       fresh load of /m/#alert=FIRST opens the first
//
// The last line is {"ok": true, ...what was seen} or {"ok": false, step, error}.

import { createServer } from "node:http";
import { connect } from "node:net";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { chromiumArgs, command, emit } from "./common.mjs";

const base = process.argv[2] ?? process.env.TIPWIRE_BASE_URL;
const inviteA = process.argv[3];
const inviteB = process.argv[4];
const executablePath = process.env.TIPWIRE_TEST_CHROMIUM || "/usr/bin/chromium";
const shots = process.env.TIPWIRE_SCREENSHOT_DIR;
const STEP_TIMEOUT_MS = 20_000;
const LIVE_MS = 2_000; // a new tip must be listed within this
const REPLY = "We have someone on the way. Reply here if anything changes.";

if (!base || !inviteA || !inviteB) {
  console.error("usage: node tests/browser/alerts.mjs BASE_URL INVITE_LINK_A INVITE_LINK_B");
  process.exit(2);
}

const args = chromiumArgs();

const consoleLines = [];
const cspViolations = [];
const pageErrors = [];
let step = "launch";
const result = { ok: false };

async function shot(page, name) {
  if (shots) await page.screenshot({ path: join(shots, `alerts-${name}.png`), fullPage: true });
}

/**
 * A CONNECT proxy that phone B goes through, so its open connections can be
 * cut (`down`), and new ones refused until it is `up` again.
 */
async function tunnel() {
  const sockets = new Set();
  let down = false;
  const track = (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
  };
  const server = createServer((_, res) => res.writeHead(405).end());
  server.on("connect", (req, client, head) => {
    track(client);
    const [host, port] = req.url.split(":");
    if (down || host !== "localhost") {
      client.destroy();
      return;
    }
    const upstream = connect(Number(port), "127.0.0.1", () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    track(upstream);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    server: `http://127.0.0.1:${server.address().port}`,
    down() {
      down = true;
      for (const s of sockets) s.destroy();
    },
    up() {
      down = false;
    },
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** The alert stream requests of each phone: when, and the cursor they carried. */
const streams = { A: [], B: [] };

async function phone(browser, label, proxy) {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 390, height: 844 },
    colorScheme: "dark",
    proxy: proxy ? { server: proxy.server } : undefined,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.pathname !== "/api/v1/alerts/stream") return;
    const seen = { at: Date.now(), header: null, query: url.searchParams.get("last_event_id"), status: null };
    streams[label].push(seen);
    request
      .allHeaders()
      .then((h) => {
        seen.header = h["last-event-id"] ?? null;
      })
      .catch(() => {});
    request
      .response()
      .then((r) => {
        seen.status = r ? r.status() : "failed";
      })
      .catch(() => {
        seen.status = "failed";
      });
  });
  page.on("console", (m) => {
    consoleLines.push(`${label} ${m.type()}: ${m.text()}`);
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(`${label}: ${m.text()}`);
  });
  page.on("pageerror", (e) => pageErrors.push(`${label}: ${e}`));
  return page;
}

async function enrol(page, link, name) {
  await page.goto(link, { waitUntil: "domcontentloaded" });
  await page.locator("#screen-enrol:not([hidden])").waitFor();
  await page.getByLabel("Name for this phone").fill(name);
  await page.getByRole("button", { name: "Set up this phone" }).click();
  await page.locator("#screen-home:not([hidden]) #home-zones li").first().waitFor();
  await page.locator('#alerts[data-stream="live"]').waitFor();
  return page.evaluate(() => document.getElementById("home").dataset.deviceId);
}

/** The rows of the list, top to bottom, as a mediator sees them. */
function rows(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll("#alert-list > li")].map((li) => ({
      tip_id: li.dataset.tipId,
      state: li.dataset.state,
      urgency: li.querySelector(".urgency")?.textContent,
      zone: li.querySelector(".alert-zone")?.textContent,
      channel: li.querySelector(".alert-channel")?.textContent,
      age: li.querySelector(".alert-age")?.textContent,
      state_text: li.querySelector(".alert-state")?.textContent,
      label: li.textContent,
    })),
  );
}

/** Waits until the list has `n` rows; returns the milliseconds since `since`. */
async function rowsAppear(page, n, since) {
  await page.waitForFunction((want) => document.querySelectorAll("#alert-list > li").length >= want, n, {
    timeout: STEP_TIMEOUT_MS,
  });
  return Date.now() - since;
}

/** Waits for the row's state line to read `text`; returns the milliseconds since `since`. */
async function stateBecomes(page, tipId, text, since) {
  await page.waitForFunction(
    ([id, want]) => {
      const li = [...document.querySelectorAll("#alert-list > li")].find((l) => l.dataset.tipId === id);
      return li && li.querySelector(".alert-state")?.textContent === want;
    },
    [tipId, text],
    { timeout: STEP_TIMEOUT_MS },
  );
  return Date.now() - since;
}

async function openState(page) {
  return page.locator("#alert-open-state").textContent();
}

let browser;
let network;
try {
  browser = await chromium.launch({ executablePath, headless: true, args, timeout: 30_000 });
  network = await tunnel();
  const a = await phone(browser, "A");
  const b = await phone(browser, "B", network);

  step = "enrol phone A";
  const deviceA = await enrol(a, inviteA, "Phone A");
  step = "enrol phone B";
  const deviceB = await enrol(b, inviteB, "Phone B");
  result.device_a = deviceA;
  result.device_b = deviceB;
  result.rows_before = { a: (await rows(a)).length, b: (await rows(b)).length };
  result.status_live = await a.locator("#alerts-status").textContent();
  emit({ event: "ready", a: deviceA, b: deviceB });

  step = "a tip appears on both phones";
  const { text } = await command("tip");
  const posted = Date.now();
  result.listed_ms = { a: await rowsAppear(a, result.rows_before.a + 1, posted) };
  result.listed_ms.b = await rowsAppear(b, result.rows_before.b + 1, posted);
  const [rowA] = await rows(a);
  const [rowB] = await rows(b);
  result.row_a = rowA;
  result.row_b = rowB;
  const tipId = rowA.tip_id;
  await shot(a, "1-list");

  step = "A opens the alert";
  const opening = Date.now();
  await a.locator(`#alert-list > li[data-tip-id="${tipId}"] button`).click();
  await a.locator("#alert-text").waitFor();
  result.open_ms = Date.now() - opening;
  result.opened = await a.evaluate(() => {
    const t = document.getElementById("alert-text");
    return {
      text: t.textContent,
      child_elements: t.children.length,
      subject: document.getElementById("alert-subject")?.textContent ?? null,
      attachments: document.querySelectorAll("#alert-body .attachments li").length,
    };
  });
  result.opened_matches = result.opened.text === text;
  result.open_state_before = await openState(a);
  await shot(a, "2-open");

  step = "A claims; B sees it";
  let t = Date.now();
  await a.locator("#alert-claim").click();
  result.claim_seen_by_b_ms = await stateBecomes(b, tipId, "Claimed by someone else", t);
  await stateBecomes(a, tipId, "Claimed by you", t);
  result.open_state_claimed = await openState(a);
  result.b_row_after_claim = (await rows(b))[0];

  step = "A releases; B sees it open";
  t = Date.now();
  await a.locator("#alert-release").click();
  result.release_seen_by_b_ms = await stateBecomes(b, tipId, "Open", t);

  step = "B, a supervisor, opens and claims it";
  await b.locator(`#alert-list > li[data-tip-id="${tipId}"] button`).click();
  await b.locator("#alert-text").waitFor();
  result.b_opened_matches = (await b.locator("#alert-text").textContent()) === text;
  t = Date.now();
  await b.locator("#alert-claim").click();
  await stateBecomes(a, tipId, "Claimed by someone else", t);
  // A mediator's phone has no reassign control.
  result.a_reassign_control = await a.locator("#alert-reassign-open").count();

  step = "B reassigns it to A";
  await b.locator("#alert-reassign-open").click();
  await b.locator("#alert-assignee").waitFor();
  result.reassign_options = await b.locator("#alert-assignee option").evaluateAll((options) =>
    options.map((o) => ({ value: o.value, text: o.textContent })),
  );
  await b.locator("#alert-reassign").click();
  result.reassign_unchosen = await b.locator("#alert-action-status").textContent();
  await shot(b, "2a-picker");
  await b.locator("#alert-assignee").selectOption(deviceA);
  t = Date.now();
  await b.locator("#alert-reassign").click();
  result.reassign_seen_by_a_ms = await stateBecomes(a, tipId, "Claimed by you", t);
  await stateBecomes(b, tipId, "Claimed by someone else", t);
  await a.locator("#alert-release").waitFor();
  result.a_open_state_reassigned = await openState(a);
  result.b_open_state_reassigned = await openState(b);
  result.reassign_status = await b.locator("#alert-action-status").textContent();
  result.b_claim_button = await b.locator("#alert-claim").count();
  await shot(b, "2b-reassigned");
  await b.locator("#alert-back").click();

  step = "A replies";
  await a.locator("#reply-text").fill(REPLY);
  await a.locator("#reply-send").click();
  await a.waitForFunction(() => document.getElementById("reply-status")?.textContent === "Sent to the tipster.");
  await a.waitForFunction(
    (reply) => [...document.querySelectorAll("#thread-items .msg-text")].some((p) => p.textContent === reply),
    REPLY,
  );
  result.thread = await a.evaluate(() =>
    [...document.querySelectorAll("#thread-items > li")].map((li) => ({ from: li.dataset.from, text: li.querySelector(".msg-text").textContent })),
  );
  await shot(a, "3-replied");

  step = "A resolves";
  t = Date.now();
  await a.locator("#alert-outcome").selectOption("mediated");
  await a.locator("#alert-resolve").click();
  result.resolve_seen_by_b_ms = await stateBecomes(b, tipId, "Resolved", t);
  result.open_state_resolved = await openState(a);
  emit({ event: "replied", tip_id: tipId, reply: REPLY });

  step = "B loses its connection";
  // Survives anything but a reload, which the app must not need.
  const pageMark = await b.evaluate(() => (window.tipwireTestMark = Math.random()));
  const offlineAt = Date.now();
  await b.context().setOffline(true);
  network.down();
  await b.locator('#alerts[data-stream="reconnecting"]').waitFor();
  result.b_status_offline = await b.locator("#alerts-status").textContent();
  emit({ event: "offline" });

  step = "a tip arrives and A claims it while B is offline";
  const { tip_id: missedId } = await command("missed");
  t = Date.now();
  await a.locator("#alert-back").click();
  await rowsAppear(a, result.rows_before.a + 2, t);
  await a.locator(`#alert-list > li[data-tip-id="${missedId}"] button`).click();
  await a.locator("#alert-claim").click();
  await stateBecomes(a, missedId, "Claimed by you", t);
  await a.locator("#alert-back").click();
  result.b_rows_offline = (await rows(b)).map((r) => r.tip_id);

  step = "B comes back and catches up without a reload";
  // Refused once, as by a gateway mid-restart: the browser closes that
  // stream for good, and the app has to open the next one itself.
  await b.route(
    "**/api/v1/alerts/stream*",
    (route) =>
      route.fulfill({
        status: 503,
        contentType: "application/json",
        body: JSON.stringify({ error: { code: "store-unavailable", message: "Try again shortly." } }),
      }),
    { times: 1 },
  );
  t = Date.now();
  network.up();
  await b.context().setOffline(false);
  await stateBecomes(b, missedId, "Claimed by someone else", t);
  await b.locator('#alerts[data-stream="live"]').waitFor();
  result.resume_ms = Date.now() - t;
  // Time for a duplicate, if one were coming, to show.
  await b.waitForTimeout(1_000);
  result.b_rows_resumed = (await rows(b)).map((r) => ({ tip_id: r.tip_id, state_text: r.state_text }));
  result.b_same_page = (await b.evaluate(() => window.tipwireTestMark)) === pageMark;
  result.b_status_resumed = await b.locator("#alerts-status").textContent();
  result.b_streams_after_offline = streams.B.filter((r) => r.at >= offlineAt).map(({ header, query, status }) => ({ header, query, status }));
  await shot(b, "4a-resumed");
  emit({ event: "resumed" });

  step = "B is revoked";
  await command("revoked");
  t = Date.now();
  // The gateway may already have ended B's stream, and the app noticed.
  result.b_refused_by = (await b.locator("#screen-revoked").isHidden()) ? "call" : "stream";
  if (result.b_refused_by === "call") {
    await b.locator(`#alert-list > li[data-tip-id="${tipId}"] button`).click({ timeout: 2_000 }).catch(() => {
      result.b_refused_by = "stream"; // the screen changed under the tap
    });
  }
  await b.locator("#screen-revoked:not([hidden])").waitFor();
  result.revoked_screen_ms = Date.now() - t;
  result.b_alert_text_after_revoke = await b.locator("#alert-text").count();
  await shot(b, "4b-revoked");
  emit({ event: "refused" });

  step = "the next tip reaches A";
  await command("tip2");
  t = Date.now();
  result.second_listed_ms = await rowsAppear(a, result.rows_before.a + 3, t);
  result.rows_a_end = await rows(a);
  result.newest_first =
    result.rows_a_end[0].tip_id !== tipId && result.rows_a_end[1].tip_id === missedId && result.rows_a_end[2].tip_id === tipId;
  await shot(a, "5-two");

  step = "a notification tap opens the alert (#alert=ID)";
  const secondId = result.rows_a_end[0].tip_id;
  await a.evaluate((id) => {
    location.hash = `alert=${id}`;
  }, secondId);
  await a.locator(`#alert-open[data-tip-id="${secondId}"] #alert-text`).waitFor();
  result.focused_text = await a.locator("#alert-text").textContent();
  await a.waitForFunction(() => [...document.querySelectorAll("#alert-body img")].every((i) => i.complete));
  result.focused_images = await a.evaluate(() =>
    [...document.querySelectorAll("#alert-body img")].map((i) => ({
      blob: i.src.startsWith("blob:"),
      width: i.naturalWidth,
      height: i.naturalHeight,
    })),
  );
  await shot(a, "6-photo");

  step = "a cold start at #alert=ID opens the alert once the stream lists it";
  await a.goto(`${new URL(base).origin}/m/#alert=${tipId}`, { waitUntil: "domcontentloaded" });
  await a.locator(`#alert-open[data-tip-id="${tipId}"] #alert-text`).waitFor();
  result.cold_focus_matches = (await a.locator("#alert-text").textContent()) === text;
  result.cold_focus_state = await openState(a);

  result.ok = true;
} catch (e) {
  result.step = step;
  result.error = String(e && e.message ? e.message : e).split("\n").slice(0, 6).join("\n");
  result.console = consoleLines.slice(-30);
} finally {
  result.csp_violations = cspViolations;
  result.page_errors = pageErrors;
  if (browser) await browser.close().catch(() => {});
  network?.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
