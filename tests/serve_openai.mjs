// serve_openai.mjs: `frugal serve` driven by the official OpenAI client (npm `openai`, fetched into
// .cache/npm by tests/fetch_npm.sh), as any application would use it. Run by tests/cli_serve.sh:
//   node tests/serve_openai.mjs BASE_URL API_KEY EXPECT_JSON
// BASE_URL is http://127.0.0.1:PORT/v1; EXPECT_JSON a file of {"prompt": text, "text": greedy
// continuation from `frugal generate --temperature 0`} lines, which 16 concurrent requests must
// reproduce exactly. Prints one line per check; exits 1 on the first failure.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, '.cache/npm/node_modules/'));
const OpenAI = require('openai');
const [baseURL, apiKey, expectFile] = process.argv.slice(2);

let fails = 0;
function check(ok, what, detail) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${!ok && detail !== undefined ? ': ' + JSON.stringify(detail).slice(0, 400) : ''}`);
  if (!ok) fails++;
}

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60000 });
const user = [{ role: 'user', content: 'What is 2+2?' }];

// chat, not streamed
const r1 = await client.chat.completions.create({ model: 'm', messages: user, max_tokens: 12, temperature: 0 });
check(r1.object === 'chat.completion' && r1.choices.length === 1 && typeof r1.choices[0].message.content === 'string' &&
      ['stop', 'length'].includes(r1.choices[0].finish_reason) && r1.usage.completion_tokens >= 1 &&
      r1.usage.prompt_tokens > 0 && r1.usage.total_tokens === r1.usage.prompt_tokens + r1.usage.completion_tokens,
      'chat completion', r1);

// the same, streamed: the deltas join to the same text (greedy), usage at the end
const stream = await client.chat.completions.create({ model: 'm', messages: user, max_tokens: 12, temperature: 0, stream: true,
                                                      stream_options: { include_usage: true } });
let text = '', reasoning = '', chunks = 0, finish = null, usage = null;
for await (const ch of stream) {
  chunks++;
  if (ch.usage) usage = ch.usage;
  for (const c of ch.choices) {
    text += c.delta.content ?? '';
    reasoning += c.delta.reasoning_content ?? '';
    if (c.finish_reason) finish = c.finish_reason;
  }
}
const whole = (r1.choices[0].message.reasoning_content ?? '') + '|' + r1.choices[0].message.content;
check(reasoning + '|' + text === whole && finish === r1.choices[0].finish_reason && usage &&
      usage.completion_tokens === r1.usage.completion_tokens && usage.prompt_cache_hit_tokens > 0,
      `chat streamed (${chunks} chunks, same text as unstreamed, usage with a cache hit)`, { text, reasoning, whole, finish, usage });

// n = 2 at temperature 1 with a seed: two choices, reproducible
const n2 = { model: 'm', messages: user, max_tokens: 16, temperature: 1, n: 2, seed: 42 };
const a = await client.chat.completions.create(n2), b = await client.chat.completions.create(n2);
check(a.choices.length === 2 && a.choices[0].index === 0 && a.choices[1].index === 1 &&
      a.choices.map(c => c.message.content).join('\u0000') === b.choices.map(c => c.message.content).join('\u0000'),
      'n=2 with a seed: two choices, the same again with the same seed', a.choices);

// stop: the text ends before the stop string
const base = await client.completions.create({ model: 'm', prompt: 'abcdefgh', max_tokens: 24, temperature: 0 });
const full = base.choices[0].text;
// two printable ASCII characters after the start (the tiny model's text is mostly other bytes)
const at = [...full].findIndex((ch, i, a) => i >= 1 && /^[ -~]{2}$/.test(ch + (a[i + 1] ?? '')));
if (at >= 1) {
  const stop = [...full].slice(at, at + 2).join('');
  const cut = await client.completions.create({ model: 'm', prompt: 'abcdefgh', max_tokens: 24, temperature: 0, stop: [stop, 'never-seen'] });
  check(cut.choices[0].text === full.slice(0, full.indexOf(stop)) && cut.choices[0].finish_reason === 'stop',
        `stop ${JSON.stringify(stop)}`, { full, cut: cut.choices[0].text });
} else console.log('note: no printable pair in the completion, stop check skipped: ' + JSON.stringify(full));

// JSON mode: the reply parses as an object
const js = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'JSON please' }], max_tokens: 40,
                                                  temperature: 1, seed: 7, response_format: { type: 'json_object' } });
let parsed = null;
try { parsed = JSON.parse(js.choices[0].message.content); } catch (e) { }
check(parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed), 'JSON mode reply parses as an object',
      js.choices[0].message.content);

// errors, as the SDK's own classes
async function expectError(cls, what, fn) {
  try { await fn(); check(false, what, 'no error'); }
  catch (e) { check(e instanceof cls && e.error && typeof e.error.message === 'string', `${what} -> ${e.status} ${e.constructor.name}`, e.message); }
}
await expectError(OpenAI.AuthenticationError, 'wrong API key',
  () => new OpenAI({ baseURL, apiKey: 'wrong', maxRetries: 0 }).chat.completions.create({ model: 'm', messages: user }));
await expectError(OpenAI.BadRequestError, 'temperature 5',
  () => client.chat.completions.create({ model: 'm', messages: user, temperature: 5 }));
await expectError(OpenAI.BadRequestError, 'no messages',
  () => client.chat.completions.create({ model: 'm', messages: [] }));

// 16 concurrent greedy completions equal `frugal generate --temperature 0` one by one
const expect = readFileSync(expectFile, 'utf8').trim().split('\n').map(l => JSON.parse(l));
const got = await Promise.all(expect.map(e => client.completions.create({ model: 'm', prompt: e.prompt, max_tokens: e.max_tokens, temperature: 0 })));
const same = got.filter((g, i) => g.choices[0].text === expect[i].text).length;
check(same === expect.length, `${expect.length} concurrent greedy completions identical to frugal generate (${same} same)`,
      got.map((g, i) => [g.choices[0].text, expect[i].text]).filter(([x, y]) => x !== y).slice(0, 3));

// overload: far more concurrent requests than slots + queue: some 429 (RateLimitError), the rest answered
const many = await Promise.allSettled(Array.from({ length: 48 }, (_, i) =>
  client.completions.create({ model: 'm', prompt: `load ${i}`, max_tokens: 60, temperature: 0 })));
const ok = many.filter(r => r.status === 'fulfilled').length;
const limited = many.filter(r => r.status === 'rejected' && r.reason instanceof OpenAI.RateLimitError).length;
check(ok > 0 && limited > 0 && ok + limited === many.length, `48 at once: ${ok} answered, ${limited} RateLimitError (429), nothing else`,
      many.filter(r => r.status === 'rejected' && !(r.reason instanceof OpenAI.RateLimitError)).map(r => String(r.reason)).slice(0, 3));

// models
const models = await client.models.list();
check(models.data.length === 1 && typeof models.data[0].id === 'string', 'models.list', models.data);

console.log(fails ? `serve_openai: ${fails} check(s) failed` : 'serve_openai: all checks passed');
process.exit(fails ? 1 : 0);
