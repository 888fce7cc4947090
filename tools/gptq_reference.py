#!/usr/bin/env python3
"""gptq_reference.py: reference packing and PyTorch unpacking of GPTQ checkpoint tensors.

Written from the GPTQ checkpoint layout as AutoGPTQ documents and uses it (our own code; nothing
copied): for a linear [out, in] with b-bit codes,
  qweight int32 [in*b/32, out]: codes packed along the input dimension, the first code in the
          lowest bits; for 2/4/8 bits 32/b codes per word, for 3 bits AutoGPTQ's 10+1+10+1+10
          pattern over 3 words (a continuous bit stream)
  qzeros  int32 [groups, out*b/32]: zero points (minus 1 in the v1 "gptq" format) packed the
          same way along the output dimension
  scales  fp16 [groups, out];  g_idx int32 [in]
and the unpacking w = scales[g_idx] * (q - (qzeros + 1)) done with torch bit operations.

It writes tests/data/gptq/ for tests/core/tst_export.cpp:
  <case>_codes.npy (uint8 [out, in]), <case>_scales.npy, <case>_zeros.npy (float32 [out, groups]),
  <case>_gidx.npy (int32 [in]), <case>_qweight.npy, <case>_qzeros.npy (int32, as packed here),
  <case>_w.npy (float32 [out, in], unpacked and dequantized by torch from the packed tensors)
  cases.json (bits, group size, symmetric, act-order, zero offset of each case)

Run: python3 tools/gptq_reference.py   (numpy and torch; deterministic)

     python3 tools/gptq_reference.py --check GPTQ_DIR DENSE_DIR
       unpacks every quantized layer of a GPTQ folder written by `bitsmith-cli export --format
       hf-gptq` (honouring bits, group_size, checkpoint_format and the `dynamic` overrides of its
       config.json) and compares it with the same model exported with `--format hf` (dequantized
       f32 weights): they must be equal.
"""
import json
import os
import re
import struct
import sys

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "gptq")

CASES = [
    # name, bits, group, sym, act_order, zero_offset (1: v1 "gptq", 0: "gptq_v2")
    ("w4g32", 4, 32, False, False, 1),
    ("w3g64", 3, 64, False, False, 1),
    ("w2g32sym", 2, 32, True, False, 1),
    ("w8chan", 8, 0, False, False, 1),
    ("w4g32act", 4, 32, False, True, 1),
    ("w4g32v2", 4, 32, False, False, 0),
]


def pack_rows(vals, bits):
    """vals: uint [n, cols] -> uint32 [n*bits/32, cols], packing along axis 0 (AutoGPTQ's loops)."""
    n = vals.shape[0]
    v = vals.astype(np.uint64)
    out = np.zeros((n * bits // 32, vals.shape[1]), dtype=np.uint64)
    if bits in (2, 4, 8):
        per = 32 // bits
        for row in range(out.shape[0]):
            for j in range(per):
                out[row] |= v[row * per + j] << np.uint64(bits * j)
    elif bits == 3:
        i, row = 0, 0
        while row < out.shape[0]:
            for j in range(10):
                out[row] |= v[i + j] << np.uint64(3 * j)
            i += 10
            out[row] |= (v[i] << np.uint64(30)) & np.uint64(0xFFFFFFFF)
            row += 1
            out[row] |= (v[i] >> np.uint64(2)) & np.uint64(1)
            i += 1
            for j in range(10):
                out[row] |= v[i + j] << np.uint64(3 * j + 1)
            i += 10
            out[row] |= (v[i] << np.uint64(31)) & np.uint64(0xFFFFFFFF)
            row += 1
            out[row] |= (v[i] >> np.uint64(1)) & np.uint64(3)
            i += 1
            for j in range(10):
                out[row] |= v[i + j] << np.uint64(3 * j + 2)
            i += 10
            row += 1
    else:
        raise ValueError(bits)
    return (out & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def torch_unpack(packed, bits, n):
    """int32 [n*bits/32, cols] -> int64 [n, cols]: the codes as a bit stream along axis 0."""
    words = torch.from_numpy(packed.view(np.int32).astype(np.int64)) & 0xFFFFFFFF
    mask = (1 << bits) - 1
    idx = torch.arange(n)
    pos = idx * bits
    w, off = pos // 32, pos % 32
    lo = words[w] >> off.unsqueeze(1)
    nxt = words[torch.clamp(w + 1, max=words.shape[0] - 1)]
    hi = torch.where((off + bits > 32).unsqueeze(1), nxt << (32 - off).unsqueeze(1), torch.zeros_like(lo))
    return (lo | hi) & mask


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    out_f, in_f = 32, 128
    meta = {}
    for name, bits, group, sym, act, zoff in CASES:
        groups = in_f // group if group > 0 else 1
        codes = rng.integers(0, 1 << bits, size=(out_f, in_f), dtype=np.uint8)
        scales = (rng.uniform(1e-3, 5e-2, size=(out_f, groups))).astype(np.float16).astype(np.float32)
        if sym:
            zeros = np.full((out_f, groups), float(1 << (bits - 1)), dtype=np.float32)
        else:
            lo = 1 if zoff == 1 else 0  # v1 cannot hold a zero of 0
            zeros = rng.integers(lo, 1 << bits, size=(out_f, groups)).astype(np.float32)
            if zoff == 0:
                zeros[0, 0] = 0.0
        if act:
            gidx = rng.permutation(np.arange(in_f) // group).astype(np.int32)
        else:
            gidx = (np.arange(in_f) // group if group > 0 else np.zeros(in_f)).astype(np.int32)

        qweight = pack_rows(codes.T, bits).view(np.int32)  # [in*b/32, out]
        z = ((zeros.T.astype(np.int64) - zoff) & ((1 << bits) - 1)).astype(np.uint32)  # [groups, out]
        qzeros = pack_rows(z.T, bits).T.copy().view(np.int32)  # packed along out: [groups, out*b/32]

        # torch unpacking and dequantization from the packed tensors only
        q = torch_unpack(qweight, bits, in_f)  # [in, out]
        zz = torch_unpack(np.ascontiguousarray(qzeros.T), bits, out_f).T + zoff  # [groups, out]
        g = torch.from_numpy(gidx.astype(np.int64))
        s = torch.from_numpy(scales.T.astype(np.float16)).float()  # [groups, out]
        w = (s[g] * (q - zz[g]).float()).T.contiguous().numpy()  # [out, in]

        direct = np.stack([scales[r, gidx] * (codes[r].astype(np.float32) - zeros[r, gidx]) for r in range(out_f)])
        assert np.array_equal(w, direct.astype(np.float32)), name
        for suffix, arr in (("codes", codes), ("scales", scales), ("zeros", zeros), ("gidx", gidx),
                            ("qweight", qweight), ("qzeros", qzeros), ("w", w.astype(np.float32))):
            np.save(os.path.join(OUT, f"{name}_{suffix}.npy"), arr)
        meta[name] = {"bits": bits, "group": group, "sym": sym, "act_order": act, "zero_offset": zoff,
                      "rows": out_f, "cols": in_f}
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print("wrote", OUT)


def read_safetensors(path):
    """{name: numpy array} of a .safetensors file (F32, F16, BF16, I32)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = np.frombuffer(data[a:b], dtype=np.uint8)
        dt = info["dtype"]
        if dt == "BF16":
            arr = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = raw.view({"F32": "<f4", "F16": "<f2", "I32": "<i4"}[dt])
        out[name] = arr.reshape(info["shape"])
    return out


def check_export(gptq_dir, dense_dir):
    cfg = json.load(open(os.path.join(gptq_dir, "config.json")))
    qc = cfg["quantization_config"]
    zoff = 1 if qc["checkpoint_format"] == "gptq" else 0
    tensors = read_safetensors(os.path.join(gptq_dir, "model.safetensors"))
    dense = read_safetensors(os.path.join(dense_dir, "model.safetensors"))
    checked = 0
    for name in sorted(k[:-len(".qweight")] for k in tensors if k.endswith(".qweight")):
        bits = qc["bits"]
        for pattern, override in qc.get("dynamic", {}).items():
            if pattern.startswith("+:") and re.match(pattern[2:], name):
                bits = override.get("bits", bits)
        qweight, qzeros = tensors[name + ".qweight"], tensors[name + ".qzeros"]
        scales, gidx = tensors[name + ".scales"], tensors[name + ".g_idx"]
        in_f, out_f = qweight.shape[0] * 32 // bits, qweight.shape[1]
        q = torch_unpack(qweight, bits, in_f)  # [in, out]
        z = torch_unpack(np.ascontiguousarray(qzeros.T), bits, out_f).T + zoff  # [groups, out]
        g = torch.from_numpy(gidx.astype(np.int64))
        s = torch.from_numpy(scales.astype(np.float32))
        w = (s[g] * (q - z[g]).float()).T.numpy()
        ref = dense[name + ".weight"].astype(np.float32)
        if not np.array_equal(w, ref):
            print(f"MISMATCH {name}: max |diff| {np.abs(w - ref).max()}")
            sys.exit(1)
        checked += 1
    print(f"{checked} quantized layers unpacked by torch equal the dense export "
          f"(checkpoint_format {qc['checkpoint_format']}, base bits {qc['bits']}, "
          f"{len(qc.get('dynamic', {}))} dynamic entries)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        check_export(sys.argv[2], sys.argv[3])
    else:
        main()
