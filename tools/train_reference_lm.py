#!/usr/bin/env python3
"""Trains Bitsmith's bundled default language model and writes the PyTorch reference figures.

Runs on a CUDA machine (torch, transformers, tokenizers, safetensors, numpy). Inputs come from
tools/prepare_training_text.py: .devdata/train.txt, .devdata/valid.txt, .devdata/wiki.test.raw and
resources/models/default/eval.txt. Run from the repository root.

Steps:
  1. byte-level BPE tokenizer (4096 tokens, GPT-2 pre-tokenizer regex, <|endoftext|> = id 0)
  2. LlamaForCausalLM, ~8.4 M parameters (GQA 4/2 heads), trained with bf16 autocast, AdamW,
     cosine schedule, validation-based early stopping (best weights kept), wall-time cap
  3. saves resources/models/default/ (config.json, model.safetensors in bfloat16,
     generation_config.json, tokenizer.json, tokenizer_config.json, README.md)
  4. reloads the saved folder in float32 and writes tests/data/reference/default_reference.json
     and tests/data/reference/default_logits_<i>.npy (perplexity protocol of shared/REFERENCE.md)

Usage: python3 tools/train_reference_lm.py [--max-steps N] [--time-budget S] [--smoke]
"""

import argparse
import json
import math
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

import tokenizers
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM

EOT = "<|endoftext|>"
MODEL_DIR = "resources/models/default"
REF_DIR = "tests/data/reference"
CTX = 256
ROPE_THETA = 10000.0

PROMPTS = [
    "In the beginning God created",
    "And it came to pass, when the",
    "HACKER n. [originally, someone who makes furniture with an axe]",
]

TRICKY = [
    "Hello world",
    " leading space",
    "  two leading spaces and   runs of    spaces  ",
    "   ",
    "tabs\tand\t\ttabs\n\nnewlines\n\n\nend",
    "CRLF line\r\nnext line\r\n",
    "digits 0123456789 3.14159 1,000,000 2024-01-01 x86_64",
    "unicode: café naïve Ærø Straße Ελληνικά русский 中文 日本語 ™ — “quoted” ‘single’",
    "emoji: 👍🏽 🤖🚀 ❤️ 👨‍👩‍👧",
    "text with <|endoftext|> inside and <|endoftext|><|endoftext|>twice",
    "don't I'll we're they've she's I'm you'd DON'T O'Reilly's",
    "\u00a0non-breaking\u00a0space and zero\u200bwidth space",
    "punctuation!!! ??? ... --- (parens) [brackets] {braces} \"quotes\" a/b\\c",
    "a",
    "",
]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def read_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8")


# ----------------------------------------------------------------------------------------------
# tokenizer


def train_tokenizer(train_path, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([train_path], trainer)
    assert tok.token_to_id(EOT) == 0, "special token must be id 0"
    assert tok.get_vocab_size() == vocab_size, tok.get_vocab_size()
    return tok


def save_tokenizer(tok, out_dir):
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT,
        "eos_token": EOT,
        "unk_token": EOT,
        "add_bos_token": False,
        "add_eos_token": False,
        "model_max_length": 512,
        "clean_up_tokenization_spaces": False,
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


def encode(tok, text):
    return tok.encode(text, add_special_tokens=False).ids


# ----------------------------------------------------------------------------------------------
# model


def make_config(vocab_size):
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=8,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_theta=ROPE_THETA,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        attention_dropout=0.0,
        initializer_range=0.02,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=None,
        use_cache=True,
    )


def check_rope(model, theta):
    """transformers 5 keeps rope_theta in config.rope_parameters: make sure it really is used."""
    inv = model.model.rotary_emb.inv_freq.detach().double().cpu()
    d = model.config.hidden_size // model.config.num_attention_heads
    want = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    err = (inv - want).abs().max().item() / want.max().item()
    assert err < 1e-6, f"rotary inv_freq does not match rope_theta={theta} (rel err {err})"


def patch_config_json(folder, dtype_name, theta):
    """Adds the transformers-4 spellings ('rope_theta', 'torch_dtype') next to the v5 ones, so
    readers of either layout find them."""
    path = os.path.join(folder, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg.setdefault("rope_theta", theta)
    cfg.setdefault("torch_dtype", dtype_name)
    cfg.setdefault("dtype", dtype_name)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    return cfg


def save_model(model, out_dir):
    try:
        model.save_pretrained(out_dir, safe_serialization=True)
    except TypeError:  # newer transformers: safetensors only, argument removed
        model.save_pretrained(out_dir)


def load_f32(folder, device="cpu"):
    try:
        m = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        m = LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, attn_implementation="eager")
    return m.to(device).eval()


# ----------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def protocol_nll(model, ids, ctx, device, batch, autocast=False, max_windows=None):
    """Perplexity protocol: non-overlapping windows of ctx tokens, remainder dropped, tokens
    1..ctx-1 of each window scored. Returns a dict of figures."""
    n_win = len(ids) // ctx
    if max_windows is not None:
        n_win = min(n_win, max_windows)
    windows = torch.tensor(ids[: n_win * ctx], dtype=torch.long).view(n_win, ctx)
    total = 0.0
    per_window = []
    for s in range(0, n_win, batch):
        w = windows[s:s + batch].to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=w).logits
        logp = F.log_softmax(logits.float(), dim=-1)
        nll = -logp[:, :-1].gather(-1, w[:, 1:, None]).squeeze(-1).double()  # [b, ctx-1]
        per_window.extend(nll.mean(dim=1).tolist())
        total += nll.sum().item()
    scored = n_win * (ctx - 1)
    mean = total / scored
    return {
        "ctx": ctx,
        "tokens": len(ids),
        "windows": n_win,
        "scored_tokens": scored,
        "mean_nll": mean,
        "ppl": math.exp(mean),
        "window_mean_nll": per_window,
    }


def lr_at(step, max_steps, warmup, lr_max, lr_min):
    if step < warmup:
        return lr_max * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * p))


# ----------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--max-steps", type=int, default=700)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-min", type=float, default=1e-4)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--patience", type=int, default=6, help="evaluations without improvement")
    ap.add_argument("--time-budget", type=float, default=420.0, help="training wall-time cap, s")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=8, help="CPU threads for the reference pass")
    ap.add_argument("--smoke", action="store_true", help="few wikitext windows (pipeline test)")
    args = ap.parse_args()

    t_start = time.time()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    dev = "cuda"
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, tokenizers "
        f"{tokenizers.__version__}, gpu {torch.cuda.get_device_name(0)}")
    os.makedirs(MODEL_DIR, exist_ok=True)
    os.makedirs(REF_DIR, exist_ok=True)

    # 1. tokenizer --------------------------------------------------------------------------
    tok = train_tokenizer(".devdata/train.txt", args.vocab_size)
    save_tokenizer(tok, MODEL_DIR)
    tok = Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))  # use exactly what ships
    train_ids = encode(tok, read_text(".devdata/train.txt"))
    valid_ids = encode(tok, read_text(".devdata/valid.txt"))
    log(f"tokenizer trained ({time.time() - t_start:.1f}s): train {len(train_ids)} tokens, "
        f"valid {len(valid_ids)} tokens")

    # 2. training ---------------------------------------------------------------------------
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    config = make_config(args.vocab_size)
    model = LlamaForCausalLM(config).to(dev)
    check_rope(model, ROPE_THETA)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params} parameters")

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)

    data = torch.tensor(train_ids, dtype=torch.long, device=dev)
    offsets = torch.arange(CTX + 1, device=dev)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    best = {"val": float("inf"), "step": -1, "state": None, "train": None}
    history = []
    bad = 0
    t_train = time.time()
    run_loss, run_n = 0.0, 0
    step = 0
    stop_reason = "max_steps"
    for step in range(1, args.max_steps + 1):
        lr = lr_at(step - 1, args.max_steps, args.warmup, args.lr, args.lr_min)
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, len(train_ids) - CTX - 1, (args.batch,), generator=gen).to(dev)
        x = data[starts[:, None] + offsets]  # [B, CTX+1]
        model.train()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=x[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run_loss += loss.item() if step % 10 == 0 or step == 1 else 0.0
        run_n += 1 if step % 10 == 0 or step == 1 else 0

        if step % args.eval_every == 0 or step == args.max_steps:
            model.eval()
            v = protocol_nll(model, valid_ids, CTX, dev, 64, autocast=True)["mean_nll"]
            tr = run_loss / max(1, run_n)
            run_loss, run_n = 0.0, 0
            elapsed = time.time() - t_train
            history.append({"step": step, "train_loss": tr, "val_loss": v, "lr": lr,
                            "elapsed_s": round(elapsed, 1)})
            mark = ""
            if v < best["val"] - 1e-4:
                best.update(val=v, step=step, train=tr,
                            state={k: t.detach().clone().cpu() for k, t in model.state_dict().items()})
                bad = 0
                mark = " *"
            else:
                bad += 1
            log(f"step {step:5d}  lr {lr:.2e}  train {tr:.4f}  val {v:.4f}  "
                f"({elapsed:.0f}s, {elapsed / step * 1000:.1f} ms/step){mark}")
            if bad >= args.patience:
                stop_reason = f"early stop: no improvement in {args.patience} evaluations"
                break
            if elapsed > args.time_budget:
                stop_reason = f"time budget {args.time_budget:.0f}s reached"
                break
    train_time = time.time() - t_train
    log(f"training done after {step} steps, {train_time:.0f}s ({stop_reason}); best val "
        f"{best['val']:.4f} at step {best['step']}")
    epochs = step * args.batch * CTX / len(train_ids)

    # 3. save -------------------------------------------------------------------------------
    model.load_state_dict(best["state"])
    model = model.to(torch.bfloat16).cpu()
    model.generation_config.bos_token_id = 0
    model.generation_config.eos_token_id = 0
    save_model(model, MODEL_DIR)
    if not os.path.exists(os.path.join(MODEL_DIR, "generation_config.json")):
        model.generation_config.save_pretrained(MODEL_DIR)
    cfg_json = patch_config_json(MODEL_DIR, "bfloat16", ROPE_THETA)
    log(f"saved {sorted(os.listdir(MODEL_DIR))}")
    log("config.json: " + json.dumps(cfg_json, sort_keys=True))
    best_bf16 = {k: v.to(torch.bfloat16).float() for k, v in best["state"].items()}
    del model, data, opt
    torch.cuda.empty_cache()

    # 4. reference figures ------------------------------------------------------------------
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    ref_model = load_f32(MODEL_DIR, "cpu")
    check_rope(ref_model, ROPE_THETA)
    sd = ref_model.state_dict()
    for k, v in best_bf16.items():
        assert torch.equal(sd[k], v), f"reloaded weight {k} differs from the bf16-rounded best weight"
    log("reloaded saved folder in float32 on CPU; weights match bf16-rounded training weights")

    eval_text = read_text(os.path.join(MODEL_DIR, "eval.txt"))
    eval_ids = encode(tok, eval_text)
    t0 = time.time()
    ev = protocol_nll(ref_model, eval_ids, CTX, "cpu", 8)
    ev.update(file="resources/models/default/eval.txt", device="cpu", dtype="float32",
              bytes=len(eval_text.encode("utf-8")))
    log(f"eval.txt ctx {CTX}: ppl {ev['ppl']:.4f} ({ev['tokens']} tokens, {ev['windows']} windows) "
        f"[{time.time() - t0:.1f}s CPU]")
    quick = protocol_nll(ref_model, eval_ids, 128, "cpu", 8, max_windows=8)
    quick.update(file="resources/models/default/eval.txt", device="cpu", dtype="float32",
                 note="first 8 windows of 128 tokens only, for fast tests")

    gpu_model = load_f32(MODEL_DIR, dev)
    ev_gpu = protocol_nll(gpu_model, eval_ids, CTX, dev, 32)
    log(f"eval.txt on GPU float32 (no TF32): ppl {ev_gpu['ppl']:.6f} vs CPU {ev['ppl']:.6f}")

    wiki = None
    if os.path.exists(".devdata/wiki.test.raw"):
        wtext = read_text(".devdata/wiki.test.raw").replace("\r\n", "\n")
        wids = encode(tok, wtext)
        t0 = time.time()
        wiki = protocol_nll(gpu_model, wids, CTX, dev, 32, max_windows=4 if args.smoke else None)
        wiki.update(file="wikitext-2-raw/wiki.test.raw (CRLF -> LF)", device="cuda float32, TF32 off",
                    gpu=torch.cuda.get_device_name(0), bytes=len(wtext.encode("utf-8")),
                    characters=len(wtext))
        wiki["window_mean_nll"] = wiki["window_mean_nll"][:16]
        wiki["note"] = "window_mean_nll lists the first 16 windows only"
        log(f"wikitext-2 test ctx {CTX}: ppl {wiki['ppl']:.4f} ({wiki['tokens']} tokens, "
            f"{wiki['windows']} windows) [{time.time() - t0:.1f}s GPU]")
    del gpu_model

    # tokenizer checks
    tricky = []
    for s in TRICKY:
        ids = encode(tok, s)
        tricky.append({"text": s, "ids": ids, "tokens": [tok.id_to_token(i) for i in ids],
                       "decoded": tok.decode(ids, skip_special_tokens=False)})
    auto_check = "not run"
    try:
        from transformers import AutoTokenizer
        at = AutoTokenizer.from_pretrained(MODEL_DIR)
        mism = [t["text"] for t in tricky if at(t["text"], add_special_tokens=False)["input_ids"] != t["ids"]]
        auto_check = "AutoTokenizer(" + type(at).__name__ + ") ids identical" if not mism else f"mismatch: {mism}"
    except Exception as e:  # noqa: BLE001 -- informative only
        auto_check = f"AutoTokenizer failed: {e!r}"
    log(f"tokenizer cross-check: {auto_check}")
    head = eval_text[:2000]

    # prompts: full float32 logits and 20-token greedy continuations (CPU, no KV cache)
    prompts = []
    with torch.no_grad():
        for i, p in enumerate(PROMPTS):
            ids = encode(tok, p)
            logits = ref_model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
            fn = f"default_logits_{i}.npy"
            np.save(os.path.join(REF_DIR, fn), np.ascontiguousarray(logits, dtype=np.float32))
            seq = list(ids)
            for _ in range(20):
                nxt = ref_model(input_ids=torch.tensor([seq])).logits[0, -1]
                seq.append(int(torch.argmax(nxt).item()))
            cont = seq[len(ids):]
            prompts.append({"text": p, "ids": ids, "logits_file": fn, "logits_shape": list(logits.shape),
                            "last_token_argmax": int(np.argmax(logits[-1])),
                            "last_token_top5": [int(j) for j in np.argsort(-logits[-1])[:5]],
                            "greedy_ids": cont, "greedy_text": tok.decode(cont)})
            log(f"prompt {i}: {p!r} -> {tok.decode(cont)!r}")

    ref = {
        "model": MODEL_DIR,
        "generated_by": "tools/train_reference_lm.py",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "weights": "model.safetensors (bfloat16) upcast exactly to float32; eager attention",
        "protocol": "tokenize whole text (no special tokens), non-overlapping windows of ctx tokens, "
                    "remainder dropped, score tokens 1..ctx-1 of each window, ppl = exp(mean nll)",
        "perplexity": {"eval_txt": ev, "eval_txt_quick": quick, "wikitext2_test": wiki,
                       "eval_txt_gpu_crosscheck": {"device": "cuda float32, TF32 off", "ppl": ev_gpu["ppl"],
                                                   "mean_nll": ev_gpu["mean_nll"]}},
        "tokenizer": {"eval_txt_head": {"chars": len(head), "text": head, "ids": encode(tok, head)},
                      "tricky": tricky, "auto_tokenizer_check": auto_check},
        "prompts": prompts,
        "training": {"parameters": n_params, "steps": step, "best_step": best["step"],
                     "best_val_loss": best["val"], "train_loss_at_best": best["train"],
                     "epochs": epochs, "stop_reason": stop_reason, "train_time_s": round(train_time, 1),
                     "train_tokens": len(train_ids), "valid_tokens": len(valid_ids), "history": history,
                     "gpu": torch.cuda.get_device_name(0)},
    }
    with open(os.path.join(REF_DIR, "default_reference.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, indent=1, ensure_ascii=False)
        f.write("\n")
    write_model_card(ref, args)
    log(f"all done in {time.time() - t_start:.0f}s")


def write_model_card(ref, args):
    tr = ref["training"]
    ev = ref["perplexity"]["eval_txt"]
    wk = ref["perplexity"]["wikitext2_test"]
    wk_line = (f"| WikiText-2 raw test (CRLF→LF), {CTX} | {wk['tokens']} | {wk['windows']} | "
               f"{wk['mean_nll']:.4f} | {wk['ppl']:.3f} | GPU float32, TF32 off |" if wk else "")
    card = f"""# Bitsmith default model

A small Llama-architecture causal language model bundled with Bitsmith so that every feature
(loading, perplexity, quantization, pruning, generation) can be tried without downloading anything.
It is a toy: it writes King-James-flavoured English and Jargon-File-flavoured definitions.

## Architecture
- `LlamaForCausalLM` (Hugging Face layout), {tr['parameters']:,} parameters, weights stored in **bfloat16**
  (`model.safetensors`, single file).
- vocab 4096, hidden 256, MLP 768 (SiLU, gated), 8 layers, 4 attention heads of 64, 2 key/value heads (GQA),
  RoPE θ = 10000, RMSNorm ε = 1e-5, context 512, untied input/output embeddings, no biases.
- Tokenizer: byte-level BPE (`tokenizer.json`), 4096 tokens, GPT-2 pre-tokenizer regex, no normalizer,
  no prefix space; `<|endoftext|>` = id 0 is BOS/EOS. No special tokens are added when encoding.
- `config.json` carries both the transformers-5 keys (`rope_parameters`, `dtype`) and the older
  spellings (`rope_theta`, `torch_dtype`).

## Training data (all public domain)
| source | Debian package | licence |
| --- | --- | --- |
| King James Bible (Authorized Version) | bible-kjv-text | public domain |
| The Jargon File 4.4.7 (dictd) | dict-jargon | public domain |
| The Devil's Dictionary, Ambrose Bierce (dictd) | dict-devil | public domain |

Built by `tools/prepare_training_text.py`: ~5.6 MB train, ~0.18 MB validation, and the held-out
`eval.txt` (~69 KB: the books of Ruth, Jonah, Joel and James, plus one contiguous run of entries from
each dictionary; none of these books or entries is in the training or validation text).

## Training
`tools/train_reference_lm.py`: random windows of {CTX} tokens, batch {args.batch}, AdamW (β 0.9/0.95,
weight decay 0.1 on matrices), learning rate {args.lr:g} with {args.warmup} warm-up steps and cosine decay
to {args.lr_min:g} over {args.max_steps} steps, bf16 autocast, gradient clipping 1.0, seed {args.seed};
validation every {args.eval_every} steps, early stopping with patience {args.patience}, best weights kept.
Ran {tr['steps']} steps ({tr['epochs']:.1f} epochs of {tr['train_tokens']:,} tokens, {tr['train_time_s']:.0f} s
on {tr['gpu']}); stop: {tr['stop_reason']}.
Best validation loss **{tr['best_val_loss']:.4f}** (perplexity {math.exp(tr['best_val_loss']):.2f}, bf16
autocast) at step {tr['best_step']}; training loss there {tr['train_loss_at_best']:.4f}.

## Reference figures
Protocol of `shared/REFERENCE.md` (non-overlapping windows, tokens 1..ctx−1 scored), weights upcast
exactly from bfloat16 to float32, eager attention. Full details, per-window values, tokenizer test
vectors and prompt logits: `tests/data/reference/default_reference.json` and `default_logits_*.npy`.

| text, ctx | tokens | windows | mean NLL | PPL | computed on |
| --- | --- | --- | --- | --- | --- |
| `eval.txt`, {CTX} | {ev['tokens']} | {ev['windows']} | {ev['mean_nll']:.4f} | {ev['ppl']:.3f} | CPU float32 |
{wk_line}

WikiText-2 is out of domain for this model (modern encyclopaedic English), hence its much higher perplexity.

## Files
`config.json`, `generation_config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`,
`eval.txt` (held-out evaluation text), this `README.md`.
"""
    with open(os.path.join(MODEL_DIR, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)


if __name__ == "__main__":
    main()
