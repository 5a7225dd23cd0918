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
# Three short exercises. In each, replace the `raise NotImplementedError(...)` line with your code,
# run the cell, then run the check cell below it: it prints one line, ✅ or ❌ with what went wrong.
# Chapter 03 (`chapters/03_relative_bias.ipynb`) has everything you need.
#
# **Read first:** [Chapter 03 — Relative position bias](../chapters/03_relative_bias.ipynb). These exercises use its sections: *3.2 Relative positions*; *3.3 Buckets*; *3.4 The learned table*.

# %%
#| default_exp classroom.solutions.ch03
from t5edu.classroom.checks import ch03

# %%
#| export
import math

import torch

# %% [markdown]
# ## Exercise 3.1 — Relative positions
#
# Return the `(query_length, key_length)` integer matrix whose entry `[i, j]` is the relative
# position of key `j` seen from query `i`: key position minus query position. Query `i` sits at
# position `offset + i` (when decoding with a cache, earlier positions are already done).

# %%
#| export
def relative_position_matrix(query_length, key_length, offset=0):
    """[i, j] = j - (offset + i), as a (query_length, key_length) long tensor."""
    ### BEGIN SOLUTION
    return torch.arange(key_length)[None, :] - (torch.arange(query_length)[:, None] + offset)
    ### END SOLUTION


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
#| export
def bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """T5's relative-position bucket of every entry of the integer tensor `relative_position`."""
    ### BEGIN SOLUTION
    result = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        result += (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)
    exact = num_buckets // 2
    log_ratio = torch.log(distance.clamp(min=exact).float() / exact) / math.log(max_distance / exact)
    large = (exact + (log_ratio * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return result + torch.where(distance < exact, distance, large)
    ### END SOLUTION


# %%
ch03.exercise_2(bucket)

# %% [markdown]
# ## Exercise 3.3 — From table to bias
#
# `table` is the learned `(num_buckets, num_heads)` table, `buckets` a `(L_q, L_k)` matrix of bucket
# ids. Return the bias ready to add to the attention scores: shape `(1, num_heads, L_q, L_k)`, with
# `bias[0, h, i, j] = table[buckets[i, j], h]`.

# %%
#| export
def bias_from_table(table, buckets):
    """(num_buckets, H) table and (L_q, L_k) bucket ids -> (1, H, L_q, L_k) bias."""
    ### BEGIN SOLUTION
    return table[buckets].permute(2, 0, 1).unsqueeze(0)
    ### END SOLUTION


# %%
ch03.exercise_3(bias_from_table)
