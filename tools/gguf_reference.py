#!/usr/bin/env python3
"""gguf_reference.py: numpy reference for Bitsmith's GGUF reader and ggml block formats.

Written from the GGUF specification and the block layouts documented in core/gguf/ggmltype.h
(our own code, independent of Bitsmith's C++ and of llama.cpp's sources). It writes to
tests/data/gguf/ the files tests/core/tst_gguf.cpp compares with:

  blocks_<TYPE>.npy   uint8 (2, row_bytes): two rows of 256 elements of random valid blocks
                      (random bits, scale fields set to sane fp16 values)
  deq_<TYPE>.npy      float32 (2, 256): their dequantization by the formulas below
  reference.gguf      a small GGUF v3 file written by the minimal writer below: metadata of every
                      value type (scalars and arrays, strings included), general.alignment = 64,
                      and tensors in F32, F16, Q8_0 and Q4_K (the last two from blocks_*.npy)
  reference.json      what the C++ reader must find in reference.gguf

Run: python3 tools/gguf_reference.py   (numpy only; deterministic)
"""
import json
import os
import struct

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "gguf")

# type name -> (ggml id, block elements, block bytes)
TYPES = {
    "F32": (0, 1, 4), "F16": (1, 1, 2), "BF16": (30, 1, 2),
    "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24),
    "Q8_0": (8, 32, 34), "Q2_K": (10, 256, 84), "Q3_K": (11, 256, 110), "Q4_K": (12, 256, 144),
    "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210),
}


def half(b, off):
    """fp16 field at byte offset `off` of each block (rows of b) as float32 column."""
    return b[:, off:off + 2].copy().view(np.float16).astype(np.float32)


def bits(byte_arr, shifts, width):
    return (byte_arr[..., None] >> np.array(shifts, dtype=np.uint8)) & ((1 << width) - 1)


def nib32(qs):
    """(n,16) bytes -> (n,32) values: element j<16 low nibble of qs[j], j>=16 high nibble of qs[j-16]."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)


def qh32(b, off):
    qh = b[:, off:off + 4].copy().view("<u4").astype(np.uint64)
    return ((qh >> np.arange(32, dtype=np.uint64)) & 1).astype(np.int32)


def deq_blocks(name, b):
    """b: (nblocks, block_bytes) uint8 -> (nblocks, block_elements) float32."""
    n = b.shape[0]
    if name == "Q4_0":
        return half(b, 0) * (nib32(b[:, 2:18]) - 8)
    if name == "Q4_1":
        return half(b, 0) * nib32(b[:, 4:20]) + half(b, 2)
    if name == "Q5_0":
        return half(b, 0) * ((nib32(b[:, 6:22]) | (qh32(b, 2) << 4)) - 16)
    if name == "Q5_1":
        return half(b, 0) * (nib32(b[:, 8:24]) | (qh32(b, 4) << 4)) + half(b, 2)
    if name == "Q8_0":
        return half(b, 0) * b[:, 2:34].view(np.int8).astype(np.float32)
    e = np.arange(256)
    if name == "Q2_K":
        scales, qs = b[:, 0:16], b[:, 16:80]
        d, dmin = half(b, 80), half(b, 82)
        # element e: byte (e//128)*32 + e%32, bits 2*((e%128)//32)
        q = (qs[:, (e // 128) * 32 + e % 32] >> (2 * ((e % 128) // 32))) & 3
        s = scales[:, e // 16]
        return d * (s & 0xF) * q - dmin * (s >> 4)
    if name == "Q3_K":
        hmask, qs, sc12 = b[:, 0:32], b[:, 32:96], b[:, 96:108]
        d = half(b, 108)
        i = np.arange(16)
        low = (sc12[:, i % 8] >> (4 * (i // 8))) & 0xF
        high = (sc12[:, 8 + i % 4] >> (2 * (i // 4))) & 3
        sc = (low | (high << 4)).astype(np.int32) - 32
        q2 = ((qs[:, (e // 128) * 32 + e % 32] >> (2 * ((e % 128) // 32))) & 3).astype(np.int32)
        hb = (hmask[:, e % 32] >> (e // 32)) & 1
        q = q2 - 4 * (1 - hb.astype(np.int32))
        return d * sc[:, e // 16] * q
    if name in ("Q4_K", "Q5_K"):
        d, dmin = half(b, 0), half(b, 2)
        s = b[:, 4:16].astype(np.int32)
        sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], axis=1)
        mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
        qs = b[:, 48:176] if name == "Q5_K" else b[:, 16:144]
        q = ((qs[:, (e // 64) * 32 + e % 32] >> (4 * ((e % 64) // 32))) & 0xF).astype(np.int32)
        if name == "Q5_K":
            q = q | (((b[:, 16:48][:, e % 32] >> (e // 32)) & 1).astype(np.int32) << 4)
        return d * sc[:, e // 32] * q - dmin * mn[:, e // 32]
    if name == "Q6_K":
        ql, qh = b[:, 0:128], b[:, 128:192]
        sc = b[:, 192:208].view(np.int8).astype(np.int32)
        d = half(b, 208)
        low = (ql[:, (e // 128) * 64 + e % 64] >> (4 * ((e % 128) // 64))) & 0xF
        high = (qh[:, (e // 128) * 32 + e % 32] >> (2 * ((e % 128) // 32))) & 3
        q = (low | (high << 4)).astype(np.int32) - 32
        return d * sc[:, e // 16] * q
    raise ValueError(name)


def dequantize(name, raw, n_el):
    if name == "F32":
        return raw.view("<f4").astype(np.float32)
    if name == "F16":
        return raw.view("<f2").astype(np.float32)
    if name == "BF16":
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    _, be, bb = TYPES[name]
    return deq_blocks(name, raw.reshape(-1, bb)).astype(np.float32).reshape(-1)


def random_blocks(name, rng, n_el):
    _, be, bb = TYPES[name]
    nb = n_el // be
    b = rng.integers(0, 256, size=(nb, bb), dtype=np.uint8)

    def put_half(off, lo, hi, signed=False):
        v = rng.uniform(lo, hi, size=nb)
        if signed:
            v *= rng.choice([-1.0, 1.0], size=nb)
        b[:, off:off + 2] = v.astype(np.float16).view(np.uint8).reshape(nb, 2)

    if name in ("F32",):
        return rng.standard_normal(n_el).astype(np.float32).view(np.uint8).reshape(1, -1)
    if name in ("F16",):
        return rng.standard_normal(n_el).astype(np.float16).view(np.uint8).reshape(1, -1)
    if name in ("BF16",):
        f = rng.standard_normal(n_el).astype(np.float32)
        return (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(1, -1)
    offs = {"Q4_0": [(0, True)], "Q4_1": [(0, False), (2, True)], "Q5_0": [(0, True)],
            "Q5_1": [(0, False), (2, True)], "Q8_0": [(0, True)], "Q2_K": [(80, False), (82, False)],
            "Q3_K": [(108, True)], "Q4_K": [(0, False), (2, False)], "Q5_K": [(0, False), (2, False)],
            "Q6_K": [(208, True)]}[name]
    for off, signed in offs:
        put_half(off, 1e-3, 2e-2, signed)
    return b


# ---- a minimal GGUF writer ---------------------------------------------------------------------

VT = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7, "str": 8,
      "arr": 9, "u64": 10, "i64": 11, "f64": 12}
FMT = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i", "f32": "<f",
       "bool": "<B", "u64": "<Q", "i64": "<q", "f64": "<d"}


def gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gval(t, v):
    return gstr(v) if t == "str" else struct.pack(FMT[t], int(v) if t == "bool" else v)


def write_gguf(path, kvs, tensors, alignment):
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)))
    for key, t, v in kvs:
        out += gstr(key)
        if t.startswith("arr:"):
            et = t[4:]
            out += struct.pack("<IIQ", VT["arr"], VT[et], len(v))
            for x in v:
                out += gval(et, x)
        else:
            out += struct.pack("<I", VT[t]) + gval(t, v)
    offset, offsets = 0, []
    for name, dims, tname, raw in tensors:
        out += gstr(name) + struct.pack("<I", len(dims))
        for d in dims:
            out += struct.pack("<Q", d)
        out += struct.pack("<IQ", TYPES[tname][0], offset)
        offsets.append(offset)
        offset = (offset + raw.nbytes + alignment - 1) // alignment * alignment
    out += bytes((-len(out)) % alignment)
    start = len(out)
    for (name, dims, tname, raw), off in zip(tensors, offsets):
        out += bytes(start + off - len(out))
        out += raw.tobytes()
    out += bytes((-len(out)) % alignment)
    with open(path, "wb") as f:
        f.write(out)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261125)
    blocks = {}
    for name in TYPES:
        rows = [random_blocks(name, rng, 256).reshape(-1) for _ in range(2)]
        raw = np.stack(rows)
        deq = np.stack([dequantize(name, r, 256) for r in rows]).astype(np.float32)
        assert np.all(np.isfinite(deq)), name
        np.save(os.path.join(OUT, f"blocks_{name}.npy"), raw)
        np.save(os.path.join(OUT, f"deq_{name}.npy"), deq)
        blocks[name] = (raw, deq)

    kvs = [
        ("general.architecture", "str", "llama"),
        ("general.alignment", "u32", 64),
        ("test.u8", "u8", 200), ("test.i8", "i8", -100), ("test.u16", "u16", 60000),
        ("test.i16", "i16", -30000), ("test.u32", "u32", 4000000000), ("test.i32", "i32", -2000000000),
        ("test.f32", "f32", 0.25), ("test.bool", "bool", True), ("test.str", "str", "héllo GGUF"),
        ("test.u64", "u64", 2 ** 40 + 3), ("test.i64", "i64", -(2 ** 40) - 5), ("test.f64", "f64", -1.5e-3),
        ("test.arr_i32", "arr:i32", [1, -2, 3, -4]),
        ("test.arr_str", "arr:str", ["a", "", "Ġthe", "<|endoftext|>"]),
        ("test.arr_f32", "arr:f32", [0.5, -2.0]),
    ]
    f32 = rng.standard_normal((3, 8)).astype(np.float32)
    f16 = rng.standard_normal((2, 4)).astype(np.float16)
    tensors = [
        ("a.f32", [8, 3], "F32", f32.view(np.uint8)),
        ("b.f16", [4, 2], "F16", f16.view(np.uint8)),
        ("c.q8_0", [256, 2], "Q8_0", blocks["Q8_0"][0]),
        ("d.q4_k", [256, 2], "Q4_K", blocks["Q4_K"][0]),
    ]
    write_gguf(os.path.join(OUT, "reference.gguf"), kvs, tensors, 64)
    ref = {
        "metadata": {k: {"type": t, "value": v} for k, t, v in kvs},
        "tensors": {
            "a.f32": {"type": "F32", "shape": [3, 8], "values": f32.reshape(-1).tolist()},
            "b.f16": {"type": "F16", "shape": [2, 4], "values": f16.astype(np.float32).reshape(-1).tolist()},
            "c.q8_0": {"type": "Q8_0", "shape": [2, 256]},
            "d.q4_k": {"type": "Q4_K", "shape": [2, 256]},
        },
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
