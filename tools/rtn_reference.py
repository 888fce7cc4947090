#!/usr/bin/env python3
"""rtn_reference.py: PyTorch reference perplexities of the bundled model under round-to-nearest
weight quantization, for tests/core/tst_compression (Bitsmith's RTN must agree within 0.5%).

Independent of Bitsmith's C++: reads model.safetensors itself, quantizes every linear inside the
transformer blocks with the min-max definition of ../shared/REFERENCE.md (asymmetric: xmin =
min(min w, 0), xmax = max(max w, 0), scale = (xmax - xmin) / (2^b - 1) rounded to fp16 as stored,
zero = round(-xmin / scale), q = clamp(round(w / scale) + zero, 0, 2^b - 1)), runs its own Llama
forward in float32 and scores the eval text under the perplexity protocol.

Runs with Debian's python3-torch 1.13 (no transformers needed):
    build/app/cli/bitsmith-cli tokenize default --text resources/models/default/eval.txt --out /tmp/ids.json
    /usr/bin/python3 tools/rtn_reference.py /tmp/ids.json > tests/data/reference/rtn_reference.json
"""
import json
import struct
import sys

import numpy as np
import torch

MODEL = "resources/models/default"
CTX = 256
QUICK_WINDOWS = 12
FORMATS = [  # (bits, group: >0 columns, 0 per channel)
    (8, 0), (4, 0), (4, 128), (3, 64), (2, 64)]


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    out = {}
    for name, v in header.items():
        a, b = v["data_offsets"]
        raw = np.frombuffer(data[a:b], dtype={"F32": np.float32, "F16": np.float16, "BF16": np.uint16}[v["dtype"]])
        if v["dtype"] == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        out[name] = torch.from_numpy(raw.astype(np.float32).reshape(v["shape"]).copy())
    return out


def rtn(w, bits, group):
    """Asymmetric min-max RTN per row (group 0) or per (row, group of `group` columns)."""
    rows, cols = w.shape
    g = cols if group == 0 else group
    out = torch.empty_like(w)
    maxq = 2 ** bits - 1
    for c0 in range(0, cols, g):
        blk = w[:, c0:c0 + g]
        xmin = torch.clamp(blk.min(dim=1).values, max=0)
        xmax = torch.clamp(blk.max(dim=1).values, min=0)
        both_zero = (xmin == 0) & (xmax == 0)
        xmin = torch.where(both_zero, torch.full_like(xmin, -1), xmin)
        xmax = torch.where(both_zero, torch.full_like(xmax, 1), xmax)
        scale = ((xmax - xmin) / maxq).half().float()  # stored as fp16
        scale = torch.where(scale == 0, torch.full_like(scale, 2.0 ** -24), scale)
        zero = torch.round(-xmin / scale)
        q = torch.clamp(torch.round(blk / scale[:, None]) + zero[:, None], 0, maxq)
        out[:, c0:c0 + g] = scale[:, None] * (q - zero[:, None])
    return out


def forward(W, cfg, ids):
    H = cfg["hidden_size"]; nh = cfg["num_attention_heads"]; kv = cfg["num_key_value_heads"]
    d = H // nh; eps = cfg["rms_norm_eps"]; theta = cfg.get("rope_theta") or cfg["rope_parameters"]["rope_theta"]
    T = len(ids)
    x = W["model.embed_tokens.weight"][ids]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)
    cos = torch.cat([ang.cos()] * 2, -1); sin = torch.cat([ang.sin()] * 2, -1)
    rot = lambda t: torch.cat([-t[..., d // 2:], t[..., :d // 2]], -1)
    norm = lambda t, w: w * (t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps))
    lin = lambda t, n: t @ W[n + ".weight"].T
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = norm(x, W[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj").view(T, nh, d).transpose(0, 1)
        k = lin(h, p + "self_attn.k_proj").view(T, kv, d).transpose(0, 1)
        v = lin(h, p + "self_attn.v_proj").view(T, kv, d).transpose(0, 1)
        q = q * cos + rot(q) * sin; k = k * cos + rot(k) * sin
        k = k.repeat_interleave(nh // kv, 0); v = v.repeat_interleave(nh // kv, 0)
        a = ((q @ k.transpose(1, 2) / d ** 0.5 + mask).softmax(-1) @ v).transpose(0, 1).reshape(T, H)
        x = x + lin(a, p + "self_attn.o_proj")
        h = norm(x, W[p + "post_attention_layernorm.weight"])
        x = x + lin(torch.nn.functional.silu(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    return norm(x, W["model.norm.weight"]) @ W["lm_head.weight"].T


def perplexity(W, cfg, ids, windows):
    nll = []
    with torch.no_grad():
        for w in range(windows):
            win = ids[w * CTX:(w + 1) * CTX]
            logp = torch.log_softmax(forward(W, cfg, win).double(), -1)
            nll.append(-logp[torch.arange(CTX - 1), torch.tensor(win[1:])].mean().item())
    mean = float(np.mean(nll))
    return {"ppl": float(np.exp(mean)), "mean_nll": mean, "windows": windows}


def main():
    torch.set_num_threads(1)
    ids = json.load(open(sys.argv[1]))
    cfg = json.load(open(MODEL + "/config.json"))
    base = read_safetensors(MODEL + "/model.safetensors")
    linears = [n for n in base if ".layers." in n and n.endswith("_proj.weight")]
    all_windows = len(ids) // CTX
    result = {"generated_by": "tools/rtn_reference.py", "torch": torch.__version__, "ctx": CTX, "tokens": len(ids),
              "definition": "asymmetric min-max RTN of every block linear, fp16 scales (REFERENCE.md)",
              "baseline": perplexity(base, cfg, ids, QUICK_WINDOWS), "formats": []}
    for bits, group in FORMATS:
        W = dict(base)
        for n in linears:
            W[n] = rtn(base[n], bits, group)
        result["formats"].append({"bits": bits, "group": group,
                                  "quick": perplexity(W, cfg, ids, QUICK_WINDOWS),
                                  "all": perplexity(W, cfg, ids, all_windows)})
        print(f"w{bits} g{group}: {result['formats'][-1]['all']['ppl']:.4f}", file=sys.stderr)
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
