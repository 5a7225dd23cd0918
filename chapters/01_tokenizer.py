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
# # Chapter 01 — The tokenizer
#
# **What you will build**
#
# - A SentencePiece **unigram** model trained, in about a second, on a corpus every Python
#   installation carries, with exactly T5's conventions (`<pad>`=0, `</s>`=1, `<unk>`=2, no BOS,
#   NFKC normalization, 100 sentinels at the top of the vocabulary).
# - Unigram segmentation **from scratch**: a Viterbi search over piece log-probabilities that
#   reproduces `sentencepiece`'s own `encode` id for id, ties included.
# - `t5edu.Tokenizer`: encode, decode, sentinels, padded batches with attention masks, save and
#   load — the same ids as Hugging Face's `T5Tokenizer`, and it loads a real T5 `spiece.model`.
#
# **Why T5 does it this way.** T5 reads and writes *text* for every task (Raffel et al. 2020, §2.4),
# and one vocabulary must cover English, German, French and Romanian (§3.1.3). It uses
# SentencePiece (Kudo & Richardson 2018), which works on raw text — no language-specific
# pre-tokenizer, spaces kept as the symbol `▁` so that decoding is lossless — with 32,000 pieces
# (§3.1.3). The piece model is Kudo's (2018) **unigram language model**: each piece has a
# probability, and a text is cut into its most probable sequence of pieces. T5 adds *sentinel*
# tokens to the vocabulary for its span-corruption objective (§3.1.4, Chapter 06); the released
# vocabulary has 100 of them.

# %%
#| default_exp tokenizer

# %% [markdown]
# ## 1.1 Why subwords
#
# A model reads integers, so text must be cut into units with ids. Two obvious choices both fail.
# **Words** give short sequences, but a vocabulary fixed at training time never contains every word
# a user will type: each unseen word becomes one `<unk>` and its meaning is lost. **Characters**
# never go out of vocabulary, but sequences get five times longer, and attention costs grow with
# the square of the length.
#
# **Subwords** sit in between: frequent words are single pieces, rare words are spelled from a few
# frequent fragments (`▁tokeniz` + `ation`), and any string can still be written with
# single-character pieces. T5 uses a 32,000-piece SentencePiece *unigram* model.
#
# Our corpus is the English prose of Python's own documentation, shipped with every installation
# as `pydoc_data.topics` (the text behind `help("if")`). Nothing to download, and it is read at run
# time, never copied into this repository. `pydoc_corpus` returns its non-empty lines and keeps
# every fifth line aside as a **held-out** set we never train on.

# %%
#| export
import io
import operator
import os
import re
from pathlib import Path

import sentencepiece as spm

from t5edu.files import atomic_write

PAD_ID = 0  # T5's special ids; there is no BOS
EOS_ID = 1
UNK_ID = 2
NUM_SENTINELS = 100  # <extra_id_0> ... <extra_id_99>
DEFAULT_VOCAB_SIZE = 3100  # 3,000 SentencePiece pieces + 100 sentinels (T5: 32,000 + 100)
SPIECE_FILENAME = "spiece.model"  # the file name T5 checkpoints use


def pydoc_corpus(split="train", holdout_every=5):
    """Lines of Python's documentation (`pydoc_data.topics`), split deterministically.

    `split` is "train", "heldout" or "all"; line i of the corpus is held out when
    `i % holdout_every == holdout_every - 1`. Lines are stripped; blank lines and the
    `*****`/`=====` underlines of headings are dropped. The text depends on the Python version.
    """
    from pydoc_data.topics import topics

    lines = []
    for key in sorted(topics):
        for line in topics[key].splitlines():
            line = line.strip()
            if line and not set(line) <= set("*=-~^"):
                lines.append(line)
    if split == "all":
        return lines
    if split == "train":
        return [line for i, line in enumerate(lines) if i % holdout_every != holdout_every - 1]
    if split == "heldout":
        return [line for i, line in enumerate(lines) if i % holdout_every == holdout_every - 1]
    raise ValueError(f"split must be 'train', 'heldout' or 'all', got {split!r}")


# %%
train_lines, heldout_lines = pydoc_corpus("train"), pydoc_corpus("heldout")
print(f"train: {len(train_lines)} lines, {sum(map(len, train_lines))} characters")
print(f"held-out: {len(heldout_lines)} lines")
print(heldout_lines[3])
assert len(heldout_lines) >= 1000

# %% [markdown]
# How bad are words? Build a word vocabulary from the training lines and count how many
# held-out words it misses. Characters, on the other hand, never miss — but look at the lengths.

# %%
train_words = {w for line in train_lines for w in line.split()}
held_words = [w for line in heldout_lines for w in line.split()]
oov = sum(w not in train_words for w in held_words) / len(held_words)
print(f"word vocabulary: {len(train_words)} types; {oov:.1%} of held-out words are out of vocabulary")
print(f"characters per word: {sum(map(len, held_words)) / len(held_words):.2f}")
assert oov > 0.05

# %% [markdown]
# Several percent of held-out words would be `<unk>`. We now train a subword model and measure the
# same things with it.
#
# ## 1.2 Training a unigram model with T5's conventions
#
# A unigram language model over pieces says: a string is produced by drawing pieces independently,
# piece $x$ with probability $p(x)$. Training (EM, run by `sentencepiece`) starts from a large set
# of candidate substrings and prunes it down to the requested size, keeping the pieces that best
# explain the corpus. The model file stores, for each piece, its **score** $\log p(x)$.
#
# T5's conventions, all passed to the trainer:
#
# - `pad_id=0`, `eos_id=1`, `unk_id=2`, `bos_id=-1` (T5 has no beginning-of-sequence token);
# - `nmt_nfkc` normalization: Unicode NFKC (`ﬁ` → `fi`, `①` → `1`), whitespace collapsed, and a
#   `▁` marking each word start, with a "dummy" `▁` prefixed to the text;
# - `num_threads=1` — the trainer's EM sums run in parallel, and a different thread count gives a
#   (slightly) different model. One thread makes training reproducible on every machine.
#
# The 100 sentinels are **not** SentencePiece pieces: exactly as in Google's `spiece.model`, they
# are added after the model's vocabulary by the tokenizer (§1.5).

# %% [markdown]
# The training function reads the corpus through two small input checks, `_sentences` and
# `_check_text`, defined first; §1.9 *Under the hood* explains what they catch. On a first reading,
# skip the next cell.

# %%
#| exporti
def _check_text(text, what="text"):
    """Raise one clear ValueError when `text` is not valid Unicode (a lone surrogate such as '\\ud800')."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{what} contains a lone surrogate {text[err.start]!r} at position {err.start}: "
                         "it is not valid Unicode text (decode bytes with errors='replace')") from None


def _sentences(corpus):
    """Non-empty lines of `corpus`: a path to a UTF-8 text file, or an iterable of strings."""
    if isinstance(corpus, (str, os.PathLike)):
        path = Path(corpus)
        if not path.is_file():
            raise FileNotFoundError(f"corpus file not found: {path} (to train on text, pass a list of lines)")
        try:
            corpus = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise ValueError(f"corpus file {path} is not UTF-8 text: byte {err.object[err.start]:#04x} at "
                             f"offset {err.start} cannot be decoded (convert the file to UTF-8)") from None
    lines = []
    for item in corpus:
        if not isinstance(item, str):
            raise TypeError(f"corpus lines must be str, got {type(item).__name__}")
        _check_text(item, f"corpus line {len(lines) + 1}")
        lines += [line for line in item.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the corpus is empty: there is no non-blank line to train the tokenizer on")
    return lines


# %%
#| export
_T5_TRAINER_SPEC = {
    "model_type": "unigram",
    "pad_id": PAD_ID, "eos_id": EOS_ID, "unk_id": UNK_ID, "bos_id": -1,
    "pad_piece": "<pad>", "eos_piece": "</s>", "unk_piece": "<unk>",
    "normalization_rule_name": "nmt_nfkc",
    "num_threads": 1,  # deterministic: the EM statistics are summed in one fixed order
    "minloglevel": 3,  # sentencepiece's training log goes to stderr; keep it quiet
}


def train_sentencepiece(corpus, num_pieces, character_coverage=0.9995):
    """Train a SentencePiece unigram model with T5's conventions; return the serialized model (bytes).

    `num_pieces` counts every SentencePiece piece, <pad>, </s> and <unk> included (T5: 32,000).
    Deterministic: the same corpus and arguments give the same bytes.
    """
    lines = _sentences(corpus)
    if isinstance(num_pieces, bool) or not isinstance(num_pieces, int):
        raise TypeError(f"num_pieces must be an int, got {type(num_pieces).__name__}")
    if num_pieces < 4:
        raise ValueError(f"num_pieces={num_pieces} is too small: it must hold <pad>, </s>, <unk> "
                         "and at least one real piece")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model,
                                       vocab_size=num_pieces, character_coverage=character_coverage,
                                       **_T5_TRAINER_SPEC)
    except RuntimeError as err:
        message = str(err).split("] ")[-1].strip() or str(err)
        raise ValueError(f"sentencepiece could not train a {num_pieces}-piece model on "
                         f"{len(lines)} lines: {message}") from None
    return model.getvalue()


# %%
proto = train_sentencepiece(train_lines, num_pieces=3000)
sp = spm.SentencePieceProcessor(model_proto=proto)
print(sp.get_piece_size(), "pieces;", [sp.id_to_piece(i) for i in range(8)])
print("pad/eos/unk/bos ids:", sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id())
assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
assert train_sentencepiece(train_lines, num_pieces=3000) == proto  # deterministic, byte for byte
print(sp.encode("Subwords tokenize unusual words like 'serendipity'.", out_type=str))

# %% [markdown]
# Almost every word is now covered, at the price of a little over one and a half pieces per word. Our model is tiny (3,000
# pieces, trained on 350k characters), so words outside Python's vocabulary fall into small pieces;
# T5's 32,000 pieces trained on C4 keep most English words whole.

# %%
held_pieces = [len(sp.encode(w)) for w in held_words]
unk_words = sum(sp.unk_id() in sp.encode(w) for w in held_words)
print(f"pieces per held-out word: {sum(held_pieces) / len(held_words):.2f}")
print(f"held-out words containing <unk>: {unk_words / len(held_words):.2%} (word vocabulary: {oov:.1%})")
assert unk_words / len(held_words) < 0.01

# %% [markdown]
# ## 1.3 Unigram segmentation from scratch: Viterbi
#
# Given the trained scores, how does `sentencepiece` cut a new string? Among all ways to write the
# normalized string $s$ as a sequence of vocabulary pieces $x_1 \dots x_k$, it picks the most
# probable one:
#
# $$\hat{x} = \arg\max_{x_1 \dots x_k = s} \sum_{i=1}^{k} \log p(x_i).$$
#
# There are exponentially many segmentations, but the best one is found by dynamic programming
# (the **Viterbi** algorithm): let `best[j]` be the score of the best segmentation of the first
# `j` characters. Then `best[j] = max over pieces s[i:j] of best[i] + score(s[i:j])`, and a
# back-pointer remembers which `i` won. One pass left to right, one walk back.
#
# To reproduce `sentencepiece` **exactly** we must copy four details of its C++ code
# (`unigram_model.cc`, `Model::EncodeOptimized`):
#
# 1. **Normalize first.** `sp.normalize(text)` applies NFKC, collapses whitespace, turns spaces into
#    `▁` and adds the leading `▁`. Our function takes raw text and normalizes it inside.
# 2. **Unknown characters.** If no single-character piece starts at position `i`, an `<unk>` edge
#    covering that one character is added, with score `min(piece scores) - 10`. Control pieces
#    (`<pad>`, `</s>`) and `<unk>` itself are never matched against text.
# 3. **Ties.** Candidates are visited by start position, left to right, and a later one replaces the
#    current best only if it is *strictly* better: on a tie, the piece that starts earliest wins.
# 4. **float32.** Scores are `float` in C++, and so are the running sums. Sums that are equal in
#    float32 can differ in float64, which changes the tie-breaking. We keep our sums in an
#    `array("f")`, which rounds every stored value to float32 exactly as C++ does.
#
# Finally, the processor **merges consecutive `<unk>` pieces** into one.

# %%
#| export segmentation
import weakref
from array import array

from t5edu.tokenizer import _check_text

_PIECE_TABLES = weakref.WeakKeyDictionary()  # processor -> its lookup table, built once


def _piece_table(sp_model):
    """(piece -> id, scores by id, longest piece length, unk score, unk id) for `sp_model`."""
    table = _PIECE_TABLES.get(sp_model)
    if table is None:
        pieces, scores, normal = {}, [], []
        for i in range(sp_model.get_piece_size()):
            scores.append(sp_model.get_score(i))
            if sp_model.is_byte(i):
                raise ValueError("viterbi_encode does not support byte-fallback models (T5's has none)")
            if sp_model.is_control(i) or sp_model.is_unknown(i) or sp_model.is_unused(i):
                continue  # never matched against text
            pieces[sp_model.id_to_piece(i)] = i
            normal.append(scores[i])
        unk_score = array("f", [min(normal) - 10.0])[0]  # kUnkPenalty = 10, in float32
        table = (pieces, scores, max(map(len, pieces)), unk_score, sp_model.unk_id())
        _PIECE_TABLES[sp_model] = table
    return table


# %% [markdown]
# With that table, the search itself: one pass filling `best`, `start` and `last`, one walk back.

# %%
#| export segmentation
def _walk_back(start, last, unk_id):
    """The ids of the best segmentation, read from the end of the text back; a run of <unk> is one id."""
    ids, j = [], len(start) - 1
    while j > 0:
        ids.append(last[j])
        j = start[j]
    ids.reverse()
    return [t for k, t in enumerate(ids) if not (t == unk_id and k > 0 and ids[k - 1] == unk_id)]


def viterbi_encode(text, sp_model):
    """Most probable unigram segmentation of `text`, as ids; equals `sp_model.encode(text)`.

    `text` is raw text: it is normalized inside with `sp_model.normalize` (NFKC, whitespace, `▁`).
    `sp_model` is a `sentencepiece.SentencePieceProcessor` holding a unigram model without byte
    fallback or user-defined symbols (T5's). No EOS is appended. Runs of unknown characters become
    one `<unk>` id, as in sentencepiece.
    """
    if not isinstance(text, str):
        raise TypeError(f"viterbi_encode expects a str, got {type(text).__name__}")
    _check_text(text)
    pieces, scores, max_len, unk_score, unk_id = _piece_table(sp_model)
    s = sp_model.normalize(text)
    n = len(s)
    best = array("f", [0.0]) * (n + 1)  # best[j]: score of the best segmentation of s[:j] (float32)
    start = [-1] * (n + 1)  # start[j]: where the last piece of that segmentation begins (-1: none yet)
    last = [unk_id] * (n + 1)  # last[j]: the id of that piece
    f32 = array("f", [0.0])  # scratch cell: storing a float here rounds it to float32
    for i in range(n):
        base, has_single = best[i], False
        for j in range(i + 1, min(n, i + max_len) + 1):
            pid = pieces.get(s[i:j])
            if pid is None:
                continue
            f32[0] = scores[pid] + base
            if start[j] < 0 or f32[0] > best[j]:  # strictly better: ties keep the earliest start
                best[j], start[j], last[j] = f32[0], i, pid
            has_single = has_single or j == i + 1
        if not has_single:  # unknown character: a one-character <unk> edge
            f32[0] = unk_score + base
            if start[i + 1] < 0 or f32[0] > best[i + 1]:
                best[i + 1], start[i + 1], last[i + 1] = f32[0], i, unk_id
    return _walk_back(start, last, unk_id)


# %% [markdown]
# A first look: our ids and sentencepiece's for one sentence, a string with characters the model
# has never seen (runs of them become a single `<unk>`), and one that NFKC has to normalize.

# %%
for text in ["The with statement wraps a block.", "日本語 and Ελληνικά", "ﬁle ① two   spaces"]:
    ours = viterbi_encode(text, sp)
    print(f"{text!r:26} {[sp.id_to_piece(t) for t in ours]}")
    assert ours == sp.encode(text)

# %% [markdown]
# Now the real test: every held-out line.

# %%
reference = [sp.encode(line) for line in heldout_lines]
same32 = sum(viterbi_encode(line, sp) == ids for line, ids in zip(heldout_lines, reference))
print(f"float32 Viterbi == sentencepiece on {same32} / {len(heldout_lines)} held-out lines")
assert same32 == len(heldout_lines) >= 1000

# %% [markdown]
# Exact on every held-out line. (§1.9 shows what goes wrong without detail 4, and how much slower
# pure Python is.) `t5edu.Tokenizer` calls sentencepiece's C++ for speed; `viterbi_encode` stays in
# the package as the readable reference (`from t5edu.segmentation import viterbi_encode`).
#
# ## 1.4 A picture of the lattice
#
# All pieces that match somewhere inside one word form a **lattice**: nodes are positions between
# characters, edges are pieces. Viterbi picks the path from the left end to the right end with the
# highest total score. Below, each bar is one candidate piece (its score printed on it), and the
# winning path is drawn in orange.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt

word = "▁asynchronous"
pieces_table, scores_table = _piece_table(sp)[:2]
edges = [(i, j, word[i:j]) for i in range(len(word)) for j in range(i + 1, len(word) + 1)
         if word[i:j] in pieces_table]
chosen = sp.encode(word.replace("▁", " "), out_type=str)
bounds, pos = set(), 0
for piece in chosen:
    bounds.add((pos, pos + len(piece)))
    pos += len(piece)
print("best path:", chosen)

fig, ax = plt.subplots(figsize=(9, 4.2))
levels = []  # greedy row assignment so that bars do not overlap
for i, j, piece in sorted(edges, key=lambda e: (e[0], -e[1])):
    row = next((r for r, end in enumerate(levels) if end <= i), None)
    if row is None:
        levels.append(0)
        row = len(levels) - 1
    levels[row] = j
    on_path = (i, j) in bounds
    ax.barh(row, j - i, left=i, height=0.7, color="tab:orange" if on_path else "lightsteelblue",
            edgecolor="black", linewidth=1.5 if on_path else 0.5)
    ax.text((i + j) / 2, row, f"{piece}\n{scores_table[pieces_table[piece]]:.1f}",
            ha="center", va="center", fontsize=7)
ax.set_xticks(range(len(word) + 1))
ax.set_xticks([k + 0.5 for k in range(len(word))], list(word), minor=True)
ax.tick_params(axis="x", which="minor", length=0, labelsize=11)
ax.set_yticks([])
ax.invert_yaxis()
ax.set_xlabel("character position")
ax.set_title(f"All {len(edges)} vocabulary pieces inside {word!r}; best path in orange")
plt.tight_layout()
plt.show()

# %% [markdown]
# *Figure 1.1 — The lattice of one word: every bar is a vocabulary piece that matches there (with its
# log-probability); Viterbi's best path (orange) covers the word with the pieces of highest total
# score.*
#
# And how many pieces does a word take? Frequent words of this corpus (`the`, `object`, `method`)
# are one piece; the tail is long words spelled from fragments.

# %%
from collections import Counter

per_word = Counter(min(n, 6) for n in held_pieces)
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(range(1, 7), [per_word[k] / len(held_pieces) for k in range(1, 7)], color="tab:blue")
ax.set_xticks(range(1, 7), ["1", "2", "3", "4", "5", "6+"])
ax.set_xlabel("pieces per held-out word")
ax.set_ylabel("fraction of words")
ax.set_title("Segmentation of held-out words (3,000-piece model)")
plt.tight_layout()
plt.show()
print({k: round(per_word[k] / len(held_pieces), 3) for k in range(1, 7)})

# %% [markdown]
# *Figure 1.2 — Pieces per held-out word: seven in ten held-out words are a single piece, and only
# about 4% need five or more.*

# %% [markdown]
# ## 1.5 Sentinels and special ids
#
# T5's pre-training objective (Chapter 06) replaces spans of the input with **sentinel** tokens
# `<extra_id_0>`, `<extra_id_1>`, … and asks the decoder for the missing spans. There are 100 of
# them, and they live *after* the SentencePiece vocabulary, in reverse order: with $N$ pieces,
# `<extra_id_i>` has id $N + 99 - i$, so `<extra_id_0>` is the **highest** id. For T5,
# $N = 32{,}000$, `<extra_id_0>` = 32099 and the vocabulary size is 32,100.
#
# Text that contains the string `<extra_id_3>` (or `</s>`, `<pad>`, `<unk>`) is encoded as that one
# id, as Hugging Face does: the text is cut around special strings, and each remaining stretch is
# encoded by SentencePiece on its own (each starting a new word, with its `▁`).
#
# Decoding goes the other way. Ordinary ids go back to text through sentencepiece (which turns `▁`
# into spaces and drops the leading one); special ids are written as their names, or dropped with
# `skip_special_tokens=True` — except `<unk>`, which is then written ` ⁇ ` as sentencepiece does, so
# that unknown text never vanishes silently.

# %%
#| export
def sentinel_token(i):
    """The text of sentinel number i: `<extra_id_i>`."""
    return f"<extra_id_{i}>"


# %% [markdown]
# The whole id space of the book's tokenizer, drawn to show its order (not to scale):

# %%
from matplotlib.patches import Rectangle

n_pieces = sp.get_piece_size()  # 3,000 for the book's model (T5: 32,000)
segments = [(0, 1, "<pad>", "lightgray"), (1, 1, "</s>", "tab:green"), (2, 1, "<unk>", "tab:red"),
            (3, 5, f"SentencePiece pieces 3 … {n_pieces - 1}", "lightsteelblue"),
            (8, 3, f"sentinels {n_pieces} … {n_pieces + 99}", "gold")]
fig, ax = plt.subplots(figsize=(10, 2.6))
for x, w, label, color in segments:
    ax.add_patch(Rectangle((x, 0), w, 1, facecolor=color, edgecolor="black"))
    ax.text(x + w / 2, 0.5, label, ha="center", va="center", fontsize=9)
    ax.text(x + 0.05, 1.08, str([0, 1, 2, 3, n_pieces][[0, 1, 2, 3, 8].index(x)]), fontsize=8)
ax.annotate(f"<extra_id_99> = {n_pieces}", (8.05, 0), (6.6, -0.75), fontsize=9,
            arrowprops=dict(arrowstyle="->"))
ax.annotate(f"<extra_id_0> = {n_pieces + 99}", (10.95, 0), (9.4, -0.75), fontsize=9,
            arrowprops=dict(arrowstyle="->"))
ax.set_xlim(-0.2, 11.3)
ax.set_ylim(-1.1, 1.5)
ax.axis("off")
ax.set_title("T5's vocabulary: special ids, SentencePiece pieces, then sentinels counted down")
plt.show()

# %% [markdown]
# *Figure 1.3 — Ids 0–2 are `<pad>`, `</s>`, `<unk>`; the SentencePiece pieces follow; the 100
# sentinels sit on top, numbered downwards, so `<extra_id_0>` is always the largest id.*
#
# ## 1.6 Batches: padding, truncation, attention masks
#
# A batch is a rectangle. Sequences of different lengths are **padded** with `<pad>` = 0 on the
# right, and an **attention mask** says which positions are real (1) and which are padding (0), so
# that attention can ignore the padding. T5 appends `</s>` to every sequence; when a sequence is
# **truncated** to `max_length`, Hugging Face cuts the text and appends `</s>` after the cut, so the
# EOS is always last. `pad_batch` does the padding; the tokenizer's `batch_encode` below truncates.

# %%
#| export
def pad_batch(sequences, pad_id=PAD_ID, length=None):
    """Right-pad lists of ids to `length` (default: the longest); return (ids, attention_mask)."""
    length = max((len(s) for s in sequences), default=0) if length is None else length
    ids = [list(s) + [pad_id] * (length - len(s)) for s in sequences]
    mask = [[1] * len(s) + [0] * (length - len(s)) for s in sequences]
    return ids, mask


# %%
ids, mask = pad_batch([[5, 6, 1], [7, 1], [1]])
print(ids)
print(mask)
assert ids == [[5, 6, 1], [7, 1, 0], [1, 0, 0]] and mask == [[1, 1, 1], [1, 1, 0], [1, 0, 0]]

# %% [markdown]
# The same as a picture, with three real sentences: every row is one sequence, coloured by what
# sits there, and the attention mask on the right marks the real positions.

# %%
texts = ["Lists are mutable.", "A tuple is immutable.", "Yes."]
pieces = [[*sp.encode(t, out_type=str), "</s>"] for t in texts]
ids, mask = pad_batch([[*sp.encode(t), EOS_ID] for t in texts])
colors = {"</s>": "tab:green", "<pad>": "lightgray"}
width = len(ids[0])
fig, ax = plt.subplots(figsize=(11, 2.8))
for row, (row_pieces, row_ids, row_mask) in enumerate(zip(pieces, ids, mask)):
    names = row_pieces + ["<pad>"] * (width - len(row_pieces))
    for col, (name, token_id, m) in enumerate(zip(names, row_ids, row_mask)):
        ax.add_patch(Rectangle((col, -row), 1, -0.9, facecolor=colors.get(name, "lightsteelblue"),
                               edgecolor="black", lw=0.5))
        ax.text(col + 0.5, -row - 0.45, f"{name}\n{token_id}", ha="center", va="center", fontsize=7)
        ax.add_patch(Rectangle((width + 1 + col * 0.5, -row), 0.5, -0.9,
                               facecolor="white" if m else "lightgray", edgecolor="black", lw=0.5))
        ax.text(width + 1.25 + col * 0.5, -row - 0.45, str(m), ha="center", va="center", fontsize=8)
ax.text(width / 2, 0.25, "input_ids (piece, id)", ha="center", fontsize=9)
ax.text(width + 1 + width * 0.25, 0.25, "attention_mask", ha="center", fontsize=9)
ax.set_xlim(-0.2, width * 1.5 + 1.2)
ax.set_ylim(-3.1, 0.6)
ax.axis("off")
ax.set_title("A padded batch: pieces + </s> (green), <pad> = 0 (grey), and the attention mask")
plt.show()
assert [sum(m) for m in mask] == [len(p) for p in pieces]

# %% [markdown]
# *Figure 1.4 — A batch is a rectangle: each sequence ends with `</s>`, is right-padded with
# `<pad>` (id 0), and its attention mask is 1 exactly on the real positions.*
#
# ## 1.7 The `Tokenizer`, one piece at a time
#
# The class wraps a `SentencePieceProcessor` (fast C++) and adds what T5 puts around it: the
# sentinels, EOS, special strings in text, batches, and a `spiece.model` file on disk. It is
# too long to read in one go, so we grow it as d2l.ai does: a small decorator, `add_to_class`,
# attaches each function of a later cell to the class as a method. In the package it is still one
# class, `t5edu.Tokenizer`.

# %%
#| exporti
def add_to_class(cls):
    """Decorator: attach the decorated function (or classmethod, property) to `cls` as a method.

    It returns None on purpose: the function lives on in the class, not as a module-level name.
    """
    def attach(function):
        inner = getattr(function, "__func__", None) or getattr(function, "fget", None) or function
        setattr(cls, inner.__name__, function)

    return attach


# %% [markdown]
# First the skeleton: the constructor takes a processor (or the bytes of a model) and refuses a
# model that does not follow T5's id conventions, since every later chapter relies on
# `pad_id == 0` and `eos_id == 1`. It also prepares a regular expression that finds special strings
# in text (longest first, so that `<extra_id_10>` is not read as `<extra_id_1>` + `0>`).

# %%
#| export
def _load_processor(proto, where):
    """A SentencePieceProcessor from the bytes `proto`; `where` names their origin in errors."""
    if not proto:
        raise ValueError(f"{where} is empty, not a SentencePiece model")
    try:
        return spm.SentencePieceProcessor(model_proto=proto)
    except (RuntimeError, OSError) as err:
        raise ValueError(f"{where} is not a valid SentencePiece model ({str(err).strip()[:120]})") from None


class Tokenizer:
    """T5's tokenizer: a SentencePiece unigram model plus `extra_ids` sentinels appended after it.

    Ids: 0 `<pad>`, 1 `</s>`, 2 `<unk>`, then SentencePiece pieces up to `num_pieces - 1`, then the
    sentinels, `<extra_id_i>` = `vocab_size - 1 - i`. `vocab_size` (and `len(tok)`) counts them all.
    Build one with `Tokenizer.train(...)`, `Tokenizer.load(path)` or `Tokenizer(processor_or_bytes)`.
    """

    pad_id, eos_id, unk_id = PAD_ID, EOS_ID, UNK_ID

    def __init__(self, sp_model, extra_ids=NUM_SENTINELS):
        if isinstance(sp_model, (bytes, bytearray)):
            proto = bytes(sp_model)
            sp_model = _load_processor(proto, "the given bytes")
        elif isinstance(sp_model, spm.SentencePieceProcessor):
            proto = sp_model.serialized_model_proto()
        else:
            raise TypeError("Tokenizer needs a sentencepiece.SentencePieceProcessor or the bytes of a "
                            f"model, got {type(sp_model).__name__}")
        if isinstance(extra_ids, bool) or not isinstance(extra_ids, int) or extra_ids < 0:
            raise ValueError(f"extra_ids must be an int >= 0, got {extra_ids!r}")
        found = (sp_model.pad_id(), sp_model.eos_id(), sp_model.unk_id())
        if found != (PAD_ID, EOS_ID, UNK_ID):
            raise ValueError(f"not a T5-style model: (pad, eos, unk) ids are {found}, expected (0, 1, 2)")
        if sp_model.piece_to_id(sentinel_token(0)) != sp_model.unk_id():
            raise ValueError("the SentencePiece model already contains <extra_id_0>; "
                             "T5 adds sentinels after it")
        self.sp, self._proto, self.extra_ids = sp_model, proto, extra_ids
        self.num_pieces = sp_model.get_piece_size()
        self.vocab_size = self.num_pieces + extra_ids
        self._special = {sp_model.id_to_piece(i): i for i in (PAD_ID, EOS_ID, UNK_ID)}
        self._special.update({sentinel_token(i): self.sentinel_id(i) for i in range(extra_ids)})
        self._names = {i: name for name, i in self._special.items()}
        alternatives = sorted(self._special, key=len, reverse=True)  # longest first
        self._special_re = re.compile("|".join(map(re.escape, alternatives)))

    def __len__(self):
        return self.vocab_size

    def __repr__(self):
        return (f"Tokenizer(vocab_size={self.vocab_size}: {self.num_pieces} SentencePiece pieces "
                f"+ {self.extra_ids} sentinels)")


# %% [markdown]
# The sentinels, counted down from the top of the vocabulary (Figure 1.3). The constructor above
# already calls `sentinel_id`; that is fine, because it runs only when a tokenizer is built, after
# this cell has added the method.

# %%
#| exporti
@add_to_class(Tokenizer)
def sentinel_id(self, i):
    """Id of `<extra_id_i>`: `vocab_size - 1 - i` (T5: `<extra_id_0>` = 32099)."""
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.extra_ids:
        raise ValueError(f"sentinel index must be an int in [0, {self.extra_ids}), got {i!r}")
    return self.vocab_size - 1 - i


@add_to_class(Tokenizer)
def is_sentinel(self, token_id):
    """True when `token_id` is one of the sentinels `<extra_id_i>`."""
    return self.num_pieces <= int(token_id) < self.vocab_size


@add_to_class(Tokenizer)
@property
def sentinel_ids(self):
    """[id of <extra_id_0>, id of <extra_id_1>, ...] (decreasing)."""
    return [self.sentinel_id(i) for i in range(self.extra_ids)]


# %%
tok = Tokenizer(proto)  # the model trained in §1.2: 3,000 pieces, plus 100 sentinels
print(tok)
print("pad, eos, unk:", tok.pad_id, tok.eos_id, tok.unk_id)
print("<extra_id_0> =", tok.sentinel_id(0), " <extra_id_99> =", tok.sentinel_id(99))
assert len(tok) == tok.vocab_size == 3100 and tok.sentinel_id(0) == 3099 and tok.sentinel_id(99) == 3000
assert tok.is_sentinel(3050) and not tok.is_sentinel(2999) and tok.sentinel_ids[:2] == [3099, 3098]

# %% [markdown]
# **Encoding one text.** The text is cut around special strings (§1.5); each stretch in between goes
# to sentencepiece, and `</s>` is appended.

# %%
#| exporti
@add_to_class(Tokenizer)
def encode(self, text, add_eos=True):
    """Ids of `text`, with `</s>` appended; `<extra_id_i>`, `</s>`, `<pad>`, `<unk>` in text are one id."""
    if not isinstance(text, str):
        raise TypeError(f"encode expects a str, got {type(text).__name__}")
    _check_text(text)
    ids, pos = [], 0
    if "<" in text:
        for m in self._special_re.finditer(text):
            ids += self.sp.encode(text[pos:m.start()])
            ids.append(self._special[m.group()])
            pos = m.end()
    ids += self.sp.encode(text[pos:])
    return [*ids, self.eos_id] if add_eos else ids


@add_to_class(Tokenizer)
def id_to_piece(self, token_id):
    """The piece (or special token name) of one id."""
    token_id = int(token_id)
    if not 0 <= token_id < self.vocab_size:
        raise ValueError(f"id {token_id} is outside the vocabulary [0, {self.vocab_size})")
    return self._names.get(token_id) or self.sp.id_to_piece(token_id)


@add_to_class(Tokenizer)
def tokenize(self, text):
    """The pieces of `text` as strings (no EOS), e.g. ['▁He', 'llo', '<extra_id_0>']."""
    return [self.id_to_piece(i) for i in self.encode(text, add_eos=False)]


# %% [markdown]
# **Decoding** goes the other way. Runs of ordinary ids go back to text through sentencepiece,
# which drops the `▁` at the start of a run — a real space unless the run starts the text, so we
# put it back. Special ids are written by name or skipped.

# %%
#| exporti
@add_to_class(Tokenizer)
def decode(self, ids, skip_special_tokens=True):
    """Text of `ids` (a list, or a 1-D tensor/array).

    With `skip_special_tokens=False`, special ids are written by name (`<extra_id_0>`, `</s>`,
    `<pad>`, `<unk>`), as Hugging Face does. With `skip_special_tokens=True` (default), `<pad>`,
    `</s>` and sentinels are dropped, and `<unk>` is written ` ⁇ ` as sentencepiece does, so that
    unknown text never vanishes silently.
    """
    ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    parts, run = [], []

    def flush():
        if run:
            text = self.sp.decode(run)  # drops the leading ▁ of the run ...
            if parts and self.sp.id_to_piece(run[0]).startswith("▁"):
                text = " " + text  # ... which is a real space unless the run starts the text
            parts.append(text)
            run.clear()

    for token_id in ids:
        try:
            token_id = operator.index(token_id)
        except TypeError:
            raise TypeError(f"decode expects integer ids, got {type(token_id).__name__}") from None
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"id {token_id} is outside the vocabulary [0, {self.vocab_size})")
        if token_id in (PAD_ID, EOS_ID) or token_id >= self.num_pieces:
            flush()
            if not skip_special_tokens:
                parts.append(self._names[token_id])
        elif token_id == UNK_ID and not skip_special_tokens:
            flush()
            parts.append(self._names[token_id])
        else:
            run.append(token_id)
    flush()
    return "".join(parts)


# %% [markdown]
# Encoding appends `</s>`; sentinels written in the text become their ids; decoding inverts it.

# %%
text = "The with statement<extra_id_0> a block of code.<extra_id_1>"
ids = tok.encode(text)
print(ids)
print(tok.tokenize(text))
print(repr(tok.decode(ids, skip_special_tokens=False)))
print(repr(tok.decode(ids)))
assert ids[-1] == tok.eos_id and tok.sentinel_id(0) in ids and tok.sentinel_id(1) == ids[-2]
assert tok.decode(ids, skip_special_tokens=False) == text + "</s>"

# %% [markdown]
# On plain text the round trip `decode(encode(x))` gives back `x` whenever `x` is already in
# normal form (NFKC, single spaces, no unknown characters) — that is most of our held-out set:

# %%
normal = [line for line in heldout_lines
          if tok.sp.normalize(line) == "▁" + line.replace(" ", "▁") and tok.unk_id not in tok.encode(line)]
assert all(tok.decode(tok.encode(line)) == line for line in normal)
print(f"round trip exact on {len(normal)} / {len(heldout_lines)} held-out lines (the others are not in normal form)")

# %% [markdown]
# **Batches** (§1.6) with truncation: when a text is longer than `max_length`, it is cut and `</s>`
# is appended after the cut, as Hugging Face does, so the EOS is always last. The argument checks
# live in `_check_batch_arguments`, at the end of the cell.

# %%
#| exporti
@add_to_class(Tokenizer)
def batch_encode(self, texts, max_length=None, padding="longest", truncation=True,
                 return_tensors="pt", add_eos=True):
    """Encode a list of texts into {"input_ids", "attention_mask"}.

    padding: "longest" (or True), "max_length" (pad to `max_length`), or False (no padding).
    truncation: cut sequences longer than `max_length`, keeping `</s>` last (as Hugging Face).
    return_tensors: "pt" for int64 torch tensors, None for lists of lists.
    """
    padding = _check_batch_arguments(texts, max_length, "longest" if padding is True else padding,
                                     return_tensors)
    sequences = []
    for text in texts:
        ids = self.encode(text, add_eos=False)
        if truncation and max_length is not None and len(ids) + add_eos > max_length:
            ids = ids[:max_length - add_eos]
        sequences.append([*ids, self.eos_id] if add_eos else ids)
    if padding:
        length = max_length if padding == "max_length" else None
        if length is not None:
            length = max(length, max((len(s) for s in sequences), default=0))
        input_ids, attention_mask = pad_batch(sequences, self.pad_id, length)
    else:
        input_ids, attention_mask = sequences, [[1] * len(s) for s in sequences]
    if return_tensors == "pt":
        import torch

        if len({len(s) for s in input_ids}) > 1:
            raise ValueError("sequences have different lengths; use padding to return tensors")
        shape = (len(input_ids), len(input_ids[0]) if input_ids else 0)
        return {"input_ids": torch.tensor(input_ids, dtype=torch.long).reshape(shape),
                "attention_mask": torch.tensor(attention_mask, dtype=torch.long).reshape(shape)}
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@add_to_class(Tokenizer)
def batch_decode(self, batch, skip_special_tokens=True):
    """`decode` for every row of `batch` (a list of lists, or a 2-D tensor)."""
    batch = batch.tolist() if hasattr(batch, "tolist") else batch
    return [self.decode(ids, skip_special_tokens) for ids in batch]


def _check_batch_arguments(texts, max_length, padding, return_tensors):
    """Clear errors for bad `batch_encode` arguments; returns `padding`."""
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise TypeError(f"batch_encode expects a list of str, got {type(texts).__name__} "
                        "(use encode for a single text)")
    if padding not in ("longest", "max_length", False, None):
        raise ValueError(f"padding must be 'longest', 'max_length' or False, got {padding!r}")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                   or max_length < 1):
        raise ValueError(f"max_length must be a positive int, got {max_length!r}")
    if padding == "max_length" and max_length is None:
        raise ValueError("padding='max_length' needs a max_length")
    if return_tensors not in ("pt", None):
        raise ValueError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")
    return padding


# %% [markdown]
# A batch, truncated to 8 ids: the long sentence keeps its `</s>` at the end; the short one is padded.

# %%
batch = tok.batch_encode(["Lists are mutable sequences.", "A tuple is an immutable sequence type, "
                          "usually used to store collections of heterogeneous data."], max_length=8)
print(batch["input_ids"])
print(batch["attention_mask"])
print(tok.batch_decode(batch["input_ids"]))
assert batch["input_ids"].shape == (2, 8) and batch["input_ids"][1, -1].item() == tok.eos_id
assert (batch["attention_mask"].sum(1) == (batch["input_ids"] != tok.pad_id).sum(1)).all()

# %% [markdown]
# ## 1.8 Training, saving, loading, and Google's `spiece.model`
#
# Two class methods build a tokenizer: `Tokenizer.train` trains a model with
# `train_sentencepiece` (its `vocab_size` counts the sentinels too), and `Tokenizer.load` reads a
# model file. `tok.save(dir)` writes `dir/spiece.model`, the name T5 checkpoints use, so a model
# directory can carry its tokenizer. It writes through `t5edu.files.atomic_write`, the package's one
# atomic writer: a crash never leaves half a file (Chapter 07 explains how).
#
# Google's file for T5 (`t5-small`, …, all sizes share it) is a SentencePiece unigram model with
# 32,000 pieces and `<pad>`=0, `</s>`=1, `<unk>`=2 — the same conventions as ours — so
# `Tokenizer.load("spiece.model")` gives `vocab_size` 32,100 and `<extra_id_0>` = 32099, exactly as
# Hugging Face's `T5Tokenizer`. (The book runs offline, so it does not download it; the tests
# compare our tokenizer with `transformers.T5Tokenizer` built from our own `spiece.model`.)

# %%
#| exporti
@add_to_class(Tokenizer)
@classmethod
def train(cls, corpus, out_dir=None, vocab_size=DEFAULT_VOCAB_SIZE, extra_ids=NUM_SENTINELS,
          character_coverage=0.9995):
    """Train on `corpus` (a UTF-8 text file path, or an iterable of lines); save to `out_dir` if given.

    `vocab_size` is the full size, sentinels included: the model gets `vocab_size - extra_ids`
    SentencePiece pieces. Deterministic.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    if vocab_size - extra_ids < 4:
        raise ValueError(f"vocab_size={vocab_size} is too small: it must hold <pad>, </s>, <unk>, "
                         f"{extra_ids} sentinels and at least one real piece (>= {extra_ids + 4})")
    tok = cls(train_sentencepiece(corpus, vocab_size - extra_ids, character_coverage), extra_ids)
    if out_dir is not None:
        tok.save(out_dir)
    return tok


@add_to_class(Tokenizer)
@classmethod
def load(cls, path, extra_ids=NUM_SENTINELS):
    """Load a `spiece.model` (T5's, or one saved by `save`): a file, or a directory holding one."""
    path = Path(path)
    file = path / SPIECE_FILENAME if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no SentencePiece model at {file}")
    return cls(_load_processor(file.read_bytes(), f"tokenizer file {file}"), extra_ids)


@add_to_class(Tokenizer)
def save(self, out_dir):
    """Write `out_dir/spiece.model` (atomically: a crash never leaves half a file); return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return atomic_write(out_dir / SPIECE_FILENAME, self._proto)


# %% [markdown]
# The book's tokenizer is one call; it is the same model as §1.2, byte for byte, and it survives a
# round trip through a file.

# %%
#| export
def train_default_tokenizer(out_dir=None, vocab_size=DEFAULT_VOCAB_SIZE):
    """The book's tokenizer: trained on the training split of `pydoc_corpus()`; saved if `out_dir`."""
    return Tokenizer.train(pydoc_corpus("train"), out_dir, vocab_size=vocab_size)


# %%
import tempfile

book_tok = train_default_tokenizer()
assert book_tok.sp.serialized_model_proto() == proto
with tempfile.TemporaryDirectory() as d:
    path = book_tok.save(d)
    again = Tokenizer.load(d)
    print(path.name, again)
    assert again.encode(text) == tok.encode(text) and Tokenizer.load(path).vocab_size == tok.vocab_size

# %% [markdown]
# ## 1.9 Under the hood
#
# *Optional on a first reading: the details that make the tokenizer exact and robust.*
#
# **Why float32 matters (detail 4 of §1.3).** Here is the same search with plain Python floats
# (float64) for the running sums, run on every line of the corpus.

# %%
def viterbi_encode_float64(text, sp_model):
    """The same search with float64 sums — the only difference from `viterbi_encode`."""
    pieces, scores, max_len, unk_score, unk_id = _piece_table(sp_model)
    s = sp_model.normalize(text)
    n = len(s)
    best, start, last = [0.0] * (n + 1), [-1] * (n + 1), [unk_id] * (n + 1)
    for i in range(n):
        has_single = False
        for j in range(i + 1, min(n, i + max_len) + 1):
            pid = pieces.get(s[i:j])
            if pid is not None:
                if start[j] < 0 or scores[pid] + best[i] > best[j]:
                    best[j], start[j], last[j] = scores[pid] + best[i], i, pid
                has_single = has_single or j == i + 1
        if not has_single and (start[i + 1] < 0 or unk_score + best[i] > best[i + 1]):
            best[i + 1], start[i + 1], last[i + 1] = unk_score + best[i], i, unk_id
    return _walk_back(start, last, unk_id)


everything = train_lines + heldout_lines
diff64 = [line for line in everything if viterbi_encode_float64(line, sp) != sp.encode(line)]
print(f"float64 Viterbi differs from sentencepiece on {len(diff64)} of all {len(everything)} lines")
print(diff64[0][:40], "...")
print("sentencepiece:", sp.encode(diff64[0], out_type=str)[:3])
print("float64      :", [sp.id_to_piece(t) for t in viterbi_encode_float64(diff64[0], sp)][:3])
assert all(viterbi_encode(line, sp) == sp.encode(line) for line in diff64)

# %% [markdown]
# The float64 variant is wrong on a couple of lines made of long runs of `=`: there, many
# segmentations have the same score in float32, and float64 breaks the tie differently. (Hugging
# Face's `tokenizers` library sums in float64 too; on our model it disagrees with sentencepiece on
# exactly these lines — `tests/test_tokenizer.py` checks it.)
#
# **Speed.** Pure Python is of course slower than C++:

# %%
# NBVAL_IGNORE_OUTPUT
import time

t0 = time.perf_counter()
ours = [viterbi_encode(line, sp) for line in heldout_lines]
t_ours = time.perf_counter() - t0
t0 = time.perf_counter()
theirs = [sp.encode(line) for line in heldout_lines]
t_sp = time.perf_counter() - t0
print(f"{len(heldout_lines)} lines: ours {t_ours:.3f} s, sentencepiece {t_sp:.4f} s "
      f"-> sentencepiece is {t_ours / t_sp:.0f}x faster")
assert ours == theirs

# %% [markdown]
# **Pickling.** DataLoader worker processes receive the tokenizer by pickling. A
# `SentencePieceProcessor` cannot be pickled, so the tokenizer pickles the bytes of its model and
# rebuilds itself from them.

# %%
#| exporti
@add_to_class(Tokenizer)
def __getstate__(self):
    """Pickle the model bytes, not the C++ processor (which cannot be pickled)."""
    return {"proto": self._proto, "extra_ids": self.extra_ids}


@add_to_class(Tokenizer)
def __setstate__(self, state):
    """Rebuild the tokenizer from the pickled model bytes."""
    self.__init__(state["proto"], state["extra_ids"])


# %%
import pickle

assert pickle.loads(pickle.dumps(tok)).encode(text) == tok.encode(text)
print("a pickled tokenizer encodes like the original")

# %% [markdown]
# **Bad input.** Every entry point checks its input and fails early with one message that names the
# problem: `_sentences` reads a corpus file as UTF-8 and names the file and the byte when it is
# not; `_check_text` catches a lone surrogate such as `'\ud800'` (a string that is not valid
# Unicode, which sentencepiece's C++ would reject with an obscure cast error); `_load_processor`
# names the file that is not a SentencePiece model.

# %%
import shutil

bad_dir = Path(tempfile.mkdtemp())
(bad_dir / "latin1.txt").write_bytes("café au lait\n".encode("latin-1"))
(bad_dir / "spiece.model").write_bytes(b"not a model" * 10)
for attempt in [lambda: Tokenizer.train([], vocab_size=3100),
                lambda: Tokenizer.train(train_lines, vocab_size=100),
                lambda: Tokenizer.train(train_lines, vocab_size=150),
                lambda: Tokenizer.train(bad_dir / "latin1.txt"),
                lambda: tok.encode("bad \ud800 text"),
                lambda: Tokenizer.load(bad_dir),
                lambda: Tokenizer.load("no/such/spiece.model"),
                lambda: tok.encode(123)]:
    try:
        attempt()
    except (ValueError, FileNotFoundError, TypeError) as err:
        message = str(err).replace(str(bad_dir), "DIR").split(" (INTERNAL")[0]  # drop C++ file and line
        print(f"{type(err).__name__}: {message}")
    else:
        raise AssertionError("bad input was accepted")
shutil.rmtree(bad_dir)

# %% [markdown]
# ## Summary
#
# - Subwords sit between words (out-of-vocabulary words) and characters (long sequences).
# - SentencePiece's unigram model scores every piece with a log-probability; encoding is a Viterbi
#   search for the best-scoring segmentation. Our 30-line `viterbi_encode` reproduces sentencepiece
#   on every held-out line — once we add in float32 and break ties the way its C++ does.
# - T5's vocabulary is `<pad>`=0, `</s>`=1, `<unk>`=2, the SentencePiece pieces, then 100 sentinels
#   counted down from the top: `<extra_id_i>` = `vocab_size - 1 - i`.
# - A batch is right-padded with `<pad>`, every sequence ends in `</s>` (also after truncation), and
#   the attention mask marks the real positions.
#
# **What is in the package now**
#
# ```python
# from t5edu import Tokenizer                      # train / load / save, encode / decode,
#                                                  # batch_encode, sentinel_id, is_sentinel
# from t5edu.tokenizer import (pydoc_corpus, train_default_tokenizer, train_sentencepiece,
#                              pad_batch, sentinel_token)
# from t5edu.segmentation import viterbi_encode    # Viterbi by hand, §1.3
# ```
#
# Next, Chapter 02 turns ids into vectors and builds attention.
#
# ## Further reading
#
# - Kudo & Richardson (2018), *SentencePiece: A simple and language independent subword tokenizer
#   and detokenizer for Neural Text Processing*: https://arxiv.org/abs/1808.06226
# - Kudo (2018), *Subword Regularization: Improving Neural Network Translation Models with Multiple
#   Subword Candidates* — the unigram language model: https://arxiv.org/abs/1804.10959
# - Sennrich, Haddow & Birch (2016), *Neural Machine Translation of Rare Words with Subword Units*
#   (byte-pair encoding, the other common subword method): https://arxiv.org/abs/1508.07909
# - Raffel et al. (2020), *Exploring the Limits of Transfer Learning with a Unified Text-to-Text
#   Transformer*, JMLR, §2.4 and §3.1.3 (text-to-text format, vocabulary):
#   https://arxiv.org/abs/1910.10683
#
# ---
#
# Previous: [Chapter 00 — Text to text](00_text_to_text.ipynb) ·
# Next: [Chapter 02 — Attention](02_attention.ipynb) ·
# [Exercises for this chapter](../exercises/ch01_tokenizer.ipynb)
