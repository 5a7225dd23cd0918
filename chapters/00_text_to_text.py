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
# # Chapter 00 — Every task is text to text
#
# **What you will build in this book**
#
# - T5, the encoder-decoder transformer of Raffel et al. (2020), from an empty file to a model
#   that loads Google's checkpoints and gives the same numbers as Hugging Face `transformers`.
# - Every piece you need around it: a SentencePiece tokenizer, span-corruption data, a training
#   loop that runs on a laptop, greedy and beam search, fine-tuning on real tasks.
# - An importable package, `t5edu`, that carries each chapter's finished code.
#
# This chapter has almost no code. It explains the one idea that makes T5 T5, draws the map of
# the book, and shows how the notebooks, the package and the exercises fit together.

# %% [markdown]
# ## 0.1 One model, one format
#
# Before T5, each NLP task came with its own output layer: a classifier head for sentiment, a
# span-pointer for question answering, a decoder for translation. T5 removes the difference.
# **Every task is written as text in and text out**, and the task itself is named by a short
# prefix at the start of the input:
#
# | task | input | target |
# | --- | --- | --- |
# | translation | `translate English to German: That is good.` | `Das ist gut.` |
# | summarization | `summarize: state authorities dispatched emergency crews ...` | `emergency crews sent to ...` |
# | classification (SST-2) | `sst2 sentence: it confirms fincher's status as a film maker` | `positive` |
# | similarity (STS-B) | `stsb sentence1: ... sentence2: ...` | `3.8` |
#
# A class label becomes a word, a similarity score becomes a string like `"3.8"`. The same
# loss (cross-entropy on the target tokens), the same model and the same decoding procedure serve
# every task. Pre-training uses the format too: the input is a sentence with some spans replaced
# by sentinel tokens, and the target is the missing spans (Chapter 06).
#
# Here is the idea as a tiny function. It is not part of the package — Chapter 06 builds the real
# data pipeline — but it is the whole interface of T5 in five lines.

# %%
def to_text(task, **fields):
    """Write one example of a task as T5 would see it: a prefix, then the fields."""
    if task == "translate":
        return f"translate {fields['source_lang']} to {fields['target_lang']}: {fields['text']}"
    if task == "sst2":
        return f"sst2 sentence: {fields['sentence']}"
    return f"{task}: {fields['text']}"


examples = [
    (to_text("translate", source_lang="English", target_lang="German", text="That is good."), "Das ist gut."),
    (to_text("summarize", text="The committee met on Tuesday and agreed to fund the new library."),
     "Committee funds new library."),
    (to_text("sst2", sentence="a gorgeous, witty, seductive movie."), "positive"),
]
for source, target in examples:
    print(f"{source!r:80} -> {target!r}")

# %% [markdown]
# **Check.** The prefixes are exactly the ones the original T5 checkpoints were trained with, so a
# pretrained `t5-small` understands these inputs without fine-tuning (Chapter 09 shows it).

# %%
assert examples[0][0] == "translate English to German: That is good."
assert examples[2][0].startswith("sst2 sentence: ")
assert all(isinstance(s, str) and isinstance(t, str) for s, t in examples)

# %% [markdown]
# ## 0.2 The architecture at a glance
#
# T5 is an encoder-decoder transformer, close to the original of Vaswani et al. (2017), with
# a few deliberate changes that the chapters build one by one:
#
# - **No positional embeddings.** Position enters only as a learned **relative position bias**
#   added to the attention scores (Chapter 03), computed in the first layer and shared by all.
# - **Pre-norm residual blocks** with a simplified layer norm (RMS, no mean, no bias) (Chapter 04).
# - **No biases** in any linear layer, and no `1/sqrt(d)` scaling of attention scores (Chapter 02).
# - One embedding matrix shared by encoder input, decoder input and (in T5 v1.0) the output head.
#
# ```mermaid
# flowchart LR
#     subgraph Encoder["Encoder (× num_layers)"]
#         E0[token embedding] --> E1[RMS norm] --> E2["self-attention<br/>+ relative bias"] --> E3((+))
#         E3 --> E4[RMS norm] --> E5[feed-forward] --> E6((+))
#     end
#     subgraph Decoder["Decoder (× num_decoder_layers)"]
#         D0[token embedding] --> D1[RMS norm] --> D2["causal self-attention<br/>+ relative bias"] --> D3((+))
#         D3 --> D4[RMS norm] --> D5[cross-attention] --> D6((+))
#         D6 --> D7[RMS norm] --> D8[feed-forward] --> D9((+))
#     end
#     E6 --> EF[final RMS norm] --> D5
#     D9 --> DF[final RMS norm] --> H[LM head] --> P[next-token logits]
# ```
#
# (Residual connections skip each norm-plus-sublayer pair; the diagram draws them as the `+` nodes.
# There is no "positional encoding" box anywhere: a diagram that shows one is drawing a
# different model.)

# %% [markdown]
# The sizes of the released models, which later chapters reproduce exactly:

# %%
sizes = {  # name: (d_model, d_ff, num_layers, num_heads, parameters)
    "t5-small": (512, 2048, 6, 8, 60_506_624),
    "t5-base": (768, 3072, 12, 12, 222_903_552),
    "t5-large": (1024, 4096, 24, 16, 737_668_096),
}
print(f"{'model':10} {'d_model':>8} {'d_ff':>6} {'layers':>7} {'heads':>6} {'params':>8}")
for name, (d_model, d_ff, layers, heads, params) in sizes.items():
    print(f"{name:10} {d_model:8} {d_ff:6} {layers:7} {heads:6} {params / 1e6:7.1f}M")

# %% [markdown]
# ## 0.3 A map of the book
#
# | chapter | you build | package module |
# | --- | --- | --- |
# | 01 tokenizer | a SentencePiece unigram tokenizer, and its Viterbi segmentation by hand | `t5edu.tokenizer` |
# | 02 attention | multi-head attention without scaling, masks, the fast SDPA path | `t5edu.attention` |
# | 03 relative position bias | the bucket function and the shared bias table | `t5edu.relative_bias` |
# | 04 encoder | RMS norm, feed-forward (ReLU and gated-GELU), the encoder stack | `t5edu.encoder` |
# | 05 decoder and model | cross-attention, the decoder, the full T5, checkpoints | `t5edu.decoder`, `t5edu.model` |
# | 06 data | text-to-text datasets and T5's span corruption | `t5edu.data` |
# | 07 training | a training loop for CPU, GPU and many GPUs, checkpoints, resume | `t5edu.train` |
# | 08 decoding | greedy, beam search and sampling with a key/value cache | `t5edu.generate` |
# | 09 fine-tuning | a pretrained T5 on summarization, translation and classification | `t5edu.finetune` |
#
# Each chapter is a notebook in `chapters/`. The code that matters is **mirrored** into the
# package: once you have finished Chapter 02, `from t5edu.attention import ...` gives you the same
# code you just read, and Chapter 04 imports it instead of copying it. If you read the package
# first, every function says which section of which notebook explains it.

# %% [markdown]
# ## 0.4 Exercises
#
# Each chapter has an exercise notebook in `exercises/`. You write a function where the notebook
# says `raise NotImplementedError`, then run the check cell below it:
#
# ```python
# from t5edu.classroom.checks import ch01
# ch01.exercise_1(my_function)   # ✅ passed — or what was tried, what was expected, what you got
# ```
#
# The reference solutions are importable (`t5edu.classroom.solutions.ch01`) for when you are stuck.
# Instructors: `t5edu exercises release` and `t5edu grade` hand out and grade whole classes
# (see `docs/INSTRUCTORS.md`).

# %% [markdown]
# ## 0.5 What runs where
#
# Everything in the book runs on a laptop CPU in seconds to minutes: the chapters use tiny models,
# and the main demo (`make demo`) trains a small T5 from scratch in a few minutes. When a GPU is
# present (CUDA, or Apple's MPS), the training code uses it automatically, in bfloat16 where the
# hardware supports it; with several GPUs, the same script runs under `torchrun`. Nothing in the
# default path downloads anything: pretrained checkpoints and hub datasets are used only when you
# ask for them and are online.

# %%
import torch

device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
assert device in {"cuda", "mps", "cpu"}
print("PyTorch is installed; the book will train on the best device it finds.")

# %% [markdown]
# ## Summary
#
# - T5 casts every task as text to text, named by a prefix; one model, one loss, one decoder.
# - Its transformer differs from the 2017 original in small, important ways: relative position
#   bias instead of positional embeddings, pre-norm RMS layer norm, no biases, no attention scaling.
# - The book builds each piece in a notebook and mirrors it into `t5edu`; exercises come with checks.
#
# **Next:** Chapter 01 turns text into the integer ids T5 reads — the tokenizer.
