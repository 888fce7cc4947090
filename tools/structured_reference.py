#!/usr/bin/env python3
"""structured_reference.py: an independent PyTorch forward pass of a structurally pruned folder.

Bitsmith's structured pruning writes a smaller Hugging Face Llama folder (fewer query heads per KV
group, fewer MLP neurons, head_dim explicit in config.json). This script reads such a folder with
nothing but json + numpy + torch (the safetensors format parsed by hand, bf16 widened exactly) and
runs the Llama forward pass as transformers' modeling_llama defines it (RMSNorm, rotate_half rotary
embeddings, grouped-query attention scaled by 1/sqrt(head_dim), SwiGLU), in float32. It writes
tests/data/pruning/structured_logits.npy: logits at positions 0, 3 and 7 of IDS, [3, vocab].

The folder is the one `bitsmith-cli compress default --method structured --heads 0.5 --mlp 0.25
--calib-sequences 4 --calib-length 128 --out DIR` writes; tests/core/tst_pruning.cpp rebuilds the
same folder (same calibration sequences) and compares its logits with these.

Usage: /usr/bin/python3 tools/structured_reference.py DIR
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

IDS = [1088, 260, 2342, 424, 3317, 12, 270, 401]
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "pruning", "structured_logits.npy")


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[base + a:base + b]
        if info["dtype"] == "BF16":
            u = np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif info["dtype"] == "F16":
            arr = np.frombuffer(buf, dtype=np.float16).astype(np.float32)
        elif info["dtype"] == "F32":
            arr = np.frombuffer(buf, dtype=np.float32)
        else:
            raise ValueError(info["dtype"])
        out[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    return out


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(cfg, w, ids):
    t = len(ids)
    heads, kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    theta = cfg.get("rope_theta", 10000.0)
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    pos = torch.arange(t, dtype=torch.float32)
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    x = w["model.embed_tokens.weight"][ids]
    mask = torch.full((t, t), float("-inf")).triu(1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(t, heads, hd).transpose(0, 1)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(t, kv, hd).transpose(0, 1)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(t, kv, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(heads // kv, dim=0)
        v = v.repeat_interleave(heads // kv, dim=0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + mask, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(t, heads * hd)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["lm_head.weight"] if "lm_head.weight" in w else w["model.embed_tokens.weight"]
    return x @ head.T


def main():
    folder = sys.argv[1]
    cfg = json.load(open(os.path.join(folder, "config.json")))
    w = read_safetensors(os.path.join(folder, "model.safetensors"))
    assert w["model.layers.0.self_attn.q_proj.weight"].shape[0] == cfg["num_attention_heads"] * cfg["head_dim"]
    assert w["model.layers.0.mlp.up_proj.weight"].shape[0] == cfg["intermediate_size"]
    with torch.no_grad():
        logits = forward(cfg, w, IDS)
    np.save(OUT, logits[[0, 3, 7]].numpy().astype(np.float32))
    print("heads", cfg["num_attention_heads"], "kv", cfg["num_key_value_heads"], "intermediate", cfg["intermediate_size"],
          "->", OUT)


if __name__ == "__main__":
    main()
