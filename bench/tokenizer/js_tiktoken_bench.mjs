// js-tiktoken 1.0.21 (cl100k_base) encode throughput on the same texts as quarry-tokenizer-bench.
// Usage (repo root): node bench/tokenizer/js_tiktoken_bench.mjs [NAME=PATH ...]
// Needs tests/text/tokenizer/oracle/node_modules (npm ci there).
import fs from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(new URL("../../tests/text/tokenizer/oracle/package.json", import.meta.url));
const { Tiktoken } = require("js-tiktoken/lite");
const cl100k = require("js-tiktoken/ranks/cl100k_base");

const specs = process.argv.slice(2).length ? process.argv.slice(2) : [
  "english=docs/granite-4.0-h-tiny-spec.md", "code=worker/model/config.cc",
  "multilingual=tests/data/tokenizer/corpus.json"];
const t0 = performance.now();
const enc = new Tiktoken(cl100k.default ?? cl100k);
const load = (performance.now() - t0) / 1000;
console.log(`load: ${load.toFixed(3)} s`);
const results = { load_seconds: load, texts: [] };
for (const spec of specs) {
  const [name, path] = spec.split("=");
  let text = fs.readFileSync(path, "utf8");
  if (path.endsWith(".json")) text = JSON.parse(text).map((s) => s + "\n").join("");
  const bytes = Buffer.byteLength(text, "utf8");
  let ids = enc.encode(text, [], []);  // warm-up
  let done = 0;
  const s0 = performance.now();
  while (performance.now() - s0 < 1000 || done < 3) {
    ids = enc.encode(text, [], []);
    done++;
  }
  const mbs = (bytes * done) / ((performance.now() - s0) / 1000) / 1e6;
  console.log(`${name.padEnd(14)} ${String(bytes).padStart(10)} ${String(ids.length).padStart(10)} ${mbs.toFixed(1).padStart(10)} MB/s`);
  results.texts.push({ name, path, bytes, tokens: ids.length, encode_mb_per_s: mbs });
}
fs.writeFileSync("js_tiktoken_bench.json", JSON.stringify(results, null, 2) + "\n");
