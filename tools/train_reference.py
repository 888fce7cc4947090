#!/usr/bin/python3
"""Writes the PyTorch reference state files for Bitsmith's training engine (core/train/).

A tiny Llama-family decoder written in plain torch following transformers' modeling_llama.py /
modeling_qwen2.py exactly (RMSNorm in float32, rotate_half rotary embeddings, repeat_kv for grouped
queries, causal softmax in float32, down(silu(gate(x)) * up(x))), so no `transformers` is needed.

Cases, each a model folder Bitsmith's Model::load reads (config.json + model.safetensors, f32),
under tests/data/train/:
  student-llama   LlamaForCausalLM, untied head, GQA 4/2 heads, 2 blocks
  student-qwen2   Qwen2ForCausalLM, tied head, q/k/v biases, rope theta 1e6, 1 block
  teacher         LlamaForCausalLM, 1 block (the KD teacher of student-llama)
and state-<case>.safetensors holding, for a fixed batch of 2 sequences of 8 tokens (+1 target):
  ids [2, 9] (int32), logits [16, vocab], loss_ce [1], grad_ce.<param> (d CE / d param)
  student-llama also: teacher_logits, loss_kd [1] (α·T²·KL + (1−α)·CE at T = 2, α = 0.5),
  kl [1], grad_kd.<param>, and adam.<param>: the parameters after 2 AdamW steps (lr 1e-2,
  betas 0.9/0.999, eps 1e-8, weight decay 0.1 on matrices only, global-norm clip 1.0, CE loss
  on the same batch each step).
KL is PyTorch's kl_div(log_softmax(s/T), log_softmax(t/T), log_target=True, reduction="batchmean").

Usage (repository root): /usr/bin/python3 tools/train_reference.py
"""

import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

OUT = "tests/data/train"
VOCAB, HIDDEN, INTER, HEADS, KV_HEADS, MAXPOS = 64, 32, 64, 4, 2, 64
EPS = 1e-5


def save_safetensors(path, tensors):
    """Writes {name: np.ndarray} as a .safetensors file (F32 / I32), header padded to 8 bytes."""
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        dtype = {np.dtype("float32"): "F32", np.dtype("int32"): "I32"}[arr.dtype]
        data = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def make_weights(arch, layers, tied, bias, seed):
    g = torch.Generator().manual_seed(seed)
    hd = HIDDEN // HEADS
    w = {}

    def normal(*shape, std=0.2):
        return torch.randn(*shape, generator=g) * std

    w["model.embed_tokens.weight"] = normal(VOCAB, HIDDEN, std=0.5)
    for i in range(layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + normal(HIDDEN, std=0.1)
        w[p + "self_attn.q_proj.weight"] = normal(HEADS * hd, HIDDEN)
        w[p + "self_attn.k_proj.weight"] = normal(KV_HEADS * hd, HIDDEN)
        w[p + "self_attn.v_proj.weight"] = normal(KV_HEADS * hd, HIDDEN)
        if bias:
            w[p + "self_attn.q_proj.bias"] = normal(HEADS * hd, std=0.1)
            w[p + "self_attn.k_proj.bias"] = normal(KV_HEADS * hd, std=0.1)
            w[p + "self_attn.v_proj.bias"] = normal(KV_HEADS * hd, std=0.1)
        w[p + "self_attn.o_proj.weight"] = normal(HIDDEN, HEADS * hd)
        w[p + "post_attention_layernorm.weight"] = 1 + normal(HIDDEN, std=0.1)
        w[p + "mlp.gate_proj.weight"] = normal(INTER, HIDDEN)
        w[p + "mlp.up_proj.weight"] = normal(INTER, HIDDEN)
        w[p + "mlp.down_proj.weight"] = normal(HIDDEN, INTER)
    w["model.norm.weight"] = 1 + normal(HIDDEN, std=0.1)
    if not tied:
        w["lm_head.weight"] = normal(VOCAB, HIDDEN)
    cfg = {"architectures": [arch], "model_type": "qwen2" if arch.startswith("Qwen2") else "llama",
           "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": layers,
           "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "max_position_embeddings": MAXPOS,
           "rope_theta": 1e6 if bias else 10000.0, "rms_norm_eps": EPS, "tie_word_embeddings": tied,
           "hidden_act": "silu", "torch_dtype": "float32"}
    return cfg, w


# ---- the model, as transformers defines it ----------------------------------------------------

def rms_norm(x, weight, eps=EPS):
    x32 = x.to(torch.float32)
    var = x32.pow(2).mean(-1, keepdim=True)
    return weight * (x32 * torch.rsqrt(var + eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope_cos_sin(t, hd, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    pos = torch.arange(t).float()
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def repeat_kv(x, n_rep):
    b, kv, t, hd = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, kv, n_rep, t, hd).reshape(b, kv * n_rep, t, hd)


def forward(cfg, w, ids):
    """Logits [b * t, vocab] of the decoder described by config dict `cfg` with weights `w`."""
    b, t = ids.shape
    hidden, heads, kv_heads = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    vocab, eps = cfg["vocab_size"], cfg["rms_norm_eps"]
    hd = cfg.get("head_dim") or hidden // heads
    x = F.embedding(ids, w["model.embed_tokens.weight"])
    cos, sin = rope_cos_sin(t, hd, cfg["rope_theta"])
    mask = torch.full((t, t), torch.finfo(torch.float32).min).triu(1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = F.linear(h, w[p + "self_attn.q_proj.weight"], w.get(p + "self_attn.q_proj.bias"))
        k = F.linear(h, w[p + "self_attn.k_proj.weight"], w.get(p + "self_attn.k_proj.bias"))
        v = F.linear(h, w[p + "self_attn.v_proj.weight"], w.get(p + "self_attn.v_proj.bias"))
        q = q.view(b, t, heads, hd).transpose(1, 2)
        k = k.view(b, t, kv_heads, hd).transpose(1, 2)
        v = v.view(b, t, kv_heads, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = repeat_kv(k, heads // kv_heads)
        v = repeat_kv(v, heads // kv_heads)
        s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(hd) + mask
        pr = F.softmax(s, dim=-1, dtype=torch.float32)
        a = torch.matmul(pr, v).transpose(1, 2).reshape(b, t, heads * hd)
        x = x + F.linear(a, w[p + "self_attn.o_proj.weight"])
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        x = x + F.linear(F.silu(F.linear(h, w[p + "mlp.gate_proj.weight"])) * F.linear(h, w[p + "mlp.up_proj.weight"]),
                         w[p + "mlp.down_proj.weight"])
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return F.linear(x, head).reshape(b * t, vocab)


def kd_loss(student_logits, teacher_logits, targets, temperature, alpha):
    kl = F.kl_div(F.log_softmax(student_logits / temperature, -1), F.log_softmax(teacher_logits / temperature, -1),
                  log_target=True, reduction="batchmean")
    ce = F.cross_entropy(student_logits, targets)
    return alpha * temperature ** 2 * kl + (1 - alpha) * ce, kl


def write_model(name, cfg, w):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    save_safetensors(os.path.join(d, "model.safetensors"), {k: v.numpy() for k, v in w.items()})


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(123)
    batch = torch.randint(0, VOCAB, (2, 9), generator=g)
    inputs, targets = batch[:, :-1], batch[:, 1:].reshape(-1)

    tcfg, tw = make_weights("LlamaForCausalLM", 1, False, False, seed=7)
    write_model("teacher", tcfg, tw)
    with torch.no_grad():
        teacher_logits = forward(tcfg, tw, inputs)

    for name, arch, layers, tied, bias, seed in [("student-llama", "LlamaForCausalLM", 2, False, False, 1),
                                                 ("student-qwen2", "Qwen2ForCausalLM", 1, True, True, 2)]:
        cfg, w = make_weights(arch, layers, tied, bias, seed)
        write_model(name, cfg, w)
        state = {"ids": batch.to(torch.int32).numpy()}
        params = {k: v.clone().requires_grad_(True) for k, v in w.items()}
        logits = forward(cfg, params, inputs)
        ce = F.cross_entropy(logits, targets)
        ce.backward()
        state["logits"] = logits.detach().numpy()
        state["loss_ce"] = np.array([ce.item()], dtype=np.float32)
        for k, p in params.items():
            state["grad_ce." + k] = p.grad.numpy().copy()
        if name == "student-llama":
            params = {k: v.clone().requires_grad_(True) for k, v in w.items()}
            loss, kl = kd_loss(forward(cfg, params, inputs), teacher_logits, targets, 2.0, 0.5)
            loss.backward()
            state["teacher_logits"] = teacher_logits.numpy()
            state["loss_kd"] = np.array([loss.item()], dtype=np.float32)
            state["kl"] = np.array([kl.item()], dtype=np.float32)
            for k, p in params.items():
                state["grad_kd." + k] = p.grad.numpy().copy()
            # two AdamW steps with clipping
            params = {k: v.clone().requires_grad_(True) for k, v in w.items()}
            decay = [p for k, p in params.items() if p.dim() == 2]
            nodecay = [p for k, p in params.items() if p.dim() != 2]
            opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                                    lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
            for _ in range(2):
                opt.zero_grad()
                F.cross_entropy(forward(cfg, params, inputs), targets).backward()
                torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
                opt.step()
            for k, p in params.items():
                state["adam." + k] = p.detach().numpy().copy()
        save_safetensors(os.path.join(OUT, f"state-{name}.safetensors"), state)
        print(name, "ce", ce.item())


if __name__ == "__main__":
    main()
