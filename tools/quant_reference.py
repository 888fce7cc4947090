#!/usr/bin/env python3
"""quant_reference.py: PyTorch reference for Bitsmith's weight quantizers (RTN, GPTQ, AWQ).

Written from the definitions in shared/REFERENCE.md and core/quant/quantizer.h, gptq.h, awq.h
(our own code, not a copy of the GPTQ / AWQ repositories). It writes small state files to
tests/data/quant/ that tests/core/tst_quantizer.cpp, tst_gptq.cpp and tst_awq.cpp compare with:

  rtn_W.npy                          a fixed random 24 x 200 layer (zero row, positive row, outliers)
  rtn_<fmt>_{codes,scales,zeros}.npy RTN of it for a few formats (codes uint8, the rest float32)
  gptq_W.npy, gptq_H.npy             a 96 x 256 layer and the float32 Hessian of 1024 correlated
                                     calibration rows (4 of its 256 input columns are always zero)
  gptq_<fmt>_<prec>_{codes,scales,zeros}.npy
                                     GPTQ for each format in two precisions:
                                     fp32:  everything in float32, as the GPTQ repository's
                                            fasterquant (H, damping, both Cholesky factorizations)
                                     mixed: Bitsmith's precision: H, damping and Cholesky in float64,
                                            Hinv rounded to float32, weight updates in float32
  awq_X.npy, awq_W{0,1,2}.npy        AWQ calibration input with salient channels and three linears
  awq_scales.npy, awq_clip0.npy      the picked scales and the clip values of linear 0
  reference.json                     formats, losses, g_idx/permutations, α search losses, ...

Conventions shared with the C++ code (quantizer.h): scales rounded to fp16 (zero scale -> 2^-24,
overflow -> 65504), zero and codes from the rounded scale, round half to even, symmetric range
always [-xmax, xmax], MSE grid p = 1 - i/100 for i < 80 with error sum |w' - w|^2.4 in float64.
GPTQ (gptq.h): dead columns zeroed before per-channel/per-tensor parameters are found; stable
act-order sort; a group's parameters come from W as it was at the start of the current block.

Run with Debian's python3 (torch 1.13, numpy): /usr/bin/python3 tools/quant_reference.py
"""

import json
import math
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "quant"

HALF_MIN = 2.0 ** -24
HALF_MAX = 65504.0


# ----------------------------------------------------------------------------- quantizer

def stored_scale(s):
    """The fp16 value a float32 scale is stored as, with the zero / overflow guards."""
    h = s.half().float()
    h = torch.where(h < HALF_MIN, torch.full_like(h, HALF_MIN), h)
    return torch.clamp(h, max=HALF_MAX)


def quantize(x, scale, zero, maxq):
    return torch.clamp(torch.round(x / scale) + zero, 0, maxq)


def dequantize(q, scale, zero):
    return scale * (q - zero)


def find_params(x, bits, sym, mse):
    """Scale and zero (float32, one per row of x [rows, n])."""
    x = x.float()
    maxq = 2 ** bits - 1
    maxq_f = torch.tensor(float(maxq))
    origin = torch.zeros(x.shape[0])
    xmin = torch.minimum(x.min(1).values, origin)
    xmax = torch.maximum(x.max(1).values, origin)
    if sym:
        xmax = torch.maximum(-xmin, xmax)
        xmin = -xmax
    both = (xmin == 0) & (xmax == 0)
    xmin = torch.where(both, torch.full_like(xmin, -1.0), xmin)
    xmax = torch.where(both, torch.full_like(xmax, 1.0), xmax)

    def params_for(lo, hi):
        scale = stored_scale((hi - lo) / maxq_f)
        if sym:
            zero = torch.full_like(scale, float((maxq + 1) // 2))
        else:
            zero = torch.clamp(torch.round(-lo / scale) + 0.0, 0, maxq)
        return scale, zero

    scale, zero = params_for(xmin, xmax)
    if mse:
        best = torch.full([x.shape[0]], float("inf"), dtype=torch.float64)
        for i in range(80):
            p = torch.tensor(1 - i / 100, dtype=torch.float32)
            s1, z1 = params_for(p * xmin, p * xmax)
            dq = dequantize(quantize(x, s1[:, None], z1[:, None], maxq), s1[:, None], z1[:, None])
            err = (dq - x).abs().double().pow(2.4).sum(1)
            better = err < best
            best = torch.where(better, err, best)
            scale = torch.where(better, s1, scale)
            zero = torch.where(better, z1, zero)
    return scale, zero


def group_len(group, cols):
    return group if group > 0 else cols


def quantize_rtn(W, bits, group, sym, mse=False):
    """codes [rows, cols] uint8, scales/zeros [rows, groups]."""
    rows, cols = W.shape
    maxq = 2 ** bits - 1
    glen = group_len(group, cols)
    groups = math.ceil(cols / glen)
    codes = torch.zeros(rows, cols, dtype=torch.uint8)
    scales = torch.zeros(rows, groups)
    zeros = torch.zeros(rows, groups)
    if group == -1:
        s, z = find_params(W.reshape(1, -1), bits, sym, mse)
        scales[:] = s
        zeros[:] = z
    for g in range(groups):
        b, e = g * glen, min((g + 1) * glen, cols)
        if group != -1:
            s, z = find_params(W[:, b:e], bits, sym, mse)
            scales[:, g] = s
            zeros[:, g] = z
        codes[:, b:e] = quantize(W[:, b:e], scales[:, g:g + 1], zeros[:, g:g + 1], maxq).to(torch.uint8)
    return codes, scales, zeros


def dequantize_tensor(codes, scales, zeros, group, gidx=None):
    rows, cols = codes.shape
    glen = group_len(group, cols)
    g = torch.tensor(gidx) if gidx is not None else torch.arange(cols) // glen
    if group <= 0:
        g = torch.zeros(cols, dtype=torch.long)
    return dequantize(codes.float(), scales[:, g], zeros[:, g])


# ----------------------------------------------------------------------------- GPTQ

def gptq(W, H, bits, group, sym, actorder=False, static=False, mse=False, blocksize=128,
         percdamp=0.01, precision="mixed"):
    W = W.clone().float()
    H = H.clone().to(torch.float32 if precision == "fp32" else torch.float64)
    rows, cols = W.shape
    maxq = 2 ** bits - 1
    glen = group_len(group, cols)
    groups = math.ceil(cols / glen) if group > 0 else 1

    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0

    scales = torch.zeros(rows, groups)
    zeros = torch.zeros(rows, groups)
    cur = None
    static_params = []
    if group <= 0:
        if group == -1:
            s, z = find_params(W.reshape(1, -1), bits, sym, mse)
            s, z = s.expand(rows).clone(), z.expand(rows).clone()
        else:
            s, z = find_params(W, bits, sym, mse)
        cur = (s, z)
        scales[:, 0], zeros[:, 0] = s, z
    elif static:
        for k in range(groups):
            s, z = find_params(W[:, k * glen:(k + 1) * glen], bits, sym, mse)
            static_params.append((s, z))
            scales[:, k], zeros[:, k] = s, z

    perm = torch.arange(cols)
    if actorder:
        perm = torch.sort(torch.diag(H), descending=True, stable=True).indices
        W = W[:, perm]
        H = H[perm][:, perm]

    damp = percdamp * torch.mean(torch.diag(H))
    idx = torch.arange(cols)
    H[idx, idx] += damp
    L = torch.linalg.cholesky(H)
    Hi = torch.cholesky_inverse(L)
    Hinv = torch.linalg.cholesky(Hi, upper=True).float()

    codes = torch.zeros(rows, cols, dtype=torch.uint8)
    losses = torch.zeros(rows, cols)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Losses1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            j = i1 + i
            if group > 0:
                if not static:
                    if j % glen == 0:
                        # from W, not W1: the state at the start of this block
                        cur = find_params(W[:, j:j + glen], bits, sym, mse)
                        scales[:, j // glen], zeros[:, j // glen] = cur
                else:
                    orig = int(perm[j]) if actorder else j
                    cur = static_params[orig // glen]
            w = W1[:, i]
            d = Hinv1[i, i]
            q = quantize(w, cur[0], cur[1], maxq)
            codes[:, j] = q.to(torch.uint8)
            dq = dequantize(q, cur[0], cur[1])
            Losses1[:, i] = (w - dq) ** 2 / d ** 2
            err1 = (w - dq) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        losses[:, i1:i2] = Losses1 / 2
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])

    invperm = torch.argsort(perm)
    codes = codes[:, invperm]
    gidx = None
    if actorder and group > 0 and not static:
        gidx = (invperm // glen).tolist()
    return {
        "codes": codes, "scales": scales, "zeros": zeros, "loss": float(losses.sum()),
        "gidx": gidx, "perm": perm.tolist() if actorder else None,
        "dead": int(dead.sum()),
    }


def hessian(X, batch=128):
    """H = (2/n) X^T X as the reference's float32 running average over batches of rows."""
    H = torch.zeros(X.shape[1], X.shape[1])
    n = 0
    for b in range(0, X.shape[0], batch):
        xb = X[b:b + batch]
        t = xb.shape[0]
        H *= n / (n + t)
        n += t
        xb = math.sqrt(2 / n) * xb
        H += xb.t().matmul(xb)
    return H


def output_error(W, Wq, H):
    """tr((W - Wq) H (W - Wq)^T) = (2/n) ||X W^T - X Wq^T||^2, in float64."""
    D = (W - Wq).double()
    return float(((D @ H.double()) * D).sum())


# ----------------------------------------------------------------------------- AWQ

def awq_search_scales(X, Ws, bits, group, sym, grid=20):
    sx = X.double().abs().mean(0)
    losses = []
    best = (float("inf"), None, None)
    for k in range(grid):
        alpha = k / grid
        s = sx.pow(alpha).clamp(min=1e-4)
        s = (s / (s.max() * s.min()).sqrt()).float()
        loss = 0.0
        for W in Ws:
            codes, sc, ze = quantize_rtn(W * s, bits, group, sym)
            Wq = dequantize_tensor(codes, sc, ze, group) / s
            out = X.double() @ (W - Wq).double().t()
            loss += float(out.pow(2).mean())
        losses.append(loss)
        if loss < best[0]:
            best = (loss, alpha, s)
    return {"alpha": best[1], "loss": best[0], "scales": best[2], "losses": losses}


def awq_search_clip(X, W, bits, group, sym, clip_grid=20, clip_steps=10):
    rows, cols = W.shape
    glen = group_len(group, cols)
    groups = math.ceil(cols / glen)
    maxq = 2 ** bits - 1
    clip = torch.zeros(rows, groups)
    for g in range(groups):
        b, e = g * glen, min((g + 1) * glen, cols)
        wg = W[:, b:e]
        xg = X[:, b:e].double()
        max_abs = wg.abs().max(1).values
        best = torch.full([rows], float("inf"), dtype=torch.float64)
        for i in range(clip_steps):
            c = max_abs * torch.tensor(1 - i / clip_grid, dtype=torch.float32)
            wc = torch.maximum(torch.minimum(wg, c[:, None]), -c[:, None])
            s, z = find_params(wc, bits, sym, False)
            dq = dequantize(quantize(wc, s[:, None], z[:, None], maxq), s[:, None], z[:, None])
            err = (xg @ (wg - dq).double().t()).pow(2).sum(0)
            better = err < best
            best = torch.where(better, err, best)
            clip[:, g] = torch.where(better, c, clip[:, g])
    return clip


# ----------------------------------------------------------------------------- output

def save(name, t):
    arr = t.numpy() if isinstance(t, torch.Tensor) else t
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    np.save(OUT / f"{name}.npy", np.ascontiguousarray(arr))


RTN_FORMATS = {
    "w4_g64_asym": dict(bits=4, group=64, sym=False, mse=False),
    "w3_pc_sym": dict(bits=3, group=0, sym=True, mse=False),
    "w8_pt_asym": dict(bits=8, group=-1, sym=False, mse=False),
    "w2_g32_asym_mse": dict(bits=2, group=32, sym=False, mse=True),
    "w4_g64_sym_mse": dict(bits=4, group=64, sym=True, mse=True),
}

GPTQ_FORMATS = {
    "w4_pc": dict(bits=4, group=0, sym=False),
    "w4_g64": dict(bits=4, group=64, sym=False),
    "w3_g64_act": dict(bits=3, group=64, sym=False, actorder=True),
    "w2_g64": dict(bits=2, group=64, sym=False),
    "w4_g64_act_static": dict(bits=4, group=64, sym=False, actorder=True, static=True),
    "w3_g48": dict(bits=3, group=48, sym=False),
}

AWQ_FORMAT = dict(bits=3, group=32, sym=False)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    ref = {"generator": "tools/quant_reference.py", "torch": torch.__version__}

    # RTN: a fixed random layer with the awkward cases in it.
    g = torch.Generator().manual_seed(7)
    W = torch.randn(24, 200, generator=g) * 0.05
    W[3] = 0.0                       # all-zero row
    W[5] = W[5].abs()                # no negative weight
    W[8] = -W[8].abs()               # no positive weight
    W[11, 13] = 1.5                  # an outlier
    W[17] *= 40.0                    # a large row
    save("rtn_W", W)
    ref["rtn"] = {}
    for name, f in RTN_FORMATS.items():
        codes, scales, zeros = quantize_rtn(W, f["bits"], f["group"], f["sym"], f["mse"])
        for part, t in (("codes", codes), ("scales", scales), ("zeros", zeros)):
            save(f"rtn_{name}_{part}", t)
        wq = dequantize_tensor(codes, scales, zeros, f["group"])
        ref["rtn"][name] = dict(f, mse_error=float((wq - W).double().pow(2).mean()))

    # GPTQ: W with outlier columns, correlated X with salient and dead input channels.
    g = torch.Generator().manual_seed(1234)
    rows, cols, n = 96, 256, 1024
    W = torch.randn(rows, cols, generator=g) * 0.02
    W[:, [17, 101, 200]] *= 8.0
    Z = torch.randn(n, cols, generator=g)
    mix = 0.6 * torch.eye(cols) + 0.4 * torch.randn(cols, cols, generator=g) / math.sqrt(cols)
    latent = torch.randn(n, 8, generator=g) @ torch.randn(8, cols, generator=g)
    X = Z @ mix + 0.8 * latent
    X *= torch.exp(0.5 * torch.randn(cols, generator=g))
    X[:, [3, 40, 41]] *= 6.0
    dead_cols = [5, 77, 150, 255]
    X[:, dead_cols] = 0.0
    X = X.float()
    H = hessian(X)
    save("gptq_W", W)
    save("gptq_H", H)
    ref["gptq"] = {"rows": rows, "cols": cols, "samples": n, "dead_columns": dead_cols, "formats": {}}
    for name, f in GPTQ_FORMATS.items():
        entry = dict(f)
        rc, rs, rz = quantize_rtn(W, f["bits"], f["group"], f["sym"])
        entry["rtn_output_error"] = output_error(W, dequantize_tensor(rc, rs, rz, f["group"]), H)
        for prec in ("fp32", "mixed"):
            r = gptq(W, H, f["bits"], f["group"], f["sym"], f.get("actorder", False),
                     f.get("static", False), precision=prec)
            for part in ("codes", "scales", "zeros"):
                save(f"gptq_{name}_{prec}_{part}", r[part])
            wq = dequantize_tensor(r["codes"], r["scales"], r["zeros"], f["group"], r["gidx"])
            entry[prec] = {"loss": r["loss"], "dead": r["dead"],
                           "output_error": output_error(W, wq, H)}
            if prec == "mixed":
                entry["gidx"] = r["gidx"]
                entry["perm"] = r["perm"]
        mixed, fp32 = (torch.from_numpy(np.load(OUT / f"gptq_{name}_{p}_codes.npy")) for p in ("mixed", "fp32"))
        entry["fp32_vs_mixed_code_agreement"] = float((mixed == fp32).double().mean())
        ref["gptq"]["formats"][name] = entry
        print(f"gptq {name}: loss fp32 {entry['fp32']['loss']:.4f} mixed {entry['mixed']['loss']:.4f} "
              f"out err rtn {entry['rtn_output_error']:.4f} gptq {entry['mixed']['output_error']:.4f} "
              f"codes fp32==mixed {entry['fp32_vs_mixed_code_agreement']:.5f}")

    # AWQ: activations with a few salient channels, three linears sharing them.
    g = torch.Generator().manual_seed(99)
    n, cols, outs = 256, 128, 48
    X = torch.randn(n, cols, generator=g) * torch.exp(0.5 * torch.randn(cols, generator=g))
    X[:, [9, 50, 51, 100]] *= 15.0
    X = X.float()
    Ws = [torch.randn(outs, cols, generator=g) * 0.05 for _ in range(3)]
    save("awq_X", X)
    for i, Wl in enumerate(Ws):
        save(f"awq_W{i}", Wl)
    a = awq_search_scales(X, Ws, AWQ_FORMAT["bits"], AWQ_FORMAT["group"], AWQ_FORMAT["sym"])
    save("awq_scales", a["scales"])
    clip = awq_search_clip(X / a["scales"], Ws[0] * a["scales"], AWQ_FORMAT["bits"], AWQ_FORMAT["group"],
                           AWQ_FORMAT["sym"])
    save("awq_clip0", clip)
    ref["awq"] = dict(AWQ_FORMAT, alpha=a["alpha"], loss=a["loss"], losses=a["losses"])
    print(f"awq: alpha {a['alpha']} loss {a['loss']:.6g} (rtn {a['losses'][0]:.6g})")

    (OUT / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
