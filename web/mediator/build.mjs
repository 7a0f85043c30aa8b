// Builds the mediator app into dist/, which the gateway embeds at compile time
// (build.rs at the repository root). Run through scripts/build-web.sh.
//
// Every file but index.html, sw.js and manifest.webmanifest gets a content
// hash in its name (app.<hash>.js), so the gateway can let browsers keep it
// for a year; those three keep fixed names and are served `no-cache`. The
// service worker is told the hashed names (its app shell) at build time.
//
// TIPWIRE_WEB_DEV=1 keeps the code readable and adds inline source maps
// (development only; the gateway's CSP does not mind source maps).

import { createHash } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const dev = process.env.TIPWIRE_WEB_DEV === "1";

const common = {
  bundle: true,
  write: false,
  minify: !dev,
  sourcemap: dev ? "inline" : false,
  target: "es2022",
  legalComments: "none",
  logLevel: "warning",
};

function hash(bytes) {
  return createHash("sha256").update(bytes).digest("hex").slice(0, 10);
}

function hashedName(name, bytes) {
  const dot = name.lastIndexOf(".");
  return `${name.slice(0, dot)}.${hash(bytes)}${name.slice(dot)}`;
}

async function bundle(entry, extra = {}) {
  const result = await esbuild.build({ ...common, ...extra, entryPoints: [join(here, entry)], outdir: dist });
  if (result.outputFiles.length !== 1) throw new Error(`${entry}: expected one output file`);
  return result.outputFiles[0].contents;
}

const files = new Map(); // name in dist -> bytes
function add(name, bytes, { hashed = true } = {}) {
  const out = hashed ? hashedName(name, bytes) : name;
  files.set(out, bytes);
  return out;
}

const appJs = add("app.js", await bundle("src/main.js", { format: "esm" }));
const appCss = add("app.css", await bundle("src/app.css"));
const icon192 = add("icon-192.png", await readFile(join(here, "icons/icon-192.png")));
const icon512 = add("icon-512.png", await readFile(join(here, "icons/icon-512.png")));

const fill = (template) =>
  template
    .replaceAll("%APP_JS%", appJs)
    .replaceAll("%APP_CSS%", appCss)
    .replaceAll("%ICON_192%", icon192)
    .replaceAll("%ICON_512%", icon512);

const html = fill(await readFile(join(here, "index.html"), "utf8"));
const manifest = fill(await readFile(join(here, "manifest.webmanifest"), "utf8"));
JSON.parse(manifest); // a typo in the manifest fails the build, not the install
for (const text of [html, manifest]) {
  const left = text.match(/%[A-Z0-9_]+%/);
  if (left) throw new Error(`unfilled placeholder ${left[0]}`);
}
if (/<script(?![^>]*\ssrc=)[^>]*>/i.test(html) || /\sstyle=|<style/i.test(html) || /\son[a-z]+=/i.test(html)) {
  throw new Error("index.html has inline script, style or event handler: the CSP forbids them");
}
add("index.html", Buffer.from(html), { hashed: false });
add("manifest.webmanifest", Buffer.from(manifest), { hashed: false });

const shell = ["/m/", "/m/manifest.webmanifest", ...[appJs, appCss, icon192, icon512].map((n) => `/m/${n}`)];
const version = hash(Buffer.from(shell.join("\n") + html + manifest));
add(
  "sw.js",
  await bundle("src/sw.js", {
    format: "iife",
    define: { __SHELL__: JSON.stringify(shell), __VERSION__: JSON.stringify(version) },
  }),
  { hashed: false },
);

// Written beside dist and swapped in, so a cargo build running meanwhile
// sees the old files or the new ones, never half of each.
const next = `${dist}.next`;
await rm(next, { recursive: true, force: true });
await mkdir(next, { recursive: true });
for (const [name, bytes] of files) await writeFile(join(next, name), bytes);
await rm(dist, { recursive: true, force: true });
await rename(next, dist);
console.log(`built ${files.size} files into ${dist}${dev ? " (development: readable, source maps)" : ""}`);
