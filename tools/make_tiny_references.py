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
  rope-llama3         LlamaForCausalLM, Llama 3.1 rope (factor 8, original context 64), config
                      written in the transformers 4.x spelling (rope_scaling + rope_theta)
  rope-linear         LlamaForCausalLM, linear rope scaling (factor 2)
  rope-dynamic        LlamaForCausalLM, dynamic NTK (factor 2, max_position_embeddings 64: the
                      200-token window runs past it)
  rope-yarn           LlamaForCausalLM, yarn (factor 4 from original context 64; attention factor
                      derived)
  rope-longrope       LlamaForCausalLM, longrope (short / long factors, original context 64)
  qwen3               Qwen3ForCausalLM, q/k norms, head_dim 32 != hidden/heads, tied embeddings
  qwen3-sliding       Qwen3ForCausalLM, sliding window 16 on layer 1 only (max_window_layers 1)
  mistral-sliding     MistralForCausalLM, sliding window 16 on every layer
  gemma2              Gemma2ForCausalLM: (1+w) norms, sandwich norms, GeGLU (tanh GELU), embeddings
                      times sqrt(hidden), query_pre_attn_scalar 24, attention / final soft-capping
                      (5 / 3, small enough to matter), sliding window 16 on even layers, tied head
  phi3                Phi3ForCausalLM: fused qkv_proj and gate_up_proj, longrope (original context
                      64, top-level original_max_position_embeddings as Phi-3 writes it)
  phi3-partial        Phi3ForCausalLM: partial_rotary_factor 0.5 (as Phi-4-mini's 0.75), sliding
                      window 16 on every layer
  gemma3              Gemma3ForCausalLM (text): q/k norms, sliding layers with their own rope
                      (theta 10000) and full ones with linear scaling (theta 1e6, factor 2)
  mixtral             MixtralForCausalLM: 4 experts, top 2 (softmax, renormalized), bfloat16
  qwen3-moe           Qwen3MoeForCausalLM: 4 experts of width 48, top 2, norm_topk_prob true,
                      layer 1 dense (mlp_only_layers), q/k norms
  qwen3-moe-nonorm    Qwen3MoeForCausalLM with norm_topk_prob false (the top-k softmax weights
                      are used as they are), 3 of 6 experts per token

Every case also stores window_logits.npy: the logits of a 200-token window (window_ids in
ref.json), where rope scaling and sliding windows change the result.

Usage (repository root): python3 tools/make_tiny_references.py [NAME...]
"""

import json
import os
import shutil

import numpy as np
import torch
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM,
                          Gemma2Config, Gemma2ForCausalLM, Gemma3TextConfig, Gemma3ForCausalLM,
                          Phi3Config, Phi3ForCausalLM, MixtralConfig, MixtralForCausalLM,
                          Qwen3MoeConfig, Qwen3MoeForCausalLM)

OUT = os.environ.get("BITSMITH_TINY_OUT", "tests/data/tiny")
INPUT_IDS = [1, 17, 42, 299, 0, 123, 7, 256, 88, 150, 3, 211]
WINDOW_IDS = [int(i) for i in np.random.default_rng(5).integers(0, 300, size=200)]
LONG = dict(max_position_embeddings=256)
SHORT_F = [1.0, 1.1, 1.3, 1.6, 2.0, 2.5, 3.1, 3.8]
LONG_F = [1.0, 1.2, 1.7, 2.4, 3.3, 4.4, 5.7, 7.2]
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
    {"name": "rope-llama3", "cls": LlamaForCausalLM, "cfg": LlamaConfig, "dtype": torch.float32, "theta": 500000.0,
     "rope": dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                  original_max_position_embeddings=64),
     "extra": dict(tie_word_embeddings=False, **LONG), "shard": None, "spelling4": True},
    {"name": "rope-linear", "cls": LlamaForCausalLM, "cfg": LlamaConfig, "dtype": torch.float32, "theta": 10000.0,
     "rope": dict(rope_type="linear", factor=2.0), "extra": dict(tie_word_embeddings=False, **LONG), "shard": None},
    {"name": "rope-dynamic", "cls": LlamaForCausalLM, "cfg": LlamaConfig, "dtype": torch.float32, "theta": 10000.0,
     "rope": dict(rope_type="dynamic", factor=2.0),
     "extra": dict(tie_word_embeddings=False, max_position_embeddings=64), "shard": None},
    {"name": "rope-yarn", "cls": LlamaForCausalLM, "cfg": LlamaConfig, "dtype": torch.float32, "theta": 10000.0,
     "rope": dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=64),
     "extra": dict(tie_word_embeddings=False, **LONG), "shard": None},
    {"name": "rope-longrope", "cls": LlamaForCausalLM, "cfg": LlamaConfig, "dtype": torch.float32, "theta": 10000.0,
     "rope": dict(rope_type="longrope", short_factor=SHORT_F, long_factor=LONG_F, original_max_position_embeddings=64),
     "extra": dict(tie_word_embeddings=False, **LONG), "shard": None},
    {"name": "qwen3", "cls": Qwen3ForCausalLM, "cfg": Qwen3Config, "dtype": torch.float32, "theta": 1000000.0,
     "extra": dict(tie_word_embeddings=True, head_dim=32, use_sliding_window=False, **LONG), "shard": None},
    {"name": "qwen3-sliding", "cls": Qwen3ForCausalLM, "cfg": Qwen3Config, "dtype": torch.float32, "theta": 10000.0,
     "extra": dict(tie_word_embeddings=False, head_dim=16, use_sliding_window=True, sliding_window=16,
                   max_window_layers=1, **LONG), "shard": None},
    {"name": "gemma2", "cls": Gemma2ForCausalLM, "cfg": Gemma2Config, "dtype": torch.float32, "theta": 10000.0,
     "extra": dict(tie_word_embeddings=True, head_dim=16, query_pre_attn_scalar=24, sliding_window=16,
                   attn_logit_softcapping=5.0, final_logit_softcapping=3.0, hidden_activation="gelu_pytorch_tanh",
                   num_hidden_layers=3, **LONG), "shard": None},
    {"name": "phi3", "cls": Phi3ForCausalLM, "cfg": Phi3Config, "dtype": torch.float32, "theta": 10000.0,
     "rope": dict(rope_type="longrope", short_factor=SHORT_F, long_factor=LONG_F, original_max_position_embeddings=64),
     "extra": dict(tie_word_embeddings=False, original_max_position_embeddings=64, sliding_window=None, pad_token_id=0,
                   **LONG), "shard": None},
    {"name": "phi3-partial", "cls": Phi3ForCausalLM, "cfg": Phi3Config, "dtype": torch.float32, "theta": 10000.0,
     "rope": dict(rope_type="default", partial_rotary_factor=0.5),
     "extra": dict(tie_word_embeddings=False, partial_rotary_factor=0.5, sliding_window=16, pad_token_id=0, **LONG), "shard": None},
    {"name": "gemma3", "cls": Gemma3ForCausalLM, "cfg": Gemma3TextConfig, "dtype": torch.float32, "theta": 1000000.0,
     "rope_nested": {"full_attention": dict(rope_type="linear", factor=2.0, rope_theta=1000000.0),
                     "sliding_attention": dict(rope_type="default", rope_theta=10000.0)},
     "extra": dict(tie_word_embeddings=True, head_dim=16, query_pre_attn_scalar=16, sliding_window=16,
                   layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                   num_hidden_layers=3, **LONG), "shard": None},
    {"name": "mistral-sliding", "cls": MistralForCausalLM, "cfg": MistralConfig, "dtype": torch.float32,
     "theta": 10000.0, "extra": dict(tie_word_embeddings=False, sliding_window=16, **LONG), "shard": None},
    {"name": "mixtral", "cls": MixtralForCausalLM, "cfg": MixtralConfig, "dtype": torch.bfloat16,
     "theta": 1000000.0, "extra": dict(tie_word_embeddings=False, sliding_window=None, num_local_experts=4,
                                       num_experts_per_tok=2, **LONG), "shard": None},
    {"name": "qwen3-moe", "cls": Qwen3MoeForCausalLM, "cfg": Qwen3MoeConfig, "dtype": torch.float32,
     "theta": 1000000.0, "extra": dict(tie_word_embeddings=False, head_dim=32, num_experts=4, num_experts_per_tok=2,
                                       moe_intermediate_size=48, norm_topk_prob=True, decoder_sparse_step=1,
                                       mlp_only_layers=[1], **LONG), "shard": None},
    {"name": "qwen3-moe-nonorm", "cls": Qwen3MoeForCausalLM, "cfg": Qwen3MoeConfig, "dtype": torch.float32,
     "theta": 10000.0, "extra": dict(tie_word_embeddings=True, num_experts=6, num_experts_per_tok=3,
                                     moe_intermediate_size=32, norm_topk_prob=False, decoder_sparse_step=1,
                                     mlp_only_layers=[], **LONG), "shard": None},
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
    d = getattr(model.config, "head_dim", None) or model.config.hidden_size // model.config.num_attention_heads
    want = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    err = ((inv - want).abs().max() / want.max()).item()
    assert err < 1e-6, f"rotary inv_freq does not match rope_theta={theta} (rel err {err})"


def make(case, seed):
    name, dtype = case["name"], case["dtype"]
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    common = dict(COMMON)
    common.update(case["extra"])
    if "rope_nested" in case:
        cfg = case["cfg"](**common, rope_parameters={k: dict(v) for k, v in case["rope_nested"].items()})
    elif "rope" in case:
        cfg = case["cfg"](**common, rope_parameters=dict(case["rope"], rope_theta=case["theta"]))
    else:
        cfg = case["cfg"](**common, rope_parameters=dict(rope_type="default", rope_theta=case["theta"]))
    model = case["cls"](cfg).eval()
    randomize(model, seed)
    if "rope" not in case and "rope_nested" not in case and not name.startswith("gemma"):
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
    if case.get("spelling4"):  # transformers 4.x: rope_scaling + top-level rope_theta
        rp = dict(cj.pop("rope_parameters"))
        rp.pop("rope_theta", None)
        cj["rope_scaling"] = rp
    cj.setdefault("torch_dtype", DTYPE_NAME[dtype])
    cj.setdefault("dtype", DTYPE_NAME[dtype])
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cj, f, indent=2, sort_keys=True)
        f.write("\n")

    ref_model = load_f32(case["cls"], folder)
    if "rope_nested" in case or name.startswith("gemma"):
        pass
    elif "rope" not in case:
        check_rope(ref_model, case["theta"])
    else:
        assert ref_model.config.rope_parameters["rope_type"] == case["rope"]["rope_type"]
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
    # a fresh model for the window: dynamic rope keeps state between calls in transformers
    win_model = load_f32(case["cls"], folder)
    with torch.no_grad():
        window = win_model(input_ids=torch.tensor([WINDOW_IDS])).logits[0].float().numpy()
    window = np.ascontiguousarray(window, dtype=np.float32)
    np.save(os.path.join(folder, "window_logits.npy"), window)
    # the window with plain rope / full attention, to show the feature changes the result
    plain_diff = None
    if "rope" in case or "rope_nested" in case or case["extra"].get("sliding_window"):
        plain_common = dict(COMMON)
        plain_common.update(case["extra"])
        plain_common["sliding_window"] = None if not name.startswith("gemma") else 100000
        if "use_sliding_window" in plain_common:
            plain_common["use_sliding_window"] = False
        if name.startswith("gemma3"):
            plain_rope = {"full_attention": dict(rope_type="default", rope_theta=case["theta"]),
                          "sliding_attention": dict(rope_type="default", rope_theta=case["theta"])}
        else:
            plain_rope = dict(rope_type="default", rope_theta=case["theta"])
        plain_cfg = case["cfg"](**plain_common, rope_parameters=plain_rope)
        plain_cfg._attn_implementation = "eager"
        plain = case["cls"](plain_cfg).eval()
        missing, unexpected = plain.load_state_dict(win_model.state_dict(), strict=False)
        assert not unexpected and all("inv_freq" in k or "lm_head" in k for k in missing), (missing, unexpected)
        if case["extra"].get("tie_word_embeddings"):
            plain.tie_weights()
        with torch.no_grad():
            pw = plain(input_ids=torch.tensor([WINDOW_IDS])).logits[0].float().numpy()
        plain_diff = float(np.abs(pw - window).max())
    files = sorted(x for x in os.listdir(folder) if x != "window_logits.npy")
    ref = {
        "model_class": case["cls"].__name__,
        "stored_dtype": DTYPE_NAME[dtype],
        "reference": "float32 CPU, stored weights upcast exactly, eager attention, no KV cache",
        "input_ids": INPUT_IDS,
        "window_ids": WINDOW_IDS,
        "window_logits_file": "window_logits.npy",
        "window_max_abs_diff_without_feature": plain_diff,
        "logits_file": "logits.npy",
        "logits_shape": list(logits.shape),
        "argmax": [int(i) for i in logits.argmax(axis=-1)],
        "last_row_first8": [float(x) for x in logits[-1, :8]],
        "logits_sum": float(logits.astype(np.float64).sum()),
        "logits_abs_max": float(np.abs(logits).max()),
        "logits_std": float(logits.std()),
        "seed": seed,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "files": sorted(files + ["window_logits.npy"]) + ["ref.json"],
    }
    with open(os.path.join(folder, "ref.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(folder, x)) for x in os.listdir(folder))
    print(f"{name}: {files} {size} bytes, logits std {ref['logits_std']:.3f} "
          f"absmax {ref['logits_abs_max']:.3f}, window changed by the feature: {plain_diff}", flush=True)


def main():
    import sys
    torch.set_num_threads(4)
    os.makedirs(OUT, exist_ok=True)
    only = set(sys.argv[1:])  # names to (re)make; all when empty
    for i, case in enumerate(CASES):
        if not only or case["name"] in only:
            make(case, seed=100 + i)


if __name__ == "__main__":
    main()
