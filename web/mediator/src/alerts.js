// The alert list: the region of the home screen where conflict alerts for
// this device's zones will be listed, newest first, and opened (decrypted on
// this phone) one at a time.
//
// Its data source, the gateway's alert service (live stream, sealed
// envelopes, claim and resolve), is not connected yet. Until it is, this
// module says so and shows nothing else: no sample alerts, no counts.
//
// What the alert service's client gets when it lands here:
// - mountAlerts(root, context) runs once after every sign-in. `root` is the
//   <section id="alerts"> with its status line (#alerts-status) and the list
//   (#alert-list). `context` is:
//     session       what GET /api/v1/session answered (device_id, zones, ...)
//     openEnvelope  async (Uint8Array) => Uint8Array: opens a tip with the
//                   device's identity (keys.js); nothing leaves the phone
//     onSessionLost () => void: call on a 401, and the app signs in again
// - focusAlert(id) runs when the app is opened at /m/#alert=<id>, which is
//   where a tap on a push notification lands (sw.js).
// - unmountAlerts() runs on sign-out: close streams, forget opened tips.

let mounted = null;
let pendingFocus = null;

export function mountAlerts(root, context) {
  mounted = { root, context };
  const status = root.querySelector("#alerts-status");
  status.textContent =
    "Alerts will appear here once the gateway's alert service is connected. " +
    "Until then, tips for your zones are still locked to this phone, but this screen cannot list them yet.";
  root.querySelector("#alert-list").replaceChildren();
  if (pendingFocus) focusAlert(pendingFocus);
}

export function focusAlert(id) {
  if (!mounted) {
    pendingFocus = id;
    return;
  }
  pendingFocus = null;
  const note = mounted.root.querySelector("#alerts-focus");
  note.textContent = `A notification pointed to alert ${id}. It will open here once the alert service is connected.`;
  note.hidden = false;
}

export function unmountAlerts() {
  if (!mounted) return;
  mounted.root.querySelector("#alert-list").replaceChildren();
  mounted.root.querySelector("#alerts-focus").hidden = true;
  mounted = null;
}
