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
# Short exercises, from warm-ups to a measurement. In each, replace the `raise NotImplementedError(...)` line with your code,
# run the cell, then run the check cell below it: it prints one line, ✅ or ❌ with what went wrong.
# Chapter 05 (`chapters/05_decoder.ipynb`) has everything you need.
#
# **Read first:** [Chapter 05 — The decoder and the full model](../chapters/05_decoder.ipynb). These exercises use its sections: *5.1 Cross-attention*; *5.2 The decoder block and stack*; *5.3 The full model*; *5.4 Parameter counts*.

# %%
from t5edu.classroom.checks import ch05

# %%
import torch
from torch import nn

from t5edu.relative_bias import relative_position_bucket  # Chapter 03, for Exercise 5.9

# %% [markdown]
# ## Exercise 5.1 — Shift right
#
# Build the decoder input from `labels` (shape `(batch, L)`): put `decoder_start_token_id` first,
# then the labels without the last one; any `-100` (an ignored label) becomes `pad_token_id`.
# Do not modify `labels` in place.

# %%
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
def tied_logits(hidden, embedding):
    """Logits of T5's tied head: (hidden * d_model ** -0.5) @ embeddingᵀ."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch05.exercise_3(tied_logits)

# %% [markdown]
# ## Exercise 5.4 — Predict: the shape of the logits
#
# A T5 with `vocab_size=100` gets a batch of 2 inputs of 9 tokens and `labels` of shape `(2, 6)`
# (Chapter 05, the section on the full model). What is the shape of `model(...).logits`?

# %%
def predicted_logits_shape():
    """The shape of the logits for input (2, 9), labels (2, 6), vocab 100."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch05.exercise_4(predicted_logits_shape)

# %% [markdown]
# ## Exercise 5.5 — Predict: how many relative-bias tables?
#
# A T5 with 3 encoder layers and 3 decoder layers: how many relative-position-bias tables
# (`relative_attention_bias` parameters) does it hold? (Chapter 03, the section on one table per stack,
# and Chapter 05, the decoder block and stack.)

# %%
def predicted_bias_tables():
    """How many relative_attention_bias tables a 3 + 3 layer T5 holds."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch05.exercise_5(predicted_bias_tables)

# %% [markdown]
# ## Exercise 5.6 — Experiment: untie the output head
#
# Chapter 05's sections on the full model and on parameter counts tie the output head to the input
# embedding. Measure what untying costs: build `T5(T5Config(vocab_size=vocab_size, d_model=d_model,
# d_kv=8, d_ff=64, num_layers=2, num_heads=4, tie_word_embeddings=tie))` for `tie` True and False and
# return `(parameters_tied, parameters_untied)`, each the total `numel` over `model.parameters()`.

# %%
def tied_untied_parameters(vocab_size, d_model):
    """(parameters with the head tied, parameters untied) of a small T5."""
    from t5edu.model import T5, T5Config

    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
tied, untied = tied_untied_parameters(1000, 32)
print(f"tied {tied:,}, untied {untied:,}, difference {untied - tied:,}")
ch05.exercise_6(tied_untied_parameters)

# %% [markdown]
# ## Exercise 5.7 — Explain: why does cross-attention have no position bias?
#
# The decoder's self-attention gets a relative position bias, its cross-attention does not (Chapter 05,
# the section on cross-attention). In two to four sentences: why would a relative position between a
# decoder position and an encoder position make little sense, and where does the cross-attention get
# position information from?

# %% [markdown]
# *Your answer here.*

# %% [markdown]
# ## Exercise 5.8 — Predict: decoder inputs from padded labels
#
# Chapter 05's full model builds the decoder's inputs from the labels with `t5edu.model.shift_right`.
# For `labels = torch.tensor([[7, 1, -100, -100]])` (start token 0, pad 0), what are the decoder input
# ids? Return them as a list of ints.

# %%
def predicted_decoder_inputs():
    """shift_right(tensor([[7, 1, -100, -100]]))[0] as a list."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch05.exercise_8(predicted_decoder_inputs)

# %% [markdown]
# ## Exercise 5.9 — Capstone: T5 attention from scratch
#
# Everything attention does in T5, in one class of your own, from `nn.Module` (not from the library's
# attention class). Chapter 02 (the `T5Attention` module), Chapter 03 (the learned table) and this
# chapter's sections on cross-attention and on the decoder block and stack have all the pieces.
#
# - `__init__`: four projections `q`, `k`, `v` (`d_model → num_heads · d_kv`) and `o` (back to `d_model`),
#   all `nn.Linear` **without biases**, with exactly these names (Hugging Face's, so that checkpoints
#   load); with `has_relative_attention_bias`, also `relative_attention_bias`, a learned table of shape
#   `(num_buckets, num_heads)` (an `nn.Embedding` fits); without it, no table.
# - `compute_bias(query_length, key_length, offset=0)`: the table's bias `(1, num_heads, query_length,
#   key_length)`, where query `i` sits at position `offset + i`; `bidirectional` (encoder) or not (decoder)
#   chooses the bucketing. You may use `relative_position_bucket` from Chapter 03.
# - `forward(hidden_states, key_value_states=None, mask=None, position_bias=None, cache=None)` returns
#   `(output, position_bias)`: `output` `(batch, L_q, d_model)`; `position_bias` the bias that was added to
#   the scores, so that the next layers can reuse it:
#   - if `position_bias` is given (an earlier layer computed it), use it as it is;
#   - otherwise it is the table's bias (zeros `(1, num_heads, L_q, L_k)` without a table), plus `mask`
#     when given (an additive mask, 0 or a very negative number, broadcastable to `(batch, H, L_q, L_k)`);
#   - scores are `q kᵀ + position_bias`, **not** divided by √d_kv; softmax over the keys in float32;
#   - self-attention (`key_value_states is None`) with a `cache` dict: append the new keys and values to
#     `cache["k"]`, `cache["v"]` (shape `(batch, H, L, d_kv)`) and attend over all of them; the new queries
#     then sit after the cached positions, which the table's bias must know;
#   - cross-attention: keys and values come from `key_value_states`; with a `cache`, compute them on the
#     first call, store them, and reuse them afterwards.
#
# The check loads the library's weights into your class and compares outputs (to 1e-5) for encoder
# self-attention with a padding mask, a layer reusing `position_bias`, decoder self-attention all at once
# and one token at a time with the cache, and cross-attention. `t5edu grade` keeps only what your code
# returns, so the check cell hands your class to a small runner from the checks, which builds it, loads the
# weights, calls `forward` and returns the results: keep that line as it is.

# %%
class T5AttentionFromScratch(nn.Module):
    """Multi-head attention as in T5, written from scratch: q, k, v, o projections without biases, no
    1/sqrt(d) scaling, an optional relative position bias table, and a key/value cache."""

    def __init__(self, d_model, num_heads, d_kv, has_relative_attention_bias=False, bidirectional=True,
                 num_buckets=32, max_distance=128):
        super().__init__()
        raise NotImplementedError("Your turn: replace this line with your solution.")

    def compute_bias(self, query_length, key_length, offset=0):
        """The table's bias, (1, num_heads, query_length, key_length); query i sits at position offset + i."""
        raise NotImplementedError("Your turn: replace this line with your solution.")

    def forward(self, hidden_states, key_value_states=None, mask=None, position_bias=None, cache=None):
        """-> (output (batch, L_q, d_model), position_bias (the bias added to the scores))."""
        raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
run_attention = ch05.attention_runner(T5AttentionFromScratch)
### POINTS: 3
ch05.exercise_9(run_attention)
