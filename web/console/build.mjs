// Builds the console into internal/console/dist (or --out DIR): one minified
// JS bundle and one stylesheet with content hashes in their names under
// assets/, and index.html referring to them. Deterministic: the same sources
// and pinned packages give the same bytes (TestConsoleBuildFresh compares).
import { build } from "esbuild";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const i = process.argv.indexOf("--out");
const out = resolve(i > 0 ? process.argv[i + 1] : join(here, "../../internal/console/dist"));

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });
const result = await build({
  absWorkingDir: here,
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  platform: "browser",
  outdir: join(out, "assets"),
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  legalComments: "eof",
  charset: "utf8",
  sourcemap: false,
  metafile: true,
  logLevel: "warning",
  tsconfig: "tsconfig.json",
});
let js = "";
let css = "";
for (const file of Object.keys(result.metafile.outputs)) {
  if (file.endsWith(".js")) js = basename(file);
  if (file.endsWith(".css")) css = basename(file);
}
if (!js || !css) throw new Error(`build: missing outputs ${JSON.stringify(Object.keys(result.metafile.outputs))}`);
const html = readFileSync(join(here, "index.html"), "utf8")
  .replace("%CSS%", `/assets/${css}`)
  .replace("%JS%", `/assets/${js}`);
writeFileSync(join(out, "index.html"), html);
console.log(`console: built ${js}, ${css} -> ${out}`);
