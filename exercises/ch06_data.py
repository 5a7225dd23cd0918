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
# # Exercises for Chapter 06 — Text-to-text data
#
# Exercises on the data side of T5: writing a real task as text, and the three steps of
# span corruption. In each, replace the `raise NotImplementedError(...)` line with your code, run
# the cell, then run the check cell below it: it prints one line, ✅ or ❌ with what went wrong.
# Chapter 06 (`chapters/06_data.ipynb`) has everything you need.
#
# **Read first:** [Chapter 06 — Text-to-text data](../chapters/06_data.ipynb). These exercises use its sections: *6.1 Examples are rows of a `datasets.Dataset`*; *6.2 A synthetic task mixture*; *6.6 Span corruption: how many raw tokens make one example?*; *6.7 The noise mask*; *6.8 Sentinels, inputs and targets*.

# %%
from t5edu.classroom.checks import ch06

# %% [markdown]
# ## Exercise 6.1 — SST-2 as text to text
#
# A row of GLUE's SST-2 is a dict `{"idx": 3, "sentence": "a warm , funny film ", "label": 1}`.
# Return the pair `(inputs, targets)` T5 trains on: the input is `"sst2 sentence: "` followed by the
# sentence with surrounding spaces removed, the target is the word `"negative"` for label 0 and
# `"positive"` for label 1.

# %%
import numpy as np


def sst2_to_text(row):
    """(inputs, targets) of one SST-2 row, in T5's format."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
print(sst2_to_text({"idx": 0, "sentence": "a warm , funny film ", "label": 1}))
ch06.exercise_1(sst2_to_text)

# %% [markdown]
# ## Exercise 6.2 — Random segment lengths
#
# Span corruption cuts `num_items` noise tokens into `num_segments` spans. Return the lengths of a
# random split: `num_segments` integers, each **at least 1**, that add up to `num_items`, with
# **every such split equally likely**. Use the `numpy.random.Generator` `rng` for randomness.
#
# Hint: there are `num_items - 1` gaps between the items; choose `num_segments - 1` of them, without
# replacement, as the places where a new segment starts (`rng.choice(..., replace=False)` or
# `rng.permutation`). Then the lengths are the differences between consecutive starts.

# %%
def segment_lengths(num_items, num_segments, rng):
    """Lengths of a uniformly random split of `num_items` items into `num_segments` non-empty segments."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
print(segment_lengths(10, 3, np.random.default_rng(0)))
ch06.exercise_2(segment_lengths)

# %% [markdown]
# ## Exercise 6.3 — Sentinels for noise spans
#
# Given token ids and a boolean noise mask of the same length, replace the **first** token of each
# run of noise tokens by a sentinel and drop the rest of the run. The first run gets
# `first_sentinel_id` (that is `<extra_id_0>`), the second `first_sentinel_id - 1`
# (`<extra_id_1>`), and so on. Return a list of ints.
#
# Example, with `first_sentinel_id = 999`:
# `tokens = [10, 11, 12, 13, 14, 15]`, `mask = [T, T, F, F, T, F]` gives `[999, 12, 13, 998, 15]`.

# %%
def replace_noise_spans(tokens, noise_mask, first_sentinel_id):
    """`tokens` with each run of noise replaced by one sentinel, counting down from `first_sentinel_id`."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
print(replace_noise_spans([10, 11, 12, 13, 14, 15], [True, True, False, False, True, False], 999))
ch06.exercise_3(replace_noise_spans)

# %% [markdown]
# ## Exercise 6.4 — How many raw tokens for one example?
#
# For `n` raw tokens, span corruption makes `k = round(n * noise_density)` noise tokens in
# `s = round(k / mean_noise_span_length)` spans. The input then has `n - k + s + 1` ids (kept
# tokens, one sentinel per span, EOS) and the target `k + s + 1` (the noise tokens, one sentinel per
# span, EOS). Return `(n, target_length)` for the **largest** `n` whose input length is at most
# `inputs_length`. (Use Python's `round`. You may ignore T5's special case for density 0.5.)
# T5's numbers: 512 → `(568, 114)`.

# %%
def span_corruption_lengths(inputs_length, noise_density=0.15, mean_noise_span_length=3.0):
    """(raw tokens per example, target length) so that span corruption gives `inputs_length` input ids."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
print(span_corruption_lengths(512))
ch06.exercise_4(span_corruption_lengths)

# %% [markdown]
# ## Exercise 6.5 — Predict: noise tokens and spans
#
# `t5edu.data.random_spans_noise_mask(100)` (Chapter 06, the section on the noise mask) uses T5's
# defaults: noise density 0.15, mean noise span length 3. Whatever the random seed, how many tokens are
# noise, and in how many spans? Return `(noise_tokens, noise_spans)`.

# %%
def predicted_noise_counts():
    """(noise tokens, noise spans) of random_spans_noise_mask(100) with the defaults."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch06.exercise_5(predicted_noise_counts)

# %% [markdown]
# ## Exercise 6.6 — Debug: a test split that moves
#
# Chapter 06's synthetic mixture puts an input in the test split by a fixed hash of its text, so that
# train and test never share an input, whatever the seeds. Here is a version that looks the same:

# %%
def is_heldout_broken(inputs):
    return hash(inputs) % 10 == 0


# %% [markdown]
# Run it in two fresh Python processes and the split changes: Python salts `hash()` of strings per
# process (`PYTHONHASHSEED`). Write the fixed `is_heldout_fixed(inputs)`: one input in ten, chosen by
# `zlib.crc32` of the UTF-8 bytes, modulo 10, equal to 0 — the same in every process.

# %%
def is_heldout_fixed(inputs):
    """True for the test split: crc32 of the UTF-8 text, modulo 10, is 0 (stable across processes)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch06.exercise_6(is_heldout_fixed)

# %% [markdown]
# ## Exercise 6.7 — Experiment: how much shorter are the targets?
#
# Span corruption makes targets much shorter than inputs, which is part of why it is cheap (Chapter 06,
# the section on how many raw tokens make one example). Measure it with
# `t5edu.data.compute_input_and_target_lengths(inputs_length, noise_density)`: return the list of
# `target_length / inputs_length` ratios (floats) for noise densities 0.05, 0.15, 0.3 and 0.5, with
# `inputs_length=512`.

# %%
def target_ratios(inputs_length=512):
    """target_length / inputs_length for noise densities 0.05, 0.15, 0.3, 0.5."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
print([round(r, 3) for r in target_ratios()])
ch06.exercise_7(target_ratios)

# %% [markdown]
# ## Exercise 6.8 — Explain: why predict only the spans?
#
# BERT-style denoising predicts every token of the corrupted text; T5's span corruption predicts only
# the dropped spans, each after its sentinel. In two to four sentences, using your measurement in
# Exercise 6.7: what does this save, and why are spans (rather than single tokens) a better thing to
# drop?

# %% [markdown]
# *Your answer here.*
