#!/usr/bin/python3
"""PyTorch baseline for Bitsmith's training-step throughput (bench/bench_train runs it).

Times the plain-torch decoder of tools/train_reference.py (the transformers definition) on a
model folder: one training step = forward + cross-entropy + backward over `batch` sequences of
`ctx` tokens, and, for distillation, the teacher's forward under no_grad. f32, one thread
(torch.set_num_threads(1)). Prints one JSON line with tokens per second of CPU time (process_time:
immune to other processes sharing the cores) and of wall time:
{"train_step_tokens_per_cpu_s", "teacher_forward_tokens_per_cpu_s", "..._per_wall_s", "torch"}.

Usage: /usr/bin/python3 tools/train_throughput.py [MODEL_DIR] [--batch 4] [--ctx 128] [--steps 3]
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_reference import forward  # noqa: E402


def load_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype=np.float32)
        else:
            raise SystemExit(f"unsupported dtype {info['dtype']} for {name}")
        out[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="resources/models/default")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = json.load(open(os.path.join(args.model, "config.json")))
    w = load_safetensors(os.path.join(args.model, "model.safetensors"))
    params = {k: v.clone().requires_grad_(True) for k, v in w.items()}
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg["vocab_size"], (args.batch, args.ctx + 1), generator=g)
    inputs, targets = ids[:, :-1], ids[:, 1:].reshape(-1)
    tokens = args.batch * args.ctx

    def step():
        for p in params.values():
            p.grad = None
        F.cross_entropy(forward(cfg, params, inputs), targets).backward()

    def teacher():
        with torch.no_grad():
            forward(cfg, w, inputs)

    results = {}
    for name, fn in [("train_step", step), ("teacher_forward", teacher)]:
        fn()  # warm-up
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(args.steps):
            fn()
        results[name + "_tokens_per_cpu_s"] = tokens * args.steps / (time.process_time() - c0)
        results[name + "_tokens_per_wall_s"] = tokens * args.steps / (time.perf_counter() - t0)
    results["torch"] = torch.__version__
    print(json.dumps(results))


if __name__ == "__main__":
    main()
