#!/usr/bin/python3
"""Builds the training, validation and held-out evaluation text for Bitsmith's bundled default model.

Sources (all from Debian packages installed on the build machine, all public domain):
  * King James Bible        -- package bible-kjv-text, dumped with the `bible` program
  * The Jargon File 4.4.7   -- /usr/share/dictd/jargon.dict.dz (package dict-jargon)
  * The Devil's Dictionary  -- /usr/share/dictd/devil.dict.dz  (package dict-devil)

Outputs (deterministic; run from the repository root):
  .devdata/train.txt                      training text (not committed)
  .devdata/valid.txt                      validation text, ~3 % (not committed)
  .devdata/wiki.test.raw                  copy of WikiText-2 raw test, for reference figures only
  resources/models/default/eval.txt       held-out evaluation text (~70 KB), committed

Held-out parts are whole Bible books and contiguous runs of dictionary entries, so no sentence of
eval.txt or valid.txt occurs in train.txt.

Usage: /usr/bin/python3 tools/prepare_training_text.py [--repo PATH]
"""

import argparse
import gzip
import os
import re
import shutil
import subprocess
import sys

DICTD = "/usr/share/dictd"
WIKITEXT = "/work/shared/data/wikitext-2-raw/wiki.test.raw"

# Bible books (abbreviations as printed by `bible`) held out of training.
EVAL_BOOKS = ["Ruth", "Jonah", "Joel", "Jas"]
VALID_BOOKS = ["Lam", "SSol", "Col", "Mic", "Hab", "Zep", "2Tim", "1Pet", "Nahum", "Phi"]

# Dictionary runs held out of training: (start as a fraction of the entry list, size in characters).
EVAL_DICT = {"jargon": (0.50, 15000), "devil": (0.50, 10000)}
VALID_DICT = {"jargon": (0.75, 45000), "devil": (0.25, 12000)}

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64_number(text):
    """Decodes the dictd index's base-64 numbers (offsets and lengths)."""
    value = 0
    for ch in text:
        value = value * 64 + B64.index(ch)
    return value


def bible_chapters():
    """Returns [(book, [chapter text, ...]), ...] in canonical order, one verse per line."""
    try:
        out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], stdin=subprocess.DEVNULL,
                             capture_output=True, check=True).stdout.decode("ascii")
    except FileNotFoundError:
        sys.exit("prepare_training_text: `bible` not found. HINT: apt-get install bible-kjv bible-kjv-text")
    books = []
    current = None  # (book, chapter)
    ref = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")
    for line in out.splitlines():
        m = ref.match(line)
        if not m:
            raise ValueError(f"unexpected bible line: {line!r}")
        book, chapter, text = m.group(1), int(m.group(2)), m.group(4).strip()
        if not books or books[-1][0] != book:
            books.append((book, []))
            current = None
        if current != (book, chapter):
            books[-1][1].append([])
            current = (book, chapter)
        books[-1][1][-1].append(text)
    if len(books) != 66:
        raise ValueError(f"expected 66 books, got {len(books)}")
    return [(book, ["\n".join(verses) for verses in chapters]) for book, chapters in books]


def dict_entries(name):
    """Returns the entries of a dictd database in file order, as cleaned text, metadata skipped."""
    data = gzip.open(os.path.join(DICTD, f"{name}.dict.dz")).read()
    spans = set()
    with open(os.path.join(DICTD, f"{name}.index"), encoding="utf-8") as f:
        for line in f:
            word, off, length = line.rstrip("\n").split("\t")
            if word.startswith("00"):  # 00-database-* / 00database* metadata entries
                continue
            spans.add((b64_number(off), b64_number(length)))
    entries = []
    for off, length in sorted(spans):
        raw = data[off:off + length].decode("utf-8")
        text = clean_jargon(raw) if name == "jargon" else clean_plain(raw)
        if text:
            entries.append(text)
    return entries


def clean_plain(raw):
    """Trailing spaces off, no blank-line runs, no surrounding blank lines."""
    lines = [l.rstrip() for l in raw.replace("\t", "    ").split("\n")]
    text = "\n".join(lines).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", text)


def clean_jargon(raw):
    """Jargon entries are 'headword\\n /pron/, pos.\\n\\n    body...'; joins the header, dedents the body."""
    lines = raw.replace("\t", "    ").split("\n")
    head = lines[0].strip()
    rest = lines[1:]
    if rest and rest[0].startswith(" ") and rest[0].strip():
        extra = rest[0].strip()
        extra = re.sub(r"^//,?\s*", "", extra)  # empty pronunciation
        if extra:
            head = f"{head} {extra}"
        rest = rest[1:]
    body = [l[4:] if l.startswith("    ") else l for l in rest]
    return clean_plain("\n".join([head] + body))


def take_run(entries, start_frac, size):
    """Splits off a contiguous run of entries starting at start_frac with about `size` characters."""
    start = int(len(entries) * start_frac)
    end, total = start, 0
    while end < len(entries) and total < size:
        total += len(entries[end]) + 2
        end += 1
    return entries[start:end], entries[:start] + entries[end:]


def join_docs(docs):
    """Documents separated by one blank line; the file ends with a newline."""
    return "\n\n".join(docs) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = ap.parse_args()

    train_docs, valid_docs, eval_parts = [], [], {}
    for book, chapters in bible_chapters():
        if book in EVAL_BOOKS:
            eval_parts[book] = chapters
        elif book in VALID_BOOKS:
            valid_docs.extend(chapters)
        else:
            train_docs.extend(chapters)

    for name in ("jargon", "devil"):
        entries = dict_entries(name)
        ev, entries = take_run(entries, *EVAL_DICT[name])
        va, entries = take_run(entries, *VALID_DICT[name])
        eval_parts[name] = ev
        valid_docs.extend(va)
        train_docs.extend(entries)

    # Interleave the held-out parts so every window of the evaluation sees varied text.
    order = ["Ruth", "jargon", "Jonah", "devil", "Joel", "Jas"]
    eval_docs = [doc for part in order for doc in eval_parts[part]]

    devdata = os.path.join(args.repo, ".devdata")
    model_dir = os.path.join(args.repo, "resources", "models", "default")
    os.makedirs(devdata, exist_ok=True)
    os.makedirs(model_dir, exist_ok=True)
    outputs = {
        os.path.join(devdata, "train.txt"): join_docs(train_docs),
        os.path.join(devdata, "valid.txt"): join_docs(valid_docs),
        os.path.join(model_dir, "eval.txt"): join_docs(eval_docs),
    }
    for path, text in outputs.items():
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        print(f"{path}: {len(text.encode('utf-8'))} bytes, {text.count(chr(10))} lines")
    if os.path.exists(WIKITEXT):
        shutil.copyfile(WIKITEXT, os.path.join(devdata, "wiki.test.raw"))
        print(f"copied {WIKITEXT} -> .devdata/wiki.test.raw")
    else:
        print(f"warning: {WIKITEXT} not found; wikitext reference figures will be skipped")

    # The held-out texts must not leak into training (checked on long lines only).
    train_lines = set(l for l in outputs[os.path.join(devdata, "train.txt")].split("\n") if len(l) > 60)
    for path in list(outputs)[1:]:
        leaked = sum(1 for l in outputs[path].split("\n") if len(l) > 60 and l in train_lines)
        print(f"{os.path.basename(path)}: {leaked} long lines also in train.txt")


if __name__ == "__main__":
    main()
