// What every browser script here shares: Chromium's flags (headless, no
// background traffic, and trust in the test gateway's certificate by its key
// pin), and the JSON-lines conversation with the Rust test that runs it.

import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";

/** base64(sha256(SPKI)) of every certificate in the PEM files. */
function spkiHashes(files) {
  const hashes = [];
  for (const file of files) {
    const pem = readFileSync(file, "utf8");
    for (const block of pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []) {
      const spki = new X509Certificate(block).publicKey.export({ type: "spki", format: "der" });
      hashes.push(createHash("sha256").update(spki).digest("base64"));
    }
  }
  return hashes;
}

/** Chromium's flags; the certificates in TIPWIRE_TRUST_PEMS (":"-separated files) are trusted. */
export function chromiumArgs() {
  const trust = spkiHashes((process.env.TIPWIRE_TRUST_PEMS ?? "").split(":").filter(Boolean));
  const args = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ];
  if (trust.length) args.push(`--ignore-certificate-errors-spki-list=${trust.join(",")}`);
  return args;
}

/** Writes one JSON line to the test. */
export const emit = (obj) => console.log(JSON.stringify(obj));

let commands = null;

/** Waits for the test's next JSON line, which must be the command `name`. */
export async function command(name) {
  // Opened at the first command: a script that never reads stdin keeps none open.
  commands ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const { value, done } = await commands.next();
  if (done) throw new Error(`stdin closed while waiting for "${name}"`);
  const msg = JSON.parse(value);
  if (msg.cmd !== name) throw new Error(`expected command "${name}", got ${value}`);
  return msg;
}
