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
# # Chapter 09 — Pre-training, then fine-tuning
#
# Everything so far trained a model from random weights on the task we cared about. T5 does not:
# it first trains on a large amount of *unlabeled* text with span corruption (Chapter 06), and only
# then fine-tunes on the few labeled examples of a task. This chapter measures, on a laptop, whether
# that detour pays — and then shows the full recipe for fine-tuning a real pretrained checkpoint.
#
# **What you will build**
# - a controlled experiment: the same tiny T5 fine-tuned on 300 labeled examples, once starting from
#   span-corruption pre-training on unlabeled text and once from random weights, with each arm's
#   learning rate tuned on a development split, over three seeds;
# - `t5edu.pretrain`: a small made-up language (the unlabeled corpus and the labeled task),
#   `pretrain` and a cache keyed by the recipe and the corpus (`load_or_pretrain`), and
#   `fine_tune_steps`;
# - `t5edu.finetune`: `load_pretrained` for Hugging Face checkpoints such as `t5-small`, the
#   summarization pipeline (prefix, truncation, masked padding, `generate`), ROUGE/BLEU/accuracy,
#   task-balanced multi-task mixing, and `t5edu finetune` on the command line.

# %%
#| default_exp finetune

# %%
#| export
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from t5edu.checkpoint import save_weights
from t5edu.data import DataError, TextToTextCollator
from t5edu.generate import generate
from t5edu.hub_tasks import HUB_TASKS, load_task
from t5edu.metrics import bleu, exact_match, rouge
from t5edu.model import T5, looks_like_path
from t5edu.tokenizer import SPIECE_FILENAME, Tokenizer
from t5edu.train import train

# %%
#| export pretrain
import hashlib
import json
import random
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from t5edu.config import T5Config
from t5edu.data import TextToTextCollator
from t5edu.files import atomic_write, make_temp_dir
from t5edu.metrics import exact_match, generate_texts
from t5edu.model import T5
from t5edu.span_corruption import span_corruption_dataset
from t5edu.tokenizer import Tokenizer
from t5edu.train import make_optimizer, make_scheduler, train_step

# %%
import time

import datasets
import matplotlib.pyplot as plt

from t5edu.tokenizer import pydoc_corpus
from t5edu.train import TrainConfig

torch.set_num_threads(1)  # tiny models: one thread is as fast, and steadier on a busy machine
datasets.disable_progress_bars()  # progress bars write timings; the book's outputs must not change
CPU_START = time.process_time()  # the chapter's CPU budget is checked at the end


# %% [markdown]
# ## 9.1 Why pre-train at all
#
# Labeled data is expensive: someone has to write each summary, each translation, each label.
# Unlabeled text is nearly free. If a model could learn the *language* of a domain — which words
# go together, which words play the same part in a sentence — from text alone, then a small labeled
# set would only have to teach it the *task*. That is the bet of transfer learning, made by ULMFiT
# and BERT for classifiers and by T5 for every text-to-text task.
#
# The bet is not free: pre-training costs far more compute than fine-tuning, and at small scale it
# can fail to pay (§9.7 tells how this chapter's first attempts, on Python's documentation, gained
# nothing). So we measure it, with the controls a reader should ask for: the same architecture, the
# same labeled examples, the same number of fine-tuning steps, each arm's learning rate tuned on its
# own, and several seeds with their spread.

# %% [markdown]
# ## 9.2 Why T5 does it this way
#
# Raffel et al. (2020) ran this comparison at scale before choosing their recipe.
#
# - **§3.1.3 Pre-train, then fine-tune everything.** T5 pre-trains for 2^19 steps on C4 (batches
#   of 128 sequences of 512 tokens, about 34 billion tokens), then fine-tunes *all* weights for
#   2^18 steps per task with a constant learning rate of 0.001 (Adafactor). Their Table 1 also
#   trains the same model with no pre-training: GLUE falls from 83.3 to 66.2, SQuAD from 80.9
#   to 50.3, while English→French, with its huge labeled set, barely moves (39.8 against 39.8).
#   Pre-training matters most where labeled data is scarce — which is the regime we test below.
# - **§3.1.2 Adafactor.** Pre-training uses Adafactor (Shazeer and Stern, 2018), whose steps are
#   *relative*: each update is scaled by the size of the weight it changes. We use it too; §9.7
#   tells what happened to the embeddings without it.
# - **§3.3 The unsupervised objective.** Of prefix language modelling, BERT-style masking and
#   deshuffling, the *denoising* objectives won; among them, replacing random **spans** by one
#   sentinel each and predicting only the dropped spans did as well as the rest while making the
#   targets short and training fast. The corruption rate (15 %) and mean span length (3) mattered
#   little. That is Chapter 06's `span_corruption`, the objective we use.
# - **§3.7 Scaling.** Given more compute, training a bigger model, or the same model longer, both
#   helped; more pre-training steps kept improving the fine-tuned scores. Our experiment is the
#   opposite extreme — a 1.2M-parameter model pre-trained for about a minute and a half — so we
#   choose a language small enough for that minute to teach it something.
#
# The experiment in one picture:

# %%
def box(ax, x, y, text, color):
    ax.text(x, y, text, ha="center", va="center", fontsize=9, wrap=True,
            bbox={"boxstyle": "round,pad=0.4", "facecolor": color, "edgecolor": "0.3"})


def arrow(ax, x0, x1, y):
    ax.annotate("", xy=(x1, y), xytext=(x0, y), arrowprops={"arrowstyle": "->", "color": "0.3"})


fig, ax = plt.subplots(figsize=(10, 3.2))
ax.set_xlim(0, 10)
ax.set_ylim(0, 3.2)
ax.axis("off")
top = [(1.0, "unlabeled text\n(a made-up language)"), (3.0, "span corruption\nthe <X> ate <Y>"),
       (5.0, "pre-trained\nT5 weights"), (7.1, "fine-tune on\n300 labeled words"), (9.1, "test accuracy\n(unseen words)")]
for (x, text), color in zip(top, ["#dde8f5", "#dde8f5", "#c9dff2", "#f5e6c8", "#e2f0d9"]):
    box(ax, x, 2.3, text, color)
for (x0, _), (x1, _) in zip(top, top[1:]):
    arrow(ax, x0 + 0.75, x1 - 0.8, 2.3)
box(ax, 5.0, 0.7, "random\nT5 weights", "#eeeeee")
box(ax, 7.1, 0.7, "fine-tune on the same\n300 words, same steps", "#f5e6c8")
box(ax, 9.1, 0.7, "test accuracy\n(unseen words)", "#e2f0d9")
arrow(ax, 5.7, 6.05, 0.7)
arrow(ax, 8.15, 8.45, 0.7)
ax.text(0.2, 3.05, "pre-trained arm", fontsize=10, weight="bold")
ax.text(3.6, 1.05, "from-scratch arm:\nsame architecture", fontsize=10, weight="bold", ha="center")
ax.set_title("Figure 9.1 — the experiment: pre-train → fine-tune, against fine-tuning from random weights")
plt.show()

# %% [markdown]
# *Figure 9.1: both arms see exactly the same labeled examples for the same number of steps; only
# the starting weights differ.*

# %% [markdown]
# ## 9.3 The unlabeled text and the labeled task
#
# "You shall know a word by the company it keeps" (Firth, 1957). Read *"a hungry zelo found the
# kobu in the maral"* and you already suspect that a zelo eats, a kobu is eaten and a maral is a
# place — without anyone telling you. That is the knowledge pre-training can collect from unlabeled
# text, and the knowledge a small labeled set cannot give: most words of a test set are rare or
# absent in the labeled examples.
#
# We build a language where this is the *only* way to know: 480 made-up words (random syllables,
# so their spelling says nothing), 120 for each of four kinds of thing — animals, foods, tools and
# places — used in sentences from 14 patterns such as *"she cut the {food} with a {tool}."* The
# names of the kinds never appear in the text.
#
# - **Unlabeled text:** 2,000 documents of four such sentences, the words drawn at random.
# - **The labeled task:** `what is a kobu?` → `food`. The words are split: 300 to train on, 60 to
#   tune the learning rate, 120 to test. A test word never appears in a labeled example — only in
#   the unlabeled text.

# %%
#| export pretrain
KINDS = ("animal", "food", "tool", "place")
SENTENCE_PATTERNS = (
    "the {animal} ate some {food}.", "a hungry {animal} found the {food} in the {place}.",
    "she cut the {food} with a {tool}.", "we walked from the {place} to the {place}.",
    "the {animal} slept near the {tool}.", "he sharpened the {tool} before dinner.",
    "my {animal} likes {food} more than {food}.", "they built a {place} with a {tool}.",
    "the {food} was cooked in the {place}.", "nobody could lift the heavy {tool}.",
    "a {animal} lives in every {place}.", "fresh {food} is sold at the {place}.",
    "the {animal} chased the {animal} around the {place}.", "put the {tool} next to the {tool}.",
)


def made_up_words(per_kind=120, seed=0, avoid=()):
    """{kind: [words]}: `per_kind` distinct words of two or three consonant-vowel syllables for each of
    KINDS, none of them in `avoid` (e.g. real English words) and none shared between kinds."""
    rng, taken, words = random.Random(seed), set(avoid), {}
    for kind in KINDS:
        words[kind] = []
        while len(words[kind]) < per_kind:
            syllables = rng.choice((2, 3))
            word = "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(syllables))
            if word not in taken:
                taken.add(word)
                words[kind].append(word)
    return words


def made_up_documents(words, n_documents=2000, sentences_per_document=4, seed=0):
    """Unlabeled text: documents of sentences from SENTENCE_PATTERNS, each slot filled with a random word
    of its kind."""
    rng = random.Random(seed)

    def sentence():
        pattern = rng.choice(SENTENCE_PATTERNS)
        return re.sub(r"\{(\w+)\}", lambda slot: rng.choice(words[slot.group(1)]), pattern)

    return [" ".join(sentence() for _ in range(sentences_per_document)) for _ in range(n_documents)]


def kind_rows(words, seed=0):
    """The labeled task, one row per word: {task, inputs: "what is a <word>?", targets: <kind>}, shuffled."""
    rows = [{"task": "kind", "inputs": f"what is a {word}?", "targets": kind}
            for kind in KINDS for word in words[kind]]
    random.Random(seed).shuffle(rows)
    return rows


# %%
english = {w for line in pydoc_corpus("train") for w in re.findall(r"[a-z]+", line.lower())}
words = made_up_words(avoid=english)  # no real English word: nothing to guess from the spelling
documents = made_up_documents(words)
rows = kind_rows(words)
test_rows, dev_rows, train_rows = rows[:120], rows[120:180], rows[180:]
counts = {kind: sum(r["targets"] == kind for r in test_rows) for kind in KINDS}
majority = max(counts, key=counts.get)
majority_acc = 100 * counts[majority] / len(test_rows)
print(f"{len(documents)} documents, {sum(len(d.split()) for d in documents):,} words, for example:")
print(" ", documents[0])
print(f"{len(rows)} labeled words: {len(train_rows)} to train on, {len(dev_rows)} to tune the learning rate, "
      f"{len(test_rows)} to test")
for r in train_rows[:3]:
    print(f"  {r['inputs']!r} -> {r['targets']!r}")
print(f"always answering the test set's most common kind ({majority!r}) scores {majority_acc:.1f}%")
assert not {r["inputs"] for r in train_rows} & {r["inputs"] for r in test_rows + dev_rows}
assert not any(kind in " ".join(documents).split() for kind in KINDS)  # the kinds are never named

# %% [markdown]
# ## 9.4 Pre-training with span corruption
#
# The recipe is a small frozen dataclass, so that it can name a cache entry: a tokenizer of 2,000
# ids (1,900 SentencePiece pieces and 100 sentinels), a T5 with `d_model` 128 and 2 + 2 layers
# (about 1.2M parameters), inputs of 32 tokens with 15 % of the tokens dropped in spans of mean
# length 3, and 600 steps of 32 pieces with Adafactor at a relative step of 0.03, a short warm-up and
# a linear decay. Each pass over the corpus corrupts it afresh (a new seed per pass), as T5's data
# pipeline does for an endless stream.
#
# The tokenizer is trained on the made-up documents *and* on Python's documentation (Chapter 01's
# corpus): most made-up words become a single piece (about a quarter become two or three), and the
# same checkpoint can still read the English news of §9.9. The model itself is pre-trained on the
# made-up documents only.
#
# `fine_tune_steps`, the loop both arms share, is Chapter 07's `train_step` with a seeded shuffle and
# nothing else: no checkpoints or files, so that the experiment is quick to repeat.

# %%
#| export pretrain
@dataclass(frozen=True)
class PretrainRecipe:
    """Everything that decides the pre-trained weights: tokenizer, model shape, data and optimisation."""

    vocab_size: int = 2000
    d_model: int = 128
    d_ff: int = 512
    num_layers: int = 2
    num_heads: int = 4
    inputs_length: int = 32
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    steps: int = 600
    batch_size: int = 32
    optimizer: str = "adafactor"
    lr: float = 3e-2
    warmup_steps: int = 50
    seed: int = 0

    def model_config(self):
        """The T5Config of this recipe (no dropout: the runs are short)."""
        return T5Config(vocab_size=self.vocab_size, d_model=self.d_model, d_kv=self.d_model // self.num_heads,
                        d_ff=self.d_ff, num_layers=self.num_layers, num_heads=self.num_heads,
                        relative_attention_num_buckets=32, relative_attention_max_distance=128,
                        dropout_rate=0.0)

    def key(self, *texts):
        """A short hash of the recipe, of the texts it is trained on (lists of strings), and of Python's and
        torch's versions."""
        versions = [sys.version_info[:2], torch.__version__.split("+")[0]]
        digest = hashlib.sha256(json.dumps([asdict(self), *versions], sort_keys=True).encode())
        for text in texts:
            digest.update(json.dumps(list(text)).encode())
        return digest.hexdigest()[:12]


# %%
#| export pretrain
def fine_tune_steps(model, features, *, steps, lr, batch_size=32, seed=0, optimizer="adamw",
                    schedule="constant", warmup_steps=0, pad_id=0):
    """`steps` optimizer steps (Chapter 07's `train_step`; AdamW or Adafactor) on features {input_ids,
    labels}, drawn in shuffled passes seeded by `seed`; returns the loss of every step. Used for
    pre-training and for fine-tuning."""
    if steps < 1 or batch_size < 1 or not features:
        raise ValueError(f"need steps >= 1, batch_size >= 1 and some features; got {steps}, "
                         f"{batch_size}, {len(features)} features")
    collate = TextToTextCollator(pad_id=pad_id, decoder_start_token_id=model.config.decoder_start_token_id)
    optimizer = make_optimizer(model, optimizer, lr)
    scheduler = make_scheduler(optimizer, schedule, warmup_steps, steps)
    shuffle, order, losses = random.Random(seed), [], []
    model.train()
    for _ in range(steps):
        while len(order) < batch_size:
            passage = list(range(len(features)))
            shuffle.shuffle(passage)
            order += passage
        batch, order = order[:batch_size], order[batch_size:]
        stats = train_step(model, [collate([features[i] for i in batch])], optimizer, scheduler)
        losses.append(stats["loss"])
    model.eval()
    return losses


# %%
#| export pretrain
def pretrain(recipe, documents, tokenizer_lines=()):
    """Train a tokenizer on `documents` and `tokenizer_lines`, then a T5 with span corruption on `documents`.

    Returns (model, tokenizer, losses)."""
    import datasets

    tokenizer = Tokenizer.train(list(documents) + list(tokenizer_lines), vocab_size=recipe.vocab_size)
    corpus = datasets.Dataset.from_dict({"text": list(documents)})
    features, passes = [], 0
    while len(features) < recipe.steps * recipe.batch_size:  # enough fresh corruptions for every step
        corrupted = span_corruption_dataset(corpus, tokenizer, recipe.inputs_length, recipe.noise_density,
                                            recipe.mean_noise_span_length, seed=recipe.seed + passes)
        features += [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in corrupted]
        passes += 1
    torch.manual_seed(recipe.seed)
    model = T5(recipe.model_config())
    # steps * batch_size features: every fresh corruption is seen exactly once, in shuffled order
    losses = fine_tune_steps(model, features[: recipe.steps * recipe.batch_size], steps=recipe.steps,
                             lr=recipe.lr, batch_size=recipe.batch_size, seed=recipe.seed,
                             optimizer=recipe.optimizer, schedule="linear", warmup_steps=recipe.warmup_steps,
                             pad_id=tokenizer.pad_id)
    return model, tokenizer, losses


def load_or_pretrain(recipe, documents, cache_dir=None, tokenizer_lines=()):
    """`pretrain(recipe, documents, tokenizer_lines)`, or its result from `cache_dir/pretrain-<key>` when an
    earlier run left it there: (model, tokenizer, losses); the key hashes the recipe and both texts. The entry
    is a Hugging Face-format checkpoint directory (config.json, model.safetensors, spiece.model) plus
    losses.json, written to a temporary folder and renamed into place, so a crash never leaves half an
    entry. `cache_dir=None`: no cache."""
    key = recipe.key(documents, tokenizer_lines)
    entry = None if cache_dir is None else Path(cache_dir) / f"pretrain-{key}"
    if entry is not None and (entry / "losses.json").is_file():
        model = T5.from_pretrained(entry)
        return model, Tokenizer.load(entry), json.loads((entry / "losses.json").read_text())["losses"]
    model, tokenizer, losses = pretrain(recipe, documents, tokenizer_lines)
    if entry is not None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(entry.parent, f".{entry.name}.")
        try:
            model.save_pretrained(tmp)
            tokenizer.save(tmp)
            atomic_write(tmp / "losses.json", json.dumps({"recipe": asdict(recipe), "losses": losses}))
            tmp.rename(entry)
        except OSError:  # another process filled the entry first, or a read-only disk: keep ours in memory
            shutil.rmtree(tmp, ignore_errors=True)
    return model, tokenizer, losses


# %%
#| export pretrain
def cached_json(cache_dir, name, compute):
    """compute() -> a JSON-able result, kept in `cache_dir/name.json` (None: no cache) and read back from
    there when an earlier run left it, so that an expensive, deterministic run happens once."""
    path = None if cache_dir is None else Path(cache_dir) / f"{name}.json"
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    result = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(result))
    return result


def accuracy(model, tokenizer, rows, max_new_tokens=5):
    """Exact-match accuracy (0-100) of greedy outputs against the rows' targets."""
    predictions = generate_texts(model, tokenizer, [r["inputs"] for r in rows], max_new_tokens=max_new_tokens)
    return 100 * exact_match(predictions, [r["targets"] for r in rows])

# %% [markdown]
# Pre-training takes about a minute and a half of one CPU core the first time; the result is kept in
# `runs/cache/pretrain-<key>/` (ignored by git), where the key hashes the recipe and the texts, so
# that re-running the chapter is quick and changing any of them retrains. Set `T5EDU_CACHE=off` to
# always retrain.

# %%
from t5edu.pretrain import PretrainRecipe, load_or_pretrain

ROOT = Path("..") if Path("../t5edu").is_dir() else Path(".")
CACHE = None if os.environ.get("T5EDU_CACHE") == "off" else Path(os.environ.get("T5EDU_CACHE", ROOT / "runs" / "cache"))
RECIPE = PretrainRecipe()
pretrained, tokenizer, pretrain_losses = load_or_pretrain(RECIPE, documents, CACHE,
                                                          tokenizer_lines=pydoc_corpus("train"))
window = 50
pieces = [len(tokenizer.encode(w, add_eos=False)) for kind in KINDS for w in words[kind]]
print(f"{pretrained.num_parameters():,} parameters, tokenizer of {tokenizer.vocab_size} ids, "
      f"{sum(pieces) / len(pieces):.2f} pieces per made-up word")
print(f"pre-training: {RECIPE.steps} steps of {RECIPE.batch_size} span-corrupted pieces, loss "
      f"{sum(pretrain_losses[:window]) / window:.2f} (first {window} steps) -> "
      f"{sum(pretrain_losses[-window:]) / window:.2f} (last {window})")
assert sum(pretrain_losses[-window:]) < 0.5 * sum(pretrain_losses[:window])

# %% [markdown]
# **Where the knowledge lives.** Every word has an embedding, a row of the matrix that
# Chapter 04's encoder reads first. If pre-training taught the model what the words are, the rows of
# words of one kind should have moved together. The picture below projects the 480 words'
# embeddings (the mean of their pieces' rows) onto their two main directions (PCA), before
# pre-training — the random initial weights of this very model — and after.

# %%
def word_vectors(model):
    """Each made-up word's embedding: the mean of its pieces' rows, as a (480, d_model) matrix."""
    table = model.shared.weight.detach()
    return torch.stack([table[tokenizer.encode(w, add_eos=False)].mean(0) for kind in KINDS for w in words[kind]])


torch.manual_seed(RECIPE.seed)
initial = T5(RECIPE.model_config())  # the weights pre-training started from
labels = [kind for kind in KINDS for _ in words[kind]]
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for ax, (title, model) in zip(axes, (("random initial weights", initial), ("after pre-training", pretrained))):
    vectors = word_vectors(model)
    vectors = vectors - vectors.mean(0)
    _, _, directions = torch.linalg.svd(vectors, full_matrices=False)
    points = vectors @ directions[:2].T
    for kind, color in zip(KINDS, ("tab:red", "tab:green", "tab:blue", "tab:purple")):
        chosen = torch.tensor([label == kind for label in labels])
        ax.scatter(points[chosen, 0], points[chosen, 1], s=8, color=color, label=kind)
    ax.set_title(title)
    ax.set_xlabel("first principal direction")
    ax.set_ylabel("second principal direction")
axes[1].legend(loc="best")
fig.suptitle("Figure 9.2 — embeddings of the 480 made-up words, coloured by their (never written) kind")
plt.tight_layout()
plt.show()

# %% [markdown]
# *Figure 9.2: at initialisation the words are a random cloud; after pre-training on unlabeled text
# alone, the words of each kind sit together.*
#
# We can put a number on the picture without any training: average the embeddings of each kind's
# words among the 300 labeled training words, and call a test word the kind whose average is
# nearest (by cosine).

# %%
def nearest_centroid(model, train_rows, rows):
    """Accuracy (0-100) of naming each row's word by the kind whose mean training-word embedding is nearest."""
    table = model.shared.weight.detach()

    def vector(row):
        word = row["inputs"].removeprefix("what is a ").removesuffix("?")
        return torch.nn.functional.normalize(table[tokenizer.encode(word, add_eos=False)].mean(0), dim=0)

    centroids = torch.stack([torch.stack([vector(r) for r in train_rows if r["targets"] == kind]).mean(0)
                             for kind in KINDS])
    guesses = [KINDS[int((centroids @ vector(r)).argmax())] for r in rows]
    return 100 * sum(g == r["targets"] for g, r in zip(guesses, rows)) / len(rows)


probe = {"random weights": nearest_centroid(initial, train_rows, test_rows),
         "pre-trained": nearest_centroid(pretrained, train_rows, test_rows)}
print("nearest kind by embedding, test words:", ", ".join(f"{k} {v:.1f}%" for k, v in probe.items()))
assert probe["pre-trained"] > probe["random weights"] + 20

# %% [markdown]
# ## 9.5 Two arms, one learning-rate grid each
#
# Both arms fine-tune all weights with `fine_tune_steps`: 300 labeled words, 60 steps of 32
# (between 6 and 7 passes over the data), AdamW at a constant learning rate. The from-scratch arm starts
# from `T5(RECIPE.model_config())` with the seed's random weights; the pre-trained arm from a copy of
# the pre-trained weights (its seed changes only the order of the examples). A learning rate good
# for one arm can be bad for the other, so each arm gets its own choice from the same grid, judged on the 60 development words, never on the test words.

# %%
import copy

from t5edu.pretrain import accuracy, cached_json, fine_tune_steps

ARMS = ("pre-trained", "from scratch")
LEARNING_RATES = (3e-4, 1e-3, 3e-3)
STEPS, BATCH = 60, 32
KEY = RECIPE.key(documents, pydoc_corpus("train"))  # the pre-trained model's cache key
features = [{"input_ids": tokenizer.encode(r["inputs"]), "labels": tokenizer.encode(r["targets"])} for r in train_rows]


def fine_tuned(arm, lr, seed):
    """Fine-tune one arm with one learning rate and seed: its losses and its dev and test accuracy."""
    def run():
        if arm == "pre-trained":
            model = copy.deepcopy(pretrained)
        else:
            torch.manual_seed(seed)
            model = T5(RECIPE.model_config())
        losses = fine_tune_steps(model, features, steps=STEPS, lr=lr, batch_size=BATCH, seed=seed)
        return {"losses": losses, "dev": accuracy(model, tokenizer, dev_rows),
                "test": accuracy(model, tokenizer, test_rows)}

    # cached like the pre-trained model, so that re-running the chapter is quick (same numbers either way)
    return cached_json(CACHE, f"kinds-{KEY}-{arm.replace(' ', '-')}-{lr:g}-{seed}-{STEPS}x{BATCH}", run)


grid = {}


def tune(arm):
    """Seed 0 at every learning rate of the grid, scored on the development words."""
    for lr in LEARNING_RATES:
        grid[arm, lr] = fine_tuned(arm, lr, seed=0)["dev"]
    print(f"{arm:>14}" + "".join(f"{grid[arm, lr]:9.1f}" for lr in LEARNING_RATES))


print("development accuracy (%), seed 0:")
print(f"{'learning rate':>14}" + "".join(f"{lr:>9.0e}" for lr in LEARNING_RATES))
tune("pre-trained")

# %%
tune("from scratch")
best_lr = {arm: max(LEARNING_RATES, key=lambda lr: grid[arm, lr]) for arm in ARMS}
print("chosen:", ", ".join(f"{arm} {lr:.0e}" for arm, lr in best_lr.items()))

# %% [markdown]
# ## 9.6 The result, over three seeds
#
# Each arm now runs at its own learning rate with seeds 0, 1 and 2 (seed 0 is the grid's run) and is
# scored once on the 120 test words. The spread is the standard deviation over the seeds.

# %%
SEEDS = (0, 1, 2)
scores, curves = {}, {}


def run_seeds(arm):
    """The arm at its chosen learning rate, every seed, scored on the test words."""
    for seed in SEEDS:
        run = fine_tuned(arm, best_lr[arm], seed)
        scores[arm, seed], curves[arm, seed] = run["test"], run["losses"]
    print(f"{arm:>13}: " + ", ".join(f"seed {s} {scores[arm, s]:.1f}" for s in SEEDS))


run_seeds("pre-trained")

# %%
run_seeds("from scratch")
mean = {arm: torch.tensor([scores[arm, s] for s in SEEDS]).mean().item() for arm in ARMS}
spread = {arm: torch.tensor([scores[arm, s] for s in SEEDS]).std().item() for arm in ARMS}
print(f"pretrained: {mean['pre-trained']:.1f} ± {spread['pre-trained']:.1f}, "
      f"from scratch: {mean['from scratch']:.1f} ± {spread['from scratch']:.1f} (test accuracy %, {len(SEEDS)} seeds)")
# the claim of this chapter: pre-training puts the pre-trained arm ahead by more than the spread
assert mean["pre-trained"] - mean["from scratch"] > max(spread.values())

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
for arm, color in zip(ARMS, ("tab:blue", "tab:orange")):
    runs = torch.tensor([curves[arm, s] for s in SEEDS])  # (seeds, steps)
    smooth = torch.nn.functional.avg_pool1d(runs[:, None], 10, stride=1)[:, 0]  # mean of 10 steps
    steps = torch.arange(10, STEPS + 1)
    ax.plot(steps, smooth.mean(0), color=color, label=f"{arm} (lr {best_lr[arm]:.0e})")
    ax.fill_between(steps, smooth.min(0).values, smooth.max(0).values, color=color, alpha=0.25)
ax.set_xlabel("fine-tuning step")
ax.set_ylabel("training loss per target token")
ax.set_yscale("log")
ax.set_title("Figure 9.3 — fine-tuning loss of both arms (mean, band = min-max over 3 seeds)")
ax.legend()
plt.show()

# %% [markdown]
# *Figure 9.3: in 60 steps the pre-trained arm's training loss falls below 0.02 nats per token;
# the from-scratch arm's stays near 0.6 — it must learn each training word's kind from the labels
# alone.*
#
# Training loss alone proves nothing — a model can memorise 300 examples. The test words decide.
# Beside the two arms, the chart shows the nearest-kind check of §9.4, which uses no training at all.

# %%
bars = [("random weights\nnearest kind", probe["random weights"], 0.0, "tab:gray"),
        ("pre-trained\nnearest kind", probe["pre-trained"], 0.0, "lightsteelblue"),
        ("pre-trained\n+ fine-tuned", mean["pre-trained"], spread["pre-trained"], "tab:blue"),
        ("from scratch\n+ fine-tuned", mean["from scratch"], spread["from scratch"], "tab:orange")]
fig, ax = plt.subplots(figsize=(7.5, 3.8))
ax.bar([b[0] for b in bars], [b[1] for b in bars], yerr=[b[2] for b in bars], capsize=6, color=[b[3] for b in bars])
ax.axhline(100 / len(KINDS), color="k", linestyle=":", label="guessing (25%)")
ax.axhline(majority_acc, color="k", linestyle="--", label=f"always {majority!r}")
for i, (_, value, error, _) in enumerate(bars):
    ax.text(i, value + error + 2, f"{value:.1f}", ha="center")
ax.set_ylim(0, 115)
ax.set_ylabel("test accuracy (%)")
ax.set_title("Figure 9.4 — the kind of 120 unseen words (error bars: std over 3 seeds)")
ax.legend(loc="upper left")
plt.show()

# %% [markdown]
# *Figure 9.4: the pre-trained model names the kind of words it never saw labeled, before and after
# fine-tuning; from scratch, the result is a few points above always answering the commonest kind.*
#
# ## 9.7 What the experiment says
#
# Here the claim holds, by a wide margin: pre-trained **99.2 ± 0.0 %** against **37.5 ± 5.5 %** from
# scratch on the 120 test words (3 seeds; each arm's learning rate chosen on the development words:
# 1e-3 for the pre-trained arm, 3e-4 from scratch). Nothing in the 300 labeled examples says what a
# test word is, so the from-scratch arm can only guess — it lands a few points above always
# answering `food` (31.7 %). The pre-trained arm knew the kinds before any label: the nearest-kind
# check on its raw embeddings already scores 99.2 % (35.8 % on the weights it started from).
# Fine-tuning only had to teach it the answer's words, `animal`, `food`, `tool` and `place`, which
# the unlabeled text never contains.
#
# This is a demonstration by design: we built a language in which the unlabeled text is the only
# place where an unseen word's kind can be learned. The gains of the T5 paper's Table 1 come from
# the same situation at scale — words and facts met somewhere in C4's 34 billion tokens but rare in
# a few thousand labeled GLUE examples — where nobody had to arrange it.
#
# **What did not work** (earlier trials, measured while writing this chapter; not re-run here):
#
# - *Python's documentation.* 600 AdamW steps of span corruption on `pydoc_data`'s topics, then
#   restoring one of 30 nouns blanked out of held-out lines with 300 labeled examples: pre-trained
#   7.6 ± 1.3 % against 8.4 ± 1.3 % from scratch (3 seeds) — no gain. Two CPU minutes cannot teach
#   enough English for that task.
# - *Facts about 240 made-up people* (city, job, pet, in biographies), then questions about people
#   whose facts appeared only in the unlabeled text: after 600 steps the model had memorised almost
#   none of the 720 facts (0.3 % of them restored from a sentinel), and fine-tuning gained nothing.
# - *This language with AdamW* at 2e-3 for pre-training (Chapter 07's optimizer), with a smaller
#   tokenizer trained on the made-up text alone: after 600 steps the nearest-kind check reached only
#   40 % (32.5 % before pre-training), and after 400 steps fine-tuning gained nothing (27.5–34.2 %
#   against 20.8–40.0 % from scratch, 2 seeds at each of the three learning rates). T5 initialises the embeddings with a standard deviation of 1
#   (Chapter 04), and AdamW moves a weight by about its learning rate per step, so the words barely
#   left their random starting points. Adafactor scales each step by the size of the matrix it
#   updates: with that tokenizer, at a relative step of 1e-2 the check reached 57 %, at 3e-2 96 %.
#
# Pre-training pays when the unlabeled text holds what the task needs *and* the pre-training budget
# is enough to learn it. The code above is the experiment to rerun with a bigger budget or a real
# corpus: change `PretrainRecipe` or the documents and re-run §9.4–9.6; every run is cached.

# %% [markdown]
# ## 9.8 A real pretrained checkpoint
#
# At full scale nobody pre-trains for each task: one downloads a checkpoint. A T5 checkpoint in
# Hugging Face's format is a directory with `config.json`, `model.safetensors` and, for the
# tokenizer, `spiece.model`. Chapter 05's `T5.from_pretrained` reads the first two — from a local
# directory, or from the hub when `huggingface_hub` is installed — and Chapter 01's `Tokenizer.load`
# reads the third. `load_pretrained` returns both, and checks that they belong together.
#
# **The online path** (it needs the network, so this book does not run it by default):
#
# ```python
# from t5edu.model import T5
# model = T5.from_pretrained("google-t5/t5-small")      # 60M parameters, the original T5
# model, tokenizer = load_pretrained("google-t5/t5-small")   # the same, with its SentencePiece model
# ```
#
# Set `T5EDU_ONLINE=1` and the cells below use `t5-small` and the real datasets instead of our
# pre-trained model and the local samples. Offline, our own pre-trained model plays the part: saved
# with `save_pretrained` and `Tokenizer.save`, it is a directory in exactly `t5-small`'s format.


# %%
#| export
class ModelNotAvailable(FileNotFoundError):
    """A model that is neither a local checkpoint directory nor reachable on the hub (or in its cache)."""


HOW_TO_USE_A_LOCAL_MODEL = (
    "Point --model (or T5EDU_MODEL) at a local directory in Hugging Face format instead: config.json, "
    "model.safetensors (or pytorch_model.bin) and spiece.model — for example one written on a machine with "
    "internet by `huggingface-cli download t5-small --local-dir models/t5-small`, by `T5.save_pretrained` "
    "plus `Tokenizer.save`, or by `t5edu demo` (runs/demo).")


def hub_offline():
    """True when HF_HUB_OFFLINE asks huggingface_hub to use its local cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _tokenizer_for(name_or_path):
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / SPIECE_FILENAME).is_file():
            raise FileNotFoundError(f"{path} has no {SPIECE_FILENAME}: a checkpoint folder for fine-tuning "
                                    "needs the tokenizer's SentencePiece model next to config.json "
                                    "(Tokenizer.save writes it)")
        return Tokenizer.load(path)
    from huggingface_hub import hf_hub_download

    return Tokenizer.load(hf_hub_download(str(name_or_path), SPIECE_FILENAME))


def load_pretrained(name_or_path, dtype=None):
    """(model, tokenizer) of a T5 checkpoint: a local Hugging Face-format directory, or a hub id
    (`t5-small`, `google/t5-v1_1-small`) when huggingface_hub is installed and the hub or its cache has it."""
    local = Path(name_or_path).is_dir() or looks_like_path(str(name_or_path))  # a typo: say so, not "hub"
    try:
        model = T5.from_pretrained(name_or_path, dtype=dtype)
        tokenizer = _tokenizer_for(name_or_path)
    except (FileNotFoundError, OSError, ImportError) as err:
        if local:
            raise
        if hub_offline():
            why = ("it is not available offline: HF_HUB_OFFLINE=1 lets huggingface_hub use only its local "
                   "cache, and the cache does not hold it")
        else:
            why = f"it could not be fetched from the Hugging Face hub ({str(err).splitlines()[0][:200]})"
        raise ModelNotAvailable(f"model {str(name_or_path)!r} is not a local directory, "
                                f"and as a hub id {why}. "
                                + HOW_TO_USE_A_LOCAL_MODEL) from None
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only "
                         f"{model.config.vocab_size} "
                         "embeddings: they do not belong together")
    return model, tokenizer


# %%
import tempfile

WORK = Path(tempfile.mkdtemp(prefix="t5edu-ch09-"))  # checkpoints of this chapter go here
ONLINE = os.environ.get("T5EDU_ONLINE") == "1"  # t5-small and the real datasets: needs the network
MODEL = "google-t5/t5-small" if ONLINE else str(WORK / "t5-tiny-pretrained")
if not ONLINE:
    pretrained.save_pretrained(MODEL)
    tokenizer.save(MODEL)
    print(sorted(p.name for p in Path(MODEL).iterdir()))
model, tokenizer = load_pretrained(MODEL)
print(f"{model.num_parameters():,} parameters, d_model {model.config.d_model}, "
      f"{model.config.num_layers}+{model.config.num_decoder_layers} layers, {model.config.feed_forward_proj}; "
      f"tokenizer {tokenizer.vocab_size} ids, model {model.config.vocab_size} embeddings")
if not ONLINE:
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), pretrained.state_dict().values()))
assert not model.training  # from_pretrained returns the model in eval mode, as Hugging Face does

# %% [markdown]
# ## 9.9 The data: CNN/DailyMail, online and offline
#
# Chapter 06's `load_task` reads the three hub datasets in T5's text-to-text form — the prefix
# added, the target as text — either from the hub or from local files in the hub's schema:
#
# | task | hub dataset | fields of a row | T5 input → target |
# | --- | --- | --- | --- |
# | summarize | `cnn_dailymail` 3.0.0 | `article`, `highlights`, `id` | `summarize: <article>` → highlights |
# | translate | `wmt16` de-en | `translation: {de, en}` | `translate English to German: <en>` → de |
# | classify | `glue` sst2 | `sentence`, `label`, `idx` | `sst2 sentence: <sentence>` → `negative` / `positive` |
#
# `load_task_rows` adds the book's task names and takes `data` as the command line does: the hub
# dataset's name, a local file, or a directory holding `train.jsonl`, `validation.jsonl`, ...

# %%
#| export
@dataclass
class FinetuneTask:
    """One fine-tuning task: its dataset (a `t5edu.hub_tasks.load_task` name), metrics and lengths."""

    name: str
    dataset: str
    metrics: tuple
    max_input_length: int = 512
    max_target_length: int = 128
    generate: dict = field(default_factory=dict)  # keyword arguments of model.generate for evaluation


FINETUNE_TASKS = {
    "summarize": FinetuneTask("summarize", "cnn_dailymail", ("rouge1", "rouge2", "rougeL"), 512, 128,
                              {"max_length": 50, "num_beams": 4, "early_stopping": True}),
    "translate": FinetuneTask("translate", "wmt16_en_de", ("bleu",), 512, 128,
                              {"max_length": 64, "num_beams": 4, "early_stopping": True}),
    "classify": FinetuneTask("classify", "sst2", ("accuracy",), 128, 8, {"max_length": 8}),
}


# %%
#| export
def task_spec(task):
    """The FinetuneTask named `task` (summarize, translate, classify), or a ValueError naming the choices."""
    if task not in FINETUNE_TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(FINETUNE_TASKS)}")
    return FINETUNE_TASKS[task]


def local_data_files(data, split="train"):
    """The local files `data` names: [the file], or a directory's `<split>.*` files; None if not local."""
    path = Path(data)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.split(".")[0] == split)
        if not files:
            raise DataError(f"{path}: no {split}.jsonl, {split}.json or {split}.parquet in this directory")
        return files
    return None


def hub_names(task):
    """The names --data accepts for the task's hub dataset, e.g. cnn_dailymail, abisee/cnn_dailymail."""
    dataset = task_spec(task).dataset
    path, config = HUB_TASKS[dataset][:2]
    return {dataset, path, path.split("/")[-1], f"{path.split('/')[-1]}_{config}"}


# %%
#| export
def check_local_files(task, files):
    """Fail early, with the file's name, on what the JSON reader reports badly: an empty file, and (for
    classify) a label written as a float such as 1.0 (SST-2's labels are the integers 0 and 1)."""
    for path in files:
        if path.suffix.lower() not in (".json", ".jsonl"):
            continue  # parquet and compressed files: the reader's own checks
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            raise DataError(f"{path}: the file is empty; it needs one JSON object per line")
        if task != "classify" or path.suffix.lower() != ".jsonl":
            continue
        for number, line in enumerate(text.splitlines()):
            try:
                label = json.loads(line).get("label") if line.strip() else None
            except (ValueError, AttributeError):
                continue  # the reader names bad JSON itself
            if isinstance(label, float):
                raise DataError(f"{path}: row {number}: label {label!r} is a float; "
                                "SST-2 labels are the integers "
                                "0 (negative) and 1 (positive)")


def load_task_rows(task, data=None, split="train", limit=None):
    """Rows {task, inputs, targets} of one task: `data` is None or a hub name (Hugging Face hub), or a
    local file or directory in the hub's schema. A row or file lacking the task's fields raises a
    DataError that names the fields expected."""
    spec = task_spec(task)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive number of rows, got {limit!r}")
    files = None if data is None else local_data_files(data, split)
    if files is not None:
        check_local_files(task, files)
    if data is not None and files is None and str(data) not in hub_names(task):
        raise DataError(f"--data {str(data)!r} is neither a local file or directory "
                        "nor the hub dataset of task "
                        f"{task!r} (one of {', '.join(sorted(hub_names(task)))})")
    if files is None and limit:
        split = f"{split}[:{int(limit)}]"
    try:
        rows = load_task(spec.dataset, split=split, data_files=files)
    except DataError as err:
        if files is not None:
            raise
        raise DataError(f"{err} On the command line: t5edu finetune --data FILE_OR_DIRECTORY.") from None
    rows = [{"task": task, "inputs": r["inputs"], "targets": r["targets"]} for r in rows]
    return rows[:limit] if limit else rows


# %% [markdown]
# The data switch is the model's: with `T5EDU_ONLINE=1` the cells read the real datasets (CNN/DailyMail
# is 1.3 GB; the first 1,000 articles are plenty to see fine-tuning work), and by default the
# chapter reads its local samples — a dozen short news items, a few dozen sentence pairs and
# movie-review snippets, written for this book in exactly the hub's schemas.

# %%
# The local samples of the three hub datasets, in their schemas (a few KB, written for this book).
SAMPLES = next(p for p in (ROOT / "tests" / "fixtures" / "finetune", Path("tests/fixtures/finetune")) if p.is_dir())
DATA = {task: (FINETUNE_TASKS[task].dataset if ONLINE else str(SAMPLES / local))
        for task, local in (("summarize", "cnn_dailymail"), ("translate", "wmt16_de-en"), ("classify", "glue_sst2"))}
LIMIT = 1000 if ONLINE else None

news_rows = load_task_rows("summarize", DATA["summarize"], "train", LIMIT)
news_valid = load_task_rows("summarize", DATA["summarize"], "validation", LIMIT and 100)
print(f"{len(news_rows)} training and {len(news_valid)} validation articles")
print(news_rows[0]["inputs"][:100] + " ...")
print("->", news_rows[0]["targets"].replace("\n", " | "))
assert all(r["inputs"].startswith("summarize: ") for r in news_rows + news_valid)

# %% [markdown]
# ## 9.10 Tokenize, truncate, and keep the padding out of the loss
#
# Inputs are cut to 512 tokens and targets to 128, as in the T5 paper's CNN/DailyMail runs; a cut
# sequence keeps its `</s>` last, so the model still sees where the text ends. Chapter 06's
# `featurize` does both.

# %%
from t5edu.data import featurize

spec = FINETUNE_TASKS["summarize"]
train_features = featurize(news_rows, tokenizer, spec.max_input_length, spec.max_target_length)
lengths = [len(f["input_ids"]) for f in train_features]
print(f"input lengths {min(lengths)}..{max(lengths)} tokens; "
      f"target lengths {min(len(f['labels']) for f in train_features)}..{max(len(f['labels']) for f in train_features)}")
short = featurize(news_rows[:2], tokenizer, max_input_length=16, max_target_length=8)
assert [len(f["input_ids"]) for f in short] == [16, 16] and all(f["input_ids"][-1] == tokenizer.eos_id for f in short)
assert short[0]["input_ids"][:15] == train_features[0]["input_ids"][:15]

# %% [markdown]
# A batch pads every sequence to the longest one. Padding the labels with `<pad>` (id 0) would make
# the loss reward the model for predicting `<pad>` after each short summary. Chapter
# 06's collator pads labels with **-100**, which `cross_entropy` ignores, and builds the decoder's
# inputs with `shift_right`: the start token (`<pad>`, id 0, for T5) followed by the labels shifted
# right by one, so that position *t* reads the target up to *t - 1* and is asked for token *t*.

# %%
collate = TextToTextCollator(pad_id=tokenizer.pad_id, decoder_start_token_id=model.config.decoder_start_token_id)
batch = collate([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in train_features[:4]])
print({k: tuple(v.shape) for k, v in batch.items()})
from t5edu.model import shift_right

assert torch.equal(batch["decoder_input_ids"], shift_right(batch["labels"], 0, tokenizer.pad_id))
assert (batch["decoder_input_ids"][:, 0] == 0).all() and (batch["decoder_input_ids"] >= 0).all()

with torch.no_grad():
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    padded_labels = batch["labels"].masked_fill(batch["labels"] == -100, tokenizer.pad_id)  # padded with <pad>
    padded_loss = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), padded_labels.flatten())
real = batch["labels"] != -100
by_hand = -out.logits.log_softmax(-1).gather(-1, batch["labels"].clamp(min=0)[..., None])[..., 0][real].mean()
print(f"{int(real.sum())} real target tokens, {int((~real).sum())} padding; "
      f"loss {out.loss.item():.3f} (padding ignored), {padded_loss.item():.3f} (padding counted)")
assert torch.allclose(out.loss, by_hand, atol=1e-5)

# %% [markdown]
# ## 9.11 Fine-tuning with AdamW and Chapter 07's loop
#
# The bare loop is four lines — forward with `labels`, backward, step, zero the gradients — and
# §9.4's `fine_tune_steps` is little more. A long run needs more: a learning-rate schedule, a
# per-token loss that does not depend on how the batch is split, checkpoints, `--resume`. Chapter
# 07's `train` has all of that; `fine_tune` feeds it the features and writes the result the way it
# was read — `config.json`, `model.safetensors` and `spiece.model` — so that `load_pretrained`,
# `t5edu finetune --model` and Hugging Face's `T5ForConditionalGeneration.from_pretrained` all load it.
#
# Fine-tuning wants a smaller learning rate than pre-training (the T5 paper used a constant
# 1e-3 with Adafactor; with AdamW, 1e-4 to 3e-4 is usual for `t5-small`). Our model is tiny
# and the data is a dozen articles, so we take larger steps.

# %%
#| export
def fine_tune(model, tokenizer, features, config, out_dir, *, resume=False, device=None):
    """Chapter 07's `train` on features {input_ids, labels}; returns its metrics history.

    `out_dir` gets the loop's checkpoints (for `resume=True`) and the result in Hugging Face
    format with its tokenizer: config.json, model.safetensors, spiece.model."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(out_dir)
    collate = TextToTextCollator(pad_id=tokenizer.pad_id,
                                 decoder_start_token_id=model.config.decoder_start_token_id)
    rows = [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features]
    history = train(model, rows, collate, config, out_dir, resume=resume, device=device)
    save_weights(model, out_dir)
    model.eval()
    return history


# %%
finetuned, _ = load_pretrained(MODEL)
cfg = TrainConfig(optimizer="adamw", lr=2e-3, schedule="constant", warmup_steps=5, max_steps=40, batch_size=8,
                  log_every=10, progress=False, seed=0)
history = fine_tune(finetuned, tokenizer, train_features, cfg, WORK / "summarize")
for row in history:
    print(f"step {row['step']:3d}  loss {row['loss']:.3f}")
assert history[-1]["loss"] < history[0]["loss"]
reloaded, _ = load_pretrained(WORK / "summarize")
assert all(torch.equal(a, b) for a, b in zip(finetuned.state_dict().values(), reloaded.state_dict().values()))

# %% [markdown]
# ## 9.12 Generating summaries with beam search
#
# Chapter 08 built `generate`: greedy search, beam search, sampling, with the key/value cache.
# `T5.generate` accepts Hugging Face's arguments, so the call found in Hugging Face's examples runs as written. Mind
# `max_length`: as in Hugging Face, it counts the whole decoder sequence **including the start
# token**, so `max_length=50` allows 49 new tokens (`max_new_tokens=49` says the same thing).
# `num_beams=4` keeps the four best partial summaries at each step, and `early_stopping=True`
# stops as soon as four finished ones are found.

# %%
article = news_valid[0]["inputs"]
input_ids = tokenizer.batch_encode([article], max_length=512)["input_ids"]
summary_ids = finetuned.generate(input_ids, max_length=50, num_beams=4, early_stopping=True)
print(f"{summary_ids.shape[1] - 1} tokens generated")
assert summary_ids.shape[1] <= 50 and summary_ids[0, 0].item() == finetuned.config.decoder_start_token_id
same = finetuned.generate(input_ids, max_new_tokens=49, num_beams=4, early_stopping=True)
assert torch.equal(same, summary_ids)

# %% [markdown]
# Offline, this model has read a made-up language and twelve news articles for 40 steps: its
# summaries are not worth printing (with `T5EDU_ONLINE=1` the cell below prints `t5-small`'s). To
# score many examples, `predict_texts` batches the inputs (padding them, with the attention mask
# telling the encoder where the text ends) and decodes the outputs.

# %%
#| export
@torch.no_grad()
def predict_texts(model, tokenizer, inputs, *, batch_size=16, max_input_length=512, **generate_kwargs):
    """Chapter 08's `generate` (what `model.generate` calls) on a list of input strings, decoded to
    strings (special tokens dropped)."""
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for k in range(0, len(inputs), batch_size):
        batch = tokenizer.batch_encode(list(inputs[k:k + batch_size]), max_length=max_input_length)
        ids = generate(model, batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device),
                       **generate_kwargs)
        outputs += tokenizer.batch_decode(ids.cpu())
    return outputs


# %%
texts = predict_texts(finetuned, tokenizer, [r["inputs"] for r in news_valid[:2]], **spec.generate)
assert texts[0] == tokenizer.decode(summary_ids[0])
for row, text in zip(news_valid[:2] if ONLINE else [], texts):
    print(f"reference: {row['targets'].splitlines()[0]}\nmodel:     {text}\n")

# %% [markdown]
# ## 9.13 Scoring: ROUGE, BLEU, accuracy
#
# Each task has its customary metric, all reported on a 0–100 scale:
#
# - **ROUGE-1 / ROUGE-2 / ROUGE-L** for summaries: the F1 of the unigrams, bigrams and longest
#   common subsequence shared with the reference, with Porter stemming (Google's `rouge-score`);
# - **BLEU** for translation: the geometric mean of 1- to 4-gram precisions times a brevity
#   penalty, over the whole corpus (`sacrebleu`, Chapter 07's `bleu`);
# - **accuracy** for classification: the fraction of outputs that are exactly the right label word.

# %%
#| export
def score_task(task, predictions, references):
    """The task's metrics on a 0-100 scale: ROUGE-1/2/L, BLEU or accuracy."""
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    metrics = task_spec(task).metrics
    if metrics == ("bleu",):
        return {"bleu": bleu(predictions, references)}
    if metrics == ("accuracy",):
        return {"accuracy": 100 * exact_match(predictions, references)}
    return rouge(predictions, references)  # Chapter 07's metrics: ROUGE-1/2/L, 0-100


def evaluate_task(model, tokenizer, rows, task, *, batch_size=16, **generate_kwargs):
    """Generate for every row (the task's generate settings, unless overridden) and score:
    {metric: value, ..., "predictions": [...]}."""
    spec = task_spec(task)
    predictions = predict_texts(model, tokenizer, [r["inputs"] for r in rows], batch_size=batch_size,
                                max_input_length=spec.max_input_length,
                                **{**spec.generate, **generate_kwargs})
    return {**score_task(task, predictions, [r["targets"] for r in rows]), "predictions": predictions}


# %% [markdown]
# **Check against the definitions.** "the cat sat on the mat" against "the cat lay on the mat":
# 5 of 6 unigrams shared (ROUGE-1 = 5/6), 3 of 5 bigrams (ROUGE-2 = 3/5), and the longest common
# subsequence has 5 words (ROUGE-L = 5/6). A perfect translation scores BLEU 100.

# %%
r = rouge(["the cat sat on the mat"], ["the cat lay on the mat"])
print({k: round(v, 2) for k, v in r.items()})
assert abs(r["rouge1"] - 500 / 6) < 1e-9 and abs(r["rouge2"] - 60) < 1e-9 and abs(r["rougeL"] - 500 / 6) < 1e-9
assert round(score_task("translate", ["Das Haus ist klein."], ["Das Haus ist klein."])["bleu"], 6) == 100.0
assert score_task("classify", ["positive", "negative"], ["positive", "positive"]) == {"accuracy": 50.0}

# %% [markdown]
# ## 9.14 Several tasks at once: prefixes and balanced sampling
#
# T5's point was that one model, one loss and one decoding procedure serve every task; the prefix
# tells the model which one it is doing. Mixing tasks raises one question: how often to show each.
# Mixing in proportion to the dataset sizes lets CNN/DailyMail's 287k articles drown SST-2's 67k
# sentences; the T5 paper capped each dataset's share ("examples-proportional mixing with a
# limit") or flattened it with a temperature. With our small samples we take the simplest balanced
# choice: every task contributes the same number of examples per epoch, the smaller ones repeated.

# %%
#| export
def balanced_mixture(features_by_task, per_task=None, seed=0):
    """Task-balanced sampling: `per_task` examples of every task (default: as many as the largest task
    has), drawn in shuffled passes over each task's examples so the small tasks repeat; shuffled."""
    if not features_by_task or any(len(rows) == 0 for rows in features_by_task.values()):
        raise ValueError("balanced_mixture needs at least one example of every task")
    per_task = per_task or max(len(rows) for rows in features_by_task.values())
    rng = random.Random(seed)
    mixed = []
    for task in sorted(features_by_task):
        rows, order = features_by_task[task], []
        while len(order) < per_task:
            passage = list(range(len(rows)))
            rng.shuffle(passage)
            order += passage
        mixed += [rows[i] for i in order[:per_task]]
    rng.shuffle(mixed)
    return mixed


# %%
TASKS = ("summarize", "translate", "classify")
rows = {t: load_task_rows(t, DATA[t], "train", LIMIT) for t in TASKS}
valid = {t: load_task_rows(t, DATA[t], "validation", LIMIT and 100) for t in TASKS}
features = {t: [{**f, "task": t} for f in featurize(rows[t], tokenizer, FINETUNE_TASKS[t].max_input_length,
                                                     FINETUNE_TASKS[t].max_target_length)]
            for t in TASKS}
mixture = balanced_mixture(features, seed=0)
counts = {t: sum(f["task"] == t for f in mixture) for t in TASKS}
print("training examples per task:", {t: len(rows[t]) for t in TASKS}, "-> balanced:", counts)
assert len(set(counts.values())) == 1
for t in TASKS:
    print(f"  {valid[t][0]['inputs'][:60]!r} -> {valid[t][0]['targets'][:40]!r}")

# %% [markdown]
# `t5edu finetune --task translate classify ...` trains on such a mixture (§9.15). After full
# fine-tuning of the real `t5-small`, the T5 paper reports ROUGE-1/2/L 41.1 / 19.6 / 38.4 on
# CNN/DailyMail, BLEU 26.7 on WMT English-German and 91.8 % accuracy on SST-2 — on accelerators,
# for hours; our laptop-scale test of "pre-training helps" is §9.6.

# %% [markdown]
# ## 9.15 `t5edu finetune` on the command line
#
# The same pipeline, with a progress bar, checkpoints and `--resume` from Chapter 07's loop:
#
# ```bash
# t5edu finetune --model t5-small --task summarize --data cnn_dailymail --out runs/cnn --max-steps 2000 --eval
# t5edu finetune --model runs/demo --task classify --data tests/fixtures/finetune/glue_sst2 --out runs/sst2
# t5edu finetune --model runs/cnn --task translate classify --data wmt16 glue --out runs/multi   # balanced
# t5edu finetune ... --out runs/cnn --resume      # after a crash: continues from the latest checkpoint
# ```
#
# `--data` takes a hub dataset name or local files (a file, or a directory with `train.jsonl` and
# `validation.jsonl`); `--eval` scores the validation split before and after. The output directory
# is a checkpoint like the one it started from, so it can be fine-tuned again, or loaded by
# `transformers`: `tests/test_finetune.py` fine-tunes a checkpoint written by `transformers`, loads
# the result back into `T5ForConditionalGeneration`, and gets the same logits as t5edu.

# %%
from t5edu.cli import main as t5edu_cli

code = t5edu_cli(["finetune", "--model", MODEL, "--task", "classify", "--data", DATA["classify"],
                  "--out", str(WORK / "cli"), "--max-steps", "4", "--batch-size", "4", "--save-every", "2",
                  "--log-every", "2", "--no-progress", "--quiet"])
assert code == 0 and (WORK / "cli" / "latest").read_text().strip() == "checkpoint-00000004"
print(sorted(p.name for p in (WORK / "cli").iterdir()))

# %% [markdown]
# ## 9.16 Under the hood: when the input is wrong
#
# Every mistake a user can make with `t5edu finetune` should end in one to three lines that name the
# problem, not a traceback. Asking for a hub model with no network, and pointing `--data` at a file
# in the wrong schema, have their own messages:

# %%
try:
    load_pretrained("google/t5-v1_1-no-such-model")
except ModelNotAvailable as err:
    message = str(err)
print(message[:300] + " ...")
assert "local directory" in message and ("offline" in message or not hub_offline())

try:
    load_task_rows("summarize", SAMPLES / "bad_cnn.jsonl")
except DataError as err:
    message = str(err)
print(message)
assert "'article'" in message and "'highlights'" in message

# %% [markdown]
# The command line checks its numbers before it loads anything, and `load_task_rows` checks local
# files before the JSON reader sees them (an empty file made the reader fail with a bare
# `StopIteration`; a label `1.0` made it fail with "tuple indices must be integers"):

# %%
import contextlib
import io

bad = WORK / "bad"
bad.mkdir()
(bad / "empty.jsonl").write_text("")
(bad / "float.jsonl").write_text(json.dumps({"sentence": "a fine film", "label": 1.0, "idx": 0}) + "\n")
cases = {"empty file": ["--data", str(bad / "empty.jsonl")],
         "float label": ["--data", str(bad / "float.jsonl")],
         "--limit -3": ["--data", DATA["classify"], "--limit", "-3"],
         "--batch-size 0": ["--data", DATA["classify"], "--batch-size", "0"]}
for name, extra in cases.items():
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = t5edu_cli(["finetune", "--model", MODEL, "--task", "classify", "--out", str(bad / "out"),
                          "--no-progress", *extra])
    message = stderr.getvalue().strip().replace(str(bad) + "/", "")
    print(f"{name:15} exit {code}: {message.splitlines()[0]}")  # a second line may say where --help is
    assert code == 2 and 1 <= len(message.splitlines()) <= 3 and "Traceback" not in message
assert not (bad / "out").exists()

# %% [markdown]
# ## Summary
#
# - **Pre-training paid, where the unlabeled text held the answer.** A 1.2M-parameter T5 pre-trained
#   with span corruption for 600 Adafactor steps on a made-up language, then fine-tuned on 300
#   labeled words, named the kind of 120 words it never saw labeled 99.2 ± 0.0 % of the time; the
#   same model fine-tuned from random weights scored 37.5 ± 5.5 % (3 seeds, each arm's learning rate
#   tuned). The knowledge was in the embeddings before fine-tuning (Figure 9.2).
# - It took a task whose knowledge lives in the unlabeled text, and Adafactor's relative steps:
#   on Python's docs, on made-up facts, and with AdamW, the pre-trained arm gained nothing (§9.7).
#   The T5 paper's gain (GLUE 83.3 against 66.2) comes with 34 billion tokens of pre-training (§3.7).
# - `t5edu.pretrain`: `made_up_words`, `made_up_documents` and `kind_rows` (the language and the
#   labeled task), `PretrainRecipe`, `pretrain` and `load_or_pretrain` (cached by the key of the
#   recipe and the texts in `runs/cache/`), `fine_tune_steps` (the bare loop both arms share, AdamW
#   or Adafactor) and `accuracy`.
# - `t5edu.finetune`: `load_pretrained(name_or_path)` → `(T5, Tokenizer)` from a hub id such as
#   `google-t5/t5-small` or a local Hugging Face-format directory; `load_task_rows` (prefixes, hub or
#   local files in the hub's schema, checked), `featurize` (truncation to 512/128 keeping `</s>`),
#   Chapter 06's collator (-100 label padding, `shift_right`), `fine_tune` (Chapter 07's loop,
#   checkpoints, resume, output in HF format), `predict_texts`, `score_task`,
#   `evaluate_task`, and `balanced_mixture` for multi-task fine-tuning.
#
# On the command line: `t5edu finetune --model DIR_OR_HUB_ID --task summarize --data cnn_dailymail --out DIR`.
# Chapter 08 ([08_generate.ipynb](08_generate.ipynb)) built the `generate` used here; the exercises
# for this chapter are in [../exercises/ch09_finetune.ipynb](../exercises/ch09_finetune.ipynb).
#
# ## Further reading
#
# - Raffel et al., *Exploring the Limits of Transfer Learning with a Unified Text-to-Text
#   Transformer* (JMLR 2020), [arXiv:1910.10683](https://arxiv.org/abs/1910.10683) — §3.1.3
#   (fine-tuning), §3.3 (unsupervised objectives), §3.7 (scaling), Table 1 (no pre-training).
# - Howard and Ruder, *Universal Language Model Fine-tuning for Text Classification* (ULMFiT, 2018),
#   [arXiv:1801.06146](https://arxiv.org/abs/1801.06146) — pre-train a language model, then fine-tune
#   it with few labels.
# - Mikolov et al., *Efficient Estimation of Word Representations in Vector Space* (word2vec, 2013),
#   [arXiv:1301.3781](https://arxiv.org/abs/1301.3781) — words that keep the same company get
#   similar vectors, the effect of Figure 9.2.
# - Shazeer and Stern, *Adafactor: Adaptive Learning Rates with Sublinear Memory Cost* (2018),
#   [arXiv:1804.04235](https://arxiv.org/abs/1804.04235) — the optimizer T5 pre-trains with, and its
#   relative step sizes.
# - Devlin et al., *BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding*
#   (2018), [arXiv:1810.04805](https://arxiv.org/abs/1810.04805) — masked-language-model pre-training.

# %%
# NBVAL_IGNORE_OUTPUT
cpu_seconds = time.process_time() - CPU_START
print(f"this chapter used {cpu_seconds:.0f} CPU seconds")
assert cpu_seconds < 240 or CACHE is None, "the chapter should run in under 4 CPU minutes"
