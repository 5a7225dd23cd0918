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
#| default_exp classroom.solutions.ch04
from t5edu.classroom.checks import ch04

# %%
#| export
import torch
import torch.nn.functional as F

# %% [markdown]
# ## Exercise 4.1 — RMS norm
#
# Write T5's layer norm as a function: divide each vector (last axis) by its root mean square
# (with `eps` added to the mean of squares, inside the square root), then multiply by `weight`.

# %%
#| export
def rms_norm(x, weight, eps=1e-6):
    """weight * x / sqrt(mean(x², last axis) + eps)."""
    ### BEGIN SOLUTION
    return weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    ### END SOLUTION


# %%
ch04.exercise_1(rms_norm)

# %% [markdown]
# ## Exercise 4.2 — Gated-GELU feed-forward
#
# The T5 v1.1 feed-forward network with explicit weight matrices in `nn.Linear`'s convention
# (`(out_features, in_features)`, so a layer computes `x @ w.T`): `wi_0` and `wi_1` are `(d_ff, d_model)`,
# `wo` is `(d_model, d_ff)`. No dropout here.

# %%
#| export
def gated_ffn(x, wi_0, wi_1, wo):
    """T5 v1.1 FFN: wo(gelu_tanh(wi_0 x) * wi_1 x)."""
    ### BEGIN SOLUTION
    return (F.gelu(x @ wi_0.T, approximate="tanh") * (x @ wi_1.T)) @ wo.T
    ### END SOLUTION


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
#| export
def encoder_param_count(config):
    """Parameters of a T5 encoder, token embedding excluded."""
    ### BEGIN SOLUTION
    inner = config.num_heads * config.d_kv
    attention = 4 * config.d_model * inner
    ffn = (3 if config.is_gated_act else 2) * config.d_model * config.d_ff
    block = attention + ffn + 2 * config.d_model
    table = config.relative_attention_num_buckets * config.num_heads  # first block only
    return config.num_layers * block + table + config.d_model
    ### END SOLUTION


# %%
ch04.exercise_3(encoder_param_count)

# %% [markdown]
# ## Exercise 4.4 — Predict: the parameters of one norm
#
# How many parameters does `T5LayerNorm(512)` (Chapter 04, the section on RMS layer norm) hold? Return
# the number without building it.

# %%
#| export
def predicted_norm_parameters():
    """The number of parameters of T5LayerNorm(512)."""
    ### BEGIN SOLUTION
    return 512
    ### END SOLUTION


# %%
ch04.exercise_4(predicted_norm_parameters)

# %% [markdown]
# ## Exercise 4.5 — Predict: the parameters of a gated feed-forward
#
# With `d_model = 8`, `d_ff = 32` and `feed_forward_proj="gated-gelu"` (Chapter 04, the section on the
# feed-forward network), how many parameters does one feed-forward sub-layer's `DenseReluDense` hold?

# %%
#| export
def predicted_gated_ffn_parameters():
    """Parameters of T5's gated feed-forward with d_model=8, d_ff=32."""
    ### BEGIN SOLUTION
    return 3 * 8 * 32
    ### END SOLUTION


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
#| export
def pre_norm_sublayer(x, norm, f):
    """T5's pre-norm residual sub-layer, without dropout."""
    ### BEGIN SOLUTION
    return x + f(norm(x))
    ### END SOLUTION


# %%
ch04.exercise_6(pre_norm_sublayer)

# %% [markdown]
# ## Exercise 4.7 — Explain: why pre-norm?
#
# In two to four sentences: what does putting the norm before each sub-layer (and one final norm at
# the end of the stack) change compared with the post-norm of the original Transformer, and why does it
# make a deep stack easier to train? Refer to Chapter 04, the section on pre-norm residual sub-layers.

# %% [markdown]
# ### BEGIN SOLUTION
# *Model answer.* With pre-norm the residual path `x + f(norm(x))` is an identity from the input to the
# output of the stack: nothing rescales it, so the gradient reaches early layers undiminished and every
# sub-layer only adds a correction. Post-norm puts a norm on the residual path itself after every
# sub-layer, which is why deep post-norm models need learning-rate warm-up and careful initialisation.
# Because the residual stream is never normalised inside the stack, it can grow; the final layer norm
# rescales it once before the output.
#
# **Rubric (2 points).** 1 point: the identity residual path (gradient flows directly; sub-layers add to
# the stream). 1 point: the final norm is needed because the stream itself is not normalised (or:
# post-norm needs warm-up/is unstable when deep).
# ### END SOLUTION

# %% [markdown]
# ## Exercise 4.8 — Predict: RMS norm by hand
#
# `T5LayerNorm(2)` starts with a scale of ones (Chapter 04, the section on RMS layer norm). What does it
# return for the input `[3.0, 4.0]`? Work it out by hand (the epsilon is negligible) and return the two
# numbers, three decimals are enough.

# %%
#| export
def predicted_rms_output():
    """T5LayerNorm(2) applied to [3.0, 4.0], by hand."""
    ### BEGIN SOLUTION
    return (0.849, 1.131)
    ### END SOLUTION


# %%
ch04.exercise_8(predicted_rms_output)
