# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 06 — Text-to-text data
#
# **What you will build**
#
# - A mixture of small synthetic tasks (`copy:`, `reverse:`, `sort:`, `count:`, `add:`), drawn
#   deterministically from a seed, with a test split that never shares an input with training —
#   the data that `t5edu demo` trains a T5 on from scratch. Real English text comes from Python's
#   own documentation and source code, so everything runs offline.
# - One loader, `load_task`, for the datasets T5 was trained on (CNN/DailyMail, WMT16, SST-2, C4)
#   that reads the same schema from the Hugging Face Hub or from local files, and stops with one
#   clear message on a bad row.
# - Tokenization with `Dataset.map`, and a collator that pads each batch to its longest row, sets
#   padded labels to -100, and builds the decoder's inputs with `shift_right`.
# - T5's pre-training objective, **span corruption**, computed exactly as Google's `seqio` does,
#   with a check that inputs and targets put together give back the original text.
#
# **Why T5 does it this way.** Raffel et al. (2020) cast every task as text to text (§2.4), so one
# data pipeline — strings in, token ids out, a prefix naming the task — serves translation,
# summarization and classification alike. For pre-training without labels they compared objectives
# (§3.3): a language model, BERT-style masking, deshuffling, and dropping spans. Replacing **spans**
# of corrupted tokens by single sentinels did as well as the others and made the targets short,
# hence cheaper (§3.3.2, "i.i.d. tokens vs. spans"; Table 5 and Figure 5); among corruption rates
# of 10–50 %, **15 %** was as good as any (§3.3.4), with spans of 3 tokens on average (§3.3.5).
# We build exactly that objective, and check it against the definitions of Google's `seqio`.

# %%
#| default_exp data

# %% [markdown]
# ## 6.1 Examples are rows of a `datasets.Dataset`
#
# In Chapter 00 every task became a pair of strings: an input that starts with a task prefix,
# and a target. We keep that pair in a table with the columns `task`, `inputs` and `targets`,
# and the table is a Hugging Face `datasets.Dataset`. A `Dataset` is backed by Apache Arrow: the
# columns live in memory-mapped buffers rather than in Python objects, so a million rows cost
# little memory, and `Dataset.map` applies a function to batches of rows and stores the new
# columns the same way. Datasets from the Hub arrive in this form, so one pipeline serves the
# synthetic tasks of this chapter and the real ones.
#
# Everything a row can go wrong with raises one exception type, `DataError`, whose message
# names the file (or dataset) and the row.

# %%
#| export
import ast
import sysconfig
import zlib
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """A problem with the data itself; the message names the file (or dataset) and the row."""

# %%
import datasets
import numpy as np
import torch

datasets.disable_progress_bars()  # `map` draws progress bars; the book's outputs must not vary
datasets.logging.set_verbosity_error()
torch.manual_seed(0)

table = datasets.Dataset.from_dict({"task": ["copy", "reverse"],
                                    "inputs": ["copy: red car", "reverse: red car"],
                                    "targets": ["red car", "car red"]})
doubled = table.map(lambda batch: {"n_words": [len(t.split()) for t in batch["targets"]]}, batched=True)
print(doubled)
print(doubled[1])

# %% [markdown]
# **Check.** `map` with `batched=True` receives a dict of columns (lists), returns new columns, and
# keeps the old ones.

# %%
assert doubled.column_names == ["task", "inputs", "targets", "n_words"]
assert doubled["n_words"] == [2, 2]

# %% [markdown]
# ## 6.2 A synthetic task mixture
#
# To see a T5 learn in minutes on a laptop CPU (Chapter 07 and `t5edu demo`), we need tasks that a
# tiny model can master quickly, yet that cannot be solved without reading the input in order.
# Five tasks, all over a fixed list of 68 common English words:
#
# | task | input | target |
# | --- | --- | --- |
# | `copy` | `copy: sun tree milk` | `sun tree milk` |
# | `reverse` | `reverse: sun tree milk` | `milk tree sun` |
# | `sort` | `sort: sun tree milk` | `milk sun tree` |
# | `count` | `count: sun tree milk` | `3` |
# | `add` | `add: 4 + 7` | `11` |
#
# Inputs are short (at most 6 words after the prefix, `TASK_WORDS`) and so are targets. Order
# matters in `copy`, `reverse` and `sort`: a model that only sees a bag of words cannot solve them.
# The words of `copy`, `reverse` and `sort` are distinct, so every answer is unambiguous.
#
# Why so short? `sort` and `add` depend on *what* the words are, but `copy` and `reverse` depend on
# *where* they are, and T5 has no absolute positions: its encoder only knows relative distances
# (Chapter 03), so a tiny model needs a while to learn "the third word". With lists of at most
# four words, the two-layer T5 of `t5edu demo` learns all five tasks in a few thousand steps. In
# our trials with up to six words, `copy` was still mostly wrong after 3,000 steps: the model wrote
# the right words, but in sorted order — content is easier to learn than position.
#
# **Train and test never share an input.** An input belongs to the test split exactly when a fixed
# hash of its text (CRC-32) is divisible by 10, whatever the seed and the number of examples. So
# a test score measures what the model learnt, not what it memorised; with only 100 possible `add`
# questions, the model must answer ten sums it has never seen.

# %%
#| export
WORDS = tuple("""apple baby ball bird blue boat book box bread car cat chair city cloud cold cup
day desk dog door egg farm fish flower game garden girl gold green hand hat horse house
ice juice king lake lamp leaf light lion milk moon night ocean paper park pen queen rain
red river road rose salt sea ship shoe sky snow star stone sun table tea tree water wind""".split())  # noqa: SIM905
SYNTHETIC_TASKS = ("copy", "reverse", "sort", "count", "add")
TASK_WORDS = {"copy": (2, 4), "reverse": (2, 4), "sort": (2, 3), "count": (1, 6)}  # fewest, most words
HELDOUT_EVERY = 10  # one input in ten (chosen by a hash of its text) belongs to the test split


def _pick_words(rng, low, high, distinct=False):
    k = int(rng.integers(low, high + 1))
    if distinct:
        return [WORDS[i] for i in rng.choice(len(WORDS), size=k, replace=False)]
    return [WORDS[i] for i in rng.integers(0, len(WORDS), size=k)]


def synthetic_example(task, rng):
    """One (inputs, targets) pair of `task`, drawn with the `numpy.random.Generator` `rng`."""
    if task == "add":
        a, b = (int(x) for x in rng.integers(0, 10, size=2))
        return f"add: {a} + {b}", str(a + b)
    if task not in TASK_WORDS:
        raise ValueError(f"unknown synthetic task {task!r}; choose from {SYNTHETIC_TASKS}")
    low, high = TASK_WORDS[task]
    words = _pick_words(rng, low, high, distinct=task != "count")
    target = {"copy": words, "reverse": words[::-1], "sort": sorted(words), "count": [str(len(words))]}[task]
    return f"{task}: " + " ".join(words), " ".join(target)


def is_heldout(inputs):
    """True when `inputs` belongs to the test split: a fixed hash, independent of seeds and sizes."""
    return zlib.crc32(inputs.encode("utf-8")) % HELDOUT_EVERY == 0

# %%
#| export
def synthetic_mixture(n, seed=0, split="train", tasks=SYNTHETIC_TASKS):
    """`n` examples of an even mixture of `tasks`: a `datasets.Dataset` with `task`, `inputs`, `targets`.

    Deterministic in `seed`. An input is in the "test" split exactly when `is_heldout(inputs)`,
    so "train" and "test" never share an input, whatever the seeds. Inputs may repeat in a split.
    """
    import datasets

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    tasks = tuple(tasks)
    if not tasks:
        raise ValueError("tasks is empty")
    for task in tasks:
        if task not in SYNTHETIC_TASKS:
            raise ValueError(f"unknown synthetic task {task!r}; choose from {SYNTHETIC_TASKS}")
    rng = np.random.default_rng(seed)
    rows = {"task": [], "inputs": [], "targets": []}
    while len(rows["task"]) < n:
        task = tasks[int(rng.integers(len(tasks)))]
        inputs, targets = synthetic_example(task, rng)
        if is_heldout(inputs) == (split == "test"):
            rows["task"].append(task)
            rows["inputs"].append(inputs)
            rows["targets"].append(targets)
    return datasets.Dataset.from_dict(rows)

# %%
train = synthetic_mixture(2000, seed=0)
test = synthetic_mixture(200, seed=1, split="test")
print(train)
for row in train.select(range(6)):
    print(f"{row['task']:8} {row['inputs']!r:48} -> {row['targets']!r}")

# %% [markdown]
# **Check.** Each target is what its task says; the same seed gives the same rows; the splits are
# disjoint.

# %%
for row in train:
    words = row["inputs"].split(": ", 1)[1].split()
    expected = {"copy": words, "reverse": words[::-1], "sort": sorted(words), "count": [str(len(words))],
                "add": [str(int(words[0]) + int(words[2]))] if row["task"] == "add" else None}[row["task"]]
    assert row["targets"] == " ".join(expected), row
    assert len(words) <= 6 and row["inputs"].startswith(row["task"] + ": ")
assert synthetic_mixture(50, seed=0)[:] == train.select(range(50))[:]
assert not set(train["inputs"]) & set(synthetic_mixture(2000, seed=7, split="test")["inputs"])
print("train inputs:", len(set(train["inputs"])), "distinct; test inputs:", len(set(test["inputs"])), "distinct")

# %% [markdown]
# The mixture is even: each task gets about a fifth of the rows.

# %%
import matplotlib.pyplot as plt
from collections import Counter

counts = Counter(train["task"])
fig, ax = plt.subplots(figsize=(6, 2.4))
ax.barh(list(SYNTHETIC_TASKS)[::-1], [counts[t] for t in SYNTHETIC_TASKS][::-1], color="tab:blue")
ax.set_xlabel("examples in synthetic_mixture(2000, seed=0)")
ax.set_title("Figure 6.1: the task mixture")
plt.tight_layout()
plt.show()
print({t: counts[t] for t in SYNTHETIC_TASKS})

# %% [markdown]
# *Figure 6.1 — The five tasks come in about equal numbers: the mixture draws a task uniformly for
# every example.*

# %% [markdown]
# A model trained on this mixture needs a tokenizer, and a tokenizer needs text.
# `synthetic_tokenizer_corpus` returns every word, the task prefixes, a few thousand examples,
# and, so that a vocabulary of a few hundred pieces can be filled, the English prose of Chapter 01
# (`pydoc_corpus`). The synthetic lines are frequent enough that every word of `WORDS` stays a
# single piece.

# %%
#| export
def synthetic_tokenizer_corpus(n=8000, seed=12345, prose=True):
    """Lines to train a tokenizer for the synthetic tasks: the words, the prefixes, the inputs and
    targets of `n` training examples, and (if `prose`) Chapter 01's documentation lines."""
    ds = synthetic_mixture(n, seed=seed, split="train")
    lines = [" ".join(WORDS), " ".join(str(i) for i in range(19)), " ".join(t + ":" for t in SYNTHETIC_TASKS)]
    for inputs, targets in zip(ds["inputs"], ds["targets"], strict=True):
        lines += [inputs, targets]
    if prose:
        from t5edu.tokenizer import pydoc_corpus

        lines += pydoc_corpus("train")
    return lines

# %%
from t5edu.tokenizer import Tokenizer

tok = Tokenizer.train(synthetic_tokenizer_corpus(), vocab_size=400)
print(tok)
print(tok.tokenize(train[0]["inputs"]), tok.tokenize("add: 4 + 7"))

# %% [markdown]
# **Check.** Every word of the mixture is one piece, so a 5-word `copy` costs 1 + 1 + 5 + 1 ids
# (prefix, colon, words, EOS).

# %%
assert all(len(tok.tokenize(w)) == 1 for w in WORDS)
assert len(tok.encode("copy: " + " ".join(WORDS[:5]))) == 8

# %% [markdown]
# ## 6.3 Real text, offline: Python's documentation
#
# Synthetic tasks show that training works; real text shows what T5 was built for. Every Python
# installation carries some, which we read at run time (nothing is copied into this repository):
# `pydoc_data.topics`, the text behind `help("if")`, is about 80 documents of English prose, good raw
# material for span-corruption pre-training (Section 6.9). `pydoc_documents` returns one row per
# topic, with C4's column names `text` and `url`. (Section 6.10 builds a real summarization task from
# the standard library's source, and loads the Hub's datasets.)

# %%
#| export
def pydoc_documents():
    """Python's documentation (`pydoc_data.topics`) as a `Dataset` of documents (`text`, `url`).

    One row per help topic, in sorted order, with C4's column names. Read at run time from the
    installed Python, so the text depends on the Python version.
    """
    from pydoc_data.topics import topics

    import datasets

    keys = sorted(k for k in topics if topics[k].strip())
    return datasets.Dataset.from_dict({"text": [topics[k].strip() for k in keys],
                                       "url": [f"pydoc_data.topics#{k}" for k in keys]})


# %%
docs = pydoc_documents()
print(docs)
print(docs[0]["url"], "|", docs[0]["text"][:150].replace("\n", " "), "...")


# %% [markdown]
# **Check.** Every document has text.

# %%
assert len(docs) > 50 and all(t.strip() for t in docs["text"])

# %% [markdown]
# ## 6.4 Tokenizing with a batched `map`
#
# The model reads ids. `tokenize_dataset` adds two columns with one batched `map`: `input_ids`
# (the encoded input) and `labels` (the encoded target), both ending with `</s>`. Sequences longer
# than a limit are cut, keeping `</s>` last, and the number of cut sequences is printed. The
# other columns stay, so we can still group results by `task` later. Nothing is padded yet:
# padding belongs to the batch (Section 6.5).

# %%
#| export
def tokenize_dataset(dataset, tokenizer, max_input_length=None, max_target_length=None, batch_size=1000):
    """Add `input_ids` and `labels` (lists of ids ending with EOS) to a dataset with `inputs`/`targets`.

    One batched `map`; works on `Dataset` and streaming `IterableDataset`. Sequences longer than a
    limit are cut to it, keeping EOS last; for a `Dataset`, the number cut is printed.
    """
    import datasets

    for column in ("inputs", "targets"):
        if dataset.column_names is not None and column not in dataset.column_names:
            raise DataError(f"tokenize_dataset needs an {column!r} column; "
                            f"the dataset has {dataset.column_names}")

    def cut(ids, limit):
        if limit is not None and len(ids) > limit:
            return [*ids[: limit - 1], tokenizer.eos_id], 1
        return ids, 0

    def encode(batch):
        out = {"input_ids": [], "labels": [], "_cut": []}
        for inputs, targets in zip(batch["inputs"], batch["targets"], strict=True):
            x, cut_x = cut(tokenizer.encode(inputs), max_input_length)
            y, cut_y = cut(tokenizer.encode(targets), max_target_length)
            out["input_ids"].append(x)
            out["labels"].append(y)
            out["_cut"].append(cut_x + 2 * cut_y)
        return out

    mapped = dataset.map(encode, batched=True, batch_size=batch_size)
    if not isinstance(mapped, datasets.Dataset):  # streaming: nothing to count up front
        return mapped.remove_columns(["_cut"])
    cuts = np.asarray(mapped["_cut"], dtype=np.int64)
    n_inputs, n_targets = int(np.sum(cuts & 1)), int(np.sum(cuts >> 1))
    if n_inputs or n_targets:
        print(f"tokenize_dataset: cut {n_inputs} of {len(cuts)} inputs to {max_input_length} ids "
              f"and {n_targets} targets to {max_target_length} ids")
    return mapped.remove_columns(["_cut"])

# %% [markdown]
# The training loop of Chapter 07 takes plain Python lists rather than a `Dataset`. `featurize` does
# the same encoding for a list of `{"inputs", "targets"}` rows — the same ids, the same cut that keeps
# `</s>` last — and returns a list of `{"input_ids", "labels"}`.

# %%
#| export
def _truncate(ids, limit, eos_id):
    """`ids` cut to `limit` ids, keeping EOS last (no limit: None)."""
    if limit is not None and len(ids) > limit:
        return [*ids[: limit - 1], eos_id]
    return ids


def featurize(rows, tokenizer, max_input_length=None, max_target_length=None):
    """Token ids for the training loop: a list of {"input_ids", "labels"} (both ending with </s>) from
    rows {"inputs", "targets"} (a list of dicts or a Dataset); longer sequences are cut, keeping </s>."""
    for name, limit in (("max_input_length", max_input_length), ("max_target_length", max_target_length)):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"{name} must be a positive int or None, got {limit!r}")
    features = []
    for i, row in enumerate(rows):
        for key in ("inputs", "targets"):
            if not isinstance(row.get(key), str):
                raise DataError(f"row {i} has no {key!r} text (it has {sorted(row)}); featurize needs "
                                "rows with 'inputs' and 'targets' strings")
        features.append({
            "input_ids": _truncate(tokenizer.encode(row["inputs"]), max_input_length, tokenizer.eos_id),
            "labels": _truncate(tokenizer.encode(row["targets"]), max_target_length, tokenizer.eos_id),
        })
    return features


# %%
train_ids = tokenize_dataset(train, tok)
print(train_ids)
print(train_ids[0]["inputs"], train_ids[0]["input_ids"], train_ids[0]["labels"])


# %% [markdown]
# **Check.** Ids decode back to the text, every sequence ends with `</s>`, and `featurize` gives the
# same ids as `tokenize_dataset`. (Cutting long sequences is checked on real articles in Section 6.10.)

# %%
assert all(tok.decode(r["input_ids"]) == r["inputs"] and tok.decode(r["labels"]) == r["targets"]
           for r in train_ids.select(range(200)))
assert all(r["input_ids"][-1] == tok.eos_id and r["labels"][-1] == tok.eos_id for r in train_ids)
features = featurize(list(train.select(range(200))), tok)
assert features == [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in train_ids.select(range(200))]

# %% [markdown]
# How long are the sequences? Inputs of the mixture have at most 9 ids and targets at most 5: tiny
# sequences, which is what makes a CPU fast enough to train on them.

# %%
in_len = np.array([len(x) for x in train_ids["input_ids"]])
out_len = np.array([len(x) for x in train_ids["labels"]])
fig, ax = plt.subplots(figsize=(6, 2.6))
bins = np.arange(0.5, in_len.max() + 1.5)
ax.hist([in_len, out_len], bins=bins, label=["input_ids", "labels"], color=["tab:blue", "tab:orange"])
ax.set_xlabel("length in ids (EOS included)")
ax.set_ylabel("examples")
ax.set_title("Figure 6.2: sequence lengths in the synthetic mixture")
ax.legend()
plt.tight_layout()
plt.show()
print(f"inputs: {in_len.min()}-{in_len.max()} ids (mean {in_len.mean():.2f}); "
      f"targets: {out_len.min()}-{out_len.max()} ids (mean {out_len.mean():.2f})")

# %% [markdown]
# *Figure 6.2 — Inputs (task prefix, words, `</s>`) and targets are a handful of ids each, so a batch
# of 64 examples is a few hundred tokens: a CPU trains on it in milliseconds.*

# %% [markdown]
# ## 6.5 Batches: dynamic padding, labels and `shift_right`
#
# A batch is a rectangle, so shorter rows are padded. Padding every row to a global maximum wastes
# work; the collator pads each batch only to its own longest row (**dynamic padding**). It returns
# four tensors:
#
# - `input_ids`, padded with `<pad>` (0), and `attention_mask`: 1 on real ids, 0 on padding.
# - `labels`, padded with **-100**, the value `F.cross_entropy(..., ignore_index=-100)` skips, so
#   padding never counts in the loss.
# - `decoder_input_ids` = `shift_right(labels)` from Chapter 05: the decoder reads the start token
#   (`<pad>`, id 0) and then the target shifted right by one, so at each position it predicts the
#   next label from the labels before it (teacher forcing). -100 becomes `<pad>` there.

# %%
#| export
class TextToTextCollator:
    """Collate rows with `input_ids` and `labels` (lists of ids) into a padded batch of tensors.

    Pads to the longest row of the batch (or a multiple of `pad_to_multiple_of`) and returns
    `input_ids`, `attention_mask`, `labels` (padding -100, ignored by the loss) and
    `decoder_input_ids` = `shift_right(labels, decoder_start_token_id, pad_id)`.
    Other keys of the rows (such as `task`) are ignored.
    """

    def __init__(self, pad_id=0, decoder_start_token_id=0, label_pad_id=-100, pad_to_multiple_of=None):
        self.pad_id, self.decoder_start_token_id = pad_id, decoder_start_token_id
        self.label_pad_id, self.pad_to_multiple_of = label_pad_id, pad_to_multiple_of

    def __repr__(self):
        return (f"TextToTextCollator(pad_id={self.pad_id}, "
                f"decoder_start_token_id={self.decoder_start_token_id}, "
                f"label_pad_id={self.label_pad_id}, pad_to_multiple_of={self.pad_to_multiple_of})")

    def _pad(self, rows, value):
        import torch

        length = max(len(r) for r in rows)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = torch.full((len(rows), length), value, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return ids, mask

    def __call__(self, features):
        from t5edu.model import shift_right

        if len(features) == 0:
            raise DataError("cannot collate an empty batch")
        for i, row in enumerate(features):
            for key in ("input_ids", "labels"):
                if key not in row:
                    raise DataError(f"row {i} of the batch has no {key!r} (it has {sorted(row)}); "
                                    "tokenize the dataset first")
                if len(row[key]) == 0:
                    raise DataError(f"row {i} of the batch has an empty {key!r}")
        input_ids, attention_mask = self._pad([row["input_ids"] for row in features], self.pad_id)
        labels, _ = self._pad([row["labels"] for row in features], self.label_pad_id)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                "decoder_input_ids": shift_right(labels, self.decoder_start_token_id, self.pad_id)}

# %%
#| export
def collate_fn(pad_id=0, decoder_start_token_id=0, label_pad_id=-100, pad_to_multiple_of=None):
    """A `collate_fn` for `torch.utils.data.DataLoader`: a `TextToTextCollator` with these settings."""
    return TextToTextCollator(pad_id, decoder_start_token_id, label_pad_id, pad_to_multiple_of)


def make_loader(dataset, batch_size, shuffle=True, seed=0, collator=None, drop_last=False):
    """A `DataLoader` over the `input_ids` and `labels` of a tokenized `Dataset`; shuffling is seeded."""
    import torch

    if "input_ids" not in dataset.column_names or "labels" not in dataset.column_names:
        raise DataError(f"make_loader needs 'input_ids' and 'labels' columns (use tokenize_dataset); "
                        f"the dataset has {dataset.column_names}")
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset.select_columns(["input_ids", "labels"]), batch_size=batch_size,
                                       shuffle=shuffle, generator=generator,
                                       collate_fn=collator or TextToTextCollator(), drop_last=drop_last)

# %%
collate = collate_fn(pad_id=tok.pad_id)
batch = collate([train_ids[i] for i in range(3)])
for key, value in batch.items():
    print(f"{key:18}", value.tolist())

# %% [markdown]
# **Check.** Against the definitions, by hand: padding positions are 0 in `input_ids` and in the
# mask, -100 in `labels`; `decoder_input_ids` starts with 0 and is `labels` moved right by one.

# %%
from t5edu.model import shift_right

rows = [train_ids[i] for i in range(3)]
for i, row in enumerate(rows):
    n, m = len(row["input_ids"]), len(row["labels"])
    assert batch["input_ids"][i, :n].tolist() == row["input_ids"] and not batch["input_ids"][i, n:].any()
    assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
    assert batch["labels"][i, :m].tolist() == row["labels"] and (batch["labels"][i, m:] == -100).all()
    expected = ([0] + row["labels"] + [0] * batch["labels"].shape[1])[: batch["labels"].shape[1]]
    assert batch["decoder_input_ids"][i].tolist() == expected
assert torch.equal(batch["decoder_input_ids"], shift_right(batch["labels"]))

loader = make_loader(train_ids, batch_size=64, seed=0)
real = sum(int(b["attention_mask"].sum()) for b in loader)
padded_dynamic = sum(b["input_ids"].numel() for b in loader)
padded_fixed = len(train_ids) * max(len(x) for x in train_ids["input_ids"])
print(f"{len(loader)} batches; input positions: {real} real, {padded_dynamic} with dynamic padding, "
      f"{padded_fixed} padded to the global maximum")
assert [b["input_ids"].tolist() for b in make_loader(train_ids, 64, seed=0)][:3] == \
       [b["input_ids"].tolist() for b in make_loader(train_ids, 64, seed=0)][:3]

# %% [markdown]
# The picture of one batch, with the three rows above: what is real, what is padding, and how the
# decoder's input is the labels moved one place to the right.

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 2.6))
panels = [("input_ids (grey: attention_mask 0)", batch["input_ids"], batch["attention_mask"] == 0),
          ("labels (red: -100, ignored by the loss)", batch["labels"], batch["labels"] == -100),
          ("decoder_input_ids = shift_right(labels)", batch["decoder_input_ids"],
           torch.cat([torch.zeros(len(batch["labels"]), 1, dtype=torch.bool), batch["labels"][:, :-1] == -100], 1))]
for ax, (title, ids, pad) in zip(axes, panels, strict=True):
    rows_, cols = ids.shape
    for r in range(rows_):
        for c in range(cols):
            color = ("mistyrose" if title.startswith("labels") else "lightgrey") if pad[r, c] else "white"
            if title.startswith("decoder") and c == 0:
                color = "lightblue"  # the start token
            ax.add_patch(plt.Rectangle((c, rows_ - 1 - r), 1, 1, facecolor=color, edgecolor="black"))
            ax.text(c + 0.5, rows_ - 0.5 - r, str(int(ids[r, c])), ha="center", va="center", fontsize=8)
    ax.set_xlim(0, cols)
    ax.set_ylim(0, rows_)
    ax.set_xticks([c + 0.5 for c in range(cols)], range(cols))
    ax.set_yticks([rows_ - 0.5 - r for r in range(rows_)], [f"row {r}" for r in range(rows_)])
    ax.set_xlabel("position")
    ax.set_title(title, fontsize=9)
fig.suptitle("Figure 6.3: one batch of three examples, padded to its longest row")
plt.tight_layout()
plt.show()

# %% [markdown]
# *Figure 6.3 — Each tensor is only as wide as the batch's longest row; padding is 0 with mask 0 in the
# input, -100 in the labels, and the decoder reads the start token (blue) then the labels shifted right.*

# %% [markdown]
# ## 6.6 Span corruption: how many raw tokens make one example?
#
# T5 is pre-trained without labels. From a stretch of text, about **15 %** of the tokens are chosen
# as *noise*, in spans of **3** tokens on average. Each noise span is replaced in the input by one
# sentinel (`<extra_id_0>`, `<extra_id_1>`, ...), and the target lists each sentinel followed by
# the tokens it hid:
#
# ```
# original:  Thank you for inviting me to your party last week .
# inputs:    Thank you <extra_id_0> me to your party <extra_id_1> week . </s>
# targets:   <extra_id_0> for inviting <extra_id_1> last <extra_id_2> </s>
# ```
#
# (The last sentinel of the targets closes the last span; our sequences always end with noise,
# as seqio's do, so theirs is followed by a final span instead.)
#
# The input is shorter than the raw text: each span of length $\ell$ shrinks to one sentinel. T5
# wants inputs of exactly 512 ids, so it cuts the raw text into pieces a little longer. For a raw
# length $n$: $k = \mathrm{round}(0.15\,n)$ noise tokens in $s = \mathrm{round}(k/3)$ spans give
# inputs of $n - k + s + 1$ ids (the non-noise tokens, one sentinel per span, EOS) and targets of
# $k + s + 1$. `compute_input_and_target_lengths` finds the largest $n$ whose inputs fit — T5's
# `random_spans_helper`. For 512 ids it must answer 568 raw tokens and 114 target ids.

# %%
#| export span_corruption
import numpy as np

from t5edu.data import DataError

# %%
#| export span_corruption
def compute_input_and_target_lengths(inputs_length=512, noise_density=0.15, mean_noise_span_length=3.0):
    """(raw tokens per example, target length) such that span corruption gives `inputs_length` ids.

    T5's `random_spans_helper` with one sentinel per span and one EOS on each side.
    T5's setting: 512 -> (568, 114).
    """
    def lengths(tokens_length):
        num_noise_tokens = round(tokens_length * noise_density)
        num_nonnoise_tokens = tokens_length - num_noise_tokens
        num_noise_spans = round(num_noise_tokens / mean_noise_span_length)
        return num_nonnoise_tokens + num_noise_spans + 1, num_noise_tokens + num_noise_spans + 1

    tokens_length = inputs_length - 1
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    _, targets_length = lengths(tokens_length)
    if noise_density == 0.5 and targets_length > inputs_length:  # T5 makes the two equal at density 0.5
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length

# %%
for n in (64, 128, 512, 1024):
    print(n, "->", compute_input_and_target_lengths(n))

# %% [markdown]
# **Check.** T5's numbers (`random_spans_helper` in the T5 repository and the `run_t5_mlm_flax.py`
# example of `transformers` both print 568 and 114).

# %%
assert compute_input_and_target_lengths(512, 0.15, 3.0) == (568, 114)

# %% [markdown]
# ## 6.7 The noise mask
#
# Which tokens are noise? T5 does not pick each token independently (that would make many spans of
# length 1). seqio's `random_spans_noise_mask` fixes the counts and randomizes only the layout:
#
# 1. `num_noise_tokens = round(length * 0.15)`, clamped to `[1, length - 1]`;
#    `num_noise_spans = round(num_noise_tokens / 3)`, at least 1.
# 2. Cut the noise tokens into `num_noise_spans` non-empty segments at random, every segmentation
#    equally likely (`_random_segmentation`: mark `num_spans - 1` of the `num_items - 1` gaps between
#    items as "a new segment starts here", by shuffling a 0/1 vector). Do the same for the
#    non-noise tokens, with the same number of segments.
# 3. Interleave the two lists of lengths, **non-noise first**: keep, noise, keep, noise, ...
#
# Randomness comes from a `numpy.random.Generator`, so a seed fixes the mask. (seqio uses
# TensorFlow's stateless random ops, so the masks differ from seqio's bit for bit, but they follow
# the same distribution; the counts are identical.)

# %%
#| export span_corruption
def _random_segmentation(num_items, num_segments, rng):
    """Lengths of a random split of `num_items` items into `num_segments` non-empty segments.

    seqio's method: shuffle a 0/1 vector that marks `num_segments - 1` of the `num_items - 1` gaps
    between items as segment starts. Every segmentation is equally likely.
    """
    if not 1 <= num_segments <= num_items:
        raise ValueError(f"cannot split {num_items} items into {num_segments} non-empty segments")
    first_in_segment = np.arange(num_items - 1) < num_segments - 1
    rng.shuffle(first_in_segment)
    first_in_segment = np.concatenate([[False], first_in_segment])
    segment_id = np.cumsum(first_in_segment)
    return np.bincount(segment_id, minlength=num_segments)


def _as_generator(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def random_spans_noise_mask(length, noise_density=0.15, mean_noise_span_length=3.0, rng=None):
    """Boolean mask of `length` tokens, True = noise, laid out in random spans (seqio's function).

    num_noise_tokens = round(length * noise_density), clamped to [1, length - 1];
    num_noise_spans = round(num_noise_tokens / mean_noise_span_length), at least 1. Noise and
    non-noise tokens are each cut into num_noise_spans random non-empty spans, which alternate,
    non-noise first. `rng` is a `numpy.random.Generator` or a seed.
    """
    rng = _as_generator(rng)
    if noise_density == 0.0:
        return np.zeros(length, dtype=bool)
    orig_length = length
    length = max(length, 2)  # avoid degeneracy (seqio)
    num_noise_tokens = round(length * noise_density)
    num_noise_tokens = min(max(num_noise_tokens, 1), length - 1)
    num_noise_spans = max(round(num_noise_tokens / mean_noise_span_length), 1)
    num_nonnoise_tokens = length - num_noise_tokens
    if num_noise_spans > num_nonnoise_tokens:
        raise ValueError(f"noise_density={noise_density} asks for {num_noise_spans} noise spans in {length} "
                         f"tokens, but only {num_nonnoise_tokens} non-noise tokens can separate them")
    noise_span_lengths = _random_segmentation(num_noise_tokens, num_noise_spans, rng)
    nonnoise_span_lengths = _random_segmentation(num_nonnoise_tokens, num_noise_spans, rng)
    interleaved = np.stack([nonnoise_span_lengths, noise_span_lengths], axis=1).reshape(-1)
    span_starts = np.cumsum(interleaved)[:-1]
    span_start_indicator = np.zeros(length, dtype=np.int64)
    span_start_indicator[span_starts] = 1
    span_num = np.cumsum(span_start_indicator)
    is_noise = span_num % 2 == 1
    return is_noise[:orig_length]

# %%
mask = random_spans_noise_mask(40, rng=0)
print("".join("#" if m else "." for m in mask))
print("noise tokens:", int(mask.sum()), " spans:", int((mask & ~np.r_[False, mask[:-1]]).sum()))

# %% [markdown]
# **Check.** For every length from 1 to 600 and a few seeds, the number of noise tokens and of
# noise spans is exactly what the formulas say, the mask starts with a kept token and ends with
# noise, and segmentations are uniform: 5 items in 3 segments can be split in $\binom{4}{2} = 6$
# ways, each seen about 1/6 of the time.

# %%
def spans_of(mask):
    return int((mask & ~np.r_[False, mask[:-1]]).sum())


for length in range(1, 601):
    for seed in range(3):
        m = random_spans_noise_mask(length, rng=seed)
        k = min(max(round(max(length, 2) * 0.15), 1), max(length, 2) - 1)
        if length >= 2:
            assert m.sum() == k and spans_of(m) == max(round(k / 3), 1), (length, seed)
            assert not m[0] and m[-1]
rng = np.random.default_rng(0)
splits = Counter(tuple(_random_segmentation(5, 3, rng).tolist()) for _ in range(6000))
print({k: round(v / 6000, 3) for k, v in sorted(splits.items())})
assert len(splits) == 6 and all(abs(v / 6000 - 1 / 6) < 0.02 for v in splits.values())

# %% [markdown]
# Twenty masks of 60 tokens: always 9 noise tokens in 3 spans, at different places.

# %%
from matplotlib.colors import ListedColormap

masks = np.stack([random_spans_noise_mask(60, rng=seed) for seed in range(20)])
fig, ax = plt.subplots(figsize=(7, 2.6))
ax.imshow(masks, cmap=ListedColormap(["#eeeeee", "tab:orange"]), aspect="auto", interpolation="nearest")
ax.set_xlabel("token position")
ax.set_ylabel("seed")
ax.set_title("Figure 6.4: random_spans_noise_mask(60), noise in orange")
plt.tight_layout()
plt.show()
print("noise tokens per row:", sorted(set(masks.sum(1).tolist())), " spans per row:",
      sorted({spans_of(m) for m in masks}))

# %% [markdown]
# *Figure 6.4 — Every row has exactly the same number of noise tokens and of noise spans; only where
# the spans fall, and how long each one is, changes with the seed.*

# %% [markdown]
# ## 6.8 Sentinels, inputs and targets
#
# With a mask, seqio's `noise_span_to_unique_sentinel` builds the input: the **first** token of
# each noise span becomes a sentinel, the rest of the span is dropped. Sentinels count **down** from
# the top of the vocabulary: the first span gets `<extra_id_0>` (id `vocab_size - 1`), the next
# `<extra_id_1>` (`vocab_size - 2`), and so on — exactly the ids `Tokenizer.sentinel_id(i)` gives.
# The target is the same operation on the **inverted** mask: the kept stretches become sentinels
# and the noise stays. Both get `</s>`.
#
# `reconstruct` undoes it, which is the best test: whatever the mask, inputs and targets together
# must give back every original token, in order.

# %%
#| export span_corruption
def noise_span_to_unique_sentinel(tokens, noise_mask, first_sentinel_id):
    """Replace each noise span of `tokens` by one sentinel, dropping the span's other tokens.

    The first span becomes `first_sentinel_id` (<extra_id_0> = vocab_size - 1), the next
    `first_sentinel_id - 1` (<extra_id_1>), and so on (seqio's function). Returns a list.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    noise_mask = np.asarray(noise_mask, dtype=bool)
    if tokens.shape != noise_mask.shape:
        raise ValueError(f"tokens and noise_mask differ in shape: {tokens.shape} vs {noise_mask.shape}")
    prev_is_noise = np.concatenate([[False], noise_mask[:-1]])
    first_noise = noise_mask & ~prev_is_noise
    subsequent_noise = noise_mask & prev_is_noise
    sentinels = first_sentinel_id + 1 - np.cumsum(first_noise)
    return np.where(first_noise, sentinels, tokens)[~subsequent_noise].tolist()


def span_corruption(tokens, first_sentinel_id, rng=None, noise_density=0.15, mean_noise_span_length=3.0,
                    eos_id=1, num_sentinels=100):
    """T5's span corruption of one sequence of ids (without EOS): returns (inputs, targets).

    inputs: the kept tokens with one sentinel per noise span; targets: each sentinel followed by
    the tokens it replaced, as `noise_span_to_unique_sentinel` on the inverted mask. Both end with
    `eos_id`. `rng`: a `numpy.random.Generator` or a seed.
    """
    tokens = [int(t) for t in tokens]
    mask = random_spans_noise_mask(len(tokens), noise_density, mean_noise_span_length, rng)
    num_spans = int(np.sum(mask & ~np.concatenate([[False], mask[:-1]])))
    if num_spans > num_sentinels:
        raise ValueError(f"{num_spans} noise spans need more than the {num_sentinels} sentinels; "
                         "use shorter sequences")
    inputs = noise_span_to_unique_sentinel(tokens, mask, first_sentinel_id)
    targets = noise_span_to_unique_sentinel(tokens, ~mask, first_sentinel_id)
    return [*inputs, eos_id], [*targets, eos_id]

# %%
#| export span_corruption
def reconstruct(inputs, targets, first_sentinel_id, eos_id=1, num_sentinels=100):
    """Undo `span_corruption`: put the span that follows each sentinel in `targets` back in place of
    that sentinel in `inputs`. Returns the original ids (without EOS)."""
    def strip(ids):
        ids = [int(i) for i in ids]
        return ids[:-1] if ids and ids[-1] == eos_id else ids

    def is_sentinel(i):
        return first_sentinel_id - num_sentinels < i <= first_sentinel_id

    inputs, targets = strip(inputs), strip(targets)
    spans, current = {}, None
    for t in targets:
        if is_sentinel(t):
            if t in spans:
                raise ValueError(f"sentinel {t} appears twice in the targets")
            current = spans[t] = []
        elif current is None:
            raise ValueError("the targets must start with a sentinel")
        else:
            current.append(t)
    out = []
    for t in inputs:
        if is_sentinel(t):
            if t not in spans:
                raise ValueError(f"sentinel {t} of the inputs is missing from the targets")
            out += spans[t]
        else:
            out.append(t)
    unused = [t for t, span in spans.items() if span and t not in inputs]
    if unused:  # (a sequence without noise has one empty target span and no sentinel in its inputs)
        raise ValueError(f"the targets hold a span for sentinel {unused[0]}, which the inputs lack")
    return out

# %% [markdown]
# seqio's own unit test for this operation uses a vocabulary of 1,000 ids, the tokens
# `[10, 11, 12, 13, 14, 15]` and the mask `[T, T, F, F, T, F]`: the input becomes
# `[999, 12, 13, 998, 15]` and, with the mask inverted, the target `[10, 11, 999, 14, 998]`.

# %%
demo_mask = np.array([True, True, False, False, True, False])
print(noise_span_to_unique_sentinel([10, 11, 12, 13, 14, 15], demo_mask, 999),
      noise_span_to_unique_sentinel([10, 11, 12, 13, 14, 15], ~demo_mask, 999))
assert noise_span_to_unique_sentinel([10, 11, 12, 13, 14, 15], demo_mask, 999) == [999, 12, 13, 998, 15]
assert noise_span_to_unique_sentinel([10, 11, 12, 13, 14, 15], ~demo_mask, 999) == [10, 11, 999, 14, 998]

# %% [markdown]
# A sentence of Python's documentation, corrupted. The tokenizer of Section 6.2 was made for the
# synthetic words and cuts prose into small pieces, so for real text we take the book's prose
# tokenizer from Chapter 01 (`train_default_tokenizer`: 3,000 pieces + 100 sentinels, about a
# second to train). Orange tokens are noise; in the input and the target, blue boxes are sentinels.

# %%
from t5edu.tokenizer import train_default_tokenizer

prose_tok = train_default_tokenizer()
print(prose_tok)
sentence = ("The if statement is used for conditional execution. It selects exactly one of the suites by "
            "evaluating the expressions one by one until one is found to be true; then that suite is executed.")
ids = prose_tok.encode(sentence, add_eos=False)
mask = random_spans_noise_mask(len(ids), rng=3)
inputs, targets = span_corruption(ids, prose_tok.sentinel_id(0), rng=3)


def piece_name(i):
    return f"<X{prose_tok.vocab_size - 1 - i}>" if prose_tok.is_sentinel(i) else prose_tok.id_to_piece(i)


def draw_rows(ax, y, label, pieces, colors, line_width=12.0):
    """Draw boxes left to right, wrapping at `line_width`; return the y below the last line."""
    ax.text(-0.2, y, label, ha="right", va="center", fontsize=9, fontweight="bold")
    x = 0.0
    for piece, color in zip(pieces, colors):
        width = 0.14 + 0.075 * len(piece)
        if x + width > line_width:
            x, y = 0.0, y - 0.8
        ax.add_patch(plt.Rectangle((x, y - 0.3), width - 0.04, 0.6, color=color, alpha=0.85))
        ax.text(x + (width - 0.04) / 2, y, piece, ha="center", va="center", fontsize=7)
        x += width
    return y - 1.1


def color_of(i):
    return "tab:blue" if prose_tok.is_sentinel(i) else ("white" if i == prose_tok.eos_id else "lightgrey")


fig, ax = plt.subplots(figsize=(12, 4.2))
y = draw_rows(ax, 0, "original", [prose_tok.id_to_piece(i) for i in ids],
              ["tab:orange" if m else "lightgrey" for m in mask])
y = draw_rows(ax, y, "inputs", [piece_name(i) for i in inputs], [color_of(i) for i in inputs])
y = draw_rows(ax, y, "targets", [piece_name(i) for i in targets], [color_of(i) for i in targets])
ax.set_xlim(-1.3, 12.1)
ax.set_ylim(y + 0.6, 0.5)
ax.axis("off")
ax.set_title(f"Figure 6.5: span corruption of {len(ids)} tokens: {int(mask.sum())} noise tokens (orange) in "
             f"{spans_of(mask)} spans; <Xi> is <extra_id_i>")
plt.tight_layout()
plt.show()
print(prose_tok.decode(inputs, skip_special_tokens=False))
print(prose_tok.decode(targets, skip_special_tokens=False))

# %% [markdown]
# *Figure 6.5 — Each noise span (orange) becomes one sentinel in the input; the target lists every
# sentinel followed by the tokens it hides, so input and target together give back the text.*
#
# **Check.** Sentinels appear in the order `<extra_id_0>`, `<extra_id_1>`, ... in both sequences,
# and `reconstruct` gives back the original, for many lengths and seeds.

# %%
sentinels_in = [i for i in inputs if prose_tok.is_sentinel(i)]
assert sentinels_in == [i for i in targets if prose_tok.is_sentinel(i)]
assert sentinels_in == prose_tok.sentinel_ids[: len(sentinels_in)]
assert reconstruct(inputs, targets, prose_tok.sentinel_id(0)) == ids
rng = np.random.default_rng(0)
for length in range(1, 400, 7):
    original = rng.integers(3, 300, size=length).tolist()
    x, y = span_corruption(original, prose_tok.sentinel_id(0), rng)
    assert reconstruct(x, y, prose_tok.sentinel_id(0)) == original
    assert x[-1] == y[-1] == prose_tok.eos_id
print("reconstruct(span_corruption(x)) == x for 57 random sequences")

# %% [markdown]
# ## 6.9 A pre-training dataset
#
# `span_corruption_dataset` turns any dataset with a `text` column — C4 from `load_task("c4",
# streaming=True)`, or `pydoc_documents()` offline — into pre-training rows, as T5 does:
#
# 1. tokenize each document **without** `</s>` and concatenate the documents of a `map` batch into
#    one stream of ids;
# 2. cut the stream into pieces of `compute_input_and_target_lengths(inputs_length)[0]` raw tokens
#    (the last piece of a batch may be shorter: it is kept, never dropped);
# 3. corrupt each piece with its own generator, `numpy.random.default_rng([seed, piece index])`, so
#    the data is the same however it is batched and however often it is recomputed.
#
# The result has the columns `input_ids` and `labels`, ready for the collator of Section 6.5.

# %%
#| export span_corruption
def span_corruption_dataset(dataset, tokenizer, inputs_length=128, noise_density=0.15,
                            mean_noise_span_length=3.0, seed=0, text_column="text", batch_size=1000):
    """Pre-training rows (`input_ids`, `labels`) from documents, as T5 builds them.

    Documents of each `map` batch (`batch_size`) are tokenized without EOS and concatenated, then
    cut into pieces of `compute_input_and_target_lengths(inputs_length, ...)[0]` raw tokens (the
    last piece of a batch may be shorter; nothing is dropped). Piece `i` is corrupted with
    `numpy.random.default_rng([seed, i])`. Full pieces give exactly `inputs_length` input ids.
    Works on `Dataset` and streaming `IterableDataset`; an empty text raises `DataError`.
    """
    import datasets

    tokens_length, _ = compute_input_and_target_lengths(inputs_length, noise_density, mean_noise_span_length)
    first_sentinel = tokenizer.sentinel_id(0)
    if dataset.column_names is not None and text_column not in dataset.column_names:
        raise DataError(f"span_corruption_dataset needs a {text_column!r} column; "
                        f"the dataset has {dataset.column_names}")

    def pack(batch, indices):
        stream = []
        for text, index in zip(batch[text_column], indices, strict=True):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"row {index}: empty or missing {text_column!r}")
            stream += tokenizer.encode(text, add_eos=False)
        return {"tokens": [stream[i: i + tokens_length] for i in range(0, len(stream), tokens_length)]}

    def corrupt(batch, indices):
        out = {"input_ids": [], "labels": []}
        for tokens, index in zip(batch["tokens"], indices, strict=True):
            inputs, targets = span_corruption(tokens, first_sentinel, np.random.default_rng([seed, index]),
                                              noise_density, mean_noise_span_length,
                                              eos_id=tokenizer.eos_id, num_sentinels=tokenizer.extra_ids)
            out["input_ids"].append(inputs)
            out["labels"].append(targets)
        return out

    packed = dataset.select_columns([text_column]).map(pack, batched=True, batch_size=batch_size,
                                                       with_indices=True, remove_columns=[text_column])
    if isinstance(packed, datasets.Dataset):
        packed = packed.flatten_indices()
    return packed.map(corrupt, batched=True, with_indices=True, remove_columns=["tokens"])

# %%
pretrain = span_corruption_dataset(docs, prose_tok, inputs_length=128, seed=0)
print(pretrain)
tokens_length, targets_length = compute_input_and_target_lengths(128)
input_lengths = np.array([len(x) for x in pretrain["input_ids"]])
label_lengths = np.array([len(x) for x in pretrain["labels"]])
print(f"raw piece: {tokens_length} tokens; input lengths: {Counter(input_lengths.tolist()).most_common(3)}; "
      f"label lengths: {Counter(label_lengths.tolist()).most_common(3)}")
print(prose_tok.decode(pretrain[0]["input_ids"], skip_special_tokens=False)[:200])
print(prose_tok.decode(pretrain[0]["labels"], skip_special_tokens=False)[:120])

# %% [markdown]
# **Check.** Every full piece gives exactly 128 input ids and 29 target ids, as promised by
# Section 6.6; every piece reconstructs to the token stream; and the same seed gives the same data.

# %%
full = input_lengths == 128
print(f"{int(full.sum())} of {len(pretrain)} pieces are full")
assert full.mean() > 0.9 and (label_lengths[full] == targets_length).all()
stream = sum((prose_tok.encode(t, add_eos=False) for t in docs["text"]), [])
rebuilt = sum((reconstruct(r["input_ids"], r["labels"], prose_tok.sentinel_id(0)) for r in pretrain), [])
assert rebuilt == stream
again = span_corruption_dataset(docs.select(range(10)), prose_tok, inputs_length=128, seed=0)
assert again[:5] == pretrain[:5]
batch = collate([pretrain[i] for i in range(4)])
print({k: tuple(v.shape) for k, v in batch.items()})

# %% [markdown]
# ## 6.10 Under the hood: real datasets
#
# *This section can be skipped on a first reading: Chapter 07 trains on the synthetic mixture.*
# Here are the loaders for real data — a summarization task from Python's own source, and the
# datasets T5 was fine-tuned on, from the Hugging Face Hub or from local files in the same schema —
# and what happens when rows are bad.

# %% [markdown]
# ### Summaries from the standard library's source
#
# With `ast` we turn each documented function of the standard library into a real
# **summarization** example: the input is `summarize: ` and the function's code without its
# docstring, the target is the docstring's first paragraph. Functions without a docstring, and
# very long ones, are skipped — and the counts are printed, never silently dropped.

# %%
#| export
def _first_paragraph(doc):
    return " ".join(doc.strip().split("\n\n")[0].split())


def stdlib_summaries(modules=None, max_input_chars=1500, verbose=True):
    """A real "summarize:" task built from the standard library: a function's code -> its docstring.

    For every function and method with a docstring in `modules` (dotted names such as
    "json.decoder"; default: every public top-level module file of the stdlib), `inputs` is
    "summarize: " + the code without the docstring (`ast.unparse`) and `targets` is the docstring's
    first paragraph on one line. Functions without a docstring or with code longer than
    `max_input_chars` are skipped; the counts are printed when `verbose`.
    """
    import datasets

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    if modules is None:
        files = sorted(p for p in stdlib.glob("*.py") if not p.name.startswith("_"))
    else:
        files = []
        for name in modules:
            base = stdlib.joinpath(*name.split("."))
            path = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
            if not path.is_file():
                raise DataError(f"no standard-library source for module {name!r} (looked for {path})")
            files.append(path)
    rows = {"task": [], "inputs": [], "targets": [], "source": []}
    seen = no_doc = too_long = 0
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError) as err:
            raise DataError(f"{path}: cannot parse this standard-library file: {err}") from None
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            seen += 1
            doc = ast.get_docstring(node)
            summary = _first_paragraph(doc) if doc else ""
            if not summary:
                no_doc += 1
                continue
            node.body = node.body[1:] or [ast.Pass()]  # drop the docstring
            code = ast.unparse(node)
            if len(code) > max_input_chars:
                too_long += 1
                continue
            rows["task"].append("summarize")
            rows["inputs"].append("summarize: " + code)
            rows["targets"].append(summary)
            rows["source"].append(f"{path.relative_to(stdlib).as_posix()}:{node.lineno}")
    if verbose:
        print(f"stdlib_summaries: kept {len(rows['task'])} of {seen} functions in {len(files)} files; "
              f"skipped {no_doc} without a docstring and {too_long} longer than {max_input_chars} characters")
    return datasets.Dataset.from_dict(rows)


# %%
summaries = stdlib_summaries(["textwrap", "shlex"])
first = next(s for s in summaries["source"] if s.startswith("textwrap"))
example = summaries[summaries["source"].index(first)]
print(example["source"])
print(example["inputs"][:300])
print("->", example["targets"])

# %% [markdown]
# **Check.** The kept and skipped counts add up, every target is one line, and no input still
# contains its docstring.

# %%
assert len(summaries) > 10 and all("\n" not in t and t for t in summaries["targets"])
assert all(r["targets"] not in r["inputs"] for r in summaries)

# %% [markdown]
# ### Hub datasets and local files in the same schema
#
# T5's paper fine-tunes on datasets that live on the Hugging Face Hub. `load_task` knows four of
# them, their column names (their *schema*), and how to turn a row into T5's text-to-text format:
#
# | name | hub dataset | columns | inputs → targets |
# | --- | --- | --- | --- |
# | `cnn_dailymail` | `abisee/cnn_dailymail`, 3.0.0 | article, highlights, id | `summarize: {article}` → highlights |
# | `wmt16_en_de` | `wmt/wmt16`, de-en | translation {de, en} | `translate English to German: {en}` → de |
# | `sst2` | `nyu-mll/glue`, sst2 | idx, sentence, label | `sst2 sentence: {sentence}` → negative / positive |
# | `c4` | `allenai/c4`, en | text, timestamp, url | raw `text` for span corruption |
#
# Without `data_files`, `load_task` calls `datasets.load_dataset` on the Hub name (with
# `streaming=True`, C4's 365 million documents arrive one at a time instead of as 800 GB on disk).
# With `data_files`, it reads local `.json`, `.jsonl` (optionally gzipped, as C4's files are) or
# `.parquet` files with the same columns, through the same conversion. The book runs offline, so
# below we use the tiny files in `tests/fixtures/data/`, written in exactly the Hub's schemas. On a
# machine with a network, `load_task("sst2", "validation")` gives the real thing.
#
# Every row is checked on the way: a missing or empty field, a label that is not 0 or 1, or a file
# that is not UTF-8 stops the pipeline with **one** `DataError` naming the file and the row.
# Nothing is dropped quietly: a dataset that loses rows without saying so reports better scores
# than it deserves.

# %%
#| export hub_tasks
import os
from pathlib import Path

from t5edu.data import DataError


def _text(row, key):
    value = row.get(key)
    if value is None:
        raise ValueError(f"missing field {key!r}")
    if not isinstance(value, str):
        raise TypeError(f"field {key!r} should be text, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"empty field {key!r}")
    return value.strip()


def _cnn_dailymail(row):
    return "summarize: " + _text(row, "article"), _text(row, "highlights")


def _wmt16_en_de(row):
    pair = row.get("translation")
    if not isinstance(pair, dict):
        raise TypeError("missing field 'translation' (a dict with 'de' and 'en')")
    return "translate English to German: " + _text(pair, "en"), _text(pair, "de")


SST2_LABELS = ("negative", "positive")


def _sst2(row):
    label = row.get("label")
    if label is None:
        raise ValueError("missing field 'label'")
    if isinstance(label, bool) or label not in (0, 1):
        raise ValueError(f"label {label!r} is not 0 (negative) or 1 (positive) "
                         "(GLUE's test split has no labels: -1)")
    return "sst2 sentence: " + _text(row, "sentence"), SST2_LABELS[label]


def _c4(row):
    return _text(row, "text")


# name -> (hub path, hub config, columns a row needs, row -> (inputs, targets), or text for c4)
HUB_TASKS = {
    "cnn_dailymail": ("abisee/cnn_dailymail", "3.0.0", ("article", "highlights"), _cnn_dailymail),
    "wmt16_en_de": ("wmt/wmt16", "de-en", ("translation",), _wmt16_en_de),
    "sst2": ("nyu-mll/glue", "sst2", ("sentence", "label"), _sst2),
    "c4": ("allenai/c4", "en", ("text",), _c4),
}

# %%
#| export hub_tasks
def _file_format(path):
    name = path.name.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zst"):
        name = name.removesuffix(suffix)
    if name.endswith((".json", ".jsonl")):
        return "json"
    if name.endswith(".parquet"):
        return "parquet"
    raise DataError(f"{path}: unknown file type; use .json or .jsonl (optionally .gz) or .parquet")


def _check_utf8(path):
    """Name the line of a JSON file that is not UTF-8 (the JSON reader's own error does not)."""
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}: line {number} is not valid UTF-8 "
                                f"(byte {line[err.start]:#04x} at column {err.start + 1})") from None


def _to_text_to_text(dataset, name, source):
    """Hub-schema rows -> (task, inputs, targets), or (text,) for c4; every row is checked."""
    _, _, columns, convert = HUB_TASKS[name]
    if dataset.column_names is not None:
        missing = [c for c in columns if c not in dataset.column_names]
        if missing:
            raise DataError(f"{source}: no column {missing[0]!r}; {name} needs {list(columns)}, "
                            f"found {dataset.column_names}")

    def convert_batch(batch, indices):
        out = {"text": []} if name == "c4" else {"task": [], "inputs": [], "targets": []}
        for j, index in enumerate(indices):
            try:
                result = convert({key: values[j] for key, values in batch.items()})
            except (ValueError, TypeError) as err:
                raise DataError(f"{source}: row {index}: {err}") from None
            if name == "c4":
                out["text"].append(result)
            else:
                out["task"].append(name)
                out["inputs"].append(result[0])
                out["targets"].append(result[1])
        return out

    mapped = dataset.map(convert_batch, batched=True, with_indices=True, remove_columns=dataset.column_names)
    return mapped.select_columns(["text"] if name == "c4" else ["task", "inputs", "targets"])

# %%
#| export hub_tasks
def load_task(name, split="train", data_files=None, streaming=False):
    """A real task as rows (`task`, `inputs`, `targets`) in T5's text-to-text format; "c4" gives (`text`,).

    Without `data_files`, `datasets.load_dataset` reads the Hub dataset (network needed):
    "cnn_dailymail", "wmt16_en_de", "sst2" or "c4" (see `HUB_TASKS`). With `data_files` (a path
    or a list of local .json/.jsonl[.gz]/.parquet files in the Hub's schema) the same rows are
    built offline; `split` is then unused. `streaming=True` returns an `IterableDataset`.
    A missing or empty field, a bad label or a non-UTF-8 file raises one `DataError` naming the
    file and the row (0-based).
    """
    import datasets

    if name not in HUB_TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(HUB_TASKS)}")
    path, config, _, _ = HUB_TASKS[name]
    if data_files is None:
        try:
            ds = datasets.load_dataset(path, config, split=split, streaming=streaming)
        except Exception as err:  # whatever the Hub client raises becomes one clear message
            raise DataError(f"could not load {path} ({config}, split {split!r}) from the Hugging Face Hub: "
                            f"{type(err).__name__}: {str(err)[:300]} -- offline? Pass data_files=[...] "
                            "with local files in the same schema.") from None
        return _to_text_to_text(ds, name, f"{path}/{config}[{split}]")
    files = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    if not files:
        raise DataError("data_files is empty")
    parts = []
    for file in map(Path, files):
        if not file.is_file():
            raise DataError(f"{file}: no such file")
        kind = _file_format(file)
        if kind == "json":
            _check_utf8(file)
        try:
            ds = datasets.load_dataset(kind, data_files=str(file), split="train", streaming=streaming)
        except Exception as err:  # a reader error becomes one message naming the file
            raise DataError(f"{file}: cannot be read as {kind}: {type(err).__name__}: "
                            f"{str(err)[:300]}") from None
        parts.append(_to_text_to_text(ds, name, str(file)))
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)

# %%
import t5edu

FIXTURES = Path(t5edu.__file__).resolve().parent.parent / "tests" / "fixtures" / "data"
for name, file in [("cnn_dailymail", "cnn_dailymail.jsonl"), ("wmt16_en_de", "wmt16_de_en.parquet"),
                   ("sst2", "sst2.parquet"), ("c4", "c4.json.gz")]:
    ds = load_task(name, data_files=FIXTURES / file)
    first = ds[0]
    print(f"{name:14} {len(ds)} rows  {str(first)[:110]}...")

# %% [markdown]
# **Check.** Each task has the T5 prefix, SST-2's labels became words, and streaming gives the same
# rows as loading everything.

# %%
sst2 = load_task("sst2", data_files=FIXTURES / "sst2.parquet")
assert all(x.startswith("sst2 sentence: ") for x in sst2["inputs"])
assert set(sst2["targets"]) == {"negative", "positive"}
streamed = list(load_task("sst2", data_files=FIXTURES / "sst2.parquet", streaming=True))
assert streamed == list(sst2)

# %% [markdown]
# **Bad input.** Three broken files, each stopped with one message that says where to look.

# %%
import json
import tempfile

bad_dir = Path(tempfile.mkdtemp())
rows = [{"article": "A long story.", "highlights": "Story.", "id": "a"},
        {"article": "Another story.", "id": "b"},  # no highlights
        {"article": "A third one.", "highlights": "Third.", "id": "c"}]
(bad_dir / "missing.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
(bad_dir / "empty.jsonl").write_text(json.dumps({"text": "   ", "timestamp": "", "url": ""}) + "\n",
                                      encoding="utf-8")
(bad_dir / "latin1.jsonl").write_bytes('{"sentence": "ok", "label": 1, "idx": 0}\n'
                                       '{"sentence": "caf\xe9", "label": 0, "idx": 1}\n'.encode("latin-1"))
for name, file in [("cnn_dailymail", "missing.jsonl"), ("c4", "empty.jsonl"), ("sst2", "latin1.jsonl")]:
    try:
        load_task(name, data_files=bad_dir / file)
    except DataError as err:
        print("DataError:", str(err).replace(str(bad_dir), "<dir>"))

# %% [markdown]
# ### Long inputs: cutting to a limit
#
# A CNN/DailyMail article is far longer than T5's 512 input tokens. `tokenize_dataset` and
# `featurize` cut such sequences to the limit, keeping `</s>` last, and say how many they cut.

# %%
cnn = tokenize_dataset(load_task("cnn_dailymail", data_files=FIXTURES / "cnn_dailymail.jsonl"), tok,
                       max_input_length=64, max_target_length=16)
assert max(len(x) for x in cnn["input_ids"]) == 64 and all(x[-1] == tok.eos_id for x in cnn["input_ids"])
features = featurize(list(cnn), tok, max_input_length=64, max_target_length=16)
assert features == [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in cnn]

# %% [markdown]
# ## Summary
#
# - Every task is a pair of strings in a `datasets.Dataset` (`task`, `inputs`, `targets`); a seeded
#   synthetic mixture of five tasks, with a test split that never shares an input with training,
#   gives Chapter 07 something a small T5 learns in minutes.
# - Tokenizing adds `input_ids` and `labels` ending with `</s>`; a batch is padded only to its longest
#   row, labels are padded with -100 so the loss ignores them, and the decoder reads `shift_right(labels)`.
# - Span corruption (15 % noise in spans of mean length 3, one sentinel per span) turns raw text into
#   inputs and targets, computed as seqio does, and `reconstruct` proves nothing is lost.
# - Real data — a summarization task from Python's source, and the Hub's datasets or local files in
#   their schema — goes through the same pipeline, and a bad row stops it with one `DataError`.
#
# **What is in the package now**
#
# ```python
# from t5edu.data import synthetic_mixture, featurize, tokenize_dataset, TextToTextCollator, make_loader
# from t5edu.data import pydoc_documents, stdlib_summaries, DataError
# from t5edu.hub_tasks import load_task, HUB_TASKS
# from t5edu.span_corruption import span_corruption, reconstruct, span_corruption_dataset
# from t5edu.span_corruption import random_spans_noise_mask, compute_input_and_target_lengths
# ```
#
# **Previous:** [Chapter 05 — The decoder](05_decoder.ipynb). **Next:** [Chapter 07 — Training](07_train.ipynb)
# feeds these batches to the model of Chapter 05 and trains it, until it answers.
# **Exercises:** [`../exercises/ch06_data.ipynb`](../exercises/ch06_data.ipynb).
#
# ## Further reading
#
# - Raffel et al., *Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer*
#   (2020), §2.4 (text to text) and §3.3 (unsupervised objectives): [arXiv:1910.10683](https://arxiv.org/abs/1910.10683).
# - Devlin et al., *BERT* (2019), the masked-language-model objective that span corruption generalises:
#   [arXiv:1810.04805](https://arxiv.org/abs/1810.04805).
# - Lhoest et al., *Datasets: A Community Library for Natural Language Processing* (2021):
#   [arXiv:2109.02846](https://arxiv.org/abs/2109.02846).
# - Roberts et al., *Scaling Up Models and Data with t5x and seqio* (2022):
#   [arXiv:2203.17189](https://arxiv.org/abs/2203.17189).
