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
# # Exercises for Chapter 08 — Decoding
#
# Four short exercises on the parts of decoding that are easy to get subtly wrong. In each, replace
# the `raise NotImplementedError(...)` line with your code, run the cell, then run the check cell below
# it: it prints one line, ✅ or ❌ with what went wrong. Chapter 08 (`chapters/08_generate.ipynb`) has
# everything you need.
#
# **Read first:** [Chapter 08 — Decoding](../chapters/08_generate.ipynb). These exercises use its sections: *8.3 The key/value cache*; *8.5 Rules on the next token*; *8.6 Sampling*; *8.7 Beam search*.

# %%
#| default_exp classroom.solutions.ch08
from t5edu.classroom.checks import ch08

# %% [markdown]
# ## Exercise 8.1 — Length penalty
#
# A finished beam-search hypothesis is a list of token ids that starts with the decoder start token and
# ends with EOS; `token_logprobs` holds the log-probability of each token **after** the start token
# (so it is one shorter). Return its score as Hugging Face computes it:
# `sum of log-probs / length ** length_penalty`, where `length` counts the generated tokens, EOS
# included, the start token not.

# %%
#| export
import torch


def length_penalised_score(token_ids, token_logprobs, length_penalty=1.0):
    """Hugging Face's score of a finished hypothesis (start token first, EOS last)."""
    ### BEGIN SOLUTION
    length = len(token_ids) - 1
    return sum(token_logprobs) / length ** length_penalty
    ### END SOLUTION


# %%
print(round(length_penalised_score([0, 7, 9, 1], [-0.5, -1.0, -0.25], 2.0), 4))
ch08.exercise_1(length_penalised_score)

# %% [markdown]
# ## Exercise 8.2 — Which tokens does `no_repeat_ngram_size` forbid?
#
# `sequence` is a list of token ids (start token included). With `no_repeat_ngram_size = n`, the next
# token may not complete an n-gram (n consecutive tokens) that already occurs in the sequence. Return the
# sorted list of forbidden next tokens. For `n = 2` and `[0, 5, 7, 5]` the answer is `[7]`: `5 7` occurred
# and the sequence ends in `5`. If the sequence is shorter than `n`, nothing is forbidden; `n = 1`
# forbids every token already present.

# %%
#| export
def banned_next_tokens(sequence, n):
    """Sorted list of the tokens that would repeat an n-gram of `sequence` if generated next."""
    ### BEGIN SOLUTION
    if n <= 0 or len(sequence) < n:
        return []
    suffix = tuple(sequence[len(sequence) - n + 1:])
    banned = {sequence[i + n - 1] for i in range(len(sequence) - n + 1) if tuple(sequence[i:i + n - 1]) == suffix}
    return sorted(banned)
    ### END SOLUTION


# %%
print(banned_next_tokens([0, 5, 7, 5], 2), banned_next_tokens([0, 4, 4, 4], 3))
ch08.exercise_2(banned_next_tokens)

# %% [markdown]
# ## Exercise 8.3 — Nucleus (top-p) filtering
#
# `logits` has shape `(rows, vocab)`. For each row, keep the smallest set of most likely tokens whose
# probabilities (softmax of the row) sum to **at least** `top_p`, and set the other logits to `-inf`.
# Return a new tensor; do not modify `logits`. (Exact ties in probability will not occur in the check.)
# Hint: sort the probabilities in decreasing order; a token is kept if the mass of the tokens *before*
# it is still below `top_p`.

# %%
#| export
def nucleus_filter(logits, top_p):
    """Logits with -inf outside the nucleus: the fewest most-likely tokens carrying >= top_p of the mass."""
    ### BEGIN SOLUTION
    probs, order = torch.sort(logits.softmax(-1), dim=-1, descending=True)
    before = probs.cumsum(-1) - probs
    keep_sorted = before < top_p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))
    ### END SOLUTION


# %%
print(nucleus_filter(torch.tensor([[2.0, 1.0, 0.0, -1.0]]), 0.8))
ch08.exercise_3(nucleus_filter)

# %% [markdown]
# ## Exercise 8.4 — Reordering the cache after a beam-search step
#
# Beam search decodes `batch * num_beams` rows: the beams of input `b` are rows `b * num_beams … b *
# num_beams + num_beams - 1`. After a step, `parents[b, j]` says which beam of input `b` (a number in
# `0 … num_beams - 1`) the new beam `j` continues. The cache is a list with one dict per decoder layer,
# `{"self": {"k": ..., "v": ...}, "cross": {"k": ..., "v": ...}}`, each tensor of shape
# `(batch * num_beams, heads, length, d)`. Reorder the self-attention keys and values of every layer
# **in place** (replace the tensors in the dicts) so that row `b * num_beams + j` holds what its parent's
# row held. Leave the cross-attention entries alone: all beams of an input share them.

# %%
#| export
def reorder_beam_cache(cache, parents):
    """Make the self-attention cache rows follow their parent beams; parents: (batch, num_beams)."""
    ### BEGIN SOLUTION
    batch, num_beams = parents.shape
    rows = (parents + torch.arange(batch, device=parents.device)[:, None] * num_beams).flatten()
    for layer in cache:
        layer["self"]["k"] = layer["self"]["k"].index_select(0, rows)
        layer["self"]["v"] = layer["self"]["v"].index_select(0, rows)
    ### END SOLUTION


# %%
ch08.exercise_4(reorder_beam_cache)
