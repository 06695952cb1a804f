// Independent oracle for Quarry's tokenizer tests: js-tiktoken 1.0.21 with the cl100k_base ranks, plus Granite's
// added tokens matched as whole strings first (leftmost, longest at a position), as assets/tokenizer/SOURCE.md
// describes. Usage: node encode.mjs CORPUS.json TOKENIZER.json OUT.json
import fs from "node:fs";
import { Tiktoken } from "js-tiktoken/lite";
import cl100k from "js-tiktoken/ranks/cl100k_base";

const [corpusPath, tokenizerPath, outPath] = process.argv.slice(2);
if (!corpusPath || !tokenizerPath || !outPath) {
  console.error("usage: node encode.mjs CORPUS.json TOKENIZER.json OUT.json");
  process.exit(2);
}
const enc = new Tiktoken(cl100k);
// Only the added-token table is taken from tokenizer.json; every other id comes from js-tiktoken's ranks.
const added = JSON.parse(fs.readFileSync(tokenizerPath, "utf8")).added_tokens.map((t) => [t.content, t.id]);

// No cl100k special token is allowed or disallowed: "<|endoftext|>" etc. are plain text for Granite.
const encodeOrdinary = (s) => enc.encode(s, [], []);

function encode(text) {
  const out = [];
  let pos = 0;
  while (pos < text.length) {
    let at = -1;
    let best = null;
    for (const [content, id] of added) {
      const i = text.indexOf(content, pos);
      if (i < 0) continue;
      if (at < 0 || i < at || (i === at && content.length > best[0].length)) {
        at = i;
        best = [content, id];
      }
    }
    if (at < 0) {
      out.push(...encodeOrdinary(text.slice(pos)));
      break;
    }
    if (at > pos) out.push(...encodeOrdinary(text.slice(pos, at)));
    out.push(best[1]);
    pos = at + best[0].length;
  }
  return out;
}

const corpus = JSON.parse(fs.readFileSync(corpusPath, "utf8"));
const lines = corpus.map((text) => JSON.stringify(encode(text)));
fs.writeFileSync(outPath, "[\n" + lines.join(",\n") + "\n]\n");
console.log(`encoded ${corpus.length} texts -> ${outPath}`);
