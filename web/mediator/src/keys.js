// The device's keys, made here and kept here: an ECDSA P-256 key that signs
// login challenges (private half always non-extractable) and an age X25519
// identity that opens tips (a non-extractable WebCrypto X25519 key where the
// browser has one, else an age identity string). Both live in IndexedDB as
// they are: CryptoKey objects are stored by the browser without their secret
// ever passing through this code. Only the public halves leave the phone.

import { generateX25519Identity, identityToRecipient, Encrypter, Decrypter } from "age-encryption";
import { toBase64url } from "./b64.js";

const DB_NAME = "tipwire-mediator";
const DB_VERSION = 1;
const STORE = "keys";
const RECORD = "device";

/** How the age identity is held. */
export const AGE_WEBCRYPTO = "webcrypto-x25519";
export const AGE_STRING = "age-identity-string";

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function openDb() {
  const req = indexedDB.open(DB_NAME, DB_VERSION);
  req.onupgradeneeded = () => req.result.createObjectStore(STORE);
  return request(req);
}

async function withStore(mode, fn) {
  const db = await openDb();
  try {
    const tx = db.transaction(STORE, mode);
    const done = new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onabort = tx.onerror = () => reject(tx.error);
    });
    const result = await request(fn(tx.objectStore(STORE)));
    await done;
    return result;
  } finally {
    db.close();
  }
}

/** The stored device, or null. A record without a device id is a half-done enrolment. */
export async function loadDevice() {
  const record = await withStore("readonly", (s) => s.get(RECORD));
  if (!record || !(record.signingKey instanceof CryptoKey) || !record.ageIdentity) return null;
  return record;
}

export function saveDevice(record) {
  return withStore("readwrite", (s) => s.put(record, RECORD));
}

export function forgetDevice() {
  return withStore("readwrite", (s) => s.delete(RECORD));
}

async function makeAgeIdentity() {
  try {
    const pair = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
    return { identity: pair.privateKey, kind: AGE_WEBCRYPTO };
  } catch {
    // No X25519 in this browser's WebCrypto (older Safari, older Firefox):
    // typage's own X25519, with the identity kept as a string in IndexedDB.
    return { identity: await generateX25519Identity(), kind: AGE_STRING };
  }
}

/**
 * Seals a few random bytes to the recipient and opens them with the identity:
 * proves, before enrolling, that tips sealed to this recipient will open here.
 */
async function selfCheck(identity, recipient) {
  const probe = crypto.getRandomValues(new Uint8Array(16));
  const e = new Encrypter();
  e.addRecipient(recipient);
  const d = new Decrypter();
  d.addIdentity(identity);
  const opened = await d.decrypt(await e.encrypt(probe));
  if (opened.length !== probe.length || opened.some((b, i) => b !== probe[i])) {
    throw new Error("the new tip key did not open a test message");
  }
}

/**
 * Makes both key pairs. Returns the record to store (private halves as they
 * are) and the public halves for the gateway.
 */
export async function generateDeviceKeys() {
  // Non-extractable: exportKey on the private key throws. The public half of
  // a generated pair is always exportable.
  const signing = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["sign", "verify"],
  );
  const spki = await crypto.subtle.exportKey("spki", signing.publicKey);
  const age = await makeAgeIdentity();
  const recipient = await identityToRecipient(age.identity);
  await selfCheck(age.identity, recipient);
  return {
    record: {
      version: 1,
      deviceId: null,
      signingKey: signing.privateKey,
      ageIdentity: age.identity,
      ageKind: age.kind,
      recipient,
    },
    publicKeys: { age_recipient: recipient, signing_key: toBase64url(spki) },
  };
}

/** Where each key lives, in words for the details panel. */
export function describeKeys(record) {
  const signing = record.signingKey.extractable
    ? "sign-in key: WebCrypto ECDSA P-256 (exportable!)"
    : "sign-in key: WebCrypto ECDSA P-256, cannot be exported";
  const age =
    record.ageKind === AGE_WEBCRYPTO
      ? "tip key: WebCrypto X25519, cannot be exported"
      : "tip key: age identity stored in this browser's storage (this browser has no WebCrypto X25519)";
  return [signing, age];
}

/**
 * Opens an age envelope (a sealed tip) with this device's identity. The alert
 * list calls this; the plaintext stays on the phone.
 */
export async function openEnvelope(record, envelope) {
  const d = new Decrypter();
  d.addIdentity(record.ageIdentity);
  return d.decrypt(envelope);
}
