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
# # Chapter 02 — Attention
#
# Attention is the one operation that lets a position look at other positions. Everything else in
# T5 works on each position separately. This chapter builds it from the formula, adds the two masks
# T5 needs, splits it into heads, and ends with `T5Attention`, the module that every T5 layer uses —
# with parameter names that match the published checkpoints.
#
# **What you will build**
# - `attention(q, k, v, bias)`: scores, softmax, weighted sum — the one attention function of the
#   package, used by every layer and by the fast generator of Chapter 08;
# - padding and causal masks, written as additive biases;
# - `split_heads` / `merge_heads` and the `T5Attention` module (`q`, `k`, `v`, `o`).
#
# **Why T5 does it this way.** T5's model (Raffel et al. 2020, §2.1) "closely follows" the
# Transformer of Vaswani et al. (2017): multi-head dot-product attention in every layer. The paper
# names its changes: a simplified layer norm placed before each sub-layer (Chapter 04), and
# relative position embeddings that are scalars added to the attention logits (Chapter 03) — which
# is why our attention takes an additive `bias`. Two more details come from the code T5 was written
# in (Mesh TensorFlow) rather than from the paper's text: the linear maps have no bias terms, and
# the scores are not divided by $\sqrt{d}$ (Section 2.4).

# %%
#| default_exp attention

# %%
#| export
import torch
import torch.nn.functional as F
from torch import nn

# %%
import math

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, Rectangle

_ = torch.manual_seed(0)
torch.set_printoptions(precision=3, sci_mode=False)

# %% [markdown]
# ## 2.1 Attention from the math
#
# Each position asks a question (its *query* $q_i$), advertises what it holds (its *key* $k_j$) and
# offers a payload (its *value* $v_j$). Position $i$ scores every position $j$ by a dot product,
# turns the scores into weights that sum to one with a softmax, and returns the weighted sum of values:
#
# $$\text{scores}_{ij} = q_i \cdot k_j + b_{ij}, \qquad w_{ij} = \frac{e^{\text{scores}_{ij}}}{\sum_{j'} e^{\text{scores}_{ij'}}}, \qquad \text{out}_i = \sum_j w_{ij} v_j .$$
#
# The extra term $b_{ij}$ is an additive *bias*. T5 uses it for two things: masks (this chapter)
# and relative positions (Chapter 03). Notice what is **not** there: no $1/\sqrt{d}$ — Section 2.4
# explains why T5 can drop it.
#
# The function works on any leading dimensions (batch, heads): `q` is `(..., L_q, d)`,
# `k` and `v` are `(..., L_k, d)`, `bias` broadcasts to `(..., L_q, L_k)`. It returns the output and
# the weights. Two optional arguments serve later chapters: `dropout_p` drops weights while training
# (Chapter 07), and `fused=True` hands the same computation to one PyTorch kernel (Section 2.7).

# %%
#| export
def attention(q, k, v, bias=None, dropout_p=0.0, training=False, fused=False):
    """T5 attention, softmax(q kᵀ + bias) v without 1/sqrt(d) scaling: returns (output, weights).

    q: (..., L_q, d); k, v: (..., L_k, d); bias: broadcastable to (..., L_q, L_k), added to the scores.
    dropout_p: dropout on the weights, applied only when `training`. fused=True runs PyTorch's fused
    scaled_dot_product_attention (same math, another summation order) and returns weights=None.
    """
    if bias is not None and bias.dtype != q.dtype:  # mixed precision: keep masked scores finite
        bias = bias.to(q.dtype).clamp_min(mask_value(q.dtype))
    if fused:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0,
                                             dropout_p=dropout_p if training else 0.0)
        return out, None
    scores = torch.matmul(q, k.transpose(-1, -2))  # (..., L_q, L_k); T5 does not divide by sqrt(d)
    if bias is not None:
        scores = scores + bias
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)  # softmax in float32, as T5 does
    out = torch.matmul(F.dropout(weights, p=dropout_p, training=training), v)
    return out, weights


# %% [markdown]
# A check by hand: three positions, two dimensions. We compute position 0's output with a loop and
# compare.

# %%
q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
k = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
v = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
out, w = attention(q, k, v)

scores0 = [sum(q[0, d] * k[j, d] for d in range(2)) for j in range(3)]
exps = [math.exp(s) for s in scores0]
w0 = [e / sum(exps) for e in exps]
out0 = [sum(w0[j] * v[j, d] for j in range(3)) for d in range(2)]
print("weights of position 0:", [f"{x:.3f}" for x in w0])
print("output of position 0: ", [f"{float(x):.3f}" for x in out0])
assert torch.allclose(w[0], torch.tensor(w0), atol=1e-6)
assert torch.allclose(out[0], torch.tensor(out0), atol=1e-6)
assert torch.allclose(w.sum(-1), torch.ones(3))

# %% [markdown]
# ## 2.2 Masks are biases
#
# Two kinds of positions must get zero weight:
#
# - **padding**: batches hold sequences of different lengths, filled up with a pad token. Nobody
#   should attend *to* a pad position. The mask has shape `(batch, L_k)` (1 = real token, 0 = pad),
#   the same `attention_mask` a tokenizer returns.
# - **the future**: the decoder predicts token $t$ from tokens $< t$, so position $i$ may only look at
#   positions $j \le i$ — a lower-triangular *causal* mask.
#
# A weight is zero when its score is $-\infty$, so a mask is just a bias: $0$ where attention is
# allowed, a huge negative number where it is not. We use the most negative finite number of the
# dtype instead of $-\infty$: a row where everything is masked then gives a harmless uniform softmax
# instead of `NaN` (0/0), and adding a finite bias to it cannot overflow into `-inf` arithmetic.

# %%
#| export
def mask_value(dtype):
    """The 'minus infinity' used for masked scores: the most negative finite number of `dtype`."""
    return torch.finfo(dtype).min


def mask_to_bias(allowed, dtype=torch.float32):
    """Boolean mask (True = may attend) -> additive bias (0 where allowed, mask_value elsewhere)."""
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return bias.masked_fill_(~allowed, mask_value(dtype))


def padding_bias(attention_mask, dtype=torch.float32):
    """(batch, L_k) mask of 1 = token, 0 = pad  ->  (batch, 1, 1, L_k) additive bias.

    The two singleton axes broadcast over heads and query positions: nobody attends to a pad key.
    """
    return mask_to_bias(attention_mask[:, None, None, :].bool(), dtype)


def causal_mask(length, device=None):
    """(length, length) boolean mask, True on and below the diagonal: position i sees j <= i."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


# %%
print(causal_mask(4).int())
attention_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
print(padding_bias(attention_mask)[0, 0, 0].tolist())
assert torch.equal(causal_mask(4), torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]).bool())
assert padding_bias(attention_mask).shape == (2, 1, 1, 5)

# %% [markdown]
# The picture to keep in mind: a mask is a grid of numbers *added to the scores* before the softmax.
# Below, sequence 0 of the batch above (3 tokens, 2 pads): its padding bias (one row, broadcast over
# all queries), the causal bias of a decoder, and their combination. Grey cells hold "−∞" (in
# practice `mask_value`), white cells 0.

# %%
def draw_bias(ax, allowed, title):
    """Draw a boolean mask as the additive bias it becomes: 0 (white) or -inf (grey)."""
    ax.imshow(~allowed, cmap="Greys", vmin=0, vmax=3)
    for (i, j), ok in zip(torch.cartesian_prod(torch.arange(5), torch.arange(5)).tolist(),
                          allowed.flatten().tolist(), strict=True):
        ax.text(j, i, "0" if ok else "−∞", ha="center", va="center", fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("key position j")
    ax.set_ylabel("query position i")
    ax.set_xticks(range(5))
    ax.set_yticks(range(5))


pad_allowed = attention_mask[0].bool().expand(5, 5)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
draw_bias(axes[0], pad_allowed, "padding bias (keys 3, 4 are pads)")
draw_bias(axes[1], causal_mask(5), "causal bias (no future)")
draw_bias(axes[2], pad_allowed & causal_mask(5), "both: logical and, then bias")
fig.suptitle("Masks are additive biases: scores + bias, then softmax")
plt.show()

# %% [markdown]
# *Figure 2.1 — A mask becomes a bias: 0 keeps a score, −∞ turns its weight into exactly 0 after the
# softmax; padding blocks columns, causality blocks the upper triangle.*
#
# Now the two properties that matter, tested directly rather than by looking at numbers:
#
# 1. with a padding mask, changing what sits in the pad positions changes **nothing** in the output;
# 2. with a causal mask, changing a later position changes **nothing** at earlier positions.

# %%
x = torch.randn(2, 5, 8)
bias = padding_bias(attention_mask)[:, 0]  # no head axis here: (batch, 1, L_k)
out1, w1 = attention(x, x, x, bias)
x2 = x.clone()
x2[0, 3:] = 100 * torch.randn(2, 8)  # scribble over the pads of sequence 0 (as keys and values)
out2, _ = attention(x, x2, x2, bias)
print("weight on pads:", f"{w1[0, :, 3:].abs().max().item():.1f}")
print("max change at real positions:", f"{(out2[0, :3] - out1[0, :3]).abs().max().item():.1f}")
assert w1[0, :, 3:].abs().max() == 0 and torch.equal(out2, out1)

causal = mask_to_bias(causal_mask(5))
out1, _ = attention(x, x, x, causal)
x3 = x.clone()
x3[:, 4] = torch.randn(2, 8)  # change the last position
out3, _ = attention(x3, x3, x3, causal)
print("change at positions 0-3 after editing position 4:", f"{(out3[:, :4] - out1[:, :4]).abs().max().item():.1f}")
assert torch.equal(out3[:, :4], out1[:, :4])

# %% [markdown]
# Both masks combine with a logical *and*, as in the right panel of Figure 2.1. We keep them boolean
# until the very end and convert once: adding two `mask_value` biases would overflow to `-inf`.

# %%
both = causal_mask(5)[None] & attention_mask[:, None, :].bool()  # (batch, L_q, L_k)
print(both[0].int())
assert torch.equal(both[0], pad_allowed & causal_mask(5))

# %% [markdown]
# ## 2.3 Several heads
#
# One softmax can only focus on one mixture of positions. Multi-head attention runs $H$ small
# attentions side by side, each on its own $d_{kv}$-dimensional slice, and concatenates the results.
# Splitting is a reshape: `(batch, L, H·d_kv)` → `(batch, H, L, d_kv)`, heads in front so that the
# matrix products run over all heads at once. Merging undoes it.
#
# T5 keeps $d_{kv}$ as its own setting: $H \cdot d_{kv}$ need not equal the model width $d_{model}$.
# In t5-small, t5-base and T5 v1.1-large it does (8 × 64 = 512, 12 × 64 = 768, 16 × 64 = 1024), but
# t5-3B uses 32 heads × 128 = 4096 with $d_{model}$ = 1024: the projections widen the model
# fourfold inside attention.

# %%
#| export
def split_heads(x, num_heads):
    """(batch, L, H * d_kv) -> (batch, H, L, d_kv)."""
    batch, length, inner = x.shape
    return x.view(batch, length, num_heads, inner // num_heads).transpose(1, 2)


def merge_heads(x):
    """(batch, H, L, d_kv) -> (batch, L, H * d_kv), the inverse of split_heads."""
    batch, heads, length, d_kv = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * d_kv)


# %%
x = torch.randn(2, 5, 12)
heads = split_heads(x, 3)
print("split:", tuple(heads.shape), " merged back:", tuple(merge_heads(heads).shape))
assert torch.equal(merge_heads(heads), x)
assert torch.equal(heads[:, 1], x[:, :, 4:8])  # head 1 is features 4..7

# %% [markdown]
# The whole data flow of one attention layer, with the shapes of t5-small ($d_{model}$ = 512,
# $H$ = 8, $d_{kv}$ = 64). Each coloured slab is one head's slice of the features.

# %%
def block(ax, x, y, w, h, color, label, sub=""):
    """A labelled box for the schematic."""
    ax.add_patch(Rectangle((x, y), w, h, facecolor=color, edgecolor="black", lw=0.8))
    ax.text(x + w / 2, y + h + 0.15, label, ha="center", va="bottom", fontsize=9)
    if sub:
        ax.text(x + w / 2, y - 0.15, sub, ha="center", va="top", fontsize=8, color="dimgray")


def arrow(ax, x0, y0, x1, y1, label=""):
    """An arrow with an optional label above its middle."""
    ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=12, lw=0.9))
    if label:
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.12, label, ha="center", va="bottom", fontsize=8)


colors = plt.cm.tab10.colors
fig, ax = plt.subplots(figsize=(11, 4.2))
block(ax, 0, 1.5, 0.8, 1.6, "lightgray", "x", "(B, L, d_model)\n512")
for row, name in enumerate(["q", "k", "v"]):
    y = 3.2 - 1.55 * row
    arrow(ax, 0.85, 2.3, 2.0, y + 0.35, f"W_{name}")
    block(ax, 2.05, y, 1.6, 0.7, "white", name, "(B, L, H·d_kv)" if row == 2 else "")
    for h in range(8):  # the features of q/k/v, coloured by the head they belong to
        ax.add_patch(Rectangle((2.05 + 0.2 * h, y), 0.2, 0.7, facecolor=colors[h], alpha=0.55))
    arrow(ax, 3.7, y + 0.35, 4.7, y + 0.35, "split_heads" if row == 0 else "")
    for h in range(8):  # the same features after split_heads: one slab per head
        ax.add_patch(Rectangle((4.75 + 0.09 * h, y + 0.05 * h), 0.35, 0.45,
                               facecolor=colors[h], edgecolor="black", lw=0.4, alpha=0.8))
ax.text(5.5, 0.1, "(B, H, L, d_kv)\n8 heads × 64", ha="center", va="top", fontsize=8, color="dimgray")
for row in range(3):
    arrow(ax, 5.85, 3.55 - 1.55 * row, 6.5, 2.3)
block(ax, 6.55, 1.6, 1.3, 1.4, "lavender", "attention per head", "softmax(q kᵀ + bias) v")
arrow(ax, 7.9, 2.3, 8.9, 2.3, "merge_heads")
block(ax, 8.95, 1.95, 1.6, 0.7, "white", "", "(B, L, H·d_kv)")
for h in range(8):
    ax.add_patch(Rectangle((8.95 + 0.2 * h, 1.95), 0.2, 0.7, facecolor=colors[h], alpha=0.55))
arrow(ax, 10.6, 2.3, 11.3, 2.3, "W_o")
block(ax, 11.35, 1.5, 0.8, 1.6, "lightgray", "output", "(B, L, d_model)")
ax.set_xlim(-0.3, 12.5)
ax.set_ylim(-0.6, 4.3)
ax.axis("off")
ax.set_title("Multi-head attention: project, split into heads, attend, merge, project back")
plt.show()

# %% [markdown]
# *Figure 2.2 — `q`, `k`, `v` map each position to $H \cdot d_{kv}$ features; `split_heads` turns
# consecutive groups of $d_{kv}$ features into $H$ independent heads, which `merge_heads` lays side by
# side again before `o` maps them back to $d_{model}$.*
#
# Heads are independent: running attention on all heads at once equals running it head by head.

# %%
q, k, v = (split_heads(torch.randn(2, 5, 12), 3) for _ in range(3))
together, _ = attention(q, k, v)
one_by_one = torch.stack([attention(q[:, h], k[:, h], v[:, h])[0] for h in range(3)], dim=1)
assert torch.allclose(together, one_by_one, atol=1e-6)
print("all heads at once == one head at a time")

# %% [markdown]
# ## 2.4 Why T5 does not divide by √d
#
# The original Transformer divides scores by $\sqrt{d_{kv}}$: if the entries of $q$ and $k$ have
# unit variance, $q \cdot k$ has variance $d_{kv}$, and large scores saturate the softmax.
# T5 (following Mesh TensorFlow) drops the division and instead initialises the query projection
# with a standard deviation $\sqrt{d_{kv}}$ times smaller: $\sigma_q = (d_{model}\, d_{kv})^{-1/2}$,
# while keys and values use $\sigma = d_{model}^{-1/2}$. Since $q = x W_q^\top$ is linear in
# $W_q$, multiplying $W_q$ by $1/\sqrt{d_{kv}}$ multiplies every score by $1/\sqrt{d_{kv}}$:
# the scaling is *folded into the weights*. At initialisation both recipes give scores of the
# same size; during training the model is free to learn the scale it wants.
#
# Two consequences worth remembering: a T5 checkpoint must be run **without** scaling (a library that
# scales would silently ruin it), and the initialisation of `q` is part of the architecture.

# %%
d_model, d_kv, n = 512, 64, 2048
x = torch.randn(n, d_model)  # layer-normed inputs have roughly unit variance
w_q_t5 = torch.randn(d_kv, d_model) * (d_model * d_kv) ** -0.5
w_q_plain = torch.randn(d_kv, d_model) * d_model ** -0.5
w_k = torch.randn(d_kv, d_model) * d_model ** -0.5
scores_t5 = (x @ w_q_t5.T) @ (x @ w_k.T).T  # T5: no division
scores_plain = (x @ w_q_plain.T) @ (x @ w_k.T).T / math.sqrt(d_kv)  # Vaswani et al.
print(f"std of scores, T5 init, no scaling:      {scores_t5.std().item():.2f}")
print(f"std of scores, plain init, divide by √d: {scores_plain.std().item():.2f}")
assert abs(scores_t5.std().item() - scores_plain.std().item()) < 0.1

# %% [markdown]
# And the folding is exact, not just statistical: scaling the query weights equals scaling the scores.

# %%
q_scaled = (x[:6] @ (w_q_plain / math.sqrt(d_kv)).T)
assert torch.allclose(q_scaled @ (x[:6] @ w_k.T).T, (x[:6] @ w_q_plain.T) @ (x[:6] @ w_k.T).T / math.sqrt(d_kv),
                      atol=1e-5)
print("W_q / √d  gives the same scores as  scores / √d")

# %% [markdown]
# ## 2.5 The `T5Attention` module
#
# The module owns four bias-free linear maps with the names the checkpoints use: `q`, `k`, `v`
# (from $d_{model}$ to $H \cdot d_{kv}$) and `o` (back to $d_{model}$) — Figure 2.2 as code. Given
# `key_value_states` it does *cross-attention* — queries from one sequence, keys and values from
# another (the decoder reading the encoder, Chapter 05); otherwise *self-attention*. The attention
# itself is one call to `attention` from Section 2.1.
#
# `relative_attention_bias` is an empty slot for now: in T5 the first layer of each stack owns a small
# table of learned position biases (Chapter 03). The attention module itself never computes masks or
# positions: it receives one ready-made additive `bias` of shape broadcastable to
# `(batch, H, L_q, L_k)` — the stack builds it once and shares it with every layer.
#
# Three switches serve later chapters and stay out of the way otherwise:
#
# - `cache`: a dict in which a decoder keeps the keys and values of the tokens it has already seen,
#   so that generating token $t$ costs one new row instead of recomputing $t$ rows (Chapter 08);
# - `record_weights = True` keeps the last attention weights (`last_weights`) for figures;
# - `use_sdpa = True` passes `fused=True` to `attention` (Section 2.7).

# %%
#| export
class T5Attention(nn.Module):
    """Multi-head attention as in T5: no biases, no 1/sqrt(d) scaling, an additive `bias` input.

    Parameter names (`q`, `k`, `v`, `o`, `relative_attention_bias`) match Hugging Face checkpoints.
    """

    def __init__(self, d_model, num_heads, d_kv, dropout=0.0, relative_attention_bias=None):
        super().__init__()
        self.num_heads, self.d_kv, self.dropout = num_heads, d_kv, dropout
        inner = num_heads * d_kv
        self.q = nn.Linear(d_model, inner, bias=False)
        self.k = nn.Linear(d_model, inner, bias=False)
        self.v = nn.Linear(d_model, inner, bias=False)
        self.o = nn.Linear(inner, d_model, bias=False)
        self.relative_attention_bias = relative_attention_bias  # a module (Chapter 03) or None
        self.use_sdpa = False  # True: PyTorch's fused scaled_dot_product_attention
        self.record_weights = False  # True: keep the weights of the last call in `last_weights`
        self.last_weights = None

    def forward(self, hidden_states, key_value_states=None, bias=None, cache=None):
        """hidden_states: (batch, L_q, d_model); key_value_states: (batch, L_k, d_model) for cross-attention.

        bias: additive, broadcastable to (batch, H, L_q, L_k). cache: a dict (or None); for
        self-attention new keys/values are appended to it, for cross-attention they are computed once.
        """
        q = split_heads(self.q(hidden_states), self.num_heads)
        if key_value_states is None:  # self-attention
            k = split_heads(self.k(hidden_states), self.num_heads)
            v = split_heads(self.v(hidden_states), self.num_heads)
            if cache is not None:
                if "k" in cache:
                    k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
        elif cache is not None and "k" in cache:  # cross-attention, encoder keys/values already known
            k, v = cache["k"], cache["v"]
        else:
            k = split_heads(self.k(key_value_states), self.num_heads)
            v = split_heads(self.v(key_value_states), self.num_heads)
            if cache is not None:
                cache["k"], cache["v"] = k, v
        fused = self.use_sdpa and not self.record_weights  # the fused kernel does not return weights
        out, weights = attention(q, k, v, bias, self.dropout, self.training, fused=fused)
        if self.record_weights:
            self.last_weights = weights.detach()
        return self.o(merge_heads(out))


# %% [markdown]
# Its parameters have exactly the checkpoint names:

# %%
_ = torch.manual_seed(0)
attn = T5Attention(d_model=16, num_heads=4, d_kv=8)
print({name: tuple(p.shape) for name, p in attn.state_dict().items()})
assert list(attn.state_dict()) == ["q.weight", "k.weight", "v.weight", "o.weight"]

# %% [markdown]
# **Check: the module is Figure 2.2.** Projecting, splitting, calling `attention` and merging by hand
# gives the module's output. (Positions that are padding still get an output: they attend to the
# real tokens; the model ignores them later.)

# %%
_ = torch.manual_seed(0)
hidden = torch.randn(2, 6, 16)
mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
full_bias = torch.randn(1, 4, 6, 6) + padding_bias(mask)  # a random "position" part plus padding
q_, k_, v_ = (split_heads(lin(hidden), 4) for lin in (attn.q, attn.k, attn.v))
by_hand = attn.o(merge_heads(attention(q_, k_, v_, full_bias)[0]))
print("module == projections + attention + merge:", torch.equal(attn(hidden, bias=full_bias), by_hand))
assert torch.equal(attn(hidden, bias=full_bias), by_hand)

# %% [markdown]
# **Check: the cache gives the same answer.** Feeding a causal self-attention one position at a time,
# with a cache, must reproduce the full computation row by row.

# %%
causal_bias = mask_to_bias(causal_mask(6))
full = attn(hidden, bias=causal_bias)
cache, rows = {}, []
for t in range(6):
    rows.append(attn(hidden[:, t:t + 1], bias=causal_bias[t:t + 1, : t + 1], cache=cache))
step_by_step = torch.cat(rows, dim=1)
print("full and incremental agree to 1e-6:", (full - step_by_step).abs().max().item() < 1e-6,
      "| cached keys:", tuple(cache["k"].shape))
assert torch.allclose(full, step_by_step, atol=1e-6)

# %% [markdown]
# ## 2.6 Looking at attention
#
# A heat map shows, for each query (row), how the weight is spread over the keys (columns). Here is
# one head of our random module on the padded sequence (left: pad keys get nothing) and with a causal
# mask (right: nothing above the diagonal). With random weights the patterns themselves mean nothing
# yet — the masks are what we check. Chapter 03 draws its bucket maps the same way, so the drawing
# goes into a small helper of the package, `t5edu.figures.heatmaps` (matplotlib is imported only when
# it is called: the model itself never needs it).

# %%
#| export figures
def heatmaps(panels, *, colorbar, suptitle, figsize=(8, 3.6), **imshow_kwargs):
    """Draw (matrix, title) panels of (query, key) positions side by side with one shared colour bar;
    `imshow_kwargs` (cmap, vmin, ...) go to every panel. Needs matplotlib (the `book` extra)."""
    from t5edu.extras import require

    plt = require("matplotlib.pyplot", "book")
    fig, axes = plt.subplots(1, len(panels), figsize=figsize)
    for ax, (matrix, title) in zip(axes, panels, strict=True):
        image = ax.imshow(matrix, **imshow_kwargs)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
    fig.colorbar(image, ax=axes, shrink=0.8, label=colorbar)
    fig.suptitle(suptitle)
    return fig


# %%
attn.record_weights = True
attn(hidden, bias=padding_bias(mask))
w_pad = attn.last_weights[0, 0]
attn(hidden, bias=causal_bias)
w_causal = attn.last_weights[0, 0]
attn.record_weights = False

heatmaps([(w_pad, "padding mask (last 2 keys are pads)"), (w_causal, "causal mask")],
         colorbar="weight", suptitle="Attention weights of head 0 (random weights)",
         cmap="viridis", vmin=0, vmax=1)
plt.show()
assert w_pad[:, 4:].max() == 0 and torch.triu(w_causal, 1).max() == 0

# %% [markdown]
# *Figure 2.3 — Measured weights obey Figure 2.1: the pad columns (left) and the upper triangle (right)
# are exactly 0, and every row sums to 1.*
#
# ## 2.7 Under the hood
#
# *This section is optional: it explains the two details of `attention` that the main path skipped.*
#
# **The fused path.** With `fused=True` (a module's `use_sdpa = True`) `attention` calls PyTorch's
# `torch.nn.functional.scaled_dot_product_attention` (SDPA) with `scale=1.0` (no $1/\sqrt{d}$) and our
# float bias as `attn_mask`: scores, bias, softmax and weighted sum in one kernel, without storing the
# full `(B, H, L_q, L_k)` tensor between them. The default stays the explicit math, operation for
# operation as the reference implementation does, so that a checkpoint gives the same numbers to the
# last bits. The fused kernel adds up in a different order, so it agrees with the explicit math to
# about 1e-7 per layer rather than exactly; through a deep model these differences grow to around
# 1e-5 in the logits. In training on a CPU it gains nothing: when the bias needs a gradient (the
# learned position table) or attention dropout is on, PyTorch 2.x dispatches to its unfused "math"
# implementation — the same operations as ours.
#
# **Mixed precision.** Under `torch.autocast` the projections produce bfloat16 (or float16) `q`, while
# a mask built in float32 holds float32's `mask_value`, about −3.4e38 — below float16's range.
# `attention` therefore casts the bias to the dtype of `q` and clamps it at that dtype's `mask_value`,
# so masked scores stay finite.

# %%
attn.use_sdpa = True
fast = attn(hidden, bias=full_bias)
attn.use_sdpa = False
slow = attn(hidden, bias=full_bias)
print("fused and explicit agree to 1e-6:", (fast - slow).abs().max().item() < 1e-6)
assert torch.allclose(fast, slow, atol=1e-6)
with torch.autocast("cpu", dtype=torch.bfloat16):
    low = attn(hidden, bias=padding_bias(mask))
print("bfloat16 output:", low.dtype, "| all finite:", bool(torch.isfinite(low).all()))
assert torch.isfinite(low).all()

# %% [markdown]
# ## Summary
#
# - Attention is `softmax(q kᵀ + bias) v`; masks and (next chapter) positions enter through the bias.
# - A mask is a bias of 0 and `mask_value` (a finite "−∞"); masks combine as booleans, then convert once.
# - Heads are a reshape: `(B, L, H·d_kv)` ↔ `(B, H, L, d_kv)`; $H \cdot d_{kv}$ may differ from $d_{model}$.
# - T5 does not divide by √d: the factor is folded into the initialisation of `q`.
# - `T5Attention` has the checkpoint names `q`, `k`, `v`, `o` and computes through the one function
#   `attention(q, k, v, bias, dropout_p, training, fused)`.
#
# **What is in the package now**
#
# ```python
# from t5edu.attention import attention, mask_value, mask_to_bias, padding_bias, causal_mask
# from t5edu.attention import split_heads, merge_heads, T5Attention
# from t5edu.figures import heatmaps   # the book's heat maps (needs matplotlib)
# ```
#
# Next, Chapter 03 fills the `relative_attention_bias` slot: how T5 tells positions apart without
# position embeddings.
#
# ## Further reading
#
# - Vaswani et al. (2017), *Attention Is All You Need* — scaled dot-product and multi-head attention:
#   https://arxiv.org/abs/1706.03762
# - Raffel et al. (2020), *Exploring the Limits of Transfer Learning with a Unified Text-to-Text
#   Transformer*, JMLR, §2.1 (the model): https://arxiv.org/abs/1910.10683
# - Shazeer et al. (2018), *Mesh-TensorFlow: Deep Learning for Supercomputers* — the library T5 was
#   written in, including its initialisation: https://arxiv.org/abs/1811.02084
# - Alammar, *The Illustrated Transformer* — the same pictures, drawn by hand:
#   https://jalammar.github.io/illustrated-transformer/
# - Rush, *The Annotated Transformer* — the original paper as runnable code:
#   https://nlp.seas.harvard.edu/annotated-transformer/
#
# ---
#
# Previous: [Chapter 01 — The tokenizer](01_tokenizer.ipynb) ·
# Next: [Chapter 03 — Relative position bias](03_relative_bias.ipynb) ·
# [Exercises for this chapter](../exercises/ch02_attention.ipynb)
