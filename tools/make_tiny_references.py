#!/usr/bin/env python3
"""Writes tiny random Hugging Face checkpoints with float32 reference logits for runtime tests.

Each folder tests/data/tiny/<name>/ holds config.json, the safetensors weights (one file, or shards
plus model.safetensors.index.json), logits.npy (float32, [12, vocab], C order) and ref.json (input
ids, shapes, dtype notes and a few summary values). The weights are drawn with a fixed seed and a
large spread (std 0.2, norm weights 1 ± 0.1, random biases) so the logits are far from flat.

Reference logits come from reloading the saved folder with transformers in float32 on the CPU
(stored float16 / bfloat16 weights upcast exactly), eager attention. No tokenizer is needed.

Cases:
  qwen2-tied-bias     Qwen2ForCausalLM, tied embeddings, q/k/v biases, float32 weights, rope θ 1e6
  mistral-f16         MistralForCausalLM, untied, float16 weights
  llama-sharded-bf16  LlamaForCausalLM, rope θ 500000, bfloat16 weights in >= 2 shards

Usage (repository root): python3 tools/make_tiny_references.py
"""

import json
import os
import shutil

import numpy as np
import torch
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

OUT = "tests/data/tiny"
INPUT_IDS = [1, 17, 42, 299, 0, 123, 7, 256, 88, 150, 3, 211]
COMMON = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
              rms_norm_eps=1e-6, hidden_act="silu", initializer_range=0.2, bos_token_id=0,
              eos_token_id=0, attention_dropout=0.0)

CASES = [
    {"name": "qwen2-tied-bias", "cls": Qwen2ForCausalLM, "cfg": Qwen2Config, "dtype": torch.float32,
     "theta": 1e6, "extra": dict(tie_word_embeddings=True, use_sliding_window=False), "shard": None},
    {"name": "mistral-f16", "cls": MistralForCausalLM, "cfg": MistralConfig, "dtype": torch.float16,
     "theta": 10000.0, "extra": dict(tie_word_embeddings=False, sliding_window=None), "shard": None},
    {"name": "llama-sharded-bf16", "cls": LlamaForCausalLM, "cfg": LlamaConfig, "dtype": torch.bfloat16,
     "theta": 500000.0, "extra": dict(tie_word_embeddings=False, attention_bias=False), "shard": "100KB"},
]

DTYPE_NAME = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied parameters are listed once
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if "norm" in name:
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.2 * noise)


def load_f32(cls, folder):
    try:
        return cls.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    except TypeError:
        return cls.from_pretrained(folder, torch_dtype=torch.float32, attn_implementation="eager").eval()


def check_rope(model, theta):
    inv = model.model.rotary_emb.inv_freq.detach().double()
    d = model.config.hidden_size // model.config.num_attention_heads
    want = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    err = ((inv - want).abs().max() / want.max()).item()
    assert err < 1e-6, f"rotary inv_freq does not match rope_theta={theta} (rel err {err})"


def make(case, seed):
    name, dtype = case["name"], case["dtype"]
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    cfg = case["cfg"](**COMMON, rope_theta=case["theta"], **case["extra"])
    model = case["cls"](cfg).eval()
    randomize(model, seed)
    check_rope(model, case["theta"])
    model = model.to(dtype)
    kwargs = {"max_shard_size": case["shard"]} if case["shard"] else {}
    try:
        model.save_pretrained(folder, safe_serialization=True, **kwargs)
    except TypeError:
        model.save_pretrained(folder, **kwargs)
    # no generation config needed for these tests
    gc = os.path.join(folder, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    # add the transformers-4 spellings next to the v5 ones
    with open(os.path.join(folder, "config.json")) as f:
        cj = json.load(f)
    cj.setdefault("rope_theta", case["theta"])
    cj.setdefault("torch_dtype", DTYPE_NAME[dtype])
    cj.setdefault("dtype", DTYPE_NAME[dtype])
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cj, f, indent=2, sort_keys=True)
        f.write("\n")

    ref_model = load_f32(case["cls"], folder)
    check_rope(ref_model, case["theta"])
    # reloaded weights must equal the stored-dtype weights upcast
    want = {k: v.float() for k, v in model.state_dict().items()}
    got = ref_model.state_dict()
    for k, v in want.items():
        assert torch.equal(got[k], v), f"{name}: weight {k} differs after reload"
    if case["extra"].get("tie_word_embeddings"):
        assert ref_model.lm_head.weight.data_ptr() == ref_model.model.embed_tokens.weight.data_ptr()

    with torch.no_grad():
        logits = ref_model(input_ids=torch.tensor([INPUT_IDS])).logits[0].float().numpy()
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    np.save(os.path.join(folder, "logits.npy"), logits)
    files = sorted(os.listdir(folder))
    ref = {
        "model_class": case["cls"].__name__,
        "stored_dtype": DTYPE_NAME[dtype],
        "reference": "float32 CPU, stored weights upcast exactly, eager attention, no KV cache",
        "input_ids": INPUT_IDS,
        "logits_file": "logits.npy",
        "logits_shape": list(logits.shape),
        "argmax": [int(i) for i in logits.argmax(axis=-1)],
        "last_row_first8": [float(x) for x in logits[-1, :8]],
        "logits_sum": float(logits.astype(np.float64).sum()),
        "logits_abs_max": float(np.abs(logits).max()),
        "logits_std": float(logits.std()),
        "seed": seed,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "files": files + ["ref.json"],
    }
    with open(os.path.join(folder, "ref.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(folder, x)) for x in os.listdir(folder))
    print(f"{name}: {files} {size} bytes, logits std {ref['logits_std']:.3f} "
          f"absmax {ref['logits_abs_max']:.3f}", flush=True)


def main():
    torch.set_num_threads(4)
    os.makedirs(OUT, exist_ok=True)
    for i, case in enumerate(CASES):
        make(case, seed=100 + i)


if __name__ == "__main__":
    main()
