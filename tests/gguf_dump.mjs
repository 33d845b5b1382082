// gguf_dump.mjs: prints what an independent GGUF parser (npm @huggingface/gguf, installed by
// tests/fetch_npm.sh into .cache/npm) reads from a file, as one JSON object: every metadata key
// (arrays as {"array": length, "first": element 0}), the tensor infos (name, shape innermost first,
// ggml type id, offset) and the file size. tests/cli_interop.sh compares it with what frugal wrote.
import { createRequire } from "node:module";
import { statSync } from "node:fs";
import { resolve } from "node:path";

const require = createRequire(resolve(process.cwd(), ".cache/npm/package.json"));
const { gguf } = require("@huggingface/gguf");
const file = resolve(process.argv[2]);
const { metadata, tensorInfos } = await gguf(file, { allowLocalFile: true });
const meta = {};
for (const [k, v] of Object.entries(metadata)) {
  if (Array.isArray(v)) meta[k] = { array: v.length, first: typeof v[0] === "bigint" ? Number(v[0]) : v[0] };
  else meta[k] = typeof v === "bigint" ? Number(v) : v;
}
const tensors = tensorInfos.map((t) => ({ name: t.name, shape: t.shape.map(Number), type: t.dtype, offset: Number(t.offset) }));
console.log(JSON.stringify({ size: statSync(file).size, metadata: meta, tensors }));
