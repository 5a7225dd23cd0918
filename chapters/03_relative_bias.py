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
# # Chapter 03 — Relative position bias
#
# Attention as built in Chapter 02 is blind to order: shuffle the keys and values together and every
# output stays the same. The original Transformer adds a position vector to each token embedding.
# T5 does something smaller and more elegant: it adds one learned number to each attention score,
# chosen by *how far apart* the two positions are. This chapter builds that mechanism.
#
# **What you will build**
# - `relative_position_bucket`: distances → 32 buckets, exact when close, logarithmic when far;
#   bidirectional for the encoder, causal for the decoder;
# - `RelativePositionBias`: the learned `(num_buckets, num_heads)` table that turns buckets into a
#   `(1, H, L_q, L_k)` bias, owned by the first layer of a stack and shared by all of its layers.
#
# **Why T5 does it this way.** Shaw et al. (2018) showed that attention can be told about *relative*
# positions — how far apart two tokens are — instead of absolute ones, by adding learned
# relative-position terms inside attention. T5 (Raffel et al. 2020, §2.1) uses "a simplified form":
# each position "embedding" is just a *scalar* added to the attention logit, one per head, chosen
# from 32 buckets whose ranges grow logarithmically up to an offset of 128; all farther offsets share
# one bucket. The parameters are shared across the layers of a stack. A single layer is thus blind
# to offsets beyond 128, but deeper layers can combine local information into longer-range
# sensitivity — and the model has no fixed maximum length.

# %%
#| default_exp relative_bias

# %%
#| export
import math

import torch
import torch.nn.functional as F
from torch import nn

# %%
import matplotlib.pyplot as plt

from matplotlib.patches import FancyArrowPatch, Rectangle

from t5edu.attention import T5Attention, attention
from t5edu.figures import heatmaps

_ = torch.manual_seed(0)

# %% [markdown]
# ## 3.1 Attention does not know about order
#
# A quick proof of the problem: permute the positions of keys and values together, and the output of
# every query is unchanged — attention sees a *set*, not a sequence.

# %%
q, k, v = torch.randn(5, 8), torch.randn(7, 8), torch.randn(7, 8)
perm = torch.randperm(7)
out, _ = attention(q, k, v)
out_perm, _ = attention(q, k[perm], v[perm])
assert torch.allclose(out, out_perm, atol=1e-6)
print("shuffling keys and values changes nothing: attention needs position information")

# %% [markdown]
# ## 3.2 Relative positions
#
# For query position $i$ and key ("memory") position $j$ the relative position is $j - i$: negative
# when the key is in the past, positive when in the future. T5 adds a bias $b_h(j - i)$ to the score
# of head $h$. Because it depends only on the difference, the same pattern applies everywhere in the
# sequence — "look one to the left" means the same thing at position 3 and at position 300.

# %%
def relative_positions(query_length, key_length):
    """(query_length, key_length) matrix of key position minus query position."""
    return torch.arange(key_length)[None, :] - torch.arange(query_length)[:, None]


print(relative_positions(4, 6))

# %% [markdown]
# ## 3.3 Buckets
#
# A separate number for each distance up to 512 would be wasteful and would not extend to longer
# sequences. T5 groups distances into buckets:
#
# - **bidirectional** (encoder): half of the buckets for keys on the left (and the query itself),
#   half for keys on the right; with 32 buckets that is 16 per side.
# - **causal** (decoder): the future is masked anyway, so all buckets go to the past (distance
#   $\ge 0$); positive relative positions all fall into bucket 0 with distance 0.
#
# Within each side, with $n$ buckets: distances $0 \ldots n/2 - 1$ get a bucket each (exact), and the
# other $n/2$ buckets cover $n/2 \ldots$ `max_distance` on a logarithmic scale; everything beyond
# `max_distance` (128) shares the last bucket. Near neighbours are told apart precisely; far away
# "about 50" and "about 60" look the same.
#
# The logarithmic bucket of a distance $d \ge n/2$ is
# $\;n/2 + \left\lfloor \dfrac{\ln(d / (n/2))}{\ln(\text{max\_distance} / (n/2))} \cdot \dfrac{n}{2} \right\rfloor$,
# capped at $n - 1$. We compute it with the same floating-point operations as the reference
# implementation (Mesh TensorFlow and Hugging Face), so that a pretrained checkpoint sees exactly the
# buckets it was trained with — one bucket off is a different learned number.

# %%
#| export
def relative_position_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """Map relative positions (key - query, an integer tensor) to bucket ids in [0, num_buckets).

    bidirectional=True (encoder): half the buckets for each direction. False (decoder): only the past
    counts; key positions after the query share bucket 0. In each direction, half the buckets are exact
    distances and half are log-spaced up to `max_distance`; farther distances share the last bucket.
    """
    relative_position = relative_position.long()
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets  # keys to the right: upper half
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)  # only look at the past; future -> 0
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # log-spaced buckets for the rest (clamp avoids log(0); those entries use the exact branch anyway)
    log_ratio = torch.log(distance.clamp(min=max_exact).float() / max_exact)
    log_ratio = log_ratio / math.log(max_distance / max_exact)
    if_large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    if_large = if_large.clamp(max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, if_large)


# %% [markdown]
# Checks against values worked out by hand (32 buckets, max distance 128). Bidirectional: 16 per side,
# 8 exact; distance 8 is the first log bucket; $\lfloor \ln(20/8)/\ln(16) \cdot 8 \rfloor = 2$, so
# distance 20 lands in bucket 8 + 2 = 10; keys on the right add 16. Causal: 32 buckets for the past, 16 exact,
# and distance 20 gives $16 + \lfloor \ln(20/16)/\ln(8) \cdot 16 \rfloor = 17$.

# %%
rel = torch.tensor([-200, -128, -127, -20, -8, -7, -1, 0, 1, 7, 8, 20, 200])
bi = relative_position_bucket(rel, bidirectional=True)
uni = relative_position_bucket(rel, bidirectional=False)
print("relative:      ", rel.tolist())
print("bidirectional: ", bi.tolist())
print("causal:        ", uni.tolist())
assert bi.tolist() == [15, 15, 15, 10, 8, 7, 1, 0, 17, 23, 24, 26, 31]
assert uni.tolist()[:7] == [31, 31, 31, 17, 8, 7, 1] and uni.tolist()[7:] == [0] * 6

# %% [markdown]
# Every distance from −300 to 300 maps into the range, bucket ids never decrease as a key moves
# further away on one side, and the two sides never share a bucket. (A curiosity: in bidirectional
# mode bucket 16 is never used — the right half starts at distance 1, not 0 — so the encoder really
# has 31 buckets.)

# %%
rel = torch.arange(-300, 301)
for bidirectional in (True, False):
    b = relative_position_bucket(rel, bidirectional)
    assert b.min() >= 0 and b.max() < 32
    left = b[rel <= 0].flip(0)  # distance 0, 1, 2, ... to the left
    assert (left.diff() >= 0).all()
b = relative_position_bucket(rel, True)
assert set(b[rel <= 0].tolist()).isdisjoint(b[rel > 0].tolist())
print("buckets used: bidirectional", len(set(b.tolist())),
      "| causal", len(set(relative_position_bucket(rel, False).tolist())))
assert 16 not in b.tolist()  # the right half starts at distance 1: bucket 16 is never used

# %% [markdown]
# The bucket function, both modes. Exact steps near zero, then longer and longer runs; flat beyond 128.

# %%
fig, ax = plt.subplots(figsize=(8, 3.2))
ax.plot(rel, relative_position_bucket(rel, True), label="bidirectional (encoder)")
ax.plot(rel, relative_position_bucket(rel, False), label="causal (decoder)")
ax.axvline(-128, color="gray", lw=0.5, ls="--")
ax.axvline(128, color="gray", lw=0.5, ls="--")
ax.set_xlabel("relative position (key − query)")
ax.set_ylabel("bucket")
ax.set_title("relative_position_bucket, 32 buckets, max_distance 128")
ax.legend()
plt.show()

# %% [markdown]
# *Figure 3.1 — Bucket against relative position: one bucket per step near 0, log-spaced runs further
# out, and one shared bucket beyond ±128 (dashed lines); the causal curve sits at 0 for every key to
# the right.*
#
# Zoomed in, as a ruler: every cell is one relative position and its number is the bucket; a run
# of equal numbers (one colour) is one bucket. The encoder's ruler is symmetric (two halves of 16 buckets); the
# decoder's spends all 32 buckets on the past.

# %%
def draw_ruler(ax, bidirectional, span=24):
    """One row of cells, relative positions -span..span, each labelled and coloured by its bucket."""
    rel = torch.arange(-span, span + 1)
    buckets = relative_position_bucket(rel, bidirectional)
    ax.imshow(buckets[None].numpy() % 20, cmap="tab20", vmin=0, vmax=19, aspect="auto")
    for x, b in enumerate(buckets.tolist()):
        ax.text(x, 0, str(b), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(0, 2 * span + 1, 4), [str(r) for r in rel.tolist()[::4]])
    ax.set_yticks([])
    ax.set_xlabel("relative position (key − query)")


fig, axes = plt.subplots(2, 1, figsize=(11, 2.8))
draw_ruler(axes[0], True)
axes[0].set_title("encoder (bidirectional): 16 buckets per side, exact up to distance 7", fontsize=10)
draw_ruler(axes[1], False)
axes[1].set_title("decoder (causal): 32 buckets for the past, exact up to 15; the future is bucket 0", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# *Figure 3.2 — Buckets as a ruler: near the query each distance has its own bucket, further away
# several distances share one (from distance 8 in the encoder, 16 in the decoder), and the two
# directions never share a bucket in the encoder.*
#
# The same as a bucket map over (query, key) pairs: every diagonal has one colour, because buckets
# depend only on $j - i$.

# %%
n = 48
heatmaps([(relative_position_bucket(relative_positions(n, n), True), "encoder (bidirectional)"),
          (relative_position_bucket(relative_positions(n, n), False), "decoder (causal)")],
         colorbar="bucket", suptitle="Bucket of every (query, key) pair, 48 positions",
         figsize=(8, 3.8), cmap="tab20b")
plt.show()

# %% [markdown]
# *Figure 3.3 — Constant diagonals: the bucket, and so the bias, depends only on key − query; the
# decoder's upper triangle is all bucket 0 (and masked anyway).*

# %% [markdown]
# ## 3.4 The learned table
#
# Each bucket has one learned number per head: a table of shape `(num_buckets, num_heads)` — for
# t5-small 32 × 8 = 256 numbers for the whole encoder. To build the bias for $L_q$ queries and
# $L_k$ keys we compute the bucket of every pair and look the numbers up, giving
# `(L_q, L_k, H)`, then move heads to the front: `(1, H, L_q, L_k)`, ready to add to the scores.
#
# `offset` shifts the query positions: when a decoder generates token by token with a cache, its one
# new query sits at position `offset` = number of tokens already seen.
#
# We keep the parameter in an attribute named `weight`, so that stored inside an attention module as
# `relative_attention_bias` its checkpoint name is `relative_attention_bias.weight`, as in Hugging Face.
# It starts at zero — no preference for any distance — and the model's initialisation (Chapter 05)
# sets it like the reference.

# %%
#| export
class RelativePositionBias(nn.Module):
    """The learned table (num_buckets, num_heads) of T5's relative position bias.

    Called with (query_length, key_length) it returns the bias (1, num_heads, query_length, key_length).
    """

    def __init__(self, num_heads, num_buckets=32, max_distance=128, bidirectional=True):
        super().__init__()
        self.num_heads, self.num_buckets = num_heads, num_buckets
        self.max_distance, self.bidirectional = max_distance, bidirectional
        self.weight = nn.Parameter(torch.zeros(num_buckets, num_heads))

    def buckets(self, query_length, key_length, offset=0, device=None):
        """(query_length, key_length) bucket ids; query i sits at position offset + i."""
        query = torch.arange(query_length, device=device)[:, None] + offset
        key = torch.arange(key_length, device=device)[None, :]
        return relative_position_bucket(key - query, self.bidirectional, self.num_buckets, self.max_distance)

    def forward(self, query_length, key_length, offset=0):
        """The additive bias (1, num_heads, query_length, key_length); queries start at `offset`."""
        buckets = self.buckets(query_length, key_length, offset, device=self.weight.device)
        values = F.embedding(buckets, self.weight)  # (L_q, L_k, H)
        return values.permute(2, 0, 1).unsqueeze(0)  # (1, H, L_q, L_k)

    def extra_repr(self):
        """Shown by print(module): the settings of the table."""
        return (f"num_buckets={self.num_buckets}, num_heads={self.num_heads}, "
                f"max_distance={self.max_distance}, bidirectional={self.bidirectional}")


# %%
torch.manual_seed(0)
table = RelativePositionBias(num_heads=4)
nn.init.normal_(table.weight)
bias = table(5, 7)
print(table, "->", tuple(bias.shape))
assert bias.shape == (1, 4, 5, 7)
# bias[h, i, j] is the table entry of bucket(j - i) for head h
i, j, h = 3, 1, 2
assert bias[0, h, i, j] == table.weight[relative_position_bucket(torch.tensor(j - i)), h]
# ... so it is constant along every diagonal
assert torch.equal(bias[0, :, 1:, 1:], bias[0, :, :-1, :-1])
# the offset gives the last rows of a longer bias
assert torch.equal(table(2, 7, offset=5), table(7, 7)[:, :, 5:])
print("diagonals constant; offset rows match")

# %% [markdown]
# ## 3.5 One table per stack
#
# T5 adds the position bias only to **self-attention**, and only the **first** layer of each stack
# owns a table; it computes the bias once and every later layer of the stack reuses it (the later
# layers have no table of their own). The encoder's table is bidirectional, the decoder's causal.
# **Cross-attention gets no position bias at all**: decoder position $i$ and encoder position $j$
# live in different sequences, so $j - i$ means nothing.
#
# Here is the whole arrangement for a two-layer encoder and decoder:

# %%
def box(ax, x, y, w, h, color, text, fontsize=9):
    """A labelled rectangle for the schematic."""
    ax.add_patch(Rectangle((x, y), w, h, facecolor=color, edgecolor="black", lw=0.8))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize)


def link(ax, start, end, text="", color="black", style="-|>"):
    """An arrow from start to end, with an optional label next to its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=11, color=color, lw=1))
    if text:
        ax.text((start[0] + end[0]) / 2 + 0.08, (start[1] + end[1]) / 2, text, fontsize=8, color=color)


fig, ax = plt.subplots(figsize=(10, 4.2))
for x0, name, table_text, kinds in [(0.1, "encoder", "table 32 × H\nbidirectional", ["self-attention"]),
                                    (5.2, "decoder", "table 32 × H\ncausal",
                                     ["self-attention\n(causal)", "cross-attention"])]:
    ax.text(x0 + 2.35, 4.35, name, ha="center", fontsize=11, weight="bold")
    box(ax, x0, 3.3, 1.6, 0.8, "gold", table_text, 8)
    ax.text(x0 + 0.9, 3.05, "bias (1, H, L, L)", fontsize=8, color="darkorange", va="top")
    ax.plot([x0 + 0.8, x0 + 0.8], [3.3, 0.85], color="darkorange", lw=1.5)  # the shared bias
    for layer in range(2):
        y = 0.4 + 1.3 * (1 - layer)
        w = 3.2 / len(kinds)
        for col, kind in enumerate(kinds):
            box(ax, x0 + 1.4 + col * w, y, w - 0.1, 0.9,
                "lightblue" if col == 0 else "white", f"layer {layer + 1}\n{kind}", 8)
        link(ax, (x0 + 0.8, y + 0.45), (x0 + 1.4, y + 0.45), color="darkorange")
    if len(kinds) == 2:
        ax.text(x0 + 1.4 + 1.6 * 1.5, 0.2, "no position bias", ha="center", fontsize=8, color="dimgray")
ax.set_xlim(0, 10)
ax.set_ylim(0, 4.6)
ax.axis("off")
ax.set_title("One table per stack, computed once, added in every layer's self-attention")
plt.show()

# %% [markdown]
# *Figure 3.4 — Each stack owns one table (yellow; stored in its first layer's self-attention); its
# bias is computed once per forward pass and added to the self-attention scores of every layer (orange arrows); cross-attention
# gets none.*
#
# So the first self-attention of a stack is a `T5Attention` whose `relative_attention_bias` slot
# holds the table; that is also where the checkpoint stores it:

# %%
first = T5Attention(d_model=16, num_heads=4, d_kv=4,
                    relative_attention_bias=RelativePositionBias(num_heads=4, bidirectional=True))
later = T5Attention(d_model=16, num_heads=4, d_kv=4)
print(list(first.state_dict()))
print(list(later.state_dict()))
assert "relative_attention_bias.weight" in first.state_dict()
assert "relative_attention_bias.weight" not in later.state_dict()

# %% [markdown]
# Position now matters: with the bias, shuffling the keys changes the output.

# %%
x = torch.randn(1, 6, 16)
nn.init.normal_(first.relative_attention_bias.weight)
pos_bias = first.relative_attention_bias(6, 6)
perm = torch.tensor([5, 4, 3, 2, 1, 0])
with torch.no_grad():
    plain = later(x)[:, perm] - later(x[:, perm])  # without bias: reversing only reorders the outputs
    biased = first(x, bias=pos_bias)[:, perm] - first(x[:, perm], bias=pos_bias)
print(f"reverse the input, undo the order of the outputs; largest change: without bias "
      f"{plain.abs().max().item():.3f}, with bias {biased.abs().max().item():.3f}")
assert torch.allclose(plain, torch.zeros_like(plain), atol=1e-6)
assert biased.abs().max() > 0.01

# %% [markdown]
# ## 3.6 What a table can learn
#
# Real learned biases come from pretraining (they are in every T5 checkpoint: the encoder's heads
# typically prefer nearby tokens, some the left side, some the right). We can watch the mechanism
# learn on a toy problem without any content at all: scores are the bias alone, and we ask four heads
# for four patterns — attend to the previous token, to the next token, to oneself, and to everything
# within ±4. Gradient descent on the 32 × 4 table alone:

# %%
torch.manual_seed(0)
L = 24
table = RelativePositionBias(num_heads=4, bidirectional=True)
rel_pos = relative_positions(L, L)
targets = torch.stack([(rel_pos == -1), (rel_pos == 1), (rel_pos == 0), (rel_pos.abs() <= 4)]).float()
targets = targets / targets.sum(-1, keepdim=True).clamp(min=1)
rows = targets.sum(-1) > 0  # the first query has no previous token, the last no next one
opt = torch.optim.Adam(table.parameters(), lr=0.2)
for step in range(200):
    log_w = torch.log_softmax(table(L, L)[0], dim=-1)  # (H, L, L): scores are the bias alone
    loss = -(targets * log_w).sum(-1)[rows].mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"loss after 200 steps: {loss.item():.2f}")
assert loss.item() < 1.0

# %%
d = torch.arange(-20, 21)
learned = table.weight.detach()[relative_position_bucket(d)]  # (41, H)
fig, ax = plt.subplots(figsize=(8, 3.2))
for h, name in enumerate(["previous token", "next token", "itself", "window ±4"]):
    ax.plot(d, learned[:, h], marker=".", label=name)
ax.set_xlabel("relative position (key − query)")
ax.set_ylabel("learned bias")
ax.set_title("A 32 × 4 table trained for four positional patterns")
ax.legend(fontsize=8)
plt.show()
best = d[learned.argmax(0)].tolist()
print("preferred relative position per head:", best[:3])
assert best[:3] == [-1, 1, 0]

# %% [markdown]
# *Figure 3.5 — Each head's learned bias peaks at the relative position it was trained to attend to
# (−1, +1, 0), and the window head is high across ±4.*
#
# ## Summary
#
# - Attention alone sees a set, not a sequence: shuffling keys and values changes nothing.
# - T5 encodes order with one learned scalar per head and per *bucket* of relative distance, added
#   to the attention scores; exact buckets nearby, log-spaced ones up to 128, one shared beyond.
# - Encoder buckets are bidirectional (the encoder uses 31 of its 32), decoder buckets causal;
#   cross-attention has none.
# - The table lives in the first layer of each stack (`relative_attention_bias.weight`) and its bias
#   is shared by every layer of that stack.
#
# **What is in the package now**
#
# ```python
# from t5edu.relative_bias import relative_position_bucket, RelativePositionBias
# ```
#
# Chapter 04 assembles attention, this bias, a normalisation and a feed-forward network into the
# encoder.
#
# ## Further reading
#
# - Shaw, Uszkoreit & Vaswani (2018), *Self-Attention with Relative Position Representations*:
#   https://arxiv.org/abs/1803.02155
# - Raffel et al. (2020), *Exploring the Limits of Transfer Learning with a Unified Text-to-Text
#   Transformer*, JMLR, §2.1 (position embeddings): https://arxiv.org/abs/1910.10683
# - Vaswani et al. (2017), *Attention Is All You Need*, §3.5 (sinusoidal absolute positions, the
#   approach T5 replaces): https://arxiv.org/abs/1706.03762
# - Huang et al. (2018), *Music Transformer* — a memory-efficient way to compute relative attention:
#   https://arxiv.org/abs/1809.04281
#
# ---
#
# Previous: [Chapter 02 — Attention](02_attention.ipynb) ·
# Next: [Chapter 04 — The encoder](04_encoder.ipynb) ·
# [Exercises for this chapter](../exercises/ch03_relative_bias.ipynb)
