// The mediator app's service worker (scope /m/): keeps the app shell for
// opening without a network, and shows push notifications. A push payload
// carries only {kind, alert, zone, urgency} (src/push/notice.rs): never tip
// text, which stays sealed until the app opens it on this phone.
//
// __SHELL__ and __VERSION__ are filled in by build.mjs: the hashed files of
// this build, and a hash of them all (a new build gets a new cache).

/* global __SHELL__, __VERSION__ */
const CACHE = `tipwire-shell-${__VERSION__}`;
const SHELL = __SHELL__;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("tipwire-shell-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  // The API is never cached, nor is anything outside the app.
  if (request.method !== "GET" || url.origin !== self.location.origin || !url.pathname.startsWith("/m/")) return;
  if (request.mode === "navigate") {
    // The newest page when online; the cached one when not.
    event.respondWith(fetch(request).catch(() => caches.match("/m/")));
    return;
  }
  if (SHELL.includes(url.pathname)) {
    event.respondWith(caches.match(request).then((hit) => hit || fetch(request)));
  }
});

// The gateway sends RFC 8030 urgencies (high, normal, low: from the tip's
// now, today, fyi); both spellings read the same.
const URGENCY = {
  high: "Urgent",
  normal: "Today",
  low: "For information",
  now: "Urgent",
  today: "Today",
  fyi: "For information",
};

function text(value, max) {
  return typeof value === "string" ? value.slice(0, max) : "";
}

self.addEventListener("push", (event) => {
  let payload = {};
  try {
    payload = event.data ? event.data.json() : {};
  } catch {
    payload = {};
  }
  if (!payload || typeof payload !== "object") payload = {};
  const alert = text(payload.alert, 64);
  const zone = text(payload.zone, 64);
  const urgency = text(payload.urgency, 16);
  const word = Object.hasOwn(URGENCY, urgency) ? URGENCY[urgency] : "";
  const urgent = word === "Urgent";
  const title =
    payload.kind === "escalation" ? "Conflict alert still unclaimed" : urgent ? "Urgent conflict alert" : "New conflict alert";
  const parts = [zone ? `Zone: ${zone}` : "", word].filter(Boolean);
  event.waitUntil(
    self.registration.showNotification(title, {
      body: `${parts.join(" · ")}\nOpen the app to read it.`,
      tag: alert || undefined,
      renotify: !!alert,
      requireInteraction: urgent,
      icon: SHELL.find((p) => p.includes("icon-192")),
      data: { alert },
    }),
  );
});

// A tap opens the alert: an open app window is told (it moves to
// /m/#alert=<id> itself, without reloading); otherwise a new window opens there.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const alert = event.notification.data && event.notification.data.alert;
  const target = alert ? `/m/#alert=${encodeURIComponent(alert)}` : "/m/";
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window" });
      const open = windows.find((w) => new URL(w.url).pathname.startsWith("/m/"));
      if (open) {
        if (alert) open.postMessage({ type: "open-alert", alert });
        try {
          return await open.focus();
        } catch {
          // Focus can be refused; a new window still shows the alert.
        }
      }
      return self.clients.openWindow(target);
    })(),
  );
});
