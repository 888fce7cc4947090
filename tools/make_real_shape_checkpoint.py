#!/usr/bin/env python3
"""make_real_shape_checkpoint.py: writes a random-weight Hugging Face Llama folder of a real shape
(Llama-3.2-1B or Llama-3-8B) for benchmarks and memory tests (issue 13). Standard library only.

    python3 tools/make_real_shape_checkpoint.py --shape llama-3.2-1b --out /work/ckpt/llama-3.2-1b
    python3 tools/make_real_shape_checkpoint.py --shape llama-3-8b --out /work/ckpt/llama-3-8b
    python3 tools/make_real_shape_checkpoint.py --shape llama-3.2-1b --layers 2 --vocab 4096 --out /tmp/tiny

The folder holds what a checkpoint downloaded from the Hub holds: config.json (with the real
model's rope_scaling: Llama 3.2 1B and Llama 3.1 8B use the llama3 rope, Llama 3 8B plain rope), generation_config.json, bf16 safetensors sharded
as save_pretrained does (model-0000k-of-0000N.safetensors + model.safetensors.index.json; a single
model.safetensors when everything fits in one shard), tokenizer.json / tokenizer_config.json
(Bitsmith's bundled byte-level BPE vocabulary of 4096 tokens; the embedding rows above it are
never produced by the tokenizer, exactly like the reserved tokens of the real vocabulary) and
eval.txt / calib.txt (English text from the bundled model, so that `eval`, `compress --method
gptq` and `sensitivity` find their default texts).

Weights: bf16 ~ N(0, 0.02) (norm weights 1.0). A pool of a few MB of random bf16 values is drawn
once and each tensor is the pool repeated from an offset that depends on the tensor's name, so
generation is bound by the disk, not by Python: ~16 GB for the 8B shape in about a minute on a
fast disk. The pool length is a prime, so rows of a matrix are not copies of each other.
The folder is written as DIR.partial and renamed into place at the end: an existing DIR is
complete (use --force to replace it). Never commit the output.
"""
import argparse
import array
import json
import os
import random
import shutil
import struct
import sys
import time
import zlib

SHAPES = {
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=64, tie_word_embeddings=True, rope_theta=500000.0,
                         rms_norm_eps=1e-5,
                         rope_scaling=dict(factor=32.0, high_freq_factor=4.0, low_freq_factor=1.0,
                                           original_max_position_embeddings=8192, rope_type="llama3")),
    "llama-3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, head_dim=128, tie_word_embeddings=False, rope_theta=500000.0,
                       rms_norm_eps=1e-5),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=128, tie_word_embeddings=False, rope_theta=500000.0,
                         rms_norm_eps=1e-5,
                         rope_scaling=dict(factor=8.0, high_freq_factor=4.0, low_freq_factor=1.0,
                                           original_max_position_embeddings=8192, rope_type="llama3")),
}
ALIASES = {"1b": "llama-3.2-1b", "llama-3.2-1b": "llama-3.2-1b", "8b": "llama-3-8b", "llama-3-8b": "llama-3-8b",
           "llama-3.1-8b": "llama-3.1-8b"}
REAL_VOCAB = 128256
POOL_ELEMS = 2097143          # a prime near 2^21: 4 MiB of bf16 values
CHUNK_ELEMS = 4 * 1024 * 1024  # 8 MiB per write() call
BF16_ONE = 0x3F80

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "..", "resources", "models", "default")


def parse_size(text):
    """'5GB' (decimal, as save_pretrained), '4GiB', '500MB', '123456' (bytes)."""
    t = text.strip().upper()
    units = [("KIB", 1024), ("MIB", 1024 ** 2), ("GIB", 1024 ** 3), ("TIB", 1024 ** 4),
             ("KB", 1000), ("MB", 1000 ** 2), ("GB", 1000 ** 3), ("TB", 1000 ** 4), ("B", 1)]
    for suffix, mult in units:
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult)
    return int(t)


def tensor_list(cfg):
    """(name, shape, kind) in the state-dict order of LlamaForCausalLM; kind: 'normal' or 'ones'."""
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    out = [("model.embed_tokens.weight", (v, h), "normal")]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        out += [
            (p + "self_attn.q_proj.weight", (q, h), "normal"),
            (p + "self_attn.k_proj.weight", (kv, h), "normal"),
            (p + "self_attn.v_proj.weight", (kv, h), "normal"),
            (p + "self_attn.o_proj.weight", (h, q), "normal"),
            (p + "mlp.gate_proj.weight", (i, h), "normal"),
            (p + "mlp.up_proj.weight", (i, h), "normal"),
            (p + "mlp.down_proj.weight", (h, i), "normal"),
            (p + "input_layernorm.weight", (h,), "ones"),
            (p + "post_attention_layernorm.weight", (h,), "ones"),
        ]
    out.append(("model.norm.weight", (h,), "ones"))
    if not cfg["tie_word_embeddings"]:
        out.append(("lm_head.weight", (v, h), "normal"))
    return out


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def shard(tensors, max_bytes):
    """save_pretrained's rule: a new shard when the next tensor would push the current one over."""
    shards, cur, cur_bytes = [], [], 0
    for t in tensors:
        nbytes = numel(t[1]) * 2
        if cur and cur_bytes + nbytes > max_bytes:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(t)
        cur_bytes += nbytes
    if cur:
        shards.append(cur)
    return shards


def make_pool(seed, std):
    """POOL_ELEMS bf16 values ~ N(0, std), as bytes, followed by enough of its own start that any
    window of CHUNK_ELEMS values starting inside the pool is one contiguous slice."""
    rng = random.Random(seed)
    g = rng.gauss
    f32 = array.array("f", [g(0.0, std) for _ in range(POOL_ELEMS)])
    if sys.byteorder != "little":
        f32.byteswap()
    halves = array.array("H")
    halves.frombytes(f32.tobytes())
    bf16 = halves[1::2]  # top 16 bits of each f32 (little-endian: the odd half-words), truncation
    if sys.byteorder != "little":
        bf16.byteswap()
    raw = bf16.tobytes()
    reps = (POOL_ELEMS + CHUNK_ELEMS) // POOL_ELEMS + 1
    return memoryview(raw * reps)


def write_tensor_data(f, name, kind, n, pool, ones, seed):
    if kind == "ones":
        left = n
        while left:
            k = min(left, CHUNK_ELEMS)
            f.write(ones[: 2 * k])
            left -= k
        return
    pos = (zlib.crc32(name.encode()) ^ (seed * 0x9E3779B1)) % POOL_ELEMS
    left = n
    while left:
        k = min(left, CHUNK_ELEMS)
        f.write(pool[2 * pos: 2 * (pos + k)])
        pos = (pos + k) % POOL_ELEMS
        left -= k


def write_safetensors(path, tensors, pool, ones, seed):
    # As the safetensors library: header keys and data in name order, header padded with spaces.
    tensors = sorted(tensors, key=lambda t: t[0])
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, _ in tensors:
        nbytes = numel(shape) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((-len(hjson)) % 8)
    with open(path, "wb", buffering=0) as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for name, shape, kind in tensors:
            write_tensor_data(f, name, kind, numel(shape), pool, ones, seed)
    return offset


def trimmed_tokenizer(tok, vocab):
    """The bundled tokenizer restricted to ids < vocab (merges whose parts or result fall out are
    dropped), so every id it produces has an embedding row."""
    model = tok["model"]
    kept = {k: i for k, i in model["vocab"].items() if i < vocab}
    merges = []
    for m in model["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        if a in kept and b in kept and (a + b) in kept:
            merges.append(m)
    model["vocab"] = kept
    model["merges"] = merges
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["id"] < vocab]
    return tok


def text_head(path, limit):
    """About `limit` bytes of a text file, cut at a line end."""
    with open(path, "rb") as f:
        data = f.read(limit + 4096)
    if len(data) > limit:
        cut = data.rfind(b"\n", 0, limit)
        data = data[: cut + 1 if cut > 0 else limit]
    return data


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", required=True, choices=sorted(ALIASES), help="llama-3.2-1b (1b), llama-3-8b (8b) or llama-3.1-8b")
    ap.add_argument("--out", required=True, help="output folder (created; must not exist unless --force)")
    ap.add_argument("--layers", type=int, help="override num_hidden_layers")
    ap.add_argument("--vocab", type=int, default=REAL_VOCAB, help=f"vocab_size (default the real {REAL_VOCAB})")
    ap.add_argument("--shard-size", default="5GB", help="max bytes per shard, as save_pretrained (default 5GB = 5e9)")
    ap.add_argument("--max-positions", type=int, default=8192, help="max_position_embeddings (default 8192)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=0.02, help="standard deviation of the weights (default 0.02)")
    ap.add_argument("--text-from", default=DEFAULT_MODEL,
                    help="folder with tokenizer.json, eval.txt, calib.txt (default: the bundled model)")
    ap.add_argument("--eval-bytes", type=int, default=32 * 1024, help="size of eval.txt (default 32 KiB)")
    ap.add_argument("--calib-bytes", type=int, default=64 * 1024, help="size of calib.txt (default 64 KiB)")
    ap.add_argument("--force", action="store_true", help="replace an existing output folder")
    args = ap.parse_args()

    shape_name = ALIASES[args.shape]
    cfg = dict(SHAPES[shape_name])
    if args.layers is not None:
        if args.layers < 1:
            ap.error("--layers must be >= 1")
        cfg["num_hidden_layers"] = args.layers
    cfg["vocab_size"] = args.vocab

    with open(os.path.join(args.text_from, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    base_ids = sorted(tok["model"]["vocab"].values())
    n_base = max(base_ids + [t["id"] for t in tok["added_tokens"]]) + 1
    if args.vocab < 258:
        ap.error("--vocab must be >= 258 (the 256 byte tokens, <|endoftext|> and one merge)")
    if args.vocab < n_base:
        tok = trimmed_tokenizer(tok, args.vocab)
    special = tok["added_tokens"][0]["id"] if tok["added_tokens"] else 0

    try:
        max_shard = parse_size(args.shard_size)
    except ValueError:
        ap.error(f"--shard-size '{args.shard_size}' is not a size (e.g. 5GB, 2GiB, 500MB)")
    if max_shard <= 0:
        ap.error("--shard-size must be positive")

    tensors = tensor_list(cfg)
    params = sum(numel(t[1]) for t in tensors)
    total_bytes = 2 * params
    shards = shard(tensors, max_shard)

    out = os.path.abspath(args.out)
    if os.path.exists(out) and not args.force:
        print(f"make_real_shape_checkpoint: {out} exists (use --force to replace it)", file=sys.stderr)
        return 1
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    free = shutil.disk_usage(parent).free
    if free < total_bytes + (64 << 20):
        print(f"make_real_shape_checkpoint: needs {total_bytes / 1e9:.2f} GB, {free / 1e9:.2f} GB free on {parent}",
              file=sys.stderr)
        return 1
    tmp = out + ".partial"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)

    t0 = time.monotonic()
    pool = make_pool(args.seed, args.std)
    ones = memoryview(struct.pack("<H", BF16_ONE) * CHUNK_ELEMS)
    t_pool = time.monotonic() - t0

    config = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": special,
        "eos_token_id": special,
        "head_dim": cfg["head_dim"],
        "hidden_act": "silu",
        "hidden_size": cfg["hidden_size"],
        "initializer_range": args.std,
        "intermediate_size": cfg["intermediate_size"],
        "max_position_embeddings": args.max_positions,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": cfg["num_attention_heads"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_key_value_heads": cfg["num_key_value_heads"],
        "pretraining_tp": 1,
        "rms_norm_eps": cfg["rms_norm_eps"],
        "rope_theta": cfg["rope_theta"],
        **({"rope_scaling": cfg["rope_scaling"]} if "rope_scaling" in cfg else {}),
        "tie_word_embeddings": cfg["tie_word_embeddings"],
        "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0",
        "use_cache": True,
        "vocab_size": cfg["vocab_size"],
        "_bitsmith_generated": f"random weights, shape {shape_name}, seed {args.seed} "
                               f"(tools/make_real_shape_checkpoint.py)",
    }
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    with open(os.path.join(tmp, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": True, "bos_token_id": special, "eos_token_id": special,
                   "transformers_version": "4.45.0"}, f, indent=2)
        f.write("\n")
    with open(os.path.join(tmp, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    tok_cfg_path = os.path.join(args.text_from, "tokenizer_config.json")
    tok_cfg = {}
    if os.path.exists(tok_cfg_path):
        with open(tok_cfg_path, encoding="utf-8") as f:
            tok_cfg = json.load(f)
    tok_cfg["model_max_length"] = args.max_positions
    with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
        json.dump(tok_cfg, f, indent=2)
        f.write("\n")
    for name, limit in (("eval.txt", args.eval_bytes), ("calib.txt", args.calib_bytes)):
        src = os.path.join(args.text_from, name)
        if not os.path.exists(src):
            src = os.path.join(args.text_from, "eval.txt")
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(text_head(src, limit))

    written = 0
    if len(shards) == 1:
        written += write_safetensors(os.path.join(tmp, "model.safetensors"), shards[0], pool, ones, args.seed)
        files = ["model.safetensors"]
    else:
        files, weight_map = [], {}
        for k, part in enumerate(shards, 1):
            fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
            written += write_safetensors(os.path.join(tmp, fname), part, pool, ones, args.seed)
            files.append(fname)
            for name, _, _ in part:
                weight_map[name] = fname
            el = time.monotonic() - t0
            print(f"  {fname}: {written / 1e9:.2f} / {total_bytes / 1e9:.2f} GB, {el:.1f} s", file=sys.stderr)
        index = {"metadata": {"total_parameters": params, "total_size": written}, "weight_map": weight_map}
        with open(os.path.join(tmp, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
            f.write("\n")
    assert written == total_bytes

    if os.path.exists(out):
        shutil.rmtree(out)
    os.rename(tmp, out)
    elapsed = time.monotonic() - t0
    on_disk = sum(os.path.getsize(os.path.join(out, n)) for n in files)
    print(f"wrote {out}: {shape_name}, {cfg['num_hidden_layers']} layers, vocab {cfg['vocab_size']}, "
          f"{'tied' if cfg['tie_word_embeddings'] else 'untied'} embeddings")
    print(f"  parameters {params:,}  tensor bytes {written:,} ({written / 2**30:.2f} GiB)  "
          f"safetensors files {len(files)} ({on_disk:,} bytes)")
    print(f"  time {elapsed:.1f} s (pool {t_pool:.1f} s), {written / 1e6 / max(elapsed, 1e-9):.0f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
