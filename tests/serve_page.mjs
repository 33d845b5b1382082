// serve_page.mjs: drives the chat page (server/page.html, GET /) of a running `frugal serve` (or of
// tests/mock_openai.py) in headless Chromium through puppeteer-core (tests/fetch_npm.sh installs it
// into .cache/npm; the browser is Debian's /usr/bin/chromium, or $CHROMIUM).
//   node tests/serve_page.mjs http://127.0.0.1:18080 build/serve_page.png
// Two turns: one sent with the Send button, one with Enter. Each must stream (the page's text grows
// in at least 2 separate DOM updates while body[data-state] is "streaming", counted by a
// MutationObserver this script adds as window.__updates), end with body[data-state] "idle", and
// leave an assistant message with text and a stats line; the second request must carry the first
// turn (user, assistant, user). Saves a screenshot, prints one line, exits 1 with a reason on any
// failure or after 60 s. The page's settings: seed 7, max tokens SERVE_MAX_TOKENS (default 32), API key
// SERVE_API_KEY (for a server started with one).
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error("usage: node tests/serve_page.mjs SERVER_URL SCREENSHOT.png");
  process.exit(2);
}
let browser = null;
async function fail(msg) {
  console.error("serve_page: FAIL: " + msg);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
setTimeout(() => fail("timed out after 60 s"), 60000).unref();

let puppeteer;
try {
  puppeteer = createRequire(root + ".cache/npm/package.json")("puppeteer-core");
} catch (e) {
  await fail("puppeteer-core is not installed (sh tests/fetch_npm.sh): " + e.message);
}
try {
  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
} catch (e) {
  await fail("cannot start Chromium (" + (process.env.CHROMIUM || "/usr/bin/chromium") + "): " + e.message);
}
const page = await browser.newPage();
await page.setViewport({ width: 900, height: 700 });
const pageErrors = [], bodies = [];
page.on("pageerror", (e) => pageErrors.push(e.message));
// The page's settings, as a user would have left them: few tokens, so a slow CPU model fits the
// time limit; the API key when the server wants one; a seed, so that what the server streams
// is the same every run (unseeded, a random-weights model's first token is a stop token about once
// in a hundred turns, and the page rightly shows an empty answer; greedy, it soon repeats a token
// whose bytes are held back as incomplete UTF-8, so few text updates).
await page.evaluateOnNewDocument((k, n) => {
  localStorage.setItem("frugal.maxTokens", n);
  localStorage.setItem("frugal.seed", "7");
  if (k) localStorage.setItem("frugal.apiKey", k);
}, process.env.SERVE_API_KEY || "", process.env.SERVE_MAX_TOKENS || "32");
page.on("request", (r) => {
  if (r.method() === "POST" && r.url().endsWith("/v1/chat/completions")) bodies.push(r.postData());
});

const res = await page.goto(url, { waitUntil: "load", timeout: 20000 }).catch((e) => fail("cannot open " + url + ": " + e.message));
if (!res || !res.ok()) await fail("GET " + url + " answered " + (res ? res.status() : "nothing"));
for (const sel of ["#input", "#send", "#messages"])
  if (!(await page.$(sel))) await fail("the page has no " + sel);
if ((await page.evaluate(() => document.body.dataset.state)) !== "idle") await fail('body[data-state] is not "idle" after load');

// Counts DOM updates of assistant text (answer or reasoning) made while the page says it streams.
await page.evaluate(() => {
  window.__updates = 0;
  new MutationObserver((records) => {
    if (document.body.dataset.state !== "streaming") return;
    const inText = (n) => n && (n.nodeType === 1 ? n : n.parentElement)?.closest(".msg.assistant .content, .msg.assistant .think");
    if (records.some((r) => inText(r.target))) window.__updates++;
  }).observe(document.getElementById("messages"), { subtree: true, childList: true, characterData: true });
});

async function turn(n, text, how) {
  const before = await page.evaluate(() => window.__updates);
  await page.type("#input", text);
  if (how === "click") await page.click("#send");
  else await page.keyboard.press("Enter");
  await page.waitForFunction(
    (n) => document.body.dataset.state === "idle" && document.querySelectorAll(".msg.assistant .stats").length >= n,
    { timeout: 45000, polling: 50 }, n,
  ).catch(async () => {
    const err = await page.evaluate(() => document.querySelector(".msg.error")?.textContent);
    await fail(`turn ${n}: no finished assistant message with a stats line` + (err ? ` (the page shows: ${err})` : ""));
  });
  const got = await page.evaluate((n) => {
    const m = document.querySelectorAll(".msg.assistant")[n - 1];
    return {
      answer: m.querySelector(".content")?.textContent || "",
      thought: m.querySelector(".think .text")?.textContent || "",
      stats: m.querySelector(".stats")?.textContent || "",
      error: document.querySelector(".msg.error")?.textContent || "",
      updates: window.__updates,
    };
  }, n);
  if (got.error) await fail(`turn ${n}: the page shows an error: ${got.error}`);
  if (!got.answer.trim() && !got.thought.trim()) await fail(`turn ${n}: the assistant message is empty`);
  if (!/\d+ tokens/.test(got.stats)) await fail(`turn ${n}: the stats line "${got.stats}" has no token count`);
  if (got.updates - before < 2) await fail(`turn ${n}: ${got.updates - before} text update(s) while streaming, want >= 2`);
  got.updates -= before;
  return got;
}

const t1 = await turn(1, "Hello! What is 2+2?", "click");
const t2 = await turn(2, "And 3+3?", "enter");
if (pageErrors.length) await fail("script error on the page: " + pageErrors[0]);
if (bodies.length !== 2) await fail(`${bodies.length} chat requests, want 2`);
const [b1, b2] = bodies.map((b) => JSON.parse(b));
if (b1.stream !== true || !b1.stream_options?.include_usage) await fail("the request lacks stream: true and stream_options.include_usage");
if (String(b1.max_tokens) !== (process.env.SERVE_MAX_TOKENS || "32")) await fail(`the request's max_tokens is ${b1.max_tokens}, not the setting`);
if (b1.seed !== 7) await fail(`the request's seed is ${b1.seed}, not the setting 7`);
const roles = b2.messages.filter((m) => m.role !== "system").map((m) => m.role).join(",");
if (roles !== "user,assistant,user") await fail(`the second request's messages are ${roles}, want user,assistant,user`);
await page.screenshot({ path: shot });
await browser.close();
const short = (s) => JSON.stringify(s.length > 40 ? s.slice(0, 40) + "…" : s);
console.log(`serve_page: ok: 2 turns streamed (${t1.updates} and ${t2.updates} text updates), ` +
  `answer ${short(t1.answer)}, stats "${t1.stats}" / "${t2.stats}", screenshot ${shot}`);
