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
# # Exercises for Chapter 03 — Relative position bias
#
# Short exercises, from warm-ups to a measurement. In each, replace the `raise NotImplementedError(...)` line with your code,
# run the cell, then run the check cell below it: it prints one line, ✅ or ❌ with what went wrong.
# Chapter 03 (`chapters/03_relative_bias.ipynb`) has everything you need.
#
# **Read first:** [Chapter 03 — Relative position bias](../chapters/03_relative_bias.ipynb). These exercises use its sections: *3.1 Attention does not know about order*; *3.2 Relative positions*; *3.3 Buckets*; *3.4 The learned table*; *3.6 What a table can learn*.

# %%
from t5edu.classroom.checks import ch03

# %%
import math

import torch

# %% [markdown]
# ## Exercise 3.1 — Relative positions
#
# Return the `(query_length, key_length)` integer matrix whose entry `[i, j]` is the relative
# position of key `j` seen from query `i`: key position minus query position. Query `i` sits at
# position `offset + i` (when decoding with a cache, earlier positions are already done).

# %%
def relative_position_matrix(query_length, key_length, offset=0):
    """[i, j] = j - (offset + i), as a (query_length, key_length) long tensor."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch03.exercise_1(relative_position_matrix)

# %% [markdown]
# ## Exercise 3.2 — The bucket function
#
# Write T5's bucket function yourself (without calling `t5edu.relative_bias`). For `bidirectional`,
# half the buckets go to keys on the right (relative position > 0), half to the left and the query
# itself; otherwise only the past counts and the future maps to distance 0. In each half of `n`
# buckets, distances below `n // 2` are exact; larger ones get
# `n // 2 + floor(log(d / (n // 2)) / log(max_distance / (n // 2)) * (n - n // 2))`, capped at `n - 1`.
# Compute the log in float32 (`torch.log` of a float tensor), as the reference does, and use
# `.long()` (which truncates) for the floor.

# %%
def bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """T5's relative-position bucket of every entry of the integer tensor `relative_position`."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch03.exercise_2(bucket)

# %% [markdown]
# ## Exercise 3.3 — From table to bias
#
# `table` is the learned `(num_buckets, num_heads)` table, `buckets` a `(L_q, L_k)` matrix of bucket
# ids. Return the bias ready to add to the attention scores: shape `(1, num_heads, L_q, L_k)`, with
# `bias[0, h, i, j] = table[buckets[i, j], h]`.

# %%
def bias_from_table(table, buckets):
    """(num_buckets, H) table and (L_q, L_k) bucket ids -> (1, H, L_q, L_k) bias."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch03.exercise_3(bias_from_table)

# %% [markdown]
# ## Exercise 3.4 — Predict: one step left, one step right
#
# With T5's defaults for the encoder (bidirectional, 32 buckets, max distance 128; Chapter 03, the
# section on buckets), which bucket does the key one position to the *left* of the query fall in
# (relative position -1), and which the key one to the *right* (+1)? Return the pair
# `(bucket_of_minus_1, bucket_of_plus_1)` without running the bucket function.

# %%
def predicted_neighbour_buckets():
    """(bucket of relative position -1, bucket of +1) for bidirectional, 32 buckets, max distance 128."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch03.exercise_4(predicted_neighbour_buckets)

# %% [markdown]
# ## Exercise 3.5 — Predict: the buckets of a short decoder
#
# A decoder self-attends causally over 20 positions, so the relative positions are 0, -1, …, -19; the
# decoder's buckets are unidirectional (32 buckets, max distance 128). How many *different* buckets
# appear in its `(20, 20)` bucket matrix (the future positions, masked anyway, also map somewhere)?
# Work it out with the formula from Chapter 03 before checking.

# %%
def predicted_decoder_buckets():
    """How many distinct buckets a causal 20-position decoder uses (unidirectional, 32, 128)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch03.exercise_5(predicted_decoder_buckets)

# %% [markdown]
# ## Exercise 3.6 — Debug: the bias of one decoding step
#
# When decoding with a cache (Chapter 03, the section on relative positions, and Chapter 08), the
# decoder runs one query at a time: at step `step` the query sits at position `step` and sees keys
# `0 … step`. This version of the bias for that one query is wrong:

# %%
from t5edu.relative_bias import RelativePositionBias


def step_bias_broken(rel_bias, step):
    return rel_bias(1, step + 1)


# %% [markdown]
# Find the bug (compare with the rows of `rel_bias(L, L)`) and write the fixed `step_bias(rel_bias,
# step)`, returning the `(1, H, 1, step + 1)` bias of that query. `rel_bias` is a
# `t5edu.relative_bias.RelativePositionBias`.

# %%
def step_bias(rel_bias, step):
    """The (1, H, 1, step + 1) relative bias of the query at position `step` against keys 0..step."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch03.exercise_6(step_bias)

# %% [markdown]
# ## Exercise 3.7 — Experiment: attention without positions
#
# Chapter 03 opens with the claim that attention does not know about order. Test it. Build
# `attn = T5Attention(16, 2, 8)` after `torch.manual_seed(0)`, a bidirectional
# `RelativePositionBias(2, num_buckets=8, max_distance=16)` whose table you fill with
# `torch.randn(8, 2, generator=torch.Generator().manual_seed(1))`, and
# `x = torch.randn(1, 6, 16, generator=torch.Generator().manual_seed(2))`. Reverse the order of the 6
# positions (`perm = torch.arange(5, -1, -1)`): return the largest absolute difference between
# `attn(x[:, perm], bias=b)` and `attn(x, bias=b)[:, perm]`, with `b` the relative bias if `use_bias`,
# else `None`, as a float.

# %%
def permutation_gap(use_bias):
    """max |attn(x reversed) - attn(x) reversed| with or without the relative bias."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
print(f"without the bias below 1e-6: {permutation_gap(False) < 1e-6}; with it: {permutation_gap(True):.2f}")
ch03.exercise_7(permutation_gap)

# %% [markdown]
# ## Exercise 3.8 — Explain: why logarithmic buckets?
#
# Chapter 03, the section on buckets, gives nearby positions their own bucket and lets far-away ones
# share buckets whose width grows logarithmically. In three to four sentences: why is that a good
# trade, and what does it mean for a sequence longer than any seen in training?

# %% [markdown]
# *Your answer here.*
