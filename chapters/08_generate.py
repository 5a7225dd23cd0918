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
# [← Chapter 07: Training](07_train.ipynb) · [Exercises](../exercises/ch08_generate.ipynb) ·
# [Chapter 09: Fine-tuning →](09_finetune.ipynb)
#
# A trained T5 gives, for a prefix of the output, a probability for every possible next token. This
# chapter turns that into text: which token to take, how to avoid recomputing the past at every step,
# and how to search for a better whole sequence than one token at a time allows. We decode with the model
# that Chapter 07 trained on the synthetic task mixture (copy, reverse, sort, count, add).
#
# **What you will build**
# - greedy decoding, first the slow way, then with a **key/value cache** kept by the model's own attention
#   modules (Chapters 02–05), and pictures of what the cache saves;
# - **beam search** with exactly Hugging Face's rules, built in small steps, a picture of one search step, and
#   a search for inputs where it fixes a greedy mistake (rare on this model, and not always for the reason
#   one expects);
# - **sampling** with temperature, top-k and top-p, reproducible with a `torch.Generator`;
# - `generate(model, input_ids, ...)`, the one function behind `T5.generate`, `t5edu generate` and
#   `t5edu bench generate` — and, under the hood, an opt-in fast path for the CPU (`fast=True`).
#
# **Why T5 does it this way.** The T5 paper (Raffel et al., 2020) decodes greedily — "choosing the
# highest-probability logit at every timestep" (Section 3.1.2) — for most tasks: their outputs are short
# and nearly determined by the input. For the long outputs of translation and summarization it uses beam
# search with 4 beams and a length penalty α = 0.6 (Section 3.7). Sampling is not part of the paper's
# evaluation; it is the decoding of choice when many outputs are acceptable and variety matters.
# (The paper's α is the GNMT penalty `((5 + length) / 6) ** α`; Hugging Face's `length_penalty`, which we
# follow, divides by `length ** α` instead.)

# %%
#| default_exp generate

# %%
#| export
import dataclasses
import math
import warnings

import torch
import torch.nn.functional as F

from t5edu.generate_checks import check_generate_args, check_inputs  # this chapter's argument checks (§8.10)

# %%
import time

import matplotlib.pyplot as plt

from t5edu.config import T5Config
from t5edu.model import T5

_ = torch.manual_seed(0)
torch.set_num_threads(1)  # small models decode fastest on one thread, and timings are steadier

# %% [markdown]
# ## 8.1 A model worth decoding
#
# Decoding is easiest to watch on a model that has learned something. `load_or_train` returns Chapter 07's
# demo model and its tokenizer: trained once (about two minutes of one CPU core), then read from
# `runs/cache/`. We take one held-out input of each task — inputs the model never saw in training.

# %%
from t5edu.data import SYNTHETIC_TASKS, synthetic_mixture
from t5edu.demo import load_or_train

model, tokenizer, summary = load_or_train()  # Chapter 07's demo model, in eval mode
PAD, EOS = model.config.pad_token_id, model.config.eos_token_id
print(f"{model.num_parameters() / 1e6:.2f}M parameters, {summary['steps']} training steps, "
      f"held-out exact match {summary['exact_match']:.1%}")

heldout = synthetic_mixture(400, seed=1, split="test")
first_of_task = {}
for task, text, target in zip(heldout["task"], heldout["inputs"], heldout["targets"], strict=True):
    first_of_task.setdefault(task, (text, target))
texts = [first_of_task[task][0] for task in SYNTHETIC_TASKS]
targets = [first_of_task[task][1] for task in SYNTHETIC_TASKS]
encoded_batch = tokenizer.batch_encode(texts)
ids, mask = encoded_batch["input_ids"], encoded_batch["attention_mask"]
print(ids.shape, "token ids, padded to the longest input")


def show(sequences, inputs=texts):
    """Print each input next to its decoded output (start token dropped, cut at EOS)."""
    for text, row in zip(inputs, sequences.tolist(), strict=True):
        row = row[1:]
        print(f"  {text!r:38} -> {tokenizer.decode(row[:row.index(EOS)] if EOS in row else row)!r}")


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


slow = greedy_no_cache(model, ids, mask)
show(slow)

# %% [markdown]
# Chapter 07's `greedy_decode` (used to evaluate during training) does the same with a cache; it
# returns the ids without the start token. Same tokens:

# %%
from t5edu.metrics import greedy_decode

assert torch.equal(greedy_decode(model, ids, mask, max_new_tokens=20), slow[:, 1:])

# %% [markdown]
# Step `t` runs the decoder over `t` positions, so `n` tokens cost `1 + 2 + … + n ≈ n²/2` position
# evaluations. But the decoder is causal: the hidden states of positions `0 … t-1` do not change when
# token `t` arrives. Everything the new position needs from them is in its attention layers.

# %% [markdown]
# ## 8.3 The key/value cache
#
# In each decoder block, the new position needs two things from the past:
#
# - **self-attention keys and values** of all earlier positions: computed once, when each position was
#   new, and *appended* to a per-layer cache;
# - **cross-attention keys and values** of the encoder output: the same at every step, so they are computed
#   on the first step and reused.
#
# Chapter 05 built both into the model: `T5Attention(..., cache=...)` appends or reuses keys and values
# in a dict, `T5Decoder.new_cache()` makes one pair of dicts per block, and `T5.forward(..., cache=...)`
# passes them down. So a cached step is nothing but **the model's own forward pass on one new token**,
# with the cache; the decoder works out the position of that token (and the row of the relative position
# bias it needs) from how many positions the cache holds. `DecoderCache` bundles the cache with the
# encoder output; `decoder_step` is that forward pass. Because every step runs the model's own modules,
# anything that changes a module — a forward hook, a replaced layer, a fine-tuned weight — changes what
# `generate` produces (Section 8.10 checks this).

# %%
#| export
class DecoderCache:
    """What the decoder keeps between decoding steps, one row per sequence being decoded.

    `layers` is `T5Decoder.new_cache()`, filled by the model's own `T5Attention` modules: per block,
    self-attention keys/values (one position appended per step) and cross-attention keys/values
    (computed from the encoder output on the first step, then reused).
    """

    def __init__(self, model, encoder_hidden_states, attention_mask=None):
        self.model, self.encoder_hidden_states = model, encoder_hidden_states
        # an all-ones mask masks nothing: without it the decoder builds no padding bias at each step
        self.attention_mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask
        self.layers = model.decoder.new_cache()

    def __len__(self):
        """How many positions are cached."""
        return self.model.decoder.cache_length(self.layers)

    def step(self, tokens):
        """One decoding step (see decoder_step): (rows,) tokens -> float32 logits (rows, vocab)."""
        return decoder_step(self.model, self, tokens)

    def reorder(self, rows):
        """Keep self-attention keys/values of `rows` (a LongTensor of row indices), in that order.

        Beam search calls this each step. Cross-attention keys/values are left alone: beam search only
        reorders rows among the beams of the same input, and those share the encoder output."""
        for layer in self.layers:
            cached = layer["self"]
            if "k" in cached:
                cached["k"] = cached["k"].index_select(0, rows)
                cached["v"] = cached["v"].index_select(0, rows)


def decoder_step(model, cache, tokens):
    """Feed one token per row (`tokens`: (rows,)) at position len(cache) through the model's forward pass
    with the cache -> float32 logits (rows, vocab). The cache grows by one position."""
    out = model(encoder_hidden_states=cache.encoder_hidden_states, attention_mask=cache.attention_mask,
                decoder_input_ids=tokens[:, None], cache=cache.layers)
    return out.logits[:, -1].float()


def last_logits(model, encoder_hidden_states, attention_mask, decoder_input_ids):
    """No cache: the decoder over the whole prefix -> float32 logits of its last position (rows, vocab)."""
    logits = model(attention_mask=attention_mask, encoder_hidden_states=encoder_hidden_states,
                   decoder_input_ids=decoder_input_ids).logits
    return logits[:, -1].float()


# %% [markdown]
# The check: feeding the tokens of `slow` one at a time through `decoder_step` gives, at every step,
# the logits the full model computes on the whole prefix.

# %%
with torch.no_grad():
    encoded = model.encode(ids, mask)
    cache = DecoderCache(model, encoded, mask)
    worst = 0.0
    for t in range(slow.shape[1] - 1):
        stepped = decoder_step(model, cache, slow[:, t])
        full = last_logits(model, encoded, mask, slow[:, :t + 1])
        worst = max(worst, (stepped - full).abs().max().item())
keys = cache.layers[0]["self"]["k"]
print(f"{len(cache)} cached positions, keys of block 0: {tuple(keys.shape)} (rows, heads, positions, d_kv); "
      f"largest logit difference {worst:.1e}")
assert len(cache) == slow.shape[1] - 1 and worst < 1e-4

# %% [markdown]
# A picture of the difference, for one attention layer over six steps: each row is a step, each square the
# keys and values of one position. Without a cache every step computes them for the whole prefix; with
# one, a step computes a single new column and reads the rest.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
steps = 6
for ax, cached in zip(axes, (False, True), strict=True):
    for step in range(1, steps + 1):
        for position in range(step):
            new = not cached or position == step - 1
            ax.add_patch(plt.Rectangle((position, -step), 0.9, 0.9, color="tab:orange" if new else "tab:blue"))
    ax.set_xlim(-0.2, steps)
    ax.set_ylim(-steps - 0.2, 0)
    ax.set_xticks([p + 0.45 for p in range(steps)], range(steps))
    ax.set_yticks([-s + 0.45 for s in range(1, steps + 1)], range(1, steps + 1))
    ax.set_xlabel("position of the keys / values")
    computed = sum(range(1, steps + 1)) if not cached else steps
    ax.set_title(f"{'with' if cached else 'without'} a cache: {computed} key/value columns computed")
axes[0].set_ylabel("decoding step")
axes[1].legend(handles=[plt.Rectangle((0, 0), 1, 1, color="tab:orange"), plt.Rectangle((0, 0), 1, 1, color="tab:blue")],
               labels=["computed at this step", "read from the cache"], loc="lower right", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# *Figure: keys and values per decoding step in one attention layer — without a cache (left) every step
# recomputes the whole prefix (21 columns in 6 steps); with one (right) each step adds one column (6 in all).*

# %% [markdown]
# ## 8.4 What the cache saves
#
# Without a cache, step `t` costs time proportional to `t`; with one, every step costs about the same
# (the attention over `t` cached keys is tiny next to the matrix products). We time both on a random
# t5-tiny-shaped model, forcing long outputs by forbidding EOS. Times depend on the machine, so the cell
# asserts only what must hold: both produce the same tokens.

# %%
# NBVAL_IGNORE_OUTPUT
_ = torch.manual_seed(0)
bench_model = T5(T5Config.preset("t5-tiny", vocab_size=1000, dropout_rate=0.0)).eval()
bench_ids = torch.randint(3, 1000, (1, 16))
timings = {}
positions = 64
with torch.no_grad():
    bench_enc = bench_model.encode(bench_ids)
    for name in ("no cache", "cache"):
        best = [math.inf] * positions
        for _repeat in range(2):  # per position, the faster of 2 runs: less noise from a busy machine
            seq = torch.zeros(1, 1, dtype=torch.long)
            cache = DecoderCache(bench_model, bench_enc)
            for t in range(positions):
                start = time.perf_counter()
                if name == "cache":
                    logits = decoder_step(bench_model, cache, seq[:, -1])
                else:
                    logits = last_logits(bench_model, bench_enc, None, seq)
                logits[:, 1] = -math.inf  # no EOS: a long output
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
# *Figure: time per generated token — it grows with the position without a cache and stays flat with one.*
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
    """(rows, length) token ids -> bool (rows, vocab_size): True for each token that repeats an n-gram."""
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
    """Set to -inf the scores (rows, vocab) of tokens the rules forbid after `sequences` (start first)."""
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


def make_cache(model, encoder_hidden_states, attention_mask, max_length, fast=False):
    """A DecoderCache for `max_length` positions; fast=True: the CPU fast path's FastCache (Section 8.11)."""
    if fast:
        from t5edu.fast_generate import FastCache  # imported here: that module imports this one

        return FastCache(model, encoder_hidden_states, attention_mask, max_length)
    return DecoderCache(model, encoder_hidden_states, attention_mask)

# %%
#| export
def sample_search(model, encoder_hidden_states, attention_mask, max_new_tokens, *, do_sample=False,
                  temperature=1.0, top_k=None, top_p=None, min_new_tokens=0, no_repeat_ngram_size=0,
                  generator=None, use_cache=True, fast=False):
    """Greedy decoding (do_sample=False) or sampling, one sequence per row -> (rows, 1 + steps) ids.

    Rows that have produced EOS get pad tokens until every row is done or max_new_tokens is reached.
    use_cache=False recomputes the whole prefix at each step; fast=True steps with the CPU fast path."""
    config = model.config
    rows = encoder_hidden_states.shape[0]
    device = encoder_hidden_states.device
    sequences = torch.full((rows, 1), config.decoder_start_token_id, dtype=torch.long, device=device)
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)
    cache = None
    if use_cache:
        cache = make_cache(model, encoder_hidden_states, attention_mask, 1 + max_new_tokens, fast)
    for _ in range(max_new_tokens):
        if cache is not None:
            logits = cache.step(sequences[:, -1])
        else:
            logits = last_logits(model, encoder_hidden_states, attention_mask, sequences)
        scores = constrain_scores(logits, sequences, min_new_tokens, no_repeat_ngram_size,
                                  config.eos_token_id)
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
# Checks: greedy `sample_search` is the slow loop of Section 8.2, exactly; with a generator seeded the
# same way, sampling repeats itself. Then the effect of the temperature on the trained model: three draws
# for each input at τ = 0.5, 1 and 2. A low temperature sharpens the distribution towards greedy's
# choice; a high one flattens it, and the outputs drift away from the right answer.

# %%
with torch.no_grad():
    encoded = model.encode(ids, mask)
    greedy = sample_search(model, encoded, mask, 20)
    draws = {tau: [sample_search(model, encoded, mask, 20, do_sample=True, temperature=tau,
                                 generator=torch.Generator().manual_seed(seed)) for seed in range(3)]
             for tau in (0.5, 1.0, 2.0)}
    again = sample_search(model, encoded, mask, 20, do_sample=True, temperature=2.0,
                          generator=torch.Generator().manual_seed(0))
assert torch.equal(greedy, slow) and torch.equal(again, draws[2.0][0])


def text_of(row):
    row = row[1:]
    return tokenizer.decode(row[:row.index(EOS)] if EOS in row else row)


for tau, samples in draws.items():
    right = sum(text_of(s) == t for d in samples for s, t in zip(d.tolist(), targets, strict=True))
    print(f"temperature {tau}: {right} of {3 * len(texts)} samples are the right answer")
for i, text in enumerate(texts[:3]):
    print(f"{text!r}: target {targets[i]!r}")
    for tau, samples in draws.items():
        print(f"    tau {tau}: " + " | ".join(repr(text_of(d[i].tolist())) for d in samples))

# %% [markdown]
# And the filters on random logits: top-k and top-p never let a forbidden token through, and top-p keeps
# the fewest tokens that carry at least `p` of the probability.

# %%
_ = torch.manual_seed(0)
logits = torch.randn(4, 50) * 3
for k in (1, 5):
    allowed = logits.topk(k).indices
    drawn = torch.stack([sample_next(logits, top_k=k, generator=torch.Generator().manual_seed(s))
                         for s in range(50)], dim=1)
    assert all(set(d.tolist()) <= set(a.tolist()) for d, a in zip(drawn, allowed, strict=True))
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
    """A finished hypothesis's score: sum of log-probs / (generated tokens incl. EOS) ** length_penalty."""
    return sum_logprobs / (num_generated ** length_penalty)


def _gather(tensor, index):
    """tensor (batch, n, ...) -> tensor[b, index[b, j], ...] for index (batch, m)."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(tensor, index, dim=1)

# %% [markdown]
# Rule 1 says what the search keeps between steps. For each input: `num_beams` running prefixes with
# their scores, and a pool of up to `num_beams` finished hypotheses with their scores and lengths. All of
# it lives in fixed-shape tensors, one row per input, so that a whole batch is searched at once. `Beams`
# holds them; `start_beams` makes the state before the first step, where only beam 0 is live.

# %%
#| exporti
@dataclasses.dataclass
class Beams:
    """Beam search's state, per input of the batch: running beams and a pool of finished hypotheses."""

    running: torch.Tensor  # (batch, num_beams, max_length) ids: the start token, the prefix, then pad
    running_scores: torch.Tensor  # (batch, num_beams) sums of log-probs; NEG for a beam not yet live
    finished: torch.Tensor  # (batch, num_beams, max_length) the pool's hypotheses, pad after EOS
    finished_scores: torch.Tensor  # (batch, num_beams) their length-penalised scores; NEG: an empty slot
    finished_lengths: torch.Tensor  # (batch, num_beams) their generated tokens, EOS included
    is_finished: torch.Tensor  # (batch, num_beams) bool: the slot holds a hypothesis
    improvable: torch.Tensor  # (batch, 1) bool: the input's pool may still improve (rule 5)


def start_beams(batch, num_beams, max_length, start_id=0, pad_id=0, device=None):
    """The state before the first step: every beam is the start token, only beam 0 is live (score 0,
    the others NEG), and the pools are empty."""
    running = torch.full((batch, num_beams, max_length), pad_id, dtype=torch.long, device=device)
    running[:, :, 0] = start_id
    running_scores = torch.zeros(batch, num_beams, device=device)
    running_scores[:, 1:] = NEG
    return Beams(running, running_scores, finished=running.clone(),
                 finished_scores=torch.full((batch, num_beams), NEG, device=device),
                 finished_lengths=torch.zeros(batch, num_beams, dtype=torch.long, device=device),
                 is_finished=torch.zeros(batch, num_beams, dtype=torch.bool, device=device),
                 improvable=torch.ones(batch, 1, dtype=torch.bool, device=device))

# %% [markdown]
# Rule 2, one step's candidates: add each beam's score to the log-probabilities of its next token, look
# at all `num_beams × vocab` sums of an input at once, and keep the best `2 × num_beams`. A candidate's
# index in that flat list says both its parent beam (`index // vocab`) and its token (`index % vocab`).

# %%
#| exporti
@dataclasses.dataclass
class Candidates:
    """One step's best 2 * num_beams continuations per input, best first (see top_candidates)."""

    sequences: torch.Tensor  # (batch, 2 * num_beams, max_length): the parent beam plus the new token
    scores: torch.Tensor  # (batch, 2 * num_beams) sums of log-probs
    parents: torch.Tensor  # (batch, 2 * num_beams) the index of the beam each one extends
    ends: torch.Tensor  # (batch, 2 * num_beams) bool: the new token is EOS, or the length limit is reached


def top_candidates(beams, log_probs, cur_len, eos_token_id=1):
    """Rule 2: log_probs (batch * num_beams, vocab) of the token at position `cur_len` -> Candidates."""
    batch, num_beams, max_length = beams.running.shape
    vocab = log_probs.shape[-1]
    totals = (log_probs.view(batch, num_beams, vocab) + beams.running_scores[:, :, None]).view(batch, -1)
    scores, index = torch.topk(totals, 2 * num_beams)
    parents = index // vocab
    sequences = _gather(beams.running, parents)
    sequences[:, :, cur_len] = index % vocab
    ends = (sequences[:, :, cur_len] == eos_token_id) | (cur_len + 1 >= max_length)
    return Candidates(sequences, scores, parents, ends)

# %% [markdown]
# A check on a toy step that we can follow by hand: one input, 2 beams, a vocabulary of 4 tokens (0 pad,
# 1 EOS, 2 and 3), and next-token probabilities 0.05, 0.5, 0.3, 0.15. Before the first step beam 1 is not
# live, so all four candidates extend beam 0, ranked by log-probability, EOS first.

# %%
toy = start_beams(batch=1, num_beams=2, max_length=4)
toy_log_probs = torch.tensor([0.05, 0.5, 0.3, 0.15]).log().expand(2, 4)  # the same for both beams
toy_candidates = top_candidates(toy, toy_log_probs, cur_len=1)
print("running scores before the step:", toy.running_scores.tolist())
print("candidates (token, parent, score):", [(t, p, round(s, 3)) for t, p, s in zip(
    toy_candidates.sequences[0, :, 1].tolist(), toy_candidates.parents[0].tolist(),
    toy_candidates.scores[0].tolist(), strict=True)])
assert toy_candidates.sequences[0, :, 1].tolist() == [1, 2, 3, 0] and toy_candidates.parents.eq(0).all()
assert toy_candidates.ends[0].tolist() == [True, False, False, False]

# %% [markdown]
# Rule 4, the next beams: the best `num_beams` candidates that did not end. Adding `NEG` to the score of
# a candidate that ended puts it behind every live one. `continue_beams` returns where each new beam came
# from among the candidates; `beam_search` uses it to reorder the cache and to record the search.

# %%
#| exporti
def continue_beams(beams, candidates):
    """Rule 4: the best num_beams candidates that did not end become the running beams -> their indices
    (batch, num_beams) among the candidates."""
    num_beams = beams.running.shape[1]
    alive_scores = candidates.scores + candidates.ends.to(torch.float32) * NEG
    chosen = torch.topk(alive_scores, num_beams)[1]
    beams.running, beams.running_scores = _gather(candidates.sequences, chosen), _gather(alive_scores, chosen)
    return chosen

# %% [markdown]
# Rule 3, the pool: a candidate that ended, and is among the first `num_beams` candidates, competes for
# a place in its input's pool with its length-penalised score. Everything else gets `NEG` added, and so
# does every candidate of an input that is already done (its pool full with `early_stopping=True`, or no
# longer improvable). Then the pool keeps the best `num_beams` of its old entries and the new ones.

# %%
#| exporti
def add_to_pool(beams, candidates, cur_len, length_penalty=1.0, early_stopping=False):
    """Rule 3: finished candidates among the first num_beams compete for the pool -> bool
    (batch, 2 * num_beams), True where a candidate was eligible. `cur_len` counts generated tokens, the new
    one included."""
    num_beams = beams.running.shape[1]
    first_beams = torch.arange(2 * num_beams, device=candidates.ends.device) < num_beams
    entering = candidates.ends & first_beams[None, :]
    pool_scores = candidates.scores / (cur_len ** length_penalty)
    pool_full = beams.is_finished.all(-1, keepdim=True) & (early_stopping is True)
    pool_scores += pool_full.to(torch.float32) * NEG
    pool_scores += (~beams.improvable).to(torch.float32) * NEG
    pool_scores += (~entering) * NEG
    merged_scores = torch.cat([beams.finished_scores, pool_scores], dim=1)
    best = torch.topk(merged_scores, num_beams)[1]
    beams.finished = _gather(torch.cat([beams.finished, candidates.sequences], dim=1), best)
    beams.finished_scores = _gather(merged_scores, best)
    new_lengths = torch.full_like(candidates.ends, cur_len, dtype=torch.long)
    beams.finished_lengths = _gather(torch.cat([beams.finished_lengths, new_lengths], dim=1), best)
    beams.is_finished = _gather(torch.cat([beams.is_finished, entering], dim=1), best)
    return entering

# %% [markdown]
# On the toy step: tokens 2 and 3 continue as the two beams, and the EOS candidate, ranked first, enters
# the pool with its log-probability divided by its length, 1.

# %%
chosen_toy = continue_beams(toy, toy_candidates)
entering_toy = add_to_pool(toy, toy_candidates, cur_len=1)
print("beams:", toy.running[0, :, :2].tolist(), "scores", [round(x, 3) for x in toy.running_scores[0].tolist()])
print("pool:", toy.finished[0, :1, :2].tolist(), "score", round(toy.finished_scores[0, 0].item(), 3))
assert chosen_toy.tolist() == [[1, 2]] and toy.running[0, :, 1].tolist() == [2, 3]
assert toy.is_finished.tolist() == [[True, False]]
assert abs(toy.finished_scores[0, 0].item() - math.log(0.5)) < 1e-6

# %% [markdown]
# Rule 5, when to stop: an input can still improve its pool while its best running beam, scored as if it
# finished now (or at `max_length`, with `early_stopping="never"`), beats the pool's worst entry — an
# input whose pool is not full always can. The search stops when no input can, when every pool is full
# with `early_stopping=True`, or when every candidate ended. Rule 6 then reads the best hypotheses off the
# pools and cuts the padding after the longest.

# %%
#| exporti
def search_done(beams, candidates, cur_len, max_length, length_penalty=1.0, early_stopping=False):
    """Rule 5: update which inputs can still improve their pool (after the step that generated `cur_len`
    tokens); True when the whole search may stop."""
    never = early_stopping == "never" and length_penalty > 0.0
    best_length = max_length - 1 if never else cur_len
    best_running = beams.running_scores[:, :1] / (best_length ** length_penalty)
    worst_finished = torch.where(beams.is_finished, beams.finished_scores.min(dim=1, keepdim=True)[0], NEG)
    beams.improvable = beams.improvable & (best_running > worst_finished).any(-1, keepdim=True)
    all_full = bool(beams.is_finished.all()) and early_stopping is True
    return not bool(beams.improvable.any()) or all_full or bool(candidates.ends.all())


def best_hypotheses(beams, num_return_sequences=1):
    """Rule 6: the best num_return_sequences of each pool -> (sequences (batch * n, 1 + longest), scores)."""
    batch, _, max_length = beams.finished.shape
    sequences = beams.finished[:, :num_return_sequences].reshape(batch * num_return_sequences, max_length)
    scores = beams.finished_scores[:, :num_return_sequences].reshape(-1)
    longest = int(beams.finished_lengths[:, :num_return_sequences].max()) if max_length > 1 else 0
    return sequences[:, :1 + longest], scores

# %% [markdown]
# The toy pool holds one hypothesis of two, so the toy input can still improve and the search goes on:

# %%
assert not search_done(toy, toy_candidates, cur_len=1, max_length=4) and toy.improvable.all()
toy_sequences, toy_scores = best_hypotheses(toy)
print("best hypothesis so far:", toy_sequences.tolist(), [round(s, 3) for s in toy_scores.tolist()])

# %% [markdown]
# `beam_search` puts the rules together. It repeats the encoder output (and its mask) `num_beams` times,
# so that each beam is one row of the decoder's batch, then, at each step: the next-token log-probabilities
# of every beam (one cached decoder step, with Section 8.5's rules applied), the candidates, the next
# beams, the pool, the cache reordered to follow the beams' parents, and the test for stopping.

# %%
#| export
def beam_search(model, encoder_hidden_states, attention_mask, max_new_tokens, num_beams, *,
                length_penalty=1.0, early_stopping=False, num_return_sequences=1, min_new_tokens=0,
                no_repeat_ngram_size=0, use_cache=True, fast=False, trace=None):
    """Beam search with Hugging Face's semantics -> (sequences, scores).

    sequences: (batch * num_return_sequences, 1 + longest) ids, best first per input, pad after EOS;
    scores: (batch * num_return_sequences,) the length-penalised scores. `trace`, if a list, receives one
    dict per step (candidates, parents, scores, which were finished / kept) for figures. `use_cache` and
    `fast` as in sample_search."""
    config, eos = model.config, model.config.eos_token_id
    batch, device = encoder_hidden_states.shape[0], encoder_hidden_states.device
    max_length = 1 + max_new_tokens
    encoder_hidden_states = encoder_hidden_states.repeat_interleave(num_beams, dim=0)
    if attention_mask is not None:
        attention_mask = attention_mask.repeat_interleave(num_beams, dim=0)
    cache = make_cache(model, encoder_hidden_states, attention_mask, max_length, fast) if use_cache else None
    beams = start_beams(batch, num_beams, max_length, config.decoder_start_token_id, config.pad_token_id,
                        device)
    row_offset = torch.arange(batch, device=device)[:, None] * num_beams
    for cur_len in range(1, max_length):
        flat = beams.running[:, :, :cur_len].reshape(batch * num_beams, cur_len)
        if cache is not None:
            logits = cache.step(flat[:, -1])
        else:
            logits = last_logits(model, encoder_hidden_states, attention_mask, flat)
        log_probs = constrain_scores(F.log_softmax(logits, dim=-1), flat, min_new_tokens,
                                     no_repeat_ngram_size, eos)
        candidates = top_candidates(beams, log_probs, cur_len, eos)
        chosen = continue_beams(beams, candidates)
        entering = add_to_pool(beams, candidates, cur_len, length_penalty, early_stopping)
        if trace is not None:
            trace.append(dict(step=cur_len, tokens=candidates.sequences[:, :, cur_len].clone(),
                              parents=candidates.parents.clone(), scores=candidates.scores.clone(),
                              ends=candidates.ends.clone(), entering=entering.clone(), chosen=chosen.clone()))
        if cache is not None:
            cache.reorder((_gather(candidates.parents, chosen) + row_offset).flatten())
        if search_done(beams, candidates, cur_len, max_length, length_penalty, early_stopping):
            break
    return best_hypotheses(beams, num_return_sequences)

# %% [markdown]
# One step of the search, drawn for 4 beams: each beam proposes its most likely next tokens, their scores
# are the beam's score plus the token's log-probability, and the best `2 × 4` of all candidates are
# ranked; the best 4 that do not end in EOS become the next beams (a finished one goes to the pool).

# %%
fig, ax = plt.subplots(figsize=(9, 4))
beam_scores_demo = [-0.4, -0.9, -1.3, -2.0]
proposals = [[-0.1, -2.6, -3.1], [-0.2, -1.4, -3.5], [-0.3, -0.5, -2.9], [-0.6, -1.9, -2.2]]
candidates_demo = sorted(((s + p, b, j) for b, (s, ps) in enumerate(zip(beam_scores_demo, proposals, strict=True))
                          for j, p in enumerate(ps)), reverse=True)
eos_candidate = candidates_demo[2]  # pretend the third best candidate is EOS: it finishes instead
kept_demo = [c for c in candidates_demo[:8] if c != eos_candidate][:4]
for b, score in enumerate(beam_scores_demo):
    ax.scatter([0], [-b * 3], s=120, color="tab:blue", zorder=3)
    ax.annotate(f"beam {b}\n{score:.1f}", (0, -b * 3), xytext=(-48, -6), textcoords="offset points", fontsize=8)
    for j, p in enumerate(proposals[b]):
        total, y = score + p, -b * 3 - j + 1
        candidate = (total, b, j)
        color = "black" if candidate == eos_candidate else "tab:blue" if candidate in kept_demo else "0.7"
        ax.plot([0, 1], [-b * 3, y], color=color, lw=1.2 if color != "0.7" else 0.8)
        ax.scatter([1], [y], color=color, marker="s" if candidate == eos_candidate else "o", zorder=3)
        note = " EOS -> pool" if candidate == eos_candidate else ""
        rank = candidates_demo.index(candidate) + 1
        ax.annotate(f"{score:.1f} + ({p:.1f}) = {total:.1f}  rank {rank}{note}", (1, y), xytext=(6, -3),
                    textcoords="offset points", fontsize=8, color="black" if color != "0.7" else "0.5")
ax.set_xlim(-0.5, 2.6)
ax.set_xticks([0, 1], ["beams at step t", "candidates at step t + 1"])
ax.set_yticks([])
ax.set_title("One beam-search step, 4 beams: keep the best 4 of all candidates")
plt.tight_layout()
plt.show()

# %% [markdown]
# *Figure: blue candidates (the 4 best that did not end) become the next beams; the black square ended in
# EOS and enters the pool of finished hypotheses; grey ones are dropped — beam 3 has no descendant left.*

# %% [markdown]
# Beam search is a *search*, not a guarantee: it can miss the most likely sequence. Two things must
# hold, though, and we check them: each returned score is the sum of the model's log-probabilities of its
# tokens (recomputed here by teacher forcing) divided by its length to the power `length_penalty`; and
# the best hypothesis scores at least as well as greedy decoding's output.

# %%
def sequence_logprob(model, input_ids, attention_mask, sequence):
    """Sum of log p(token) of `sequence` (start token first) up to and including EOS, by teacher forcing."""
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask,
                       decoder_input_ids=sequence[None, :-1]).logits
    logp = F.log_softmax(logits[0].float(), dim=-1).gather(-1, sequence[1:, None])[:, 0]
    end = (sequence[1:] == EOS).nonzero()
    n = int(end[0]) + 1 if len(end) else len(sequence) - 1
    return logp[:n].sum().item(), n


with torch.no_grad():
    encoded = model.encode(ids, mask)
    beams, beam_scores = beam_search(model, encoded, mask, 20, num_beams=3, num_return_sequences=3)
for i, (seq, score) in enumerate(zip(beams, beam_scores.tolist(), strict=True)):
    w = i // 3
    total, n = sequence_logprob(model, ids[w:w + 1], mask[w:w + 1], seq)
    assert abs(hypothesis_score(total, n, 1.0) - score) < 1e-4
    if i % 3 == 0:
        greedy_total, m = sequence_logprob(model, ids[w:w + 1], mask[w:w + 1], slow[w])
        assert score >= hypothesis_score(greedy_total, m, 1.0) - 1e-5
    if w < 2:
        print(f"{texts[w]!r:32} #{i % 3}: {text_of(seq.tolist())!r:24} score {score:.3f}")

# %% [markdown]
# **Where beam search fixes a greedy mistake.** On this model greedy decoding is right on most held-out
# inputs, so a mistake for beam search to fix is rare, and we have to search for one. Two sets of inputs,
# none of them seen in training: a fresh sample of 4,000 held-out inputs of the mixture (seed 2, at the
# lengths the model was trained on; the repeats removed), and 200 `sort:` inputs of 4 words — one word
# more than any `sort:` input in training, where the model is less sure. `decode_both` decodes each set
# greedily and with beam search (4 beams, `length_penalty=1`, Hugging Face's default), in batches of 500.

# %%
import numpy as np

from t5edu.data import WORDS


def decode_both(texts, num_beams=4, batch_size=500):
    """Greedy and beam-search outputs of `texts`: two lists of token-id lists (start token first)."""
    greedy_out, beam_out = [], []
    for start in range(0, len(texts), batch_size):
        part = tokenizer.batch_encode(texts[start:start + batch_size])
        with torch.no_grad():
            part_encoded = model.encode(part["input_ids"], part["attention_mask"])
            greedy_out += sample_search(model, part_encoded, part["attention_mask"], 20).tolist()
            beam_out += beam_search(model, part_encoded, part["attention_mask"], 20, num_beams)[0].tolist()
    return greedy_out, beam_out


sample = synthetic_mixture(4000, seed=2, split="test")
search_sets = {"held-out": list(dict.fromkeys(zip(sample["inputs"], sample["targets"], strict=True)))}
rng = np.random.default_rng(0)
longer = [rng.choice(WORDS, size=4, replace=False).tolist() for _ in range(200)]
search_sets["sort, 4 words"] = list(dict.fromkeys((f"sort: {' '.join(w)}", " ".join(sorted(w)))
                                                  for w in longer))
differ = {}  # set -> [(input, target, greedy ids, beam ids)] where exactly one of the two is right
for name, pairs in search_sets.items():
    search_texts, search_targets = (list(column) for column in zip(*pairs, strict=True))
    greedy_ids, beam_ids = decode_both(search_texts)
    greedy_right = [text_of(g) == t for g, t in zip(greedy_ids, search_targets, strict=True)]
    beam_right = [text_of(b) == t for b, t in zip(beam_ids, search_targets, strict=True)]
    differ[name] = [(search_texts[i], search_targets[i], greedy_ids[i], beam_ids[i])
                    for i in range(len(pairs)) if greedy_right[i] != beam_right[i]]
    fixes = sum(b and not g for g, b in zip(greedy_right, beam_right, strict=True))
    print(f"{name:13} {len(pairs):5} inputs: right greedy {sum(greedy_right):4}, beam-4 {sum(beam_right):4}; "
          f"beam fixes greedy {fixes}, breaks it {len(differ[name]) - fixes}")
fixed = [r for rows in differ.values() for r in rows if text_of(r[3]) == r[1]]
assert fixed, "no greedy mistake fixed by beam search"

# %% [markdown]
# For each input where the two disagree: both outputs, the sum of their tokens' log-probabilities (by
# teacher forcing, EOS included), their lengths, and the score beam search ranks by, log-prob / length.

# %%
for text, target, greedy_out, beam_out in (r for rows in differ.values() for r in rows):
    one = tokenizer.batch_encode([text])
    print(f"{text!r} (target {target!r})")
    for who, output in (("greedy", greedy_out), ("beam-4", beam_out)):
        total, n = sequence_logprob(model, one["input_ids"], one["attention_mask"], torch.tensor(output))
        print(f"    {who} {text_of(output)!r:26} log-prob {total:.2f} / {n} tokens = {total / n:.3f}"
              f"{'  right' if text_of(output) == target else ''}")

# %% [markdown]
# The honest tally for this model: on 2,744 held-out inputs of the trained lengths the two decodings
# disagree once, and it is a fix. For `sort: game girl green`, greedy decoding starts with `girl`, which
# the model finds a little more likely than `game` (the tree in Section 8.8 shows both), and pays for the
# wrong order later; beam search keeps `game` as a second beam and finishes `game girl green`, a sequence
# the model finds far more likely (log-prob −0.76 against −1.32) — a better sequence that starts with a
# worse token, which is what beam search is for.
#
# On `sort:` inputs of 4 words the model is less sure and greedy decoding is often wrong (right on 106 of
# 200): beam search fixes 4 of its mistakes and breaks none. But only one of those fixes (`sort: door
# flower girl snow`) is a more likely sequence, and barely (−0.89 against −0.90). In the other three,
# greedy decoding drops a word, and its shorter output has the *higher* log-prob; beam search ranks the
# right, longer answer first only because `length_penalty=1` divides each score by the length (−0.97 / 5
# beats −0.89 / 4 for `sort: dog hat juice cup`). Beam search finds sequences of a higher score; it fixes
# a mistake only where that score prefers the right answer. On short, nearly determined outputs a
# well-trained model already puts that answer first, token by token — which is why the T5 paper decodes
# most tasks greedily and keeps beam search for long outputs (translation, summarization).

# %% [markdown]
# And the check that matters for the semantics: the same model in Hugging Face's `transformers`
# (eager attention, float32), loaded from the same weights, produces the same tokens and scores, for
# several settings. (The tests in `tests/test_generate_parity.py` cover many more: batches with padding,
# `num_beams` 2–5, all `early_stopping` values, length penalties 0, 1, 2, n-gram blocking, EOS-heavy models.)

# %%
import tempfile

import transformers
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()
hf_dir = tempfile.mkdtemp(prefix="t5edu-ch08-")
model.save_pretrained(hf_dir)
hf_config = transformers.T5Config.from_pretrained(hf_dir)
hf_config._attn_implementation = "eager"
hf = transformers.T5ForConditionalGeneration.from_pretrained(hf_dir, config=hf_config).eval()
settings = [dict(num_beams=1), dict(num_beams=3, num_return_sequences=2),
            dict(num_beams=4, length_penalty=0.0, early_stopping=True),
            dict(num_beams=2, length_penalty=2.0, early_stopping="never", no_repeat_ngram_size=2),
            dict(num_beams=3, min_new_tokens=7)]
with torch.no_grad(), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    encoded = model.encode(ids, mask)
    for s in settings:
        beams_, nrs = s.get("num_beams", 1), s.get("num_return_sequences", 1)
        reference = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                                output_scores=True, return_dict_in_generate=True, **s)
        if beams_ == 1:
            ours = sample_search(model, encoded, mask, 12, min_new_tokens=s.get("min_new_tokens", 0))
        else:
            ours, our_scores = beam_search(model, encoded, mask, 12, beams_,
                                           length_penalty=s.get("length_penalty", 1.0),
                                           early_stopping=s.get("early_stopping", False), num_return_sequences=nrs,
                                           min_new_tokens=s.get("min_new_tokens", 0),
                                           no_repeat_ngram_size=s.get("no_repeat_ngram_size", 0))
            assert torch.allclose(our_scores, reference.sequences_scores, atol=1e-4)
        theirs = reference.sequences
        after_eos = (theirs == EOS).long().cumsum(1) - (theirs == EOS).long() > 0  # HF fills these with EOS
        assert ours.shape == theirs.shape and torch.equal(ours[~after_eos], theirs[~after_eos]), s
        print(s, "->", [text_of(r) for r in ours.tolist()[:2]])

# %% [markdown]
# ## 8.8 Looking inside the search
#
# `beam_search(..., trace=[])` records every step: the `2 × num_beams` candidates, their parents and
# scores, which ended in EOS, and which continued. Drawn as a tree for one input: blue nodes are the beams
# that continue, black squares finished hypotheses that entered the pool, grey nodes candidates that were
# pruned (kept among the top `2 × num_beams` but not continued).

# %%
tree_text = fixed[0][0]  # the greedy mistake that beam search fixed: sort: game girl green
one = tokenizer.batch_encode([tree_text])
trace = []
with torch.no_grad():
    best, best_scores = beam_search(model, model.encode(one["input_ids"], one["attention_mask"]),
                                    one["attention_mask"], 10, num_beams=3, num_return_sequences=3, trace=trace)

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
        label = "</s>" if token == EOS else tokenizer.id_to_piece(token)
        ended, kept = bool(record["ends"][0, j]), j in chosen
        entered = ended and bool(record["entering"][0, j])
        style = dict(color="black", marker="s") if entered else \
            dict(color="tab:blue", marker="o") if kept else dict(color="0.75", marker="o")
        px, py = previous[parent]
        ax.plot([px, x], [py, y], color=style["color"], lw=0.8, zorder=1)
        ax.scatter([x], [y], zorder=2, **style)
        ax.annotate(f"{label} {float(record['scores'][0, j]):.1f}", (x, y), textcoords="offset points",
                    xytext=(4, 4), fontsize=7, color="black" if (kept or entered) else "0.5")
        if kept:
            nodes[chosen.index(j)] = (x, y)
    previous = nodes
    if not previous:
        break
ax.set_xlabel("step (tokens generated)")
ax.set_yticks([])
ax.set_title(f"Beam search, 3 beams, input {tree_text!r}: token and cumulative log-prob")
plt.tight_layout()
plt.show()
print("pool:", [(text_of(s.tolist()), round(v, 3)) for s, v in zip(best, best_scores.tolist(), strict=True)])

# %% [markdown]
# *Figure: the search tree for `sort: game girl green`, the greedy mistake fixed above — the beams that
# continue (blue), the hypotheses that finished (black squares, with their cumulative log-probabilities) and
# the candidates that were pruned (grey). At step 1 `girl` (−0.7) edges out `game` (−0.8), and greedy
# decoding takes it; beam search keeps both, and by step 3 `game girl green` is ahead (−0.8 against −1.3).*

# %% [markdown]
# ## 8.9 Where the decoder looks
#
# Cross-attention weights say, for each output token, which input tokens the decoder read. `T5Attention`
# keeps the weights of its last call when `record_weights` is set (Chapter 02), so we switch it on in the
# last decoder block's cross-attention, run the model once on the input and its greedy output (teacher
# forcing), and average the heads. To reverse a list of words, output word `i` must come from input word
# `n - 1 - i`: we expect an anti-diagonal.

# %%
heat_text = first_of_task["reverse"][0]
heat = tokenizer.batch_encode([heat_text])
with torch.no_grad():
    heat_out = sample_search(model, model.encode(heat["input_ids"], heat["attention_mask"]),
                             heat["attention_mask"], 20)
    cross = model.decoder.block[-1].layer[1].EncDecAttention
    cross.record_weights = True
    try:
        model(input_ids=heat["input_ids"], attention_mask=heat["attention_mask"],
              decoder_input_ids=heat_out[:, :-1])
        weights = cross.last_weights[0].mean(0)  # (output positions, input positions), heads averaged
    finally:
        cross.record_weights, cross.last_weights = False, None
in_pieces = [tokenizer.id_to_piece(t) for t in heat["input_ids"][0].tolist()]
out_pieces = [tokenizer.id_to_piece(t) for t in heat_out[0, 1:].tolist()]
plt.figure(figsize=(6, 4))
plt.imshow(weights.numpy(), cmap="Blues", aspect="auto")
plt.xticks(range(len(in_pieces)), in_pieces, rotation=60, fontsize=8)
plt.yticks(range(len(out_pieces)), out_pieces, fontsize=8)
plt.xlabel("input token (encoder)")
plt.ylabel("output token (decoder, predicted)")
plt.title("Cross-attention of the last decoder block, heads averaged")
plt.colorbar(label="attention weight")
plt.tight_layout()
plt.show()
print(f"{heat_text!r} -> {text_of(heat_out[0].tolist())!r} (target {first_of_task['reverse'][1]!r})")
print("input token each output token attends to most:",
      [in_pieces[j] for j in weights.argmax(-1).tolist()])

# %% [markdown]
# *Figure: cross-attention of the demo model's last decoder block on a `reverse:` input, heads averaged:
# each row is an output token, each column an input token; the printed line lists, for each output
# token, the input token it attends to most: `bread box tree ocean`, the input reversed — an anti-diagonal
# (the last row is EOS).*

# %% [markdown]
# ## 8.10 `generate`
#
# One function puts it together, with Hugging Face's argument names: the encoder runs once, then
# `sample_search` (greedy or sampling) or `beam_search` runs with a cache, under `torch.inference_mode`
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
# - `fast=True` opts into the CPU fast path of Section 8.11 (same tokens, other code).
# - Bad arguments fail at once with a `ValueError` saying which and why.

# %%
#| export
@dataclasses.dataclass
class GenerateOutput:
    """What generate(..., output_scores=True) returns."""

    sequences: torch.Tensor
    sequences_scores: torch.Tensor | None = None  # beam search only: one length-penalised score per sequence

# %% [markdown]
# The checks of the arguments are long and dull, so they live in a module of their own,
# `t5edu.generate_checks`; `generate` calls them first.

# %%
#| export generate_checks
import torch


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def check_inputs(input_ids, attention_mask):
    """Refuse input ids that are not a non-empty (batch, length) tensor, or a mask of another shape."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a 2-D tensor (batch, length) of token ids, got {shape}; "
                         "for one input, add a batch axis: ids[None]")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids is empty, shape {tuple(input_ids.shape)}: nothing to generate from")
    if attention_mask is not None and (not isinstance(attention_mask, torch.Tensor)
                                       or attention_mask.shape != input_ids.shape):
        shape = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else "(not a tensor)"
        raise ValueError(f"attention_mask has shape {shape} but input_ids has shape "
                         f"{tuple(input_ids.shape)}: they must be the same (batch, length)")

# %%
#| export generate_checks
def check_generate_args(max_new_tokens, max_length, num_beams, early_stopping, num_return_sequences,
                        do_sample, temperature, top_k, top_p, min_new_tokens, no_repeat_ngram_size):
    """Validate generate()'s options; return the number of new tokens to generate."""
    if not _is_int(num_beams) or num_beams < 1:
        raise ValueError(f"num_beams must be an integer >= 1, got {num_beams!r}")
    if max_new_tokens is not None and (not _is_int(max_new_tokens) or max_new_tokens < 0):
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if max_length is not None and (not _is_int(max_length) or max_length < 1):
        raise ValueError(f"max_length must be an integer >= 1 (it counts the start token), "
                         f"got {max_length!r}")
    if not _is_int(num_return_sequences) or num_return_sequences < 1:
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
    if top_k is not None and (not _is_int(top_k) or top_k < 0):
        raise ValueError(f"top_k must be an integer >= 0 (0 or None: no top-k), got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if not _is_int(min_new_tokens) or min_new_tokens < 0:
        raise ValueError(f"min_new_tokens must be an integer >= 0, got {min_new_tokens!r}")
    if not _is_int(no_repeat_ngram_size) or no_repeat_ngram_size < 0:
        raise ValueError(f"no_repeat_ngram_size must be an integer >= 0, got {no_repeat_ngram_size!r}")
    if max_new_tokens is not None:
        return max_new_tokens
    if max_length is not None:
        return max_length - 1
    return 20

# %%
#| export
def fast_path_allowed(fast, device):
    """Whether generate(fast=True) may use the fast path on `device`: on the CPU only; elsewhere a warning."""
    if fast and torch.device(device).type != "cpu":
        warnings.warn(f"generate(fast=True) is a CPU path, measured no faster on "
                      f"{torch.device(device).type}: using the default path", stacklevel=3)
        return False
    return bool(fast)

# %%
#| export
def generate(model, input_ids, attention_mask=None, max_new_tokens=None, max_length=None, num_beams=1,
             length_penalty=1.0, early_stopping=False, num_return_sequences=1, do_sample=False,
             temperature=1.0, top_k=None, top_p=None, min_new_tokens=0, no_repeat_ngram_size=0,
             generator=None, output_scores=False, *, use_cache=True, fast=False):
    """Generate output token ids for `input_ids` (batch, length) with a T5 model.

    Greedy by default; `num_beams > 1` for beam search; `do_sample=True` for sampling (temperature,
    top_k, top_p; pass a seeded `torch.Generator` to make it reproducible). Returns a LongTensor
    (batch * num_return_sequences, 1 + generated) starting with the decoder start token, pad after EOS;
    with `output_scores=True`, a GenerateOutput.

    Every step runs the model's own forward pass with a key/value cache (Section 8.3), so hooks and
    replaced modules take effect. `use_cache=False` recomputes the whole prefix at each step.
    `fast=True` opts into the CPU fast path (`t5edu.fast_generate`, Section 8.11): the same tokens from
    packed copies of the decoder's weights, bypassing the modules' forward (hooks do not fire). It is
    for the CPU only: on another device, where it measured no gain, it warns and uses the default path.
    """
    check_inputs(input_ids, attention_mask)
    new_tokens = check_generate_args(max_new_tokens, max_length, num_beams, early_stopping,
                                     num_return_sequences, do_sample, temperature, top_k, top_p,
                                     min_new_tokens, no_repeat_ngram_size)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    config = model.config
    fast = fast_path_allowed(fast, input_ids.device)
    if attention_mask is None:
        attention_mask = (input_ids != config.pad_token_id).long()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            encoded = model.encode(input_ids, attention_mask)
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
                                          min_new_tokens=min_new_tokens,
                                          no_repeat_ngram_size=no_repeat_ngram_size, generator=generator,
                                          use_cache=use_cache, fast=fast)
            else:
                sequences, scores = beam_search(model, encoded, attention_mask, new_tokens, num_beams,
                                                length_penalty=length_penalty, early_stopping=early_stopping,
                                                num_return_sequences=num_return_sequences,
                                                min_new_tokens=min_new_tokens,
                                                no_repeat_ngram_size=no_repeat_ngram_size,
                                                use_cache=use_cache, fast=fast)
    finally:
        model.train(was_training)
    return GenerateOutput(sequences, scores) if output_scores else sequences

# %% [markdown]
# Checks: cached and uncached `generate` agree for greedy and beam search; the output starts with the
# start token; `max_new_tokens=0` returns just that token; bad arguments and bad inputs are refused with
# a reason.

# %%
for kwargs in (dict(), dict(num_beams=3, num_return_sequences=2), dict(num_beams=2, no_repeat_ngram_size=2)):
    cached = generate(model, ids, mask, max_new_tokens=10, **kwargs)
    uncached = generate(model, ids, mask, max_new_tokens=10, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached) and bool((cached[:, 0] == 0).all())
assert torch.equal(generate(model, ids, max_new_tokens=20), slow)  # the mask defaults to input_ids != pad
assert generate(model, ids, max_new_tokens=0).tolist() == [[0]] * len(texts)
assert generate(model, ids, max_length=4).shape == (len(texts), 4)
for bad in (dict(num_beams=0), dict(max_new_tokens=-1), dict(top_p=0.0, do_sample=True),
            dict(num_beams=2, num_return_sequences=3), dict(attention_mask=mask[:2]),
            dict(input_ids=ids[0])):
    try:
        generate(model, **{"input_ids": ids, **bad})
    except ValueError as err:
        print(f"{sorted(bad)}: {err}")
    else:
        raise AssertionError(f"{bad} was accepted")

# %% [markdown]
# Because each step is the model's own forward pass, `generate` decodes whatever the modules compute. A
# forward hook on the first decoder self-attention that silences it — its output replaced by zeros —
# changes the outputs; removing the hook restores them.

# %%
first_attention = model.decoder.block[0].layer[0].SelfAttention
handle = first_attention.register_forward_hook(lambda module, args, output: torch.zeros_like(output))
try:
    hooked = generate(model, ids, mask, max_new_tokens=20)
finally:
    handle.remove()
print("with the first decoder self-attention silenced:")
show(hooked)
assert not torch.equal(hooked, slow) and torch.equal(generate(model, ids, mask, max_new_tokens=20), slow)

# %% [markdown]
# ## 8.11 Under the hood: a fast path for the CPU
#
# Everything so far runs through the book's modules, and that is the default everywhere. This section is
# optional reading: how much faster one-token steps can go on a CPU when we give up running the modules'
# `forward` — `generate(..., fast=True)`, `T5.generate(..., fast=True)`, `t5edu generate --fast`. It lives
# in its own module, `t5edu.fast_generate`, and produces the same tokens (the tests check greedy and beam
# search on several models). Hooks and replaced modules do not affect it: it reads the weights directly.
#
# With one token per step, every linear layer is a row vector times a matrix. PyTorch stores an
# `nn.Linear` weight as (out, in) and computes `x @ W.T`; on a CPU that reads the matrix against its
# memory order and reaches about half the memory bandwidth that `x @ M` does with the matrix stored as
# (in, out), contiguous (measured on this book's 2-core CPU: 10 vs 21 GB/s for a 4 MiB matrix not in the
# cache). Decoding is bound by exactly that bandwidth (Section 8.12), so the fast path keeps a second copy
# of the decoder's weights, transposed once:
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
# the same (rows, out) result.
#
# `fast_step` is `decoder_step` written out with these matrices. Attention itself is Chapter 02's
# `attention` function — the same math `T5Attention` runs — and the cache has the same layout, so
# `DecoderCache.reorder` works unchanged. `packed_weights(model)` builds the copy and keeps it for the next
# call, as long as the model's parameters (their storage and in-place version counters) and the thread
# count have not changed: rebuilding it for every call would cost about as much as decoding 20 tokens of
# t5-small. The copy costs memory (the decoder and output layer once more). On a GPU none of this pays:
# the products are not bandwidth-starved the same way, so `fast=True` there falls back to the default path.

# %%
#| export fast_generate
import dataclasses
import weakref

import torch

from t5edu.attention import attention, mask_value, padding_bias, split_heads
from t5edu.encoder import clamp_fp16
from t5edu.generate import DecoderCache


@dataclasses.dataclass
class PackedWeights:
    """The decoder's matrices as (in, out) — or (blocks, in, out / blocks) column blocks — for one-token
    steps (see packed_weights); `product(x, matrix)` multiplies by either."""

    layers: list  # per block: dict of matrices and the modules (norms, activation) used with them
    lm_head: torch.Tensor  # (d_model, vocab), or its column blocks
    signature: tuple


_PACKED = weakref.WeakKeyDictionary()  # model -> PackedWeights of its current parameters


def _signature(model):
    """What the packed copy was made from: thread count, and each parameter's storage and in-place version."""
    params = [*model.decoder.parameters(), model.lm_head.weight]
    return (torch.get_num_threads(), *((p.data_ptr(), p._version, p.dtype, p.device) for p in params))


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

# %%
#| export fast_generate
@torch.no_grad()
def packed_weights(model):
    """Transposed, fused copies of the decoder's weights, in two column blocks per thread; kept per model
    until a parameter (or the thread count) changes."""
    signature = _signature(model)
    cached = _PACKED.get(model)
    if cached is not None and cached.signature == signature:
        return cached
    threads = torch.get_num_threads() if model.lm_head.weight.device.type == "cpu" else 1
    parts = 2 * threads if threads > 1 else 1  # one thread: plain (in, out) matrices
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
            cross=cross, wi=column_blocks(wi, parts), wo=column_blocks(ff.wo.weight, parts),
            act=ff.act, gated=gated, heads=self_attn.num_heads, d_kv=self_attn.d_kv))
    packed = PackedWeights(layers, column_blocks(model.lm_head.weight, parts), signature)
    _PACKED[model] = packed
    return packed

# %%
#| export fast_generate
class FastCache(DecoderCache):
    """A DecoderCache (same layout) that steps with fast_step: the packed weights, the cross-attention
    keys/values computed here once, and the causal position bias of all `max_length` positions."""

    def __init__(self, model, encoder_hidden_states, attention_mask=None, max_length=None):
        super().__init__(model, encoder_hidden_states, attention_mask)
        self.packed = packed_weights(model)
        dtype = encoder_hidden_states.dtype
        for w, layer in zip(self.packed.layers, self.layers, strict=True):
            cross = w["cross"]
            layer["cross"]["k"] = split_heads(cross.k(encoder_hidden_states), cross.num_heads)
            layer["cross"]["v"] = split_heads(cross.v(encoder_hidden_states), cross.num_heads)
        self.cross_bias = None if self.attention_mask is None else padding_bias(self.attention_mask, dtype)
        self.position_bias = None
        if max_length:
            self.position_bias = _as(model.decoder.self_attention_bias(max_length, 0), dtype)

    def self_bias(self, position):
        """(1, H, 1, position + 1): the bias of query `position` against keys 0 … position."""
        if self.position_bias is not None and position < self.position_bias.shape[-1]:
            return self.position_bias[:, :, position:position + 1, :position + 1]
        return _as(self.model.decoder.self_attention_bias(1, position), self.encoder_hidden_states.dtype)

    def step(self, tokens):
        """One decoding step with fast_step."""
        return fast_step(self.model, self, tokens)


def _as(bias, dtype):
    """A float32 bias in `dtype`, masked scores kept finite (as T5Attention does in mixed precision)."""
    return bias if bias.dtype == dtype else bias.to(dtype).clamp_min(mask_value(dtype))


def _attend(q, k, v, bias):
    """Chapter 02's attention for one query position: q (rows, H, 1, d) -> (rows, H * d)."""
    out, _ = attention(q, k, v, bias)
    return out.reshape(out.shape[0], -1)

# %%
#| export fast_generate
def fast_step(model, cache, tokens):
    """decoder_step with the packed weights of a FastCache: (rows,) tokens -> float32 logits (rows, vocab)."""
    packed, config = cache.packed, model.config
    self_bias = cache.self_bias(len(cache))
    hidden = model.decoder.embed_tokens(tokens)  # (rows, d_model)
    rows = hidden.shape[0]
    for w, layer in zip(packed.layers, cache.layers, strict=True):
        heads, d_kv = w["heads"], w["d_kv"]
        q, k, v = product(w["norm0"](hidden), w["qkv"]).view(rows, 3, heads, 1, d_kv).unbind(1)
        saved = layer["self"]
        if "k" in saved:
            k, v = torch.cat([saved["k"], k], dim=2), torch.cat([saved["v"], v], dim=2)
        saved["k"], saved["v"] = k, v
        hidden = clamp_fp16(hidden + product(_attend(q, k, v, self_bias), w["o"]))
        q = product(w["norm1"](hidden), w["cross_q"]).view(rows, heads, 1, d_kv)
        cross = layer["cross"]
        attended = _attend(q, cross["k"], cross["v"], cache.cross_bias)
        hidden = clamp_fp16(hidden + product(attended, w["cross_o"]))
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
# The check: the fast path gives the tokens of the book's path — greedy and beam search — on the trained
# model and on a random gated (T5 v1.1) one; the packed copy is kept between calls and rebuilt when a
# weight changes; and a hook, which the default path obeys, is ignored by the fast one.

# %%
_ = torch.manual_seed(0)
gated_model = T5(T5Config.preset("t5-v1_1-tiny", vocab_size=300, dropout_rate=0.0)).eval()
gated_ids = torch.randint(3, 300, (3, 9))
for m, x in ((model, ids), (gated_model, gated_ids)):
    for kwargs in (dict(), dict(num_beams=4)):
        assert torch.equal(generate(m, x, max_new_tokens=12, fast=True, **kwargs),
                           generate(m, x, max_new_tokens=12, **kwargs))
first = packed_weights(model)
assert packed_weights(model) is first  # kept for the next call
with torch.no_grad():
    model.decoder.block[0].layer[2].DenseReluDense.wo.weight.mul_(1.0)  # an in-place update...
assert packed_weights(model) is not first  # ... and the copy is rebuilt
handle = first_attention.register_forward_hook(lambda module, args, output: torch.zeros_like(output))
try:
    assert torch.equal(generate(model, ids, mask, max_new_tokens=20, fast=True), slow)  # the hook is ignored
finally:
    handle.remove()
print("fast path: same tokens as the default path (greedy and beam-4, trained and random gated model)")

# %% [markdown]
# ## 8.12 How fast can it be?
#
# On a CPU, decoding one token of one sequence reads every decoder weight and the output embedding once
# from memory, and does little arithmetic with each: it is limited by **memory bandwidth**. Dividing the
# bytes of those weights by the speed of a large memory copy gives a floor on the time per token. The gap
# to the floor is Python and PyTorch's per-operation overhead (a few microseconds for each of the ~100
# small operations of a step), which dominates for a tiny model and matters less as the model grows.
# `t5edu bench generate` measures both paths on the t5-small shape next to Hugging Face's `generate` in
# the same process (runs alternate, medians reported). Here, the same measurement on the t5-tiny model of
# Section 8.4 (times vary: the cell checks only that the floor is positive and finite):

# %%
# NBVAL_IGNORE_OUTPUT
from t5edu.authoring.bench_generate import bytes_per_greedy_token, copy_bandwidth

bandwidth = copy_bandwidth(64)  # bytes read + written per second by a 64 MiB tensor copy
floor = bytes_per_greedy_token(bench_model) / bandwidth  # decoder weights (minus cross K/V projections) + lm_head
per_token = {}
for fast in (False, True):
    generate(bench_model, bench_ids, max_new_tokens=4, min_new_tokens=4, fast=fast)  # warm-up
    start = time.perf_counter()
    generate(bench_model, bench_ids, max_new_tokens=40, min_new_tokens=40, fast=fast)
    per_token[fast] = (time.perf_counter() - start) / 40
print(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s; floor {1000 * floor:.2f} ms/token; greedy: book path "
      f"{1000 * per_token[False]:.2f} ms/token, fast path {1000 * per_token[True]:.2f} ms/token")
assert 0 < floor < math.inf

# %% [markdown]
# ## Summary
#
# - Greedy decoding re-runs the decoder on the whole prefix; the **key/value cache** makes each step
#   cost the same: self-attention keys/values are appended, cross-attention keys/values are computed
#   once — all inside the model's own `T5Attention` modules, so a cached step is one ordinary forward pass.
# - **Beam search** keeps `num_beams` prefixes and a pool of finished hypotheses scored
#   `sum_logprobs / length ** length_penalty`; we match `transformers`' rules (and outputs) exactly,
#   including its three `early_stopping` modes. On a well-trained model it seldom changes greedy's answer:
#   here it fixed one greedy mistake in 2,744 held-out inputs, and 4 in 200 longer `sort:` inputs — three of
#   those only because the length penalty favours the longer, right answer.
# - **Sampling** draws from the temperature-, top-k- and top-p-shaped distribution, reproducibly with a
#   `torch.Generator`; a high temperature trades correctness for variety.
# - The trained model's cross-attention shows where each output token was read from.
# - `fast=True` is an opt-in CPU path with packed weights: the same tokens, faster, but it bypasses the
#   modules' `forward`.
#
# In the package: `from t5edu.generate import generate, beam_search, sample_search, DecoderCache,
# decoder_step, top_k_filter, top_p_filter, no_repeat_ngram_mask` and `from t5edu.fast_generate import
# FastCache, packed_weights`; `model.generate(...)` (Chapter 05) calls `generate`. On the command line:
# `t5edu generate --model DIR "reverse: …" --num-beams 4 [--fast]`, and `t5edu bench generate` for the
# speed comparison with `transformers`.
#
# Next: [Chapter 09](09_finetune.ipynb) fine-tunes the model on real tasks. Practice this chapter in the
# [exercises](../exercises/ch08_generate.ipynb).
#
# ## Further reading
#
# - Raffel et al., [Exploring the Limits of Transfer Learning with a Unified Text-to-Text
#   Transformer](https://arxiv.org/abs/1910.10683) (2020) — Sections 3.1.2 and 3.7 on decoding.
# - Wu et al., [Google's Neural Machine Translation System](https://arxiv.org/abs/1609.08144) (2016) —
#   beam search with a length penalty.
# - Holtzman et al., [The Curious Case of Neural Text Degeneration](https://arxiv.org/abs/1904.09751)
#   (2020) — nucleus (top-p) sampling.
# - Hugging Face, [How to generate text](https://huggingface.co/blog/how-to-generate) — greedy, beam
#   search and sampling with `transformers`.
# - Pope et al., [Efficiently Scaling Transformer Inference](https://arxiv.org/abs/2211.05102) (2022) —
#   the key/value cache and why decoding is bound by memory bandwidth.
