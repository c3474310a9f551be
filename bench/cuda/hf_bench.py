#!/usr/bin/env python3
"""PyTorch transformers on the same GGUF weights: the anchor for
shardq-bench-cuda (same columns, same batch sizes, same step counts).

    hf_bench.py [--prompt N] [--gen N] [--agg-steps N] [--batches B,B,...] MODEL...

Reads the GGUF itself (F32, F16 and Q8_0 tensors, dequantised to F16:
transformers has no Q8_0 kernels, so a Q8_0 file runs as F16 here) into a
LlamaForCausalLM of the file's shape, in torch.float16 on cuda:0. Timing
only: llama.cpp's Q/K row order is kept, so the outputs are not the model's
(the work per token is the same). A model that fails gets a line saying
why and the others still run. Exit 0 ok, 1 a model failed, 3 torch or
transformers missing or no CUDA device (the caller prints a note).
"""
import argparse
import struct
import sys
import time

try:
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
except Exception as e:  # the caller turns this into a note in the table
    print(f"hf_bench: {e}", file=sys.stderr)
    sys.exit(3)

S_AGG_PROMPT = 16
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}


class _Reader:
    def __init__(self, buf):
        self.buf, self.at = buf, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.at)[0]
        self.at += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = bytes(self.buf[self.at:self.at + n]).decode("utf-8", "replace")
        self.at += n
        return s

    def value(self, t):
        if t in _SCALARS:
            return self.take(_SCALARS[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            return [self.value(et) for _ in range(n)]
        raise ValueError(f"GGUF value type {t}")


def read_gguf(path):
    """(metadata dict, {name: float16 numpy array (rows, cols)})"""
    buf = memoryview(open(path, "rb").read())
    r = _Reader(buf)
    if bytes(buf[:4]) != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    r.at = 4
    _version, n_tensors, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.take("<Q") for _ in range(r.take("<I"))]
        infos.append((name, dims, r.take("<I"), r.take("<Q")))
    align = meta.get("general.alignment", 32)
    base = (r.at + align - 1) // align * align
    tensors = {}
    for name, dims, dtype, off in infos:
        n = int(np.prod(dims))
        at = base + off
        if dtype == 0:
            a = np.frombuffer(buf, np.float32, n, at).astype(np.float16)
        elif dtype == 1:
            a = np.frombuffer(buf, np.float16, n, at)
        elif dtype == 8:
            blocks = np.frombuffer(buf, np.dtype([("d", "<f2"), ("q", "i1", 32)]), n // 32, at)
            a = (blocks["d"].astype(np.float32)[:, None] * blocks["q"]).astype(np.float16)
        else:
            raise ValueError(f"{path}: tensor {name}: type {dtype}")
        tensors[name] = a.reshape(list(reversed(dims)))
    return meta, tensors


def build_model(path):
    meta, t = read_gguf(path)
    arch = meta.get("general.architecture", "llama")
    g = lambda k, d=None: meta.get(f"{arch}.{k}", d)
    vocab, dim = t["token_embd.weight"].shape
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=dim, intermediate_size=g("feed_forward_length"),
                      num_hidden_layers=g("block_count"),
                      num_attention_heads=g("attention.head_count"),
                      num_key_value_heads=g("attention.head_count_kv", g("attention.head_count")),
                      rms_norm_eps=g("attention.layer_norm_rms_epsilon", 1e-5),
                      rope_theta=g("rope.freq_base", 10000.0),
                      max_position_embeddings=g("context_length", 2048),
                      tie_word_embeddings="output.weight" not in t)
    names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
             "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    sd = {"model.embed_tokens.weight": t["token_embd.weight"], "model.norm.weight": t["output_norm.weight"]}
    if "output.weight" in t:
        sd["lm_head.weight"] = t["output.weight"]
    for i in range(cfg.num_hidden_layers):
        for k, v in names.items():
            sd[f"model.layers.{i}.{v}.weight"] = t[f"blk.{i}.{k}.weight"]
    with torch.device("cuda:0"):
        model = LlamaForCausalLM(cfg).to(torch.float16)
    res = model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()},
                                strict=False)
    missing = [k for k in res.missing_keys if k != "lm_head.weight"]  # tied output
    if missing or res.unexpected_keys:
        raise ValueError(f"{path}: weights missing {missing[:3]}, unexpected {res.unexpected_keys[:3]}")
    model.eval()
    return model, vocab


@torch.inference_mode()
def measure(model, vocab, o):
    dev = "cuda:0"
    sync = torch.cuda.synchronize
    ids = (torch.arange(o.prompt, device=dev) * 131 + 1) % vocab
    model(input_ids=ids[None], use_cache=True)  # warm-up
    sync()
    t0 = time.perf_counter()
    out = model(input_ids=ids[None], use_cache=True)
    sync()
    pp = o.prompt / (time.perf_counter() - t0)
    past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1)
    t0 = time.perf_counter()
    for _ in range(o.gen):
        out = model(input_ids=nxt[:, None], past_key_values=past, use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1)
        nxt.cpu()  # the logits are read every step, as the worker does
    b1_ms = (time.perf_counter() - t0) * 1e3 / o.gen
    agg = []
    for b in o.batches:
        ids = (torch.arange(b * S_AGG_PROMPT, device=dev).reshape(b, S_AGG_PROMPT) * 131 + 1) % vocab
        out = model(input_ids=ids, use_cache=True)
        past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1)
        sync()
        t0 = time.perf_counter()
        for _ in range(o.agg_steps):
            out = model(input_ids=nxt[:, None], past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1)
            nxt.cpu()
        agg.append(b * o.agg_steps / (time.perf_counter() - t0))
        del past, out
        torch.cuda.empty_cache()
    return pp, b1_ms, agg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--agg-steps", type=int, default=16)
    ap.add_argument("--batches", default="16,64,256")
    ap.add_argument("models", nargs="+")
    o = ap.parse_args()
    o.batches = [int(b) for b in o.batches.split(",")]
    if not torch.cuda.is_available():
        print("hf_bench: torch sees no CUDA device", file=sys.stderr)
        return 3
    print(f"{'model (transformers, f16)':<28} {'prefill':>11} {'b1 decode':>10}"
          + "".join(f"   b{b:<3} tok/s" for b in o.batches))
    failed = 0
    for path in o.models:
        name = path.rsplit("/", 1)[-1]
        model = None
        try:  # one model's failure (memory, an API change) leaves the others' rows
            model, vocab = build_model(path)
            pp, b1, agg = measure(model, vocab, o)
            print(f"{name:<28} {pp:11.0f} {b1:10.3f}" + "".join(f" {a:12.0f}" for a in agg),
                  flush=True)
        except Exception as e:
            print(f"{name:<28} failed: {type(e).__name__}: {e}", flush=True)
            failed = 1
        del model
        torch.cuda.empty_cache()
    return failed


if __name__ == "__main__":
    sys.exit(main())
