#!/usr/bin/env python3
"""prune_reference.py: numpy reference for Bitsmith's pruning masks and SparseGPT.

Written from the definitions in shared/REFERENCE.md and core/prune/mask.h, sparsegpt.h (our own
code, not a copy of the Wanda / SparseGPT repositories). Writes small state files to
tests/data/pruning/ that tests/core/tst_pruning.cpp compares with:

  W.npy, X.npy                     a fixed random 16 x 64 layer and 256 calibration rows (f32)
  H.npy                            H = (2/n) X^T X (float32, as the C++ test feeds it)
  mag_layer50.npy, mag_row50.npy,  keep-masks (uint8) of magnitude pruning: 50% over the layer,
  mag_24.npy                       50% per row, 2:4
  wanda_row50.npy, wanda_24.npy    Wanda masks: score |W| * sqrt(mean(x^2) * n), per row / 2:4
  sgpt_u50.npy, sgpt_24.npy,       SparseGPT results (float32 weights, block size 32, damping 1%):
  sgpt_24_q4g16.npy                50% unstructured, 2:4, 2:4 jointly quantized to 4 bits, groups of 16

Conventions shared with the C++ code: ties are pruned lower index first (stable argsort); the
unstructured SparseGPT mask of a block prunes exactly floor(s * rows * blockCols) weights (the
SparseGPT repository prunes those <= the k-th smallest score, one more); N:M prunes the M - N
smallest of w^2 / diag(Hinv)^2 among each M columns when the first of them is reached; quantization
is the min-max quantizer of quantizer.h in float32 (fp16-rounded scale, zero from the rounded
scale, round half to even); a group's parameters come from W as it was at the start of the block.
SparseGPT arithmetic is float64.

Run: /usr/bin/python3 tools/prune_reference.py
"""
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "pruning")


def save(name, a):
    np.save(os.path.join(OUT, name), a)


def mask_from_scores(s, sparsity=0.0, n=0, m=0, scope="row"):
    rows, cols = s.shape
    keep = np.ones_like(s, dtype=np.uint8)
    if m:
        for r in range(rows):
            for c in range(0, cols, m):
                order = np.argsort(s[r, c:c + m], kind="stable")
                keep[r, c + order[: m - n]] = 0
    elif scope == "row":
        k = int(np.floor(sparsity * cols))
        for r in range(rows):
            keep[r, np.argsort(s[r], kind="stable")[:k]] = 0
    else:
        k = int(np.floor(sparsity * rows * cols))
        flat = keep.reshape(-1)
        flat[np.argsort(s.reshape(-1), kind="stable")[:k]] = 0
    return keep


def fp16_scale(x):
    h = np.float32(np.float16(np.float32(x)))
    return max(h, np.float32(2.0 ** -24))


def find_params(w, bits):
    maxq = np.float32(2 ** bits - 1)
    xmin = np.float32(min(w.min(), 0.0))
    xmax = np.float32(max(w.max(), 0.0))
    if xmin == 0 and xmax == 0:
        xmin, xmax = np.float32(-1), np.float32(1)
    scale = fp16_scale(np.float32((xmax - xmin) / maxq))
    zero = np.float32(np.clip(np.rint(np.float32(-xmin / scale)), 0, maxq))
    return scale, zero


def sparsegpt(W, H, sparsity=0.0, n=0, m=0, blocksize=32, damp=0.01, bits=0, group=0):
    W = W.astype(np.float64).copy()
    H = H.astype(np.float64).copy()
    rows, cols = W.shape
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * np.mean(np.diag(H)) * np.eye(cols)
    Hinv = np.linalg.cholesky(np.linalg.inv(H)).T  # upper factor U with U^T U = H^-1
    maxq = 2 ** bits - 1
    params = None
    if bits and group == 0:
        params = [find_params(W[r].astype(np.float32), bits) for r in range(rows)]
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        mask1 = np.zeros(W1.shape, dtype=bool)
        if not m and sparsity > 0:
            tmp = (W1 ** 2 / np.diag(Hinv1).reshape(1, -1) ** 2).astype(np.float32)
            k = int(np.floor(sparsity * tmp.size))
            flat = mask1.reshape(-1)
            flat[np.argsort(tmp.reshape(-1), kind="stable")[:k]] = True
        for i in range(count):
            j = i1 + i
            if m and i % m == 0:
                tmp = W1[:, i:i + m] ** 2 / np.diag(Hinv1)[i:i + m].reshape(1, -1) ** 2
                for r in range(rows):
                    order = np.argsort(tmp[r], kind="stable")
                    mask1[r, i + order[: m - n]] = True
            if bits and group > 0 and j % group == 0:
                params = [find_params(W[r, j:j + group].astype(np.float32), bits) for r in range(rows)]
            w = W1[:, i]
            d = Hinv1[i, i]
            q = w.copy()
            q[mask1[:, i]] = 0
            if bits:
                for r in range(rows):
                    scale, zero = params[r]
                    if mask1[r, i]:
                        code = zero
                    else:
                        code = np.float32(np.clip(np.rint(np.float32(np.float32(q[r]) / scale)) + zero, 0, maxq))
                    q[r] = np.float32(scale * np.float32(code - zero))
            Q1[:, i] = q
            err = (w - q) / d
            W1[:, i:] -= np.outer(err, Hinv1[i, i:])
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return W.astype(np.float32)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    rows, cols, n = 16, 64, 256
    W = (rng.standard_normal((rows, cols)) * 0.1).astype(np.float32)
    W[3, 5] = 0.9  # an outlier
    # correlated inputs with per-channel scales, so activation norms matter
    X = (rng.standard_normal((n, cols)) @ (np.eye(cols) + 0.3 * rng.standard_normal((cols, cols)))).astype(np.float32)
    X *= np.exp(rng.uniform(-1.5, 1.5, size=cols)).astype(np.float32)
    X[:, 9] = 0  # a dead input column
    H = (2.0 / n * (X.astype(np.float64).T @ X.astype(np.float64))).astype(np.float32)
    save("W.npy", W)
    save("X.npy", X)
    save("H.npy", H)

    mag = np.abs(W)
    save("mag_layer50.npy", mask_from_scores(mag, 0.5, scope="layer"))
    save("mag_row50.npy", mask_from_scores(mag, 0.5, scope="row"))
    save("mag_24.npy", mask_from_scores(mag, n=2, m=4))
    mean_sq = (X.astype(np.float64) ** 2).mean(axis=0)
    norm = np.sqrt(mean_sq * n).astype(np.float32)
    wanda = (np.abs(W) * norm.reshape(1, -1)).astype(np.float32)
    save("wanda_row50.npy", mask_from_scores(wanda, 0.5, scope="row"))
    save("wanda_24.npy", mask_from_scores(wanda, n=2, m=4))

    save("sgpt_u50.npy", sparsegpt(W, H, sparsity=0.5))
    save("sgpt_24.npy", sparsegpt(W, H, n=2, m=4))
    save("sgpt_24_q4g16.npy", sparsegpt(W, H, n=2, m=4, bits=4, group=16))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
