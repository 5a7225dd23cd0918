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
# # Exercises for Chapter 05 — The decoder and the full model
#
# Three short exercises. In each, replace the `raise NotImplementedError(...)` line with your code,
# run the cell, then run the check cell below it: it prints one line, ✅ or ❌ with what went wrong.
# Chapter 05 (`chapters/05_decoder.ipynb`) has everything you need.
#
# **Read first:** [Chapter 05 — The decoder and the full model](../chapters/05_decoder.ipynb). These exercises use its sections: *5.3 The full model*; *5.4 Parameter counts*.

# %%
#| default_exp classroom.solutions.ch05
from t5edu.classroom.checks import ch05

# %%
#| export
import torch

# %% [markdown]
# ## Exercise 5.1 — Shift right
#
# Build the decoder input from `labels` (shape `(batch, L)`): put `decoder_start_token_id` first,
# then the labels without the last one; any `-100` (an ignored label) becomes `pad_token_id`.
# Do not modify `labels` in place.

# %%
#| export
def shift_labels_right(labels, decoder_start_token_id=0, pad_token_id=0):
    """[start, labels[:-1]] with -100 replaced by the pad id."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch05.exercise_1(shift_labels_right)

# %% [markdown]
# ## Exercise 5.2 — Loss with ignored positions
#
# `logits` has shape `(batch, L, vocab)`, `labels` `(batch, L)` with `-100` at positions to ignore
# (padding). Return the mean cross-entropy over the positions that have a real label — a 0-d
# tensor. Try it without `ignore_index` first: `torch.log_softmax` and a mask.

# %%
#| export
def seq2seq_loss(logits, labels):
    """Mean of -log p(label) over the positions whose label is not -100."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch05.exercise_2(seq2seq_loss)

# %% [markdown]
# ## Exercise 5.3 — The tied output head
#
# In the original T5 the output head *is* the embedding matrix (`(vocab, d_model)`). Given the
# decoder's output `hidden` `(batch, L, d_model)`, return the logits `(batch, L, vocab)` exactly as
# T5 computes them — including the scaling of Section 5.3.

# %%
#| export
def tied_logits(hidden, embedding):
    """Logits of T5's tied head: (hidden * d_model ** -0.5) @ embeddingᵀ."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch05.exercise_3(tied_logits)
