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
# # Exercises for Chapter 09 — Pre-training, then fine-tuning
#
# Exercises on the steps of the blog's recipe that it got wrong, or that are easy to
# get subtly wrong. In each, replace the `raise NotImplementedError(...)` line with your code, run
# the cell, then run the check cell below it: it prints one line, ✅ or ❌ with what went wrong.
# Chapter 09 (`chapters/09_finetune.ipynb`) has everything you need.
#
# **Read first:** [Chapter 09 — Pre-training, then fine-tuning](../chapters/09_finetune.ipynb). These exercises use its sections: *9.10 Tokenize, truncate, and keep the padding out of the loss*; *9.13 Scoring: ROUGE, BLEU, accuracy*; *9.14 Several tasks at once: prefixes and balanced sampling*.

# %%
from t5edu.classroom.checks import ch09

# %% [markdown]
# ## Exercise 9.1 — Mask padding in labels
#
# The blog tokenized its summaries with `padding=True` and used the padded ids as labels, so every
# `<pad>` (id `pad_id`) counted in the loss. Return a **new** tensor equal to `labels` except that
# every padding position holds `-100`, the index `cross_entropy` ignores. Leave `</s>` (id 1) alone:
# the model must learn to stop. Do not change `labels` itself.

# %%
import re
from collections import Counter


def mask_label_padding(labels, pad_id=0):
    """Padded target ids (batch, length) -> labels with -100 at the padding."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
import torch

padded = torch.tensor([[37, 12, 9, 1], [54, 1, 0, 0]])
print(mask_label_padding(padded))
ch09.exercise_1(mask_label_padding)

# %% [markdown]
# ## Exercise 9.2 — One row, three tasks
#
# Turn one row of a hub dataset into T5's text-to-text pair `(inputs, targets)`, with the task's
# prefix (a colon and one space after it):
#
# | `task` | the row's fields | inputs → targets |
# | --- | --- | --- |
# | `"summarize"` | `article`, `highlights`, `id` | `"summarize: " + article` → `highlights` |
# | `"translate"` | `translation: {"de": ..., "en": ...}` | `"translate English to German: " + en` → `de` |
# | `"classify"` | `sentence`, `label` (0 or 1), `idx` | `"sst2 sentence: " + sentence` → `"negative"` (0) or `"positive"` (1) |
#
# Raise a `ValueError` for any other task.

# %%
def format_example(task, row):
    """(inputs, targets) of one hub row for T5: the task's prefix + the source text, and the target text."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
print(format_example("translate", {"translation": {"de": "Das Haus ist klein.", "en": "The house is small."}}))
ch09.exercise_2(format_example)

# %% [markdown]
# ## Exercise 9.3 — How often to show each task
#
# Training on several tasks at once, the T5 paper (Section 3.5.2) samples task *m* with a rate
# proportional to its number of examples `e_m`, capped at `K` ("examples-proportional mixing"),
# and optionally flattened with a temperature `T`:
#
# $$r_m \propto \min(e_m, K)^{1/T}, \qquad \textstyle\sum_m r_m = 1.$$
#
# `sizes` maps task names to example counts; `cap=None` means no cap; `temperature=1` leaves the
# proportions as they are, and a large temperature makes them nearly equal. Return a dict of rates
# with the same keys, summing to 1.

# %%
def mixing_rates(sizes, cap=None, temperature=1.0):
    """Sampling rate of each task: min(size, cap) ** (1 / temperature), normalised to sum to 1."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
sizes = {"cnn_dailymail": 287_113, "wmt16": 4_548_885, "sst2": 67_349}
print({t: round(r, 3) for t, r in mixing_rates(sizes, cap=2**19, temperature=2.0).items()})
ch09.exercise_3(mixing_rates)

# %% [markdown]
# ## Exercise 9.4 — ROUGE-1 by hand
#
# ROUGE-1 compares the words of a summary with those of a reference. Tokenize both as
# `rouge-score` does: lowercase, replace every run of characters other than `a-z` and `0-9` by a
# space, split on spaces (dropping empty tokens). The overlap counts each word as often as it
# appears in **both** (clipped counts: "the the the" against "the cat" shares one "the"). Then
# precision = overlap / words of the prediction, recall = overlap / words of the reference, and
# return the F1 = 2PR / (P + R), or 0.0 when there is no overlap.

# %%
def rouge1_f1(prediction, reference):
    """Unigram F1 between two texts, with rouge-score's tokenization and clipped counts (no stemming)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
print(round(rouge1_f1("The cat sat on the mat.", "the cat lay on the mat"), 4))  # 5 of 6 words shared: 0.8333
ch09.exercise_4(rouge1_f1)

# %% [markdown]
# ## Exercise 9.5 — Debug: truncation that eats the end
#
# Chapter 09's section on tokenizing and truncating keeps every target within `max_length` tokens,
# EOS included. This version truncates *after* appending EOS:

# %%
def truncate_broken(ids, max_length, eos_id=1):
    return (list(ids) + [eos_id])[:max_length]


print(truncate_broken([5, 6, 7, 8], 3))

# %% [markdown]
# A long target loses its EOS, so the model is trained never to stop on long inputs. Write the fixed
# `truncate_with_eos(ids, max_length, eos_id=1)`: `ids` holds no EOS; keep at most `max_length - 1` of
# them and append EOS, returning a list.

# %%
def truncate_with_eos(ids, max_length, eos_id=1):
    """At most max_length - 1 ids, then EOS: at most max_length ids, always ending with EOS."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch09.exercise_5(truncate_with_eos)

# %% [markdown]
# ## Exercise 9.6 — Predict: a ROUGE-1 score
#
# Prediction `"the cat sat"`, reference `"the cat sat on the mat"`. Before computing anything: what is
# the ROUGE-1 F1 (Chapter 09, the section on scoring; unigram overlap, clipped counts, lower-cased)?
# Return it as a float (three decimals are enough).

# %%
def predicted_rouge1():
    """ROUGE-1 F1 of "the cat sat" against "the cat sat on the mat"."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch09.exercise_6(predicted_rouge1)

# %% [markdown]
# ## Exercise 9.7 — Explain: why cap examples-proportional mixing?
#
# Chapter 09's section on several tasks at once samples tasks in proportion to their sizes, with a cap
# (Exercise 9.3). In two to four sentences: what goes wrong without the cap when one task has a million
# examples and another a thousand, and what goes wrong with equal mixing instead?

# %% [markdown]
# *Your answer here.*
