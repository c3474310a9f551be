// llama_anchor.mjs: the llama.cpp anchor for shardq-bench-engine.
//
// Runs the prebuilt llama.cpp that the npm package node-llama-cpp@3.21.1
// ships (installed OUTSIDE the repo: `npm i -E node-llama-cpp@3.21.1` in a
// scratch folder given by --llama-dir) on one GGUF file, CPU only, with a
// fixed thread count, and prints one JSON line:
//   {"pp_tok_s": prompt processing, "tg_tok_s": single-sequence decode,
//    "tg_cpu_ms": process CPU time per decode step (all threads),
//    "batch": B, "agg_tok_s": aggregate decode of B sequences}
// Decode evaluates one token per step (no sampling), as shardq's bench does.
//
// usage: node llama_anchor.mjs --llama-dir DIR --model FILE --threads N
//          [--prompt-tokens 128] [--gen-tokens 32] [--agg-prompt 8] [--batch 1]
//   --agg-prompt: prompt tokens of each sequence of the batch before its steps
import { pathToFileURL } from "node:url";
import path from "node:path";

function parseArgs(argv) {
  const a = { promptTokens: 128, genTokens: 32, aggPrompt: 8, batch: 1, threads: 1 };
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i], v = argv[i + 1];
    if (v === undefined) throw new Error(`${k}: missing value`);
    if (k === "--llama-dir") a.llamaDir = v;
    else if (k === "--model") a.model = v;
    else if (k === "--threads") a.threads = Number(v);
    else if (k === "--prompt-tokens") a.promptTokens = Number(v);
    else if (k === "--agg-prompt") a.aggPrompt = Number(v);
    else if (k === "--gen-tokens") a.genTokens = Number(v);
    else if (k === "--batch") a.batch = Number(v);
    else throw new Error(`unknown option ${k}`);
  }
  if (!a.llamaDir || !a.model) throw new Error("--llama-dir and --model are required");
  return a;
}

// Deterministic token ids in [3, nVocab): no BOS/EOS/UNK.
function tokens(n, nVocab, seed) {
  const out = [];
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(3 + (s % (nVocab - 3)));
  }
  return out;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

async function main() {
  const a = parseArgs(process.argv);
  const entry = path.join(a.llamaDir, "node_modules/node-llama-cpp/dist/index.js");
  const { getLlama, LlamaLogLevel } = await import(pathToFileURL(entry).href);
  const llama = await getLlama({ gpu: false, build: "never", maxThreads: a.threads,
                                 logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: a.model, gpuLayers: 0 });
  const vocab = model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 256;
  const ctxSize = a.promptTokens + a.genTokens + 16;
  const threads = { ideal: a.threads, min: a.threads };

  // Prompt processing and single-sequence decode.
  let ctx = await model.createContext({ contextSize: ctxSize, batchSize: a.promptTokens,
                                        threads, sequences: 1 });
  let seq = ctx.getSequence();
  const prompt = tokens(a.promptTokens, vocab, 1);
  await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 8));   // warm-up
  await seq.clearHistory();
  let t0 = now();
  await seq.evaluateWithoutGeneratingNewTokens(prompt);
  const pp = a.promptTokens / (now() - t0);
  const gen = tokens(a.genTokens, vocab, 2);
  t0 = now();
  const cpu0 = process.cpuUsage();
  for (const t of gen) await seq.evaluateWithoutGeneratingNewTokens([t]);
  const tg = a.genTokens / (now() - t0);
  const cpu = process.cpuUsage(cpu0);
  const tgCpuMs = (cpu.user + cpu.system) / 1000 / a.genTokens;
  await ctx.dispose();

  // Aggregate decode of `batch` sequences stepping together.
  let agg = tg;
  if (a.batch > 1) {
    const seqSize = Math.max(a.promptTokens, a.aggPrompt) + a.genTokens + 16;
    ctx = await model.createContext({ contextSize: seqSize * a.batch, batchSize: 512, threads,
                                      sequences: a.batch });
    const seqs = [];
    for (let b = 0; b < a.batch; b++) seqs.push(ctx.getSequence());
    await Promise.all(seqs.map((s, b) => s.evaluateWithoutGeneratingNewTokens(tokens(a.aggPrompt, vocab, 10 + b))));
    t0 = now();
    for (let i = 0; i < a.genTokens; i++)
      await Promise.all(seqs.map((s, b) => s.evaluateWithoutGeneratingNewTokens([gen[(i + b) % gen.length]])));
    agg = (a.batch * a.genTokens) / (now() - t0);
    await ctx.dispose();
  }
  await model.dispose();
  console.log(JSON.stringify({ pp_tok_s: pp, tg_tok_s: tg, tg_cpu_ms: tgCpuMs, batch: a.batch,
                               agg_tok_s: agg }));
}

main().catch((e) => { console.error(`llama_anchor: ${e.message}`); process.exit(1); });
