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
# Short exercises on the parts of decoding that are easy to get subtly wrong. In each, replace
# the `raise NotImplementedError(...)` line with your code, run the cell, then run the check cell below
# it: it prints one line, ✅ or ❌ with what went wrong. Chapter 08 (`chapters/08_generate.ipynb`) has
# everything you need.
#
# **Read first:** [Chapter 08 — Decoding](../chapters/08_generate.ipynb). These exercises use its sections: *8.2 Greedy decoding, the slow way*; *8.3 The key/value cache*; *8.4 What the cache saves*; *8.5 Rules on the next token*; *8.6 Sampling*; *8.7 Beam search*; *8.10 `generate`*.

# %%
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
import torch


def length_penalised_score(token_ids, token_logprobs, length_penalty=1.0):
    """Hugging Face's score of a finished hypothesis (start token first, EOS last)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


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
def banned_next_tokens(sequence, n):
    """Sorted list of the tokens that would repeat an n-gram of `sequence` if generated next."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


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
def nucleus_filter(logits, top_p):
    """Logits with -inf outside the nucleus: the fewest most-likely tokens carrying >= top_p of the mass."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


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
def reorder_beam_cache(cache, parents):
    """Make the self-attention cache rows follow their parent beams; parents: (batch, num_beams)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch08.exercise_4(reorder_beam_cache)

# %% [markdown]
# ## Exercise 8.5 — Predict: what the cache saves
#
# Greedy decoding of 6 new tokens for one input. Without the key/value cache (Chapter 08, the section
# on greedy decoding the slow way), each step runs the decoder over the whole prefix so far, starting
# with the start token; with the cache (the section on the key/value cache), each step feeds one new
# token. How many token positions go through the decoder's blocks in all, without and with the
# cache? Return `(without_cache, with_cache)`.

# %%
def predicted_decoder_positions():
    """(decoder positions without the cache, with the cache) for 6 greedy steps."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch08.exercise_5(predicted_decoder_positions)

# %% [markdown]
# ## Exercise 8.6 — Debug: after the end of a sequence
#
# In a batch, some rows finish (emit EOS, id 1) before others; from then on they must only receive
# padding (id 0). This step function, which appends the chosen tokens and updates which rows are
# finished, has a bug:

# %%
def append_step_broken(sequences, next_tokens, finished, eos_id=1, pad_id=0):
    sequences = torch.cat([sequences, next_tokens[:, None]], dim=1)
    return sequences, finished | (next_tokens == eos_id)


# %% [markdown]
# Write the fixed `append_step(sequences, next_tokens, finished, eos_id=1, pad_id=0)` returning the new
# `(sequences, finished)`: a row that was already finished gets `pad_id`; a row that emits EOS now keeps
# its EOS and is finished from then on.

# %%
def append_step(sequences, next_tokens, finished, eos_id=1, pad_id=0):
    """Append one step of tokens; finished rows get padding. Returns (sequences, finished)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch08.exercise_6(append_step)

# %% [markdown]
# ## Exercise 8.7 — Experiment: turn off the cache
#
# The cache must change *how much* is computed, never *what*. Measure both. Given a model and
# `input_ids`, run `t5edu.generate.generate(model, input_ids, max_new_tokens=steps,
# min_new_tokens=steps, use_cache=...)` once with the cache and once without; count the
# token positions that go through the decoder in each run (a hook on its first block,
# `model.decoder.block[0].register_forward_pre_hook(...)`, counting `args[0].shape[0] * args[0].shape[1]`
# of its input; remove the hook afterwards). (A hook on `embed_tokens` would also count the encoder's
# positions: the embedding is shared.) Return a dict `{"same_tokens": bool, "positions_with_cache": int,
# "positions_without_cache": int}`.

# %%
def cache_experiment(model, input_ids, steps):
    """Generate with and without the cache; compare the tokens and count decoder positions."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
from t5edu.model import T5, T5Config

_ = torch.manual_seed(0)
tiny = T5(T5Config(vocab_size=50, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0,
                   relative_attention_num_buckets=8, relative_attention_max_distance=16)).eval()
print(cache_experiment(tiny, torch.tensor([[5, 6, 7, 1]]), steps=6))
ch08.exercise_7(cache_experiment)

# %% [markdown]
# ## Exercise 8.8 — Explain: greedy is not the most likely output
#
# Chapter 08's section on beam search says greedy decoding does not find the most likely sequence. In
# two to four sentences, give a small example (two steps, two or three tokens, made-up probabilities)
# where greedy picks a sequence with lower total probability than another, and say what beam search
# with two beams would return on it.

# %% [markdown]
# *Your answer here.*

# %% [markdown]
# ## Exercise 8.9 — Capstone: beam search from scratch
#
# Write beam search yourself, for a T5 `model` and a batch of `input_ids` (pad id 0 after the tokens):
# return the best hypothesis of each input as a `(batch, 1 + longest)` LongTensor that starts with the
# decoder start token, with pad after each hypothesis's EOS — the same tokens as
# `t5edu.generate.generate(model, input_ids, num_beams=num_beams, max_new_tokens=max_new_tokens,
# length_penalty=length_penalty)`, which you must not call. Follow the rules of Chapter 08's section on
# beam search, with `early_stopping=False`:
#
# 1. scores are sums of `log_softmax` log-probabilities (float32); the first step starts from one beam;
# 2. each step takes the best `2 × num_beams` continuations over all beams of an input;
# 3. a candidate ending in EOS (or reaching `max_new_tokens`) is finished; if it is among the first
#    `num_beams` candidates it may enter the input's pool (the best `num_beams` finished hypotheses),
#    scored `sum / length ** length_penalty`, length = generated tokens, EOS included;
# 4. the best `num_beams` unfinished candidates are the next beams;
# 5. an input is done when its pool is full and its best running beam, scored as if it finished now,
#    cannot beat the pool's worst; everything stops after `max_new_tokens`.
#
# Encode with `model.encode(input_ids, attention_mask)` (mask: `input_ids != pad`), and get the next-token
# logits with `model(encoder_hidden_states=..., attention_mask=..., decoder_input_ids=prefixes)`: no
# cache is needed (one input at a time is fine). The check compares your tokens with the library's on a
# tiny random model, for 3 inputs and several beam sizes and length penalties.

# %%
def beam_search_from_scratch(model, input_ids, num_beams, max_new_tokens, length_penalty=1.0):
    """The best hypothesis of each input, (batch, 1 + longest) token ids, pad after EOS."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
### POINTS: 3
ch08.exercise_9(beam_search_from_scratch)
