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
# # Exercises for Chapter 02 — Attention
#
# Three short exercises. In each, replace the `raise NotImplementedError(...)` line with your code,
# run the cell, then run the check cell below it: it prints one line, ✅ or ❌ with what went wrong.
# Chapter 02 (`chapters/02_attention.ipynb`) has everything you need.
#
# **Read first:** [Chapter 02 — Attention](../chapters/02_attention.ipynb). These exercises use its sections: *2.1 Attention from the math*; *2.2 Masks are biases*; *2.3 Several heads*; *2.4 Why T5 does not divide by √d*.

# %%
#| default_exp classroom.solutions.ch02
from t5edu.classroom.checks import ch02

# %%
#| export
import torch

# %% [markdown]
# ## Exercise 2.1 — Causal mask as a bias
#
# Return the additive causal bias for a sequence of `length` positions: a float32 tensor of shape
# `(length, length)` that is `0.0` where query `i` may attend to key `j` (that is, `j <= i`) and the
# most negative float32, `torch.finfo(torch.float32).min`, everywhere else. (Not `-inf`: a row that is
# entirely masked must not turn into `NaN`.)

# %%
#| export
def causal_bias(length):
    """(length, length) float32: 0 on and below the diagonal, finfo(float32).min above it."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch02.exercise_1(causal_bias)

# %% [markdown]
# ## Exercise 2.2 — Attention weights
#
# `q` has shape `(..., L_q, d)` and `k` has shape `(..., L_k, d)`. Return T5's attention weights,
# shape `(..., L_q, L_k)`: the softmax over the keys of the dot products plus the optional additive
# `bias` (broadcastable to the scores). Remember what T5 does *not* do to the scores.

# %%
#| export
def attention_weights(q, k, bias=None):
    """softmax(q kᵀ + bias) over the last axis, without 1/sqrt(d) scaling."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch02.exercise_2(attention_weights)

# %% [markdown]
# ## Exercise 2.3 — Merging heads
#
# After attention, the heads are put side by side again: `(batch, H, L, d_kv)` → `(batch, L, H·d_kv)`,
# head 0's features first, then head 1's, and so on — the inverse of `split_heads`.

# %%
#| export
def heads_to_features(x):
    """(batch, H, L, d_kv) -> (batch, L, H * d_kv)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch02.exercise_3(heads_to_features)
