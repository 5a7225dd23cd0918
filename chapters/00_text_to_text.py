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
# This chapter has almost no code. It explains the one idea that makes T5 T5, maps the paper onto
# the book, and shows how the notebooks, the package and the exercises fit together.
#
# **Why T5 does it this way.** Raffel et al. (2020) set out to compare, on equal terms, the many
# ideas of transfer learning for NLP — architectures, pre-training objectives, data sets, ways of
# fine-tuning. That needs one model, one loss and one decoding procedure for every task, so they
# cast every task as "text in, text out" (§2.4) and studied everything else around that single
# format: the model (§2.1), the C4 pre-training corpus (§2.2), the objectives (§3.3), multi-task
# training (§3.5) and scale (§3.6).

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
# The picture of the idea: many tasks, one model, text out.

# %%
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch


def text_box(ax, x, y, text, color, width=3.6):
    """A rounded box holding one line of text, centred at (x, y)."""
    ax.add_patch(FancyBboxPatch((x - width / 2, y - 0.3), width, 0.6, boxstyle="round,pad=0.05",
                                facecolor=color, edgecolor="black", lw=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5)


def arrow(ax, start, end):
    """A plain arrow from start to end."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, lw=0.9))


tasks = [("translate English to German: That is good.", "Das ist gut."),
         ("summarize: The committee met on Tuesday ...", "Committee funds new library."),
         ("sst2 sentence: a gorgeous, witty movie.", "positive"),
         ("stsb sentence1: ... sentence2: ...", "3.8")]
fig, ax = plt.subplots(figsize=(11, 3.8))
box_colors = ["#cfe2f3", "#d9ead3", "#fff2cc", "#f4cccc"]
for row, ((source, target), color) in enumerate(zip(tasks, box_colors)):
    y = 3 - row
    text_box(ax, 2.1, y, source, color, width=4.0)
    text_box(ax, 9.6, y, target, color, width=2.6)
    arrow(ax, (4.15, y), (5.0, 1.5))
    arrow(ax, (6.7, 1.5), (8.25, y))
ax.add_patch(FancyBboxPatch((5.0, 0.9), 1.7, 1.2, boxstyle="round,pad=0.05", facecolor="lavender",
                            edgecolor="black"))
ax.text(5.85, 1.5, "T5\nencoder-decoder\n(one model)", ha="center", va="center", fontsize=9)
ax.text(2.1, 3.55, "input text (task prefix + fields)", ha="center", fontsize=9, weight="bold")
ax.text(9.6, 3.55, "target text", ha="center", fontsize=9, weight="bold")
ax.set_xlim(0, 11)
ax.set_ylim(-0.5, 3.9)
ax.axis("off")
ax.set_title("Text to text: every task is a string in and a string out")
plt.show()

# %% [markdown]
# *Figure 0.1 — Translation, summarization, classification and regression all enter as text named by
# a prefix, go through the same model, and leave as text; a label is a word, a score is a string.*

# %% [markdown]
# **Check.** The prefixes are exactly the ones the original T5 checkpoints were trained with (the
# released models saw them in their multi-task pre-training mixture). The book runs offline, so it
# never downloads `t5-small`: Chapter 09 instead pre-trains a small T5 with span corruption on
# offline text and shows that fine-tuning it beats training the same model from scratch. Loading
# the real `t5-small` is the online path, described in Chapter 09.

# %%
assert examples[0][0] == "translate English to German: That is good."
assert examples[2][0].startswith("sst2 sentence: ")
assert all(isinstance(s, str) and isinstance(t, str) for s, t in examples)

# %% [markdown]
# Pre-training uses the same format. Here is the example of the paper's Figure 2, drawn the same
# way: random spans of the original text are dropped, each replaced by one sentinel (`<X>`, `<Y>`
# here; `<extra_id_0>`, `<extra_id_1>` in the vocabulary, Chapter 01), and the target lists the
# dropped spans, each after its sentinel.

# %%
original = "Thank you for inviting me to your party last week .".split()
dropped = {2: "<X>", 3: None, 8: "<Y>"}  # word index -> sentinel that replaces the span (None: same span)
inputs, targets, current = [], [], None
for i, word in enumerate(original):
    if i in dropped:
        if dropped[i] is not None:
            current = dropped[i]
            inputs.append(current)
            targets.append(current)
        targets.append(word)
    else:
        inputs.append(word)
targets.append("<Z>")  # the final sentinel closes the target
print("inputs: ", " ".join(inputs))
print("targets:", " ".join(targets))
assert " ".join(inputs) == "Thank you <X> me to your party <Y> week ."
assert " ".join(targets) == "<X> for inviting <Y> last <Z>"

fig, ax = plt.subplots(figsize=(11, 2.6))
for row, (label, words) in enumerate([("original", original), ("inputs", inputs), ("targets", targets)]):
    ax.text(-0.2, -row, label, ha="right", va="center", fontsize=9, weight="bold")
    x = 0.0
    for word in words:
        w = 0.16 * len(word) + 0.3
        sentinel = word.startswith("<")
        was_dropped = row == 0 and original.index(word) in dropped
        color = "gold" if sentinel else "#f4cccc" if was_dropped or row == 2 else "#cfe2f3"
        ax.add_patch(FancyBboxPatch((x, -row - 0.28), w, 0.56, boxstyle="round,pad=0.02",
                                    facecolor=color, edgecolor="black", lw=0.6))
        ax.text(x + w / 2, -row, word, ha="center", va="center", fontsize=9)
        x += w + 0.12
ax.set_xlim(-1.4, 11.8)
ax.set_ylim(-2.6, 0.6)
ax.axis("off")
ax.set_title("Span corruption: each dropped span (red) becomes one sentinel (yellow) in inputs and targets")
plt.show()

# %% [markdown]
# *Figure 0.2 — The same sentence as a pre-training example: the input keeps the words that were not
# dropped, the target spells out the dropped spans after their sentinels, and a final sentinel ends
# it (T5 paper, Figure 2; Chapter 06 builds it on token ids).*

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
# | 02 attention | multi-head attention without scaling, masks as biases, one `attention` function | `t5edu.attention` |
# | 03 relative position bias | the bucket function and the shared bias table | `t5edu.relative_bias` |
# | 04 encoder | the configuration, RMS norm, feed-forward (ReLU and gated-GELU), the encoder stack | `t5edu.config`, `t5edu.encoder` |
# | 05 decoder and model | cross-attention, the decoder, the full T5, checkpoints | `t5edu.decoder`, `t5edu.model` |
# | 06 data | text-to-text datasets and T5's span corruption | `t5edu.data`, `t5edu.span_corruption` |
# | 07 training | a training loop for CPU, GPU and many GPUs, checkpoints, resume | `t5edu.train` |
# | 08 decoding | greedy, beam search and sampling with a key/value cache | `t5edu.generate`, `t5edu.fast_generate` |
# | 09 fine-tuning | pre-train a small T5 offline, fine-tune it; the pretrained `t5-small` online | `t5edu.finetune` |
#
# ### From the paper to the code
#
# The same map, read from the paper's side (section numbers of the JMLR version):
#
# | paper | what it says | chapter | implemented by |
# | --- | --- | --- | --- |
# | §2.1 Model | encoder-decoder Transformer; no biases, no $1/\sqrt{d}$ | 02 | `t5edu.attention.attention`, `t5edu.attention.T5Attention` |
# | §2.1 Model | relative position bias: 32 log-spaced buckets, one table per stack | 03 | `t5edu.relative_bias.relative_position_bucket`, `t5edu.relative_bias.RelativePositionBias` |
# | §2.1 Model | simplified layer norm (scale only), pre-norm residual blocks | 04 | `t5edu.encoder.T5LayerNorm`, `t5edu.encoder.T5Encoder` |
# | §2.1 Model | decoder with causal self-attention and cross-attention; shared embeddings | 05 | `t5edu.decoder.T5Decoder`, `t5edu.model.T5` |
# | §2.2 C4 / §3.1.3 vocabulary | SentencePiece, 32,000 pieces; the C4 corpus | 01, 06 | `t5edu.tokenizer.Tokenizer`, `t5edu.hub_tasks.load_task` |
# | §2.3 Downstream tasks | GLUE, SQuAD, CNN/DailyMail, WMT; their metrics | 09 | `t5edu.finetune.load_task_rows`, `t5edu.finetune.score_task` |
# | §2.4 Input and output format | every task as text to text, named by a prefix | 00, 06, 09 | `t5edu.data.TextToTextCollator`, `t5edu.finetune.task_spec` |
# | §3.1.1 Baseline model | sizes of the model configuration | 04 | `t5edu.config.T5Config` |
# | §3.1.2 Training | teacher forcing, AdaFactor, inverse square root schedule | 07 | `t5edu.train.make_optimizer`, `t5edu.train.make_scheduler`, `t5edu.train.train` |
# | §3.1.4 / §3.3 Unsupervised objectives | span corruption: 15% noise, mean span length 3 | 06 | `t5edu.span_corruption.span_corruption` |
# | §3.1.3, Table 1 | pre-training, then fine-tuning, against no pre-training | 09 | `t5edu.pretrain.load_or_pretrain`, `t5edu.pretrain.fine_tune_steps` |
# | §3.5 Training strategy | fine-tuning; multi-task mixtures | 09 | `t5edu.finetune.fine_tune`, `t5edu.finetune.balanced_mixture` |
# | §3.6 Scaling, §3.7 Putting it all together | model sizes (small … 11B); greedy decoding, beam search | 05, 08 | `t5edu.model.T5`, `t5edu.generate.generate` |
#
# Each chapter is a notebook in `chapters/`. The code that matters is **mirrored** into the
# package: once you have finished Chapter 02, `from t5edu.attention import ...` gives you the same
# code you just read, and Chapter 04 imports it instead of copying it. If you read the package
# first, every function says which section of which notebook explains it.

# %% [markdown]
# ## 0.4 Exercises
#
# Each chapter has an exercise notebook in `exercises/` ([the list, with kinds, difficulty and
# minutes](../exercises/README.md)). You write a function where the notebook says
# `raise NotImplementedError`, or predict an output, fix a bug, measure an experiment or write a short
# answer, then run the check cell below it:
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
# - Pre-training is text to text too: span corruption turns plain text into an input with sentinels
#   and a target that lists the dropped spans.
#
# **What is in the package**: nothing yet — every later chapter adds a module; the table of §0.3
# says which.
#
# **Next:** Chapter 01 turns text into the integer ids T5 reads — the tokenizer.
#
# ## Further reading
#
# - Raffel et al. (2020), *Exploring the Limits of Transfer Learning with a Unified Text-to-Text
#   Transformer*, JMLR 21(140): https://arxiv.org/abs/1910.10683
# - Vaswani et al. (2017), *Attention Is All You Need*: https://arxiv.org/abs/1706.03762
# - Google's T5 blog post, *Exploring Transfer Learning with T5*:
#   https://ai.googleblog.com/2020/02/exploring-transfer-learning-with-t5.html
# - Alammar, *The Illustrated Transformer*: https://jalammar.github.io/illustrated-transformer/
#
# ---
#
# Next: [Chapter 01 — The tokenizer](01_tokenizer.ipynb) ·
# [Exercises for this chapter](../exercises/ch00_text_to_text.ipynb) · [All exercises](../exercises/README.md)
