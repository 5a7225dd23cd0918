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
# # Exercises for Chapter 04 — The encoder
#
# Short exercises, from warm-ups to a measurement. In each, replace the `raise NotImplementedError(...)` line with your code,
# run the cell, then run the check cell below it: it prints one line, ✅ or ❌ with what went wrong.
# Chapter 04 (`chapters/04_encoder.ipynb`) has everything you need.
#
# **Read first:** [Chapter 04 — The encoder](../chapters/04_encoder.ipynb). These exercises use its sections: *4.1 The configuration*; *4.2 RMS layer norm*; *4.3 The feed-forward network*; *4.4 Pre-norm residual sub-layers*; *4.5 The encoder stack*.

# %%
from t5edu.classroom.checks import ch04

# %%
import torch
import torch.nn.functional as F

# %% [markdown]
# ## Exercise 4.1 — RMS norm
#
# Write T5's layer norm as a function: divide each vector (last axis) by its root mean square
# (with `eps` added to the mean of squares, inside the square root), then multiply by `weight`.

# %%
def rms_norm(x, weight, eps=1e-6):
    """weight * x / sqrt(mean(x², last axis) + eps)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch04.exercise_1(rms_norm)

# %% [markdown]
# ## Exercise 4.2 — Gated-GELU feed-forward
#
# The T5 v1.1 feed-forward network with explicit weight matrices in `nn.Linear`'s convention
# (`(out_features, in_features)`, so a layer computes `x @ w.T`): `wi_0` and `wi_1` are `(d_ff, d_model)`,
# `wo` is `(d_model, d_ff)`. No dropout here.

# %%
def gated_ffn(x, wi_0, wi_1, wo):
    """T5 v1.1 FFN: wo(gelu_tanh(wi_0 x) * wi_1 x)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch04.exercise_2(gated_ffn)

# %% [markdown]
# ## Exercise 4.3 — Counting encoder parameters
#
# Given a `T5Config`, return the number of parameters of the encoder **without** the token
# embedding: per block, self-attention (`q`, `k`, `v`: `d_model × H·d_kv` each, `o` the reverse),
# two layer-norm weight vectors, the feed-forward network (`wi`, `wo` — or `wi_0`, `wi_1`, `wo` when
# `config.is_gated_act`); plus the relative-bias table (where?) and the final layer norm.
# Use arithmetic, not a model.

# %%
def encoder_param_count(config):
    """Parameters of a T5 encoder, token embedding excluded."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch04.exercise_3(encoder_param_count)

# %% [markdown]
# ## Exercise 4.4 — Predict: the parameters of one norm
#
# How many parameters does `T5LayerNorm(512)` (Chapter 04, the section on RMS layer norm) hold? Return
# the number without building it.

# %%
def predicted_norm_parameters():
    """The number of parameters of T5LayerNorm(512)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch04.exercise_4(predicted_norm_parameters)

# %% [markdown]
# ## Exercise 4.5 — Predict: the parameters of a gated feed-forward
#
# With `d_model = 8`, `d_ff = 32` and `feed_forward_proj="gated-gelu"` (Chapter 04, the section on the
# feed-forward network), how many parameters does one feed-forward sub-layer's `DenseReluDense` hold?

# %%
def predicted_gated_ffn_parameters():
    """Parameters of T5's gated feed-forward with d_model=8, d_ff=32."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch04.exercise_5(predicted_gated_ffn_parameters)

# %% [markdown]
# ## Exercise 4.6 — Debug: where the norm goes
#
# Chapter 04's section on pre-norm residual sub-layers puts the norm *before* the sub-layer. This
# version is what many write from memory of the original Transformer:

# %%
def sublayer_broken(x, norm, f):
    return norm(x + f(x))


# %% [markdown]
# Write the fixed `pre_norm_sublayer(x, norm, f)`: T5's residual sub-layer (dropout left out), where
# `norm` and `f` are callables (a norm module and, say, an attention or feed-forward function).

# %%
def pre_norm_sublayer(x, norm, f):
    """T5's pre-norm residual sub-layer, without dropout."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch04.exercise_6(pre_norm_sublayer)

# %% [markdown]
# ## Exercise 4.7 — Explain: why pre-norm?
#
# In two to four sentences: what does putting the norm before each sub-layer (and one final norm at
# the end of the stack) change compared with the post-norm of the original Transformer, and why does it
# make a deep stack easier to train? Refer to Chapter 04, the section on pre-norm residual sub-layers.

# %% [markdown]
# *Your answer here.*

# %% [markdown]
# ## Exercise 4.8 — Predict: RMS norm by hand
#
# `T5LayerNorm(2)` starts with a scale of ones (Chapter 04, the section on RMS layer norm). What does it
# return for the input `[3.0, 4.0]`? Work it out by hand (the epsilon is negligible) and return the two
# numbers, three decimals are enough.

# %%
def predicted_rms_output():
    """T5LayerNorm(2) applied to [3.0, 4.0], by hand."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch04.exercise_8(predicted_rms_output)
