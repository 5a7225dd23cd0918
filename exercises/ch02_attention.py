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
# Short exercises, from warm-ups to a measurement. In each, replace the `raise NotImplementedError(...)` line with your code,
# run the cell, then run the check cell below it: it prints one line, ✅ or ❌ with what went wrong.
# Chapter 02 (`chapters/02_attention.ipynb`) has everything you need.
#
# **Read first:** [Chapter 02 — Attention](../chapters/02_attention.ipynb). These exercises use its sections: *2.1 Attention from the math*; *2.2 Masks are biases*; *2.3 Several heads*; *2.4 Why T5 does not divide by √d*.

# %%
from t5edu.classroom.checks import ch02

# %%
import torch

# %% [markdown]
# ## Exercise 2.1 — Causal mask as a bias
#
# Return the additive causal bias for a sequence of `length` positions: a float32 tensor of shape
# `(length, length)` that is `0.0` where query `i` may attend to key `j` (that is, `j <= i`) and the
# most negative float32, `torch.finfo(torch.float32).min`, everywhere else. (Not `-inf`: a row that is
# entirely masked must not turn into `NaN`.)

# %%
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
def heads_to_features(x):
    """(batch, H, L, d_kv) -> (batch, L, H * d_kv)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch02.exercise_3(heads_to_features)

# %% [markdown]
# ## Exercise 2.4 — Predict: the shape of the scores
#
# Before running anything: in the snippet below (Chapter 02, the section on several heads), what is the
# shape of `scores`? Return it as a tuple of ints.
#
# ```python
# from t5edu.attention import split_heads
# x = torch.randn(2, 5, 512)        # decoder states: batch 2, 5 positions
# memory = torch.randn(2, 7, 512)   # encoder output: 7 positions
# q, k = split_heads(x, 8), split_heads(memory, 8)
# scores = q @ k.transpose(-1, -2)
# ```

# %%
def predicted_scores_shape():
    """The shape of `scores` in the snippet above."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch02.exercise_4(predicted_scores_shape)

# %% [markdown]
# ## Exercise 2.5 — Predict: how many pairs may attend?
#
# A decoder of length 6 uses the causal mask of Chapter 02, the section on masks
# (`t5edu.attention.causal_mask(6)`). How many (query, key) pairs are allowed? Return the number.

# %%
def predicted_allowed_pairs():
    """How many entries of causal_mask(6) are True."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch02.exercise_5(predicted_allowed_pairs)

# %% [markdown]
# ## Exercise 2.6 — Debug: the padding bias
#
# Somebody wrote the padding bias of Chapter 02's section on masks like this (the mask holds 1 for a
# token, 0 for padding):

# %%
def padding_bias_broken(attention_mask):
    return attention_mask * torch.finfo(torch.float32).min


print(padding_bias_broken(torch.tensor([[1, 1, 0]])))

# %% [markdown]
# It has two bugs: look at which positions get the large negative number, and at the shape — the bias
# is added to scores of shape `(batch, heads, L_q, L_k)`. Write the fixed `padding_bias_fixed(attention_mask)`
# returning a float32 `(batch, 1, 1, L_k)` bias: 0 for tokens, `torch.finfo(torch.float32).min` for
# padding. (Do not call the library's `padding_bias` or `mask_to_bias`.)

# %%
def padding_bias_fixed(attention_mask):
    """(batch, L_k) 1/0 mask -> (batch, 1, 1, L_k) float32 additive bias, min-float on padding."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch02.exercise_6(padding_bias_fixed)

# %% [markdown]
# ## Exercise 2.7 — Experiment: what 1/√d does to the weights
#
# Chapter 02 explains why T5 does *not* divide the scores by √d. Measure what the division would do.
# Draw `q` and `k` of shape `(16, d)` with `g = torch.Generator().manual_seed(0)`,
# `q = torch.randn(16, d, generator=g)`, then `k = torch.randn(16, d, generator=g)`; compute the
# softmax weights of `q @ k.T` (divided by `sqrt(d)` when `scale` is true) and return the mean, over
# the 16 queries, of the entropy of each row, in nats (`-(w * w.log()).sum(-1)`), as a float.

# %%
def attention_entropy(d, scale):
    """Mean entropy (nats) of softmax(q kᵀ [/ sqrt(d)]) for seeded random q, k of shape (16, d)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
print(f"d=64 unscaled {attention_entropy(64, False):.3f} nats, scaled {attention_entropy(64, True):.3f} nats, "
      f"uniform would be {torch.log(torch.tensor(16.0)):.3f}")
ch02.exercise_7(attention_entropy)

# %% [markdown]
# ## Exercise 2.8 — Explain: where did the √d go?
#
# Using your measurement in Exercise 2.7 and Chapter 02's section on why T5 does not divide by √d:
# why does unscaled attention not saturate in a trained T5? Two to four sentences.

# %% [markdown]
# *Your answer here.*
