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
# # Chapter 08 — Decoding
#
# A trained T5 gives, for a prefix of the output, a probability for every possible next token. This
# chapter turns that into text: which token to take, how to avoid recomputing the past at every step,
# and how to search for a better whole sequence than one token at a time allows.
#
# **What you will build**
# - greedy decoding, first the slow way, then with a **key/value cache**, and a figure of what the cache saves;
# - **beam search** with exactly Hugging Face's rules (length penalty, early stopping, n-gram blocking,
#   several returned sequences), and a figure of the search tree;
# - **sampling** with temperature, top-k and top-p, reproducible with a `torch.Generator`;
# - `generate(model, input_ids, ...)`, the one function behind `T5.generate`, `t5edu generate` and
#   `t5edu bench generate`.

# %%
#| default_exp generate

# %%
#| export
import dataclasses
import math
import weakref

import torch
import torch.nn.functional as F

from t5edu.attention import mask_value, padding_bias, split_heads
from t5edu.encoder import clamp_fp16

# %%
import time

import matplotlib.pyplot as plt

from t5edu.encoder import T5Config
from t5edu.model import T5

torch.manual_seed(0)
torch.set_num_threads(1)  # small models decode fastest on one thread, and timings are steadier

# %% [markdown]
# ## 8.1 A model worth decoding
#
# Decoding is easiest to watch on a model that has learned *something*. The book's demo model
# (`t5edu demo`, Chapter 07) may not exist on this machine, so the chapter trains its own in a few
# seconds: a tiny T5 that **reverses a word**, letter by letter. Its vocabulary is T5's three special
# tokens followed by the 26 letters; it is half-trained on purpose, so that it is sometimes unsure —
# which is where the decoding rule matters.

# %%
LETTERS = "abcdefghijklmnopqrstuvwxyz"
PAD, EOS = 0, 1


def encode_word(word):
    return [3 + LETTERS.index(c) for c in word] + [EOS]


def decode_ids(ids):
    out = []
    for t in ids:
        if t == EOS:
            break
        out.append(LETTERS[t - 3] if t >= 3 else "")
    return "".join(out)


def batch_of(words):
    rows = [encode_word(w) for w in words]
    width = max(map(len, rows))
    ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    return ids, (ids != PAD).long()


toy_config = T5Config(vocab_size=3 + 26, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0)
torch.manual_seed(0)
toy = T5(toy_config)
optimizer = torch.optim.AdamW(toy.parameters(), lr=3e-3)
g = torch.Generator().manual_seed(0)
for step in range(150):
    lengths = torch.randint(3, 7, (64,), generator=g)
    words = ["".join(LETTERS[int(i)] for i in torch.randint(0, 10, (int(n),), generator=g)) for n in lengths]
    ids, mask = batch_of(words)
    labels, _ = batch_of([w[::-1] for w in words])
    labels = labels.masked_fill(labels == PAD, -100)
    loss = toy(input_ids=ids, attention_mask=mask, labels=labels).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
toy.eval()
print(f"final training loss {loss.item():.2f}")

# %% [markdown]
# ## 8.2 Greedy decoding, the slow way
#
# The decoder starts from `decoder_start_token_id` (the pad id, 0, for T5). At each step we run the
# model on everything produced so far, take the most likely next token, append it, and stop when every
# row has produced EOS (or after `max_new_tokens`). A row that is done keeps receiving pad tokens so
# that the batch stays rectangular. The encoder runs once: its output does not depend on the prefix.

# %%
@torch.no_grad()
def greedy_no_cache(model, input_ids, attention_mask, max_new_tokens=20):
    encoded = model.encode(input_ids, attention_mask)
    out = torch.zeros(input_ids.shape[0], 1, dtype=torch.long)  # the start token
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
    for _ in range(max_new_tokens):
        logits = model(attention_mask=attention_mask, encoder_hidden_states=encoded, decoder_input_ids=out).logits
        next_id = logits[:, -1].argmax(-1).masked_fill(done, PAD)
        out = torch.cat([out, next_id[:, None]], dim=1)
        done |= next_id == EOS
        if done.all():
            break
    return out


words = ["bead", "cafe", "jig", "hijack"]
ids, mask = batch_of(words)
slow = greedy_no_cache(toy, ids, mask)
for w, row in zip(words, slow.tolist()):
    print(f"{w!r:9} -> {decode_ids(row[1:])!r}")

# %% [markdown]
# Chapter 07's `greedy_decode` (used to evaluate during training) does the same with a cache; it
# returns the ids without the start token. Same tokens:

# %%
from t5edu.train import greedy_decode

assert torch.equal(greedy_decode(toy, ids, mask, max_new_tokens=20), slow[:, 1:])

# %% [markdown]
# Step `t` runs the decoder over `t` positions, so `n` tokens cost `1 + 2 + … + n ≈ n²/2` position
# evaluations. But the decoder is causal: the hidden states of positions `0 … t-1` do not change when
# token `t` arrives. Everything the new position needs from them is in its attention layers.

# %% [markdown]
# ## 8.3 The key/value cache
#
# In each decoder block, the new position needs three things from the past:
#
# - **self-attention keys and values** of all earlier positions: computed once, when each position was
#   new, and *appended* to a per-layer cache (Chapter 05's `T5Attention(..., cache=...)` does this);
# - **cross-attention keys and values** of the encoder output: the same at every step, so we compute
#   them once, before the first step;
# - the **relative position bias**: only the row of the current query position, keys `0 … t`. We compute
#   the whole causal bias table for the longest output once and slice row `t` at each step.
#
# `DecoderCache` holds these; `decoder_step` feeds one new token per row through the decoder blocks and
# returns the float32 logits of the next token. (The model is in eval mode, so dropout is the identity
# and we skip it.)

# %%
#| export
class DecoderCache:
    """What the decoder keeps between decoding steps, one row per sequence being decoded.

    `layers` is `T5Decoder.new_cache()`: per block, self-attention keys/values (appended each step) and
    cross-attention keys/values (computed here once from the encoder output). `position_bias` is the
    decoder's causal relative bias for `max_length` positions; step `t` uses its row `t` only.
    """

    def __init__(self, model, encoder_hidden_states, attention_mask=None, max_length=None, packed=None):
        decoder = model.decoder
        self.decoder, self.encoder_hidden_states = decoder, encoder_hidden_states
        self.packed = packed  # PackedWeights (Section 8.9) for faster steps, or None
        self.layers = decoder.new_cache()
        for block, layer in zip(decoder.block, self.layers):
            cross = block.layer[1].EncDecAttention
            layer["cross"]["k"] = split_heads(cross.k(encoder_hidden_states), cross.num_heads)
            layer["cross"]["v"] = split_heads(cross.v(encoder_hidden_states), cross.num_heads)
        self.cross_bias = None
        if attention_mask is not None and not bool(attention_mask.all()):
            self.cross_bias = padding_bias(attention_mask, encoder_hidden_states.dtype)
        self.position_bias = decoder.self_attention_bias(max_length, 0) if max_length else None

    def __len__(self):
        """How many positions are cached."""
        return self.decoder.cache_length(self.layers)

    def self_bias(self, position):
        """(1, H, 1, position + 1): the bias of query `position` against keys 0 … position."""
        if self.position_bias is not None and position < self.position_bias.shape[-1]:
            return self.position_bias[:, :, position:position + 1, :position + 1]
        return self.decoder.self_attention_bias(1, position)

    def reorder(self, rows):
        """Keep self-attention keys/values of `rows` (a LongTensor of row indices), in that order.

        Beam search calls this each step. Cross-attention keys/values are left alone: beam search only
        reorders rows among the beams of the same input, and those share the encoder output."""
        for layer in self.layers:
            cached = layer["self"]
            if "k" in cached:
                cached["k"], cached["v"] = cached["k"].index_select(0, rows), cached["v"].index_select(0, rows)


def decoder_step(model, cache, tokens):
    """Feed one token per row (`tokens`: (rows,)) at position len(cache) -> float32 logits (rows, vocab).

    The model must be in eval mode (no dropout). The cache grows by one position."""
    if cache.packed is not None:
        return packed_step(model, cache, tokens)  # the same computation, faster on a CPU (Section 8.9)
    decoder, config = model.decoder, model.config
    self_bias = cache.self_bias(len(cache))
    hidden = decoder.embed_tokens(tokens[:, None])
    for block, layer in zip(decoder.block, cache.layers):
        hidden = block(hidden, cache.encoder_hidden_states, self_bias, cache.cross_bias, cache=layer)
    hidden = decoder.final_layer_norm(hidden[:, 0])
    if config.scale_decoder_outputs:
        hidden = hidden * config.d_model ** -0.5
    return model.lm_head(hidden).float()


def last_logits(model, encoder_hidden_states, attention_mask, decoder_input_ids):
    """No cache: run the decoder over the whole prefix -> float32 logits of its last position (rows, vocab)."""
    logits = model(attention_mask=attention_mask, encoder_hidden_states=encoder_hidden_states,
                   decoder_input_ids=decoder_input_ids).logits
    return logits[:, -1].float()


# %% [markdown]
# The check: feeding the tokens of `slow` one at a time through `decoder_step` gives, at every step,
# the logits the full model computes on the whole prefix.

# %%
with torch.no_grad():
    encoded = toy.encode(ids, mask)
    cache = DecoderCache(toy, encoded, mask, max_length=slow.shape[1])
    worst = 0.0
    for t in range(slow.shape[1] - 1):
        stepped = decoder_step(toy, cache, slow[:, t])
        full = last_logits(toy, encoded, mask, slow[:, :t + 1])
        worst = max(worst, (stepped - full).abs().max().item())
print(f"{len(cache)} cached positions; largest logit difference {worst:.1e}")
assert len(cache) == slow.shape[1] - 1 and worst < 1e-4

# %% [markdown]
# ## 8.4 What the cache saves
#
# Without a cache, step `t` costs time proportional to `t`; with one, every step costs about the same
# (the attention over `t` cached keys is tiny next to the matrix products). We time both on a random
# t5-tiny-shaped model, forcing long outputs with `min_new_tokens` (Section 8.5). Times depend on the
# machine, so the cell asserts only what must hold: both produce the same tokens.

# %%
# NBVAL_IGNORE_OUTPUT
torch.manual_seed(0)
bench_model = T5(T5Config.preset("t5-tiny", vocab_size=1000, dropout_rate=0.0)).eval()
bench_ids = torch.randint(3, 1000, (1, 16))
timings = {}
positions = 96
with torch.no_grad():
    bench_enc = bench_model.encode(bench_ids)
    for name in ("no cache", "cache"):
        best = [math.inf] * positions
        for repeat in range(3):  # per position, the fastest of 3 runs: less noise from a busy machine
            seq = torch.zeros(1, 1, dtype=torch.long)
            cache = DecoderCache(bench_model, bench_enc, max_length=positions + 1)
            for t in range(positions):
                start = time.perf_counter()
                if name == "cache":
                    logits = decoder_step(bench_model, cache, seq[:, -1])
                else:
                    logits = last_logits(bench_model, bench_enc, None, seq)
                logits[:, EOS] = -math.inf
                seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
                best[t] = min(best[t], time.perf_counter() - start)
        timings[name] = (seq, best)
assert torch.equal(timings["cache"][0], timings["no cache"][0])
plt.figure(figsize=(6, 3.2))
for name, (_, times) in timings.items():
    plt.plot(range(1, positions + 1), [1000 * x for x in times], label=name)
plt.xlabel("output position")
plt.ylabel("ms per token")
plt.title("Greedy decoding, t5-tiny shape, batch 1")
plt.legend()
plt.tight_layout()
plt.show()
print(f"total: no cache {sum(timings['no cache'][1]):.2f} s, cache {sum(timings['cache'][1]):.2f} s")

# %% [markdown]
# ## 8.5 Rules on the next token
#
# Two constraints of Hugging Face's `generate` change the scores before a token is chosen, by setting
# some of them to −∞:
#
# - `min_new_tokens`: EOS is forbidden until that many tokens have been generated;
# - `no_repeat_ngram_size = n`: a token that would complete an n-gram already present in the row
#   (start token included) is forbidden. With `n = 2` and a row `0 5 7 5`, the next token may not be 7.
#
# `no_repeat_ngram_mask` finds, in one vectorised pass, every earlier window of `n` tokens whose first
# `n-1` tokens equal the row's last `n-1` tokens, and bans each such window's last token.

# %%
#| export
def no_repeat_ngram_mask(sequences, ngram_size, vocab_size):
    """(rows, length) token ids -> bool (rows, vocab_size): True for each token that would repeat an n-gram."""
    rows, length = sequences.shape
    banned = torch.zeros(rows, vocab_size + 1, dtype=torch.bool, device=sequences.device)
    if ngram_size <= 0 or length < ngram_size:
        return banned[:, :vocab_size]
    suffix = sequences[:, length + 1 - ngram_size:]  # the last n-1 tokens
    windows = sequences.unfold(1, ngram_size, 1)  # (rows, length - n + 1, n)
    matches = (windows[..., :-1] == suffix[:, None]).all(-1)
    # a non-matching window bans the spare column `vocab_size`, which is cut off below
    banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=vocab_size), vocab_size), True)
    return banned[:, :vocab_size]


def constrain_scores(scores, sequences, min_new_tokens=0, no_repeat_ngram_size=0, eos_token_id=1):
    """Set to -inf the scores (rows, vocab) of tokens the rules forbid after `sequences` (start token included)."""
    if no_repeat_ngram_size > 0:
        scores = scores.masked_fill(no_repeat_ngram_mask(sequences, no_repeat_ngram_size, scores.shape[-1]),
                                    -math.inf)
    if sequences.shape[1] - 1 < min_new_tokens:
        scores = scores.clone()
        scores[:, eos_token_id] = -math.inf
    return scores


# %%
row = torch.tensor([[0, 5, 7, 5]])
print(no_repeat_ngram_mask(row, 2, 10).nonzero()[:, 1].tolist(), no_repeat_ngram_mask(row, 3, 10).any().item())
assert no_repeat_ngram_mask(row, 2, 10).nonzero()[:, 1].tolist() == [7]
assert no_repeat_ngram_mask(torch.tensor([[0, 5, 7, 5, 7]]), 3, 10).nonzero()[:, 1].tolist() == [5]
assert no_repeat_ngram_mask(row, 1, 10).nonzero()[:, 1].tolist() == [0, 5, 7]  # n = 1: no token twice
scores = constrain_scores(torch.zeros(1, 10), row, min_new_tokens=4)
assert scores[0, EOS] == -math.inf and scores.isfinite().sum() == 9

# %% [markdown]
# ## 8.6 Sampling
#
# Greedy decoding always gives the same answer; **sampling** draws the next token from the model's
# distribution instead, which gives variety (and, for open-ended text, less repetitive output). Three
# knobs shape the distribution first, applied in this order (as Hugging Face does):
#
# - **temperature** `τ`: divide the logits by `τ`; below 1 sharpens, above 1 flattens;
# - **top-k**: keep the `k` largest logits (ties with the k-th included), set the rest to −∞;
# - **top-p** (nucleus): sort the probabilities; drop the least likely tokens whose total is at most
#   `1 − p`, so that the kept ones carry at least `p` of the mass. At least one token always survives.
#
# The draw uses `torch.multinomial` with an optional `torch.Generator`: the same seed gives the same
# text. `sample_search` is the loop of Section 8.2 with a cache and these rules; with `do_sample=False`
# it is greedy decoding.

# %%
#| export
def top_k_filter(scores, top_k, min_tokens_to_keep=1):
    """Keep the `top_k` largest scores per row (ties with the k-th kept); the rest become -inf."""
    k = min(max(top_k, min_tokens_to_keep), scores.shape[-1])
    kth = torch.topk(scores, k).values[..., -1:]
    return scores.masked_fill(scores < kth, -math.inf)


def top_p_filter(scores, top_p, min_tokens_to_keep=1):
    """Nucleus filtering: drop the least likely tokens whose probabilities sum to at most 1 - top_p."""
    sorted_scores, order = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - top_p)
    remove[..., -min_tokens_to_keep:] = False
    return scores.masked_fill(remove.scatter(1, order, remove), -math.inf)


def sample_next(scores, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Draw one token per row from softmax(scores) after temperature, top-k and top-p."""
    if temperature != 1.0:
        scores = scores / temperature
    if top_k:
        scores = top_k_filter(scores, top_k)
    if top_p is not None and top_p < 1.0:
        scores = top_p_filter(scores, top_p)
    probs = F.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def sample_search(model, encoder_hidden_states, attention_mask, max_new_tokens, *, do_sample=False,
                  temperature=1.0, top_k=None, top_p=None, min_new_tokens=0, no_repeat_ngram_size=0,
                  generator=None, use_cache=True, packed=None):
    """Greedy decoding (do_sample=False) or sampling, one sequence per row -> (rows, 1 + steps) ids.

    Rows that have produced EOS get pad tokens until every row is done or max_new_tokens is reached."""
    config = model.config
    rows = encoder_hidden_states.shape[0]
    device = encoder_hidden_states.device
    sequences = torch.full((rows, 1), config.decoder_start_token_id, dtype=torch.long, device=device)
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)
    cache = DecoderCache(model, encoder_hidden_states, attention_mask, 1 + max_new_tokens, packed) if use_cache else None
    for _ in range(max_new_tokens):
        if cache is not None:
            logits = decoder_step(model, cache, sequences[:, -1])
        else:
            logits = last_logits(model, encoder_hidden_states, attention_mask, sequences)
        scores = constrain_scores(logits, sequences, min_new_tokens, no_repeat_ngram_size, config.eos_token_id)
        if do_sample:
            next_tokens = sample_next(scores, temperature, top_k, top_p, generator)
        else:
            next_tokens = scores.argmax(dim=-1)
        next_tokens = torch.where(unfinished, next_tokens, config.pad_token_id)
        sequences = torch.cat([sequences, next_tokens[:, None]], dim=1)
        unfinished &= next_tokens != config.eos_token_id
        if not bool(unfinished.any()):
            break
    return sequences


# %% [markdown]
# Checks: with a generator seeded the same way, sampling repeats itself; top-k and top-p never let a
# forbidden token through; greedy `sample_search` is the slow loop of Section 8.2, exactly.

# %%
with torch.no_grad():
    encoded = toy.encode(ids, mask)
    draws = [sample_search(toy, encoded, mask, 12, do_sample=True, temperature=1.5,
                           generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    greedy = sample_search(toy, encoded, mask, 20)
assert torch.equal(draws[0], draws[1]) and torch.equal(greedy, slow)
for w, a, b in zip(words, draws[1].tolist(), draws[2].tolist()):
    print(f"{w!r:9} seed 1 -> {decode_ids(a[1:])!r:10} seed 2 -> {decode_ids(b[1:])!r}")

torch.manual_seed(0)
logits = torch.randn(4, 50) * 3
for k in (1, 5):
    allowed = logits.topk(k).indices
    drawn = torch.stack([sample_next(logits, top_k=k, generator=torch.Generator().manual_seed(s))
                         for s in range(50)], dim=1)
    assert all(set(d.tolist()) <= set(a.tolist()) for d, a in zip(drawn, allowed))
probs = logits.softmax(-1)
kept = top_p_filter(logits, 0.9).isfinite()
assert ((probs * kept).sum(-1) >= 0.9).all()  # the kept tokens carry at least p of the mass
assert ((probs * kept).sum(-1) - (probs * kept).masked_fill(~kept, 2).min(-1).values < 0.9).all()  # none spare

# %% [markdown]
# ## 8.7 Beam search
#
# Greedy decoding commits to the best *token*; the best *sequence* may start with a less likely one.
# Beam search keeps the `num_beams` best prefixes ("beams") and extends them all. We follow Hugging
# Face's `transformers` (version 5) rule for rule, so that our outputs match theirs token for token:
#
# 1. **Scores** are sums of log-probabilities, computed with `log_softmax` in float32. Before the first
#    step only beam 0 is live: its running score is 0, the others start at −10⁹ (not −∞, so arithmetic
#    stays finite), so the first step does not pick the same token `num_beams` times.
# 2. Each step looks at all `num_beams × vocab` continuations of each input and keeps the top
#    `2 × num_beams`. Twice as many, so that even if many end in EOS, `num_beams` remain to continue.
# 3. A candidate that ends in EOS (or reaches the length limit) is **finished**. If it is among the
#    first `num_beams` candidates it may enter the input's pool of finished hypotheses, scored
#    `sum_logprobs / length ** length_penalty`, where length counts generated tokens including EOS,
#    excluding the start token. The pool keeps the best `num_beams`. `length_penalty > 0` favours long
#    outputs, `< 0` short ones, `0` compares raw sums.
# 4. The best `num_beams` unfinished candidates become the next beams; the cache rows are **reordered**
#    to follow their parents (`DecoderCache.reorder`).
# 5. When to stop, for each input (`early_stopping`):
#    - `True`: as soon as the pool holds `num_beams` hypotheses;
#    - `False` (the default): when the pool is full and the best running beam, scored as if it finished
#      now (`score / current_length ** length_penalty`), cannot beat the pool's worst — a heuristic;
#    - `"never"`: the same test, but with a positive length penalty the running beam is scored as if it
#      could reach `max_length` — the best it could ever get, so the search never stops too early.
#    Everything stops at `max_new_tokens`; then all running candidates count as finished.
# 6. The result: the best `num_return_sequences` hypotheses of each input's pool, best first.
#
# Hugging Face implements this with fixed-shape tensors for the whole batch; so do we, with the same
# operations in the same order (so that ties break the same way). Positions after a hypothesis's EOS are
# filled with pad (Hugging Face fills them with EOS: a quirk of `pad_token_id or eos_token_id` when the
# pad id is 0).

# %%
#| export
NEG = -1.0e9  # "minus infinity" that stays finite in sums, as in Hugging Face's beam search


def hypothesis_score(sum_logprobs, num_generated, length_penalty=1.0):
    """The score of a finished hypothesis: sum of log-probs / (generated tokens incl. EOS) ** length_penalty."""
    return sum_logprobs / (num_generated ** length_penalty)


def _gather(tensor, index):
    """tensor (batch, n, ...) -> tensor[b, index[b, j], ...] for index (batch, m)."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(tensor, index, dim=1)


def beam_search(model, encoder_hidden_states, attention_mask, max_new_tokens, num_beams, *, length_penalty=1.0,
                early_stopping=False, num_return_sequences=1, min_new_tokens=0, no_repeat_ngram_size=0,
                use_cache=True, packed=None, trace=None):
    """Beam search with Hugging Face's semantics -> (sequences, scores).

    sequences: (batch * num_return_sequences, 1 + longest) ids, best first per input, pad after EOS;
    scores: (batch * num_return_sequences,) the length-penalised scores. `trace`, if a list, receives one
    dict per step (candidates, parents, scores, which were finished / kept) for figures."""
    config = model.config
    eos, device = config.eos_token_id, encoder_hidden_states.device
    batch = encoder_hidden_states.shape[0]
    max_length = 1 + max_new_tokens
    keep = 2 * num_beams
    encoder_hidden_states = encoder_hidden_states.repeat_interleave(num_beams, dim=0)
    if attention_mask is not None:
        attention_mask = attention_mask.repeat_interleave(num_beams, dim=0)
    cache = DecoderCache(model, encoder_hidden_states, attention_mask, max_length, packed) if use_cache else None

    running = torch.full((batch, num_beams, max_length), config.pad_token_id, dtype=torch.long, device=device)
    running[:, :, 0] = config.decoder_start_token_id
    running_scores = torch.zeros(batch, num_beams, device=device)
    running_scores[:, 1:] = NEG
    finished = running.clone()  # the pool of finished hypotheses, with their scores and lengths
    finished_scores = torch.full((batch, num_beams), NEG, device=device)
    finished_lengths = torch.zeros(batch, num_beams, dtype=torch.long, device=device)
    is_finished = torch.zeros(batch, num_beams, dtype=torch.bool, device=device)
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
    first_beams = torch.arange(keep, device=device) < num_beams
    row_offset = torch.arange(batch, device=device)[:, None] * num_beams

    cur_len = 1
    while cur_len < max_length:
        flat = running[:, :, :cur_len].reshape(batch * num_beams, cur_len)
        if cache is not None:
            logits = decoder_step(model, cache, flat[:, -1])
        else:
            logits = last_logits(model, encoder_hidden_states, attention_mask, flat)
        log_probs = constrain_scores(F.log_softmax(logits, dim=-1), flat, min_new_tokens, no_repeat_ngram_size, eos)
        vocab = log_probs.shape[-1]
        log_probs = (log_probs.view(batch, num_beams, vocab) + running_scores[:, :, None]).view(batch, -1)

        # the 2 * num_beams best continuations over all beams of each input
        cand_scores, cand_index = torch.topk(log_probs, keep)
        parents = cand_index // vocab
        candidates = _gather(running, parents)
        candidates[:, :, cur_len] = cand_index % vocab
        ends = (candidates[:, :, cur_len] == eos) | (cur_len + 1 >= max_length)

        # the best num_beams unfinished candidates continue
        alive_scores = cand_scores + ends.to(torch.float32) * NEG
        chosen = torch.topk(alive_scores, num_beams)[1]
        running, running_scores = _gather(candidates, chosen), _gather(alive_scores, chosen)
        running_parents = _gather(parents, chosen)

        # finished candidates among the first num_beams may enter the pool
        entering = ends & first_beams[None, :]
        pool_scores = cand_scores / (cur_len ** length_penalty)  # cur_len = generated tokens incl. the new one
        pool_scores += (is_finished.all(-1, keepdim=True) & (early_stopping is True)).to(torch.float32) * NEG
        pool_scores += (~improvable).to(torch.float32) * NEG
        pool_scores += (~entering) * NEG
        merged_scores = torch.cat([finished_scores, pool_scores], dim=1)
        best = torch.topk(merged_scores, num_beams)[1]
        finished = _gather(torch.cat([finished, candidates], dim=1), best)
        finished_scores = _gather(merged_scores, best)
        finished_lengths = _gather(torch.cat([finished_lengths, torch.full_like(ends, cur_len, dtype=torch.long)],
                                             dim=1), best)
        is_finished = _gather(torch.cat([is_finished, entering], dim=1), best)
        if trace is not None:
            trace.append(dict(step=cur_len, tokens=candidates[:, :, cur_len].clone(), parents=parents.clone(),
                              scores=cand_scores.clone(), ends=ends.clone(), entering=entering.clone(),
                              chosen=chosen.clone()))

        if cache is not None:
            cache.reorder((running_parents + row_offset).flatten())
        cur_len += 1

        # can any input still improve its pool?
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = max_length - 1
        else:
            best_length = cur_len - 1
        best_running = running_scores[:, :1] / (best_length ** length_penalty)
        worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True)[0], NEG)
        improvable = improvable & (best_running > worst_finished).any(-1, keepdim=True)
        all_full = bool(is_finished.all()) and early_stopping is True
        if not bool(improvable.any()) or all_full or bool(ends.all()):
            break

    sequences = finished[:, :num_return_sequences].reshape(batch * num_return_sequences, max_length)
    scores = finished_scores[:, :num_return_sequences].reshape(-1)
    longest = int(finished_lengths[:, :num_return_sequences].max()) if max_new_tokens else 0
    return sequences[:, :1 + longest], scores


# %% [markdown]
# Beam search is a *search*, not a guarantee: it can miss the most likely sequence. Two things must
# hold, though, and we check them: each returned score is the sum of the model's log-probabilities of its
# tokens (recomputed here by teacher forcing) divided by its length to the power `length_penalty`; and
# the best hypothesis scores at least as well as greedy decoding's output.

# %%
def sequence_logprob(model, input_ids, attention_mask, sequence):
    """Sum of log p(token) of `sequence` (start token first) up to and including EOS, by teacher forcing."""
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=sequence[None, :-1]).logits
    logp = F.log_softmax(logits[0].float(), dim=-1).gather(-1, sequence[1:, None])[:, 0]
    end = (sequence[1:] == EOS).nonzero()
    n = int(end[0]) + 1 if len(end) else len(sequence) - 1
    return logp[:n].sum().item(), n


with torch.no_grad():
    encoded = toy.encode(ids, mask)
    beams, beam_scores = beam_search(toy, encoded, mask, 12, num_beams=3, num_return_sequences=3,
                                     length_penalty=1.0)
for i, (seq, score) in enumerate(zip(beams, beam_scores.tolist())):
    w = i // 3
    total, n = sequence_logprob(toy, ids[w:w + 1], mask[w:w + 1], seq)
    assert abs(hypothesis_score(total, n, 1.0) - score) < 1e-4
    if i % 3 == 0:
        greedy_total, m = sequence_logprob(toy, ids[w:w + 1], mask[w:w + 1], slow[w])
        assert score >= hypothesis_score(greedy_total, m, 1.0) - 1e-5
    print(f"{words[w]!r:9} #{i % 3}: {decode_ids(seq[1:].tolist())!r:9} score {score:.3f}")

# %% [markdown]
# And the check that matters for the semantics: the same model in Hugging Face's `transformers`
# (eager attention, float32), loaded from the same weights, produces the same tokens and scores, for
# several settings. (The tests in `tests/test_generate_parity.py` cover many more: batches with padding,
# `num_beams` 2–5, all `early_stopping` values, length penalties 0, 1, 2, n-gram blocking, EOS-heavy models.)

# %%
import tempfile
import warnings

import transformers
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()
hf_dir = tempfile.mkdtemp(prefix="t5edu-ch08-")
toy.save_pretrained(hf_dir)
hf_config = transformers.T5Config.from_pretrained(hf_dir)
hf_config._attn_implementation = "eager"
hf = transformers.T5ForConditionalGeneration.from_pretrained(hf_dir, config=hf_config).eval()
settings = [dict(num_beams=1), dict(num_beams=3, num_return_sequences=2),
            dict(num_beams=4, length_penalty=0.0, early_stopping=True),
            dict(num_beams=2, length_penalty=2.0, early_stopping="never", no_repeat_ngram_size=2),
            dict(num_beams=3, min_new_tokens=7)]
with torch.no_grad(), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    encoded = toy.encode(ids, mask)
    for s in settings:
        beams_, nrs = s.get("num_beams", 1), s.get("num_return_sequences", 1)
        reference = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                                output_scores=True, return_dict_in_generate=True, **s)
        if beams_ == 1:
            ours = sample_search(toy, encoded, mask, 12, min_new_tokens=s.get("min_new_tokens", 0))
        else:
            ours, our_scores = beam_search(toy, encoded, mask, 12, beams_, length_penalty=s.get("length_penalty", 1.0),
                                           early_stopping=s.get("early_stopping", False), num_return_sequences=nrs,
                                           min_new_tokens=s.get("min_new_tokens", 0),
                                           no_repeat_ngram_size=s.get("no_repeat_ngram_size", 0))
            assert torch.allclose(our_scores, reference.sequences_scores, atol=1e-4)
        theirs = reference.sequences
        after_eos = (theirs == EOS).long().cumsum(1) - (theirs == EOS).long() > 0  # HF fills these with EOS
        assert ours.shape == theirs.shape and torch.equal(ours[~after_eos], theirs[~after_eos]), s
        print(s, "->", [decode_ids(r[1:]) for r in ours.tolist()[:4]])

# %% [markdown]
# ## 8.8 Looking inside the search
#
# `beam_search(..., trace=[])` records every step: the `2 × num_beams` candidates, their parents and
# scores, which ended in EOS, and which continued. Drawn as a tree for one input: blue nodes are the beams
# that continue, black squares finished hypotheses that entered the pool, grey nodes candidates that were
# pruned (kept among the top `2 × num_beams` but not continued).

# %%
word = "hijack"
one_ids, one_mask = batch_of([word])
trace = []
with torch.no_grad():
    best, best_scores = beam_search(toy, toy.encode(one_ids, one_mask), one_mask, 10, num_beams=3,
                                    num_return_sequences=3, trace=trace)

fig, ax = plt.subplots(figsize=(10, 4.5))
previous = {0: (0, 0.0)}  # beam index -> (x, y) of its node
ax.scatter([0], [0], color="tab:blue")
ax.annotate("start", (0, 0), textcoords="offset points", xytext=(-8, 6), fontsize=8)
for record in trace:
    x = record["step"]
    chosen = record["chosen"][0].tolist()
    nodes = {}
    for j in range(record["tokens"].shape[1]):
        token, parent = int(record["tokens"][0, j]), int(record["parents"][0, j])
        if parent not in previous:
            continue
        y = -j
        label = "</s>" if token == EOS else (LETTERS[token - 3] if token >= 3 else "?")
        ended, kept = bool(record["ends"][0, j]), j in chosen
        style = dict(color="black", marker="s") if ended and record["entering"][0, j] else \
            dict(color="tab:blue", marker="o") if kept else dict(color="0.75", marker="o")
        px, py = previous[parent]
        ax.plot([px, x], [py, y], color=style["color"], lw=0.8, zorder=1)
        ax.scatter([x], [y], zorder=2, **style)
        entered = ended and bool(record["entering"][0, j])
        ax.annotate(f"{label} {float(record['scores'][0, j]):.1f}", (x, y), textcoords="offset points",
                    xytext=(4, 4), fontsize=7, color="black" if (kept or entered) else "0.5")
        if kept:
            nodes[chosen.index(j)] = (x, y)
    previous = nodes
    if not previous:
        break
ax.set_xlabel("step (tokens generated)")
ax.set_yticks([])
ax.set_title(f"Beam search, 3 beams, input {word!r}: label = token and cumulative log-prob")
plt.tight_layout()
plt.show()
print("pool:", [(decode_ids(s[1:].tolist()), round(v, 3)) for s, v in zip(best, best_scores.tolist())])

# %% [markdown]
# ## 8.9 Faster steps: weights laid out for the product they are used in
#
# With one token per step, every linear layer is a row vector times a matrix. PyTorch stores an
# `nn.Linear` weight as (out, in) and computes `x @ W.T`; on a CPU that reads the matrix against its
# memory order and reaches about half the memory bandwidth that `x @ M` does with the matrix stored as
# (in, out), contiguous (measured on this book's 2-core CPU: 10 vs 21 GB/s for a 4 MiB matrix not in the
# cache). Decoding is bound by exactly that bandwidth (Section 8.11), so we keep a second copy of the
# decoder's weights, transposed once:
#
# - self-attention `q`, `k`, `v` fused into one (d_model, 3 × inner) matrix — one product instead of three;
# - cross-attention `q` and `o`, self-attention `o`, the feed-forward matrices (`wi_0` and `wi_1` fused
#   for gated models) and the output layer, each as (in, out).
#
# One more layout change uses the second core. A product with one row (or four, in beam search) is too
# small for PyTorch to split over threads: it runs on one core, whatever `torch.get_num_threads()` says.
# So each matrix is also cut into blocks of output columns, two per thread, stored as a
# (blocks, in, out / blocks) stack, and `torch.bmm` multiplies the row by all blocks at once — a
# batched product that PyTorch does spread over the threads. Putting the blocks side by side again gives
# the same (rows, out) result. On this book's 2-core CPU that makes the output layer's product 1.5×
# faster for one row and 2× for four rows (two blocks per thread beat one by 7 % in beam search, as
# measured with `t5edu bench generate`; for one row they are even).
#
# `packed_step` is `decoder_step` written out with these matrices (attention as in Section 2.1, the same
# cache layout, so `DecoderCache.reorder` still works). `packed_weights(model)` builds the copy and keeps
# it for the next call, as long as the model's parameters and the thread count have not changed. The copy
# costs memory (the decoder and output layer once more) and one transposition per model, not per call.

# %%
#| export
@dataclasses.dataclass
class PackedWeights:
    """The decoder's matrices as (in, out) — or (blocks, in, out / blocks) column blocks — for one-token
    steps (see packed_weights); `product(x, matrix)` multiplies by either."""

    layers: list  # per block: dict of matrices and the modules (norms, activation) used with them
    lm_head: torch.Tensor  # (d_model, vocab), or its column blocks
    signature: tuple


_PACKED = weakref.WeakKeyDictionary()  # model -> PackedWeights of its current parameters


def _signature(model):
    params = list(model.decoder.parameters()) + [model.lm_head.weight]
    return (torch.get_num_threads(),) + tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)


def column_blocks(weight, parts):
    """An nn.Linear weight (out, in) -> (in, out) contiguous, cut into `parts` blocks of output columns
    stacked as (parts, in, out / parts); plain (in, out) when parts is 1 or does not divide out."""
    out_features, in_features = weight.shape
    if parts <= 1 or out_features % parts:
        return weight.t().contiguous()
    return weight.view(parts, out_features // parts, in_features).transpose(1, 2).contiguous()


def product(x, matrix):
    """x (rows, in) @ a matrix from column_blocks -> (rows, out); the blocks run as one batched product."""
    if matrix.dim() == 2:
        return x @ matrix
    parts, _, width = matrix.shape
    return torch.bmm(x.expand(parts, *x.shape), matrix).transpose(0, 1).reshape(x.shape[0], parts * width)


@torch.no_grad()
def packed_weights(model):
    """Transposed, fused copies of the decoder's weights, in two column blocks per thread; cached per model
    until a parameter (or the thread count) changes."""
    signature = _signature(model)
    cached = _PACKED.get(model)
    if cached is not None and cached.signature == signature:
        return cached
    threads = torch.get_num_threads() if model.lm_head.weight.device.type == "cpu" else 1
    parts = 2 * threads if threads > 1 else 1  # one thread, or a GPU: plain (in, out) matrices
    layers = []
    for block in model.decoder.block:
        self_attn, cross = block.layer[0].SelfAttention, block.layer[1].EncDecAttention
        ff = block.layer[2].DenseReluDense
        gated = hasattr(ff, "wi_0")
        wi = torch.cat([ff.wi_0.weight, ff.wi_1.weight]) if gated else ff.wi.weight
        qkv = torch.cat([self_attn.q.weight, self_attn.k.weight, self_attn.v.weight])
        layers.append(dict(
            norm0=block.layer[0].layer_norm, norm1=block.layer[1].layer_norm, norm2=block.layer[2].layer_norm,
            qkv=column_blocks(qkv, parts), o=column_blocks(self_attn.o.weight, parts),
            cross_q=column_blocks(cross.q.weight, parts), cross_o=column_blocks(cross.o.weight, parts),
            wi=column_blocks(wi, parts), wo=column_blocks(ff.wo.weight, parts),
            act=ff.act, gated=gated, heads=self_attn.num_heads, d_kv=self_attn.d_kv))
    packed = PackedWeights(layers, column_blocks(model.lm_head.weight, parts), signature)
    _PACKED[model] = packed
    return packed


def _attend(q, k, v, bias):
    """q (rows, H, 1, d), k/v (rows, H, L, d), additive bias -> (rows, H * d): unscaled, softmax in float32."""
    scores = torch.matmul(q, k.transpose(-1, -2))
    if bias is not None:
        scores = scores + bias
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    out = torch.matmul(weights, v)
    return out.reshape(out.shape[0], -1)


def packed_step(model, cache, tokens):
    """decoder_step with the PackedWeights in cache.packed: (rows,) tokens -> float32 logits (rows, vocab)."""
    packed, config = cache.packed, model.config
    position = len(cache)
    self_bias = cache.self_bias(position)
    if self_bias.dtype != cache.encoder_hidden_states.dtype:
        self_bias = self_bias.to(cache.encoder_hidden_states.dtype).clamp_min(mask_value(cache.encoder_hidden_states.dtype))
    hidden = model.decoder.embed_tokens(tokens)  # (rows, d_model)
    rows = hidden.shape[0]
    for w, layer in zip(packed.layers, cache.layers):
        heads, d_kv = w["heads"], w["d_kv"]
        q, k, v = product(w["norm0"](hidden), w["qkv"]).view(rows, 3, heads, 1, d_kv).unbind(1)
        saved = layer["self"]
        if "k" in saved:
            k, v = torch.cat([saved["k"], k], dim=2), torch.cat([saved["v"], v], dim=2)
        saved["k"], saved["v"] = k, v
        hidden = clamp_fp16(hidden + product(_attend(q, k, v, self_bias), w["o"]))
        q = product(w["norm1"](hidden), w["cross_q"]).view(rows, heads, 1, d_kv)
        cross = layer["cross"]
        hidden = clamp_fp16(hidden + product(_attend(q, cross["k"], cross["v"], cache.cross_bias), w["cross_o"]))
        inner = product(w["norm2"](hidden), w["wi"])
        if w["gated"]:
            gate, linear = inner.chunk(2, dim=-1)
            inner = w["act"](gate) * linear
        else:
            inner = w["act"](inner)
        hidden = clamp_fp16(hidden + product(inner.to(w["wo"].dtype), w["wo"]))
    hidden = model.decoder.final_layer_norm(hidden)
    if config.scale_decoder_outputs:
        hidden = hidden * config.d_model ** -0.5
    return product(hidden, packed.lm_head).float()


# %% [markdown]
# The check: the packed step gives the logits of the model's own blocks (to float32 rounding: the sums
# are accumulated in another order), for a plain and a gated model, and the packed copy is rebuilt when a
# weight changes.

# %%
with torch.no_grad():
    gated_model = T5(T5Config.preset("t5-v1_1-tiny", vocab_size=100, dropout_rate=0.0)).eval()
    for m in (toy, gated_model):
        src = torch.randint(3, 29, (2, 7))
        enc = m.encode(src)
        plain, fast = DecoderCache(m, enc, max_length=8), DecoderCache(m, enc, max_length=8, packed=packed_weights(m))
        tokens = torch.zeros(2, dtype=torch.long)
        worst = 0.0
        for t in range(6):
            a, b = decoder_step(m, plain, tokens), decoder_step(m, fast, tokens)
            worst = max(worst, (a - b).abs().max().item())
            tokens = a.argmax(-1)
        print(f"{type(m.decoder.block[0].layer[2].DenseReluDense).__name__}: largest logit difference {worst:.1e}")
        assert worst < 1e-4
    first = packed_weights(toy)
    assert packed_weights(toy) is first  # kept for the next call
    toy.decoder.block[0].layer[2].DenseReluDense.wo.weight.mul_(1.0)  # an in-place update...
    assert packed_weights(toy) is not first  # ... and the copy is rebuilt

# %% [markdown]
# ## 8.10 `generate`
#
# One function puts it together, with Hugging Face's argument names: the encoder runs once, then
# `sample_search` (greedy or sampling) or `beam_search` runs with a cache and packed weights, under `torch.inference_mode`
# and with the model in eval mode (restored afterwards). The output starts with the decoder start
# token, like `transformers`' `generate` for T5.
#
# - `max_new_tokens` counts generated tokens; `max_length` has Hugging Face's meaning, the total length
#   *including* the start token (`max_new_tokens = max_length - 1`); `max_new_tokens` wins if both are
#   given; with neither, 20 new tokens. (Hugging Face's own default is `max_length=20`, 19 new tokens.)
# - Finished rows are padded with `pad_token_id` (0) after EOS, for greedy, sampling and beam search.
# - `output_scores=True` returns a `GenerateOutput` with `sequences` and, for beam search,
#   `sequences_scores` (Hugging Face's length-penalised scores).
# - `num_return_sequences`: for beam search the best hypotheses of each input (at most `num_beams`);
#   for sampling, independent samples; greedy allows only 1.
# - Bad arguments fail at once with a `ValueError` saying which and why.

# %%
#| export
@dataclasses.dataclass
class GenerateOutput:
    """What generate(..., output_scores=True) returns."""

    sequences: torch.Tensor
    sequences_scores: torch.Tensor | None = None  # beam search only: one length-penalised score per sequence


def check_generate_args(input_ids, max_new_tokens, max_length, num_beams, early_stopping, num_return_sequences,
                        do_sample, temperature, top_k, top_p, min_new_tokens, no_repeat_ngram_size):
    """Validate generate()'s arguments; return the number of new tokens to generate."""

    def is_int(x):
        return isinstance(x, int) and not isinstance(x, bool)

    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError("input_ids must be a 2-D tensor (batch, length) of token ids")
    if not is_int(num_beams) or num_beams < 1:
        raise ValueError(f"num_beams must be an integer >= 1, got {num_beams!r}")
    if max_new_tokens is not None and (not is_int(max_new_tokens) or max_new_tokens < 0):
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if max_length is not None and (not is_int(max_length) or max_length < 1):
        raise ValueError(f"max_length must be an integer >= 1 (it counts the start token), got {max_length!r}")
    if not is_int(num_return_sequences) or num_return_sequences < 1:
        raise ValueError(f"num_return_sequences must be an integer >= 1, got {num_return_sequences!r}")
    if not do_sample and num_return_sequences > num_beams:
        raise ValueError(f"num_return_sequences={num_return_sequences} is larger than num_beams={num_beams}: "
                         "beam search returns at most num_beams sequences per input (greedy returns 1)")
    if early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    if do_sample and num_beams > 1:
        raise ValueError("sampling with beams (do_sample=True, num_beams > 1) is not supported; "
                         "use num_beams=1 to sample, or do_sample=False for beam search")
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    if top_k is not None and (not is_int(top_k) or top_k < 0):
        raise ValueError(f"top_k must be an integer >= 0 (0 or None: no top-k), got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if not is_int(min_new_tokens) or min_new_tokens < 0:
        raise ValueError(f"min_new_tokens must be an integer >= 0, got {min_new_tokens!r}")
    if not is_int(no_repeat_ngram_size) or no_repeat_ngram_size < 0:
        raise ValueError(f"no_repeat_ngram_size must be an integer >= 0, got {no_repeat_ngram_size!r}")
    if max_new_tokens is not None:
        return max_new_tokens
    if max_length is not None:
        return max_length - 1
    return 20


def generate(model, input_ids, attention_mask=None, max_new_tokens=None, max_length=None, num_beams=1,
             length_penalty=1.0, early_stopping=False, num_return_sequences=1, do_sample=False, temperature=1.0,
             top_k=None, top_p=None, min_new_tokens=0, no_repeat_ngram_size=0, generator=None,
             output_scores=False, *, use_cache=True, packed=True):
    """Generate output token ids for `input_ids` (batch, length) with a T5 model.

    Greedy by default; `num_beams > 1` for beam search; `do_sample=True` for sampling (temperature,
    top_k, top_p; pass a seeded `torch.Generator` to make it reproducible). Returns a LongTensor
    (batch * num_return_sequences, 1 + generated) starting with the decoder start token, pad after EOS;
    with `output_scores=True`, a GenerateOutput. `use_cache=False` recomputes the whole prefix each step;
    `packed=False` runs the cached steps through the model's own blocks instead of `packed_weights(model)`.
    """
    new_tokens = check_generate_args(input_ids, max_new_tokens, max_length, num_beams, early_stopping,
                                     num_return_sequences, do_sample, temperature, top_k, top_p, min_new_tokens,
                                     no_repeat_ngram_size)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    config = model.config
    if attention_mask is None:
        attention_mask = (input_ids != config.pad_token_id).long()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            encoded = model.encode(input_ids, attention_mask)
            packed_weights_ = packed_weights(model) if use_cache and packed and new_tokens else None
            rows = input_ids.shape[0] * num_return_sequences
            scores = None
            if new_tokens == 0:
                sequences = torch.full((rows, 1), config.decoder_start_token_id, dtype=torch.long,
                                       device=input_ids.device)
            elif num_beams == 1:
                if num_return_sequences > 1:
                    encoded = encoded.repeat_interleave(num_return_sequences, dim=0)
                    attention_mask = attention_mask.repeat_interleave(num_return_sequences, dim=0)
                sequences = sample_search(model, encoded, attention_mask, new_tokens, do_sample=do_sample,
                                          temperature=temperature, top_k=top_k, top_p=top_p,
                                          min_new_tokens=min_new_tokens, no_repeat_ngram_size=no_repeat_ngram_size,
                                          generator=generator, use_cache=use_cache, packed=packed_weights_)
            else:
                sequences, scores = beam_search(model, encoded, attention_mask, new_tokens, num_beams,
                                                length_penalty=length_penalty, early_stopping=early_stopping,
                                                num_return_sequences=num_return_sequences,
                                                min_new_tokens=min_new_tokens,
                                                no_repeat_ngram_size=no_repeat_ngram_size, use_cache=use_cache,
                                                packed=packed_weights_)
    finally:
        model.train(was_training)
    return GenerateOutput(sequences, scores) if output_scores else sequences


# %% [markdown]
# Checks: cached and uncached `generate` agree for greedy and beam search; the output starts with the
# start token; `max_new_tokens=0` returns just that token; bad arguments are refused with a reason.

# %%
for kwargs in (dict(), dict(num_beams=3, num_return_sequences=2), dict(num_beams=2, no_repeat_ngram_size=2)):
    cached = generate(toy, ids, mask, max_new_tokens=10, **kwargs)
    uncached = generate(toy, ids, mask, max_new_tokens=10, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached) and bool((cached[:, 0] == 0).all())
assert torch.equal(generate(toy, ids, max_new_tokens=20), slow)  # the mask defaults to input_ids != pad
assert generate(toy, ids, max_new_tokens=0).tolist() == [[0]] * 4
assert generate(toy, ids, max_length=4).shape == (4, 4)
for bad in (dict(num_beams=0), dict(max_new_tokens=-1), dict(top_p=0.0, do_sample=True),
            dict(num_beams=2, num_return_sequences=3)):
    try:
        generate(toy, ids, **bad)
    except ValueError as err:
        print(f"{bad}: {err}")
    else:
        raise AssertionError(f"{bad} was accepted")

# %% [markdown]
# ## 8.11 How fast can it be?
#
# On a CPU, decoding one token of one sequence reads every decoder weight and the output embedding once
# from memory, and does little arithmetic with each: it is limited by **memory bandwidth**. Dividing the
# bytes of those weights by the speed of a large memory copy gives a floor on the time per token. Our
# greedy loop does nothing else per step but the decoder blocks and the output layer; the gap to the
# floor is Python and PyTorch's per-operation overhead (a few microseconds for each of the ~100 small
# operations of a step), which dominates for a tiny model and matters less as the model grows.
# `t5edu bench generate` measures it on the t5-small shape, next to Hugging Face's `generate` in the same
# process. Both cache keys and values; the difference is in how fast the matrix–vector products run
# (our packed weights and column blocks, Section 8.9) and in the overhead around them. With 4 beams the
# products have 4 rows, and PyTorch's small matrix–matrix kernels reach only about half the bandwidth of
# the one-row product, whatever the layout: a beam-search step costs about twice a greedy one.
# Here, the same measurement on the t5-tiny model of Section 8.4 (times vary: the cell checks only that
# the floor is positive and finite):

# %%
# NBVAL_IGNORE_OUTPUT
from t5edu.authoring.bench_generate import bytes_per_greedy_token, copy_bandwidth

bandwidth = copy_bandwidth(128)  # bytes read + written per second by a 128 MiB tensor copy
floor = bytes_per_greedy_token(bench_model) / bandwidth  # decoder weights (minus cross K/V projections) + lm_head
with torch.inference_mode():
    generate(bench_model, bench_ids, max_new_tokens=4, min_new_tokens=4)  # warm-up
    start = time.perf_counter()
    generate(bench_model, bench_ids, max_new_tokens=40, min_new_tokens=40)
    per_token = (time.perf_counter() - start) / 40
print(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s; floor {1000 * floor:.2f} ms/token; "
      f"greedy {1000 * per_token:.2f} ms/token = {per_token / floor:.1f}x the floor")
assert 0 < floor < math.inf

# %% [markdown]
# ## Summary
#
# - Greedy decoding re-runs the decoder on the whole prefix; the **key/value cache** makes each step
#   cost the same: self-attention keys/values are appended, cross-attention keys/values are computed
#   once, and the relative bias is one row of a precomputed table.
# - **Beam search** keeps `num_beams` prefixes and a pool of finished hypotheses scored
#   `sum_logprobs / length ** length_penalty`; we match `transformers`' rules (and outputs) exactly,
#   including its three `early_stopping` modes.
# - **Sampling** draws from the temperature-, top-k- and top-p-shaped distribution, reproducibly with a
#   `torch.Generator`.
#
# In the package: `from t5edu.generate import generate, beam_search, sample_search, DecoderCache,
# decoder_step, top_k_filter, top_p_filter, no_repeat_ngram_mask` — and on the command line
# `t5edu generate --model DIR "summarize: …" --num-beams 4`, and `t5edu bench generate` for the speed
# comparison with `transformers`.
#
# Next: Chapter 09 puts the model to work on real tasks.
