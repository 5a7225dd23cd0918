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
# # Chapter 04 — The encoder
#
# The encoder reads the input sentence and returns one vector per token, each informed by the whole
# sentence. It is a stack of identical blocks — self-attention, then a feed-forward network — each
# wrapped in a normalisation and a residual connection. T5's versions of these parts differ from the
# 2017 Transformer in small ways that matter when you want to load real weights: a normalisation
# without mean or bias, normalisation *before* each sub-layer, no biases anywhere, and the relative
# position bias of Chapter 03 instead of position embeddings.
#
# **What you will build**
# - `T5Config`: every size of the model in one small dataclass, with the names of Hugging Face's `config.json`;
# - `T5LayerNorm` (RMS norm) and the two feed-forward networks (ReLU for T5, gated GELU for T5 v1.1);
# - the pre-norm residual sub-layers, the encoder block and `T5Encoder`, whose parameter names match
#   the published checkpoints; and `init_t5_weights`, T5's initialisation.
#
# **Why T5 does it this way.** The T5 paper (Raffel et al., 2020, §2.1 "Model") keeps the 2017
# encoder-decoder Transformer and changes three things: the layer normalisation only *rescales*
# (no mean subtracted, no additive bias — what Zhang & Sennrich call RMSNorm), it is applied to the
# *input* of each sub-layer with the residual connection around it ("pre-norm"), and positions enter
# as a learned relative bias in attention. Its dense layers have no biases either. §3.2
# ("Architectures") compares this encoder-decoder against decoder-only language models and prefix
# LMs, and the encoder-decoder with a denoising objective comes out best — which is why the book
# builds an encoder here and a decoder with cross-attention in Chapter 05. The later T5 v1.1 checkpoints
# swap the ReLU feed-forward network for a gated GELU (Shazeer, 2020, "GLU Variants Improve
# Transformer"), which Section 4.3 builds too.

# %%
#| default_exp encoder

# %%
#| export
import torch
import torch.nn.functional as F
from torch import nn

from t5edu.attention import T5Attention, padding_bias
from t5edu.relative_bias import RelativePositionBias

# %%
import dataclasses
import math
import tempfile

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

_ = torch.manual_seed(0)

# %% [markdown]
# ## 4.1 The configuration
#
# A T5 model is fully described by a dozen numbers. We keep them in a dataclass whose field names are
# exactly those of Hugging Face's `T5Config`, so that a checkpoint's `config.json` can be read
# directly. It gets a module of its own, `t5edu.config`, because the encoder, the decoder, the
# trainer and the command line all need it. The fields that shape the network:
#
# | field | meaning | t5-small |
# | --- | --- | --- |
# | `vocab_size` | rows of the embedding | 32128 |
# | `d_model` | width of the residual stream | 512 |
# | `d_kv` | width of one attention head | 64 |
# | `d_ff` | hidden width of the feed-forward network | 2048 |
# | `num_layers` / `num_decoder_layers` | blocks in the encoder / decoder | 6 / 6 |
# | `num_heads` | attention heads | 8 |
# | `feed_forward_proj` | `relu` (T5) or `gated-gelu` (T5 v1.1) | relu |
# | `tie_word_embeddings` | output head shares the embedding matrix (Chapter 05) | True |
#
# A bad value raises `ConfigError` (a `ValueError`) naming the field. Reading and writing real
# `config.json` files (`from_dict`, `to_dict`, `read_config`) is plumbing; it lives in Section 4.7,
# "Under the hood", at the end of the chapter.

# %%
#| export config
import dataclasses
import json
from pathlib import Path


class ConfigError(ValueError):
    """A configuration value of the wrong type or out of range; the message names the field (and file)."""


# %%
#| export config
@dataclasses.dataclass
class T5Config:
    """Sizes and options of a T5 model; the field names are those of Hugging Face's `config.json`."""

    vocab_size: int = 32128                      # rows of the shared embedding
    d_model: int = 512                           # width of the residual stream
    d_kv: int = 64                               # width of one attention head
    d_ff: int = 2048                             # hidden width of the feed-forward network
    num_layers: int = 6                          # encoder blocks
    num_decoder_layers: int | None = None        # decoder blocks; None: same as num_layers
    num_heads: int = 8                           # attention heads
    relative_attention_num_buckets: int = 32     # Chapter 03
    relative_attention_max_distance: int = 128   # Chapter 03
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0              # scales every initial standard deviation (4.6)
    feed_forward_proj: str = "relu"              # "relu" (T5) or "gated-gelu" (T5 v1.1)
    tie_word_embeddings: bool = True             # output head = embedding matrix (Chapter 05)
    scale_decoder_outputs: bool | None = None    # times d_model**-0.5 before the head; None: = tied
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0              # the first decoder input (Chapter 05)

    def __post_init__(self):
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        if self.scale_decoder_outputs is None:
            self.scale_decoder_outputs = self.tie_word_embeddings
        check_config(self)  # types and ranges, below

    @property
    def is_gated_act(self):
        """True for the gated feed-forward network of T5 v1.1."""
        return self.feed_forward_proj.startswith("gated-")

    @property
    def dense_act_fn(self):
        """The activation's Hugging Face name: 'gated-gelu' means the tanh approximation, 'gelu_new'."""
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else self.feed_forward_proj.split("-")[-1]

    @classmethod
    def preset(cls, name, **overrides):
        """A named size (see T5_PRESETS), optionally with some fields changed."""
        if name not in T5_PRESETS:
            raise ConfigError(f"unknown T5 preset {name!r}; known: {', '.join(T5_PRESETS)}")
        return cls(**{**T5_PRESETS[name], **overrides})

    def to_dict(self):
        """A dict that Hugging Face's T5Config accepts (and that from_dict reads back)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data):
        """Read a Hugging Face config.json dict; unknown keys are ignored."""
        return config_from_dict(data, cls)


# %% [markdown]
# `check_config` runs on every new config, so a bad value fails at once with a message that names the
# field instead of deep inside a matrix product later. The checks are plain code:

# %%
#| export config
FEED_FORWARD_PROJ = ("relu", "gated-gelu", "gelu", "gated-relu", "silu", "gated-silu")
SIZE_FIELDS = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
               "relative_attention_num_buckets", "relative_attention_max_distance")


def check_config(config):
    """Raise ConfigError naming the first field whose value has the wrong type or is out of range."""
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)  # True is an int in Python; not here

    def is_number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def fail(name, expected):
        raise ConfigError(f"T5Config.{name} must be {expected}, got {getattr(config, name)!r}")

    for name in SIZE_FIELDS:
        if not is_int(getattr(config, name)) or getattr(config, name) <= 0:
            fail(name, "a positive integer")
    if config.relative_attention_num_buckets < 2:
        fail("relative_attention_num_buckets", "at least 2")
    for name in ("pad_token_id", "eos_token_id", "decoder_start_token_id"):
        if not is_int(getattr(config, name)) or not 0 <= getattr(config, name) < config.vocab_size:
            fail(name, f"a token id in [0, vocab_size={config.vocab_size})")
    if not is_number(config.dropout_rate) or not 0 <= config.dropout_rate < 1:
        fail("dropout_rate", "a number in [0, 1)")
    for name in ("layer_norm_epsilon", "initializer_factor"):
        if not is_number(getattr(config, name)) or not getattr(config, name) > 0:
            fail(name, "a positive number")
    if not isinstance(config.feed_forward_proj, str) or config.feed_forward_proj not in FEED_FORWARD_PROJ:
        fail("feed_forward_proj", "one of " + ", ".join(FEED_FORWARD_PROJ))
    for name in ("tie_word_embeddings", "scale_decoder_outputs"):
        if not isinstance(getattr(config, name), bool):
            fail(name, "true or false")


# %% [markdown]
# The published sizes, and a few small ones that train on a laptop CPU:

# %%
#| export config
_V1_1 = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)
T5_PRESETS = {
    # the original T5 (Raffel et al., 2020, §3.7 "Putting it all together")
    "t5-small": dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8),
    "t5-base": dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12),
    "t5-large": dict(d_model=1024, d_kv=64, d_ff=4096, num_layers=24, num_heads=16),
    # T5 v1.1: gated-GELU feed-forward, untied output head, no dropout in pretraining (0.1 for fine-tuning)
    "t5-v1_1-small": dict(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_heads=6, **_V1_1),
    "t5-v1_1-base": dict(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12, **_V1_1),
    # small sizes that train on a laptop CPU (same vocabulary as T5's tokenizer)
    "t5-tiny": dict(d_model=128, d_kv=32, d_ff=512, num_layers=2, num_heads=4),
    "t5-mini": dict(d_model=256, d_kv=32, d_ff=1024, num_layers=4, num_heads=8),
    "t5-v1_1-tiny": dict(d_model=128, d_kv=32, d_ff=320, num_layers=2, num_heads=4, **_V1_1),
}

# %%
for name in T5_PRESETS:
    c = T5Config.preset(name)
    print(f"{name:14s} d_model={c.d_model:4d} layers={c.num_layers:2d}+{c.num_decoder_layers:<2d} "
          f"heads={c.num_heads:2d} d_ff={c.d_ff:4d} {c.feed_forward_proj:10s} tied={c.tie_word_embeddings}")
for bad in (dict(d_model=0), dict(feed_forward_proj="swiglu"), dict(dropout_rate="0.1")):
    try:
        T5Config(**bad)
    except ConfigError as err:
        print("ConfigError:", err)

# %% [markdown]
# ## 4.2 RMS layer norm
#
# The 2017 Transformer's LayerNorm subtracts the mean of each vector, divides by its standard
# deviation, then applies a learned scale and bias. T5 keeps only the scale: it divides by the root
# mean square (no mean subtracted) and has no bias — "RMSNorm" (Zhang & Sennrich, 2019):
#
# $$\text{norm}(x) = w \odot \frac{x}{\sqrt{\tfrac{1}{d}\sum_i x_i^2 + \epsilon}}, \qquad \epsilon = 10^{-6}.$$
#
# Cheaper, and in practice as good. Two details for exact parity: the mean of squares is computed in
# float32 even when the model runs in half precision (a sum of 512 squares overflows float16 easily),
# and the result is cast back to half precision only if the weight is.

# %%
#| export
class T5LayerNorm(nn.Module):
    """RMS normalisation: scale only, no mean subtraction, no bias; variance accumulated in float32."""

    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        """(..., hidden_size) -> the same shape: each vector over its root mean square, times `weight`."""
        variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            hidden_states = hidden_states.to(self.weight.dtype)
        return self.weight * hidden_states


# %% [markdown]
# Checks: against the formula; the output has unit root mean square; unlike LayerNorm, the mean is
# *not* removed (a shifted input stays shifted); and float16 inputs whose squares overflow float16
# still normalise correctly.

# %%
torch.manual_seed(0)
norm = T5LayerNorm(8)
x = torch.randn(3, 8) + 2.0
by_formula = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-6)
assert torch.allclose(norm(x), by_formula, atol=1e-6)
rms = norm(x).pow(2).mean(-1).sqrt()
print("RMS after norm:", [f"{v:.3f}" for v in rms.tolist()])
print("mean after RMS norm:", f"{norm(x).mean().item():.2f}", "| after LayerNorm:",
      f"{nn.functional.layer_norm(x, (8,)).mean().item():.2f}")
big = torch.full((1, 512), 300.0, dtype=torch.float16)  # 512 * 300² = 4.6e7 > float16 max 65504
print("float16 input, sum of squares in float16:", (big * big).sum().item(),
      "| T5LayerNorm:", norm.to(torch.float16)(big[:, :8]).tolist()[0][:3])
assert torch.isfinite(T5LayerNorm(512).half()(big)).all()

# %% [markdown]
# ## 4.3 The feed-forward network
#
# After attention mixes information *between* positions, a two-layer network transforms each position
# on its own: widen from $d_{model}$ to $d_{ff}$, apply a non-linearity, project back.
#
# - **T5 (v1.0)**: $\;\text{FFN}(x) = W_o\, \text{ReLU}(W_i x)$ — weights `wi`, `wo`, no biases.
# - **T5 v1.1**: a *gated* unit (Shazeer, 2020): $\;\text{FFN}(x) = W_o\, \big(\text{GELU}(W_{i,0} x) \odot W_{i,1} x\big)$
#   — two input projections `wi_0`, `wi_1`, one multiplied into the other. The GELU is the tanh
#   approximation, $\tfrac{1}{2}x\big(1 + \tanh(\sqrt{2/\pi}(x + 0.044715 x^3))\big)$, which Hugging
#   Face calls `gelu_new`; the exact GELU differs by up to 5·10⁻⁴, enough to break parity with a checkpoint.
#   Shazeer's experiments found the gated variants (GEGLU among them) better than ReLU at equal
#   parameter count, which is why v1.1 makes $d_{ff}$ smaller: three matrices instead of two.
#
# Dropout sits after the activation (inside the FFN); a second dropout is applied to the FFN's
# output before it is added to the residual (Section 4.4). The attribute is called `DenseReluDense`
# in the checkpoints, even for the gated GELU variant.

# %%
#| export
def gelu_new(x):
    """GELU, tanh approximation (Hugging Face's 'gelu_new'), as used by T5 v1.1's gated FFN."""
    return F.gelu(x, approximate="tanh")


ACTIVATIONS = {"relu": F.relu, "gelu_new": gelu_new, "gelu": F.gelu, "silu": F.silu}


def match_dtype(hidden_states, weight):
    """Cast to the weight's dtype (a float32 `wo` kept in a half-precision model), except under autocast."""
    if hidden_states.dtype != weight.dtype and not torch.is_autocast_enabled(hidden_states.device.type):
        return hidden_states.to(weight.dtype)
    return hidden_states


class T5DenseActDense(nn.Module):
    """T5 v1.0 feed-forward: wo(dropout(act(wi(x)))), no biases."""

    def __init__(self, config):
        super().__init__()
        self.wi = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.act = ACTIVATIONS[config.dense_act_fn]

    def forward(self, hidden_states):
        """(..., d_model) -> (..., d_model), each position on its own."""
        hidden_states = self.dropout(self.act(self.wi(hidden_states)))
        return self.wo(match_dtype(hidden_states, self.wo.weight))


class T5DenseGatedActDense(nn.Module):
    """T5 v1.1 feed-forward: wo(dropout(act(wi_0(x)) * wi_1(x))), no biases."""

    def __init__(self, config):
        super().__init__()
        self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.act = ACTIVATIONS[config.dense_act_fn]

    def forward(self, hidden_states):
        """(..., d_model) -> (..., d_model), each position on its own."""
        hidden_states = self.dropout(self.act(self.wi_0(hidden_states)) * self.wi_1(hidden_states))
        return self.wo(match_dtype(hidden_states, self.wo.weight))


# %% [markdown]
# The two non-linearities side by side, and a check of `gelu_new` against its formula:

# %%
x = torch.linspace(-4, 4, 401)
formula = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
assert torch.allclose(gelu_new(x), formula, atol=1e-6)
print(f"max |gelu_new - exact gelu| on [-4, 4]: {(gelu_new(x) - F.gelu(x)).abs().max().item():.1e}")
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(x, F.relu(x), label="ReLU (T5)")
ax.plot(x, gelu_new(x), label="GELU, tanh approx. (T5 v1.1)")
ax.axhline(0, color="gray", lw=0.5)
ax.set_xlabel("x")
ax.set_ylabel("activation(x)")
ax.set_title("The two feed-forward non-linearities", fontsize=10)
ax.legend()
plt.show()

# %% [markdown]
# *Figure 4.1 — ReLU cuts negative inputs to exactly zero; GELU lets small negative values through
# and is smooth at zero.*

# %%
tiny = T5Config(vocab_size=100, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4, dropout_rate=0.0)
for cfg in (tiny, dataclasses.replace(tiny, feed_forward_proj="gated-gelu")):
    ffn = T5DenseGatedActDense(cfg) if cfg.is_gated_act else T5DenseActDense(cfg)
    print(f"{cfg.feed_forward_proj:10s}", {k: tuple(v.shape) for k, v in ffn.state_dict().items()})
x = torch.randn(2, 5, 16)
assert torch.allclose(ffn(x)[1, 3], ffn(x[1:2, 3:4])[0, 0], atol=1e-6)  # position-wise: each position on its own
assert torch.allclose(ffn(x), ffn.wo(gelu_new(ffn.wi_0(x)) * ffn.wi_1(x)))

# %% [markdown]
# ## 4.4 Pre-norm residual sub-layers
#
# Each sub-layer is wrapped the same way: normalise, transform, drop out, add back to the input.
#
# $$x \leftarrow x + \text{Dropout}\big(\text{SubLayer}(\text{norm}(x))\big)$$
#
# The 2017 Transformer normalised *after* the addition ("post-norm"). With the norm inside the
# branch ("pre-norm") the path from the input to the output is an untouched sum — the *residual
# stream* — which keeps gradients healthy in deep stacks. The price: the residual stream is never
# normalised along the way, so the stack ends with a final norm (4.5). The picture:

# %%
def draw_sublayer(ax, pre_norm):
    """One residual sub-layer as boxes and arrows: the residual stream on the left, the branch on the right."""
    def box(x, y, text, color):
        ax.add_patch(FancyBboxPatch((x - 0.2, y - 0.05), 0.4, 0.1, boxstyle="round,pad=0.01",
                                    facecolor=color, edgecolor="black"))
        ax.text(x, y, text, ha="center", va="center", fontsize=9)

    def arrow(start, end):
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", lw=1.4, color="black"))

    stream, branch, plus = 0.2, 0.68, 0.78
    ax.plot([stream, stream], [0.02, plus - 0.03], color="tab:blue", lw=4, alpha=0.35)
    ax.text(stream - 0.05, 0.42, "residual stream", rotation=90, ha="center", va="center",
            fontsize=8, color="tab:blue")
    ax.text(stream, 0.0, "x", ha="center", va="top", fontsize=11)
    ax.plot([stream, branch], [0.1, 0.1], color="black", lw=1.4)
    if pre_norm:
        steps = [(0.25, "RMSNorm", "#fdd9a0"), (0.43, "sub-layer\n(attention or FFN)", "#b9d7f0"),
                 (0.61, "dropout", "#e0e0e0")]
        formula = "x + dropout(sub-layer(norm(x)))"
    else:
        steps = [(0.3, "sub-layer\n(attention or FFN)", "#b9d7f0"), (0.5, "dropout", "#e0e0e0")]
        formula = "norm(x + dropout(sub-layer(x)))"
    below = 0.1
    for y, text, color in steps:
        box(branch, y, text, color)
        arrow((branch, below), (branch, y - 0.05))
        below = y + 0.05
    arrow((branch, below), (stream + 0.03, plus))
    top = plus + 0.03
    if not pre_norm:  # the normalisation sits on the stream itself
        box(stream, 0.92, "LayerNorm", "#fdd9a0")
        arrow((stream, top), (stream, 0.87))
        top = 0.97
    arrow((stream, top), (stream, 1.05))
    ax.text(stream, 1.07, formula, fontsize=8, va="bottom", ha="left")
    ax.text(stream, plus, "+", ha="center", va="center", fontsize=14, fontweight="bold",
            bbox=dict(boxstyle="circle,pad=0.1", facecolor="white", edgecolor="black"))
    ax.set_xlim(-0.05, 1.0)
    ax.set_ylim(-0.08, 1.16)
    ax.axis("off")


fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
draw_sublayer(axes[0], pre_norm=False)
axes[0].set_title("post-norm (2017 Transformer)", fontsize=10)
draw_sublayer(axes[1], pre_norm=True)
axes[1].set_title("pre-norm (T5): the stream is an untouched sum", fontsize=10)
fig.suptitle("One residual sub-layer", fontsize=11)
plt.show()

# %% [markdown]
# *Figure 4.2 — Post-norm puts the normalisation on the residual stream itself; pre-norm (T5) puts it
# inside the branch, so every sub-layer only ever **adds** to the stream.*
#
# Names again follow the checkpoints: a block is a list `layer`; `layer[0]` is a
# `T5LayerSelfAttention` holding `SelfAttention` and `layer_norm`, the last is a `T5LayerFF` holding
# `DenseReluDense` and `layer_norm`. Only the first block's self-attention gets the relative-position
# table. A small base class, `T5Block`, holds that list and runs the sub-layers in order, each with its
# own keyword arguments; the encoder block only says which sub-layers it has (Chapter 05's decoder block
# will add cross-attention between the two).

# %%
#| export
class T5LayerSelfAttention(nn.Module):
    """x + dropout(self_attention(norm(x))); the first layer of a stack owns the relative bias table."""

    def __init__(self, config, has_relative_attention_bias=False, bidirectional=True):
        super().__init__()
        table = RelativePositionBias(config.num_heads, config.relative_attention_num_buckets,
                                     config.relative_attention_max_distance, bidirectional) \
            if has_relative_attention_bias else None
        self.SelfAttention = T5Attention(config.d_model, config.num_heads, config.d_kv, config.dropout_rate,
                                         relative_attention_bias=table)
        self.layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, hidden_states, bias=None, cache=None):
        """(batch, L, d_model) -> the same shape; `bias` is added to every attention score."""
        attended = self.SelfAttention(self.layer_norm(hidden_states), bias=bias, cache=cache)
        return hidden_states + self.dropout(attended)


class T5LayerFF(nn.Module):
    """x + dropout(ffn(norm(x)))."""

    def __init__(self, config):
        super().__init__()
        self.DenseReluDense = T5DenseGatedActDense(config) if config.is_gated_act else T5DenseActDense(config)
        self.layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, hidden_states):
        """(batch, L, d_model) -> the same shape."""
        return hidden_states + self.dropout(self.DenseReluDense(self.layer_norm(hidden_states)))


def clamp_fp16(hidden_states):
    """In float16, keep the residual stream finite (as Hugging Face does): large activations in T5
    checkpoints can overflow float16's range of ±65504. A no-op in any other dtype."""
    if hidden_states.dtype != torch.float16:
        return hidden_states
    limit = torch.finfo(torch.float16).max
    limit = torch.where(torch.isinf(hidden_states).any(), limit - 1000, limit)
    return torch.clamp(hidden_states, min=-limit, max=limit)


# %% [markdown]
# A block is its sub-layers run in order: the encoder's has two (self-attention, feed-forward), the
# decoder's of Chapter 05 three. `T5Block` holds them in `layer` (the checkpoint's name) and runs them;
# `T5EncoderBlock` says which two.

# %%
#| export
class T5Block(nn.Module):
    """A block: residual sub-layers `layer[0]`, `layer[1]`, ... run in order (Hugging Face's `T5Block`)."""

    def __init__(self, *layers):
        super().__init__()
        self.layer = nn.ModuleList(layers)

    def forward(self, hidden_states, *layer_kwargs):
        """Run each sub-layer on the stream with its own keyword arguments (a dict per sub-layer)."""
        for i, layer in enumerate(self.layer):
            hidden_states = clamp_fp16(layer(hidden_states, **layer_kwargs[i]))
        return hidden_states


class T5EncoderBlock(T5Block):
    """One encoder block: layer[0] self-attention, layer[1] feed-forward."""

    def __init__(self, config, has_relative_attention_bias=False):
        super().__init__(T5LayerSelfAttention(config, has_relative_attention_bias, bidirectional=True),
                         T5LayerFF(config))

    def forward(self, hidden_states, bias=None):
        """(batch, L, d_model) -> the same shape; `bias` is the stack's shared attention bias."""
        return super().forward(hidden_states, dict(bias=bias), {})


# %% [markdown]
# A residual sub-layer whose transformation outputs zero is exactly the identity — the property that
# lets a deep pre-norm stack start close to "do nothing" and learn from there:

# %%
ff = T5LayerFF(tiny)
nn.init.zeros_(ff.DenseReluDense.wo.weight)
x = torch.randn(2, 5, 16)
assert torch.equal(ff(x), x)
print("zero output projection -> the sub-layer is the identity")

# %% [markdown]
# ## 4.5 The encoder stack
#
# The stack: look up token embeddings, dropout, the blocks, a final RMS norm, dropout. There are no
# position embeddings — positions enter only through the relative bias. The stack computes that bias
# **once** from the first block's table, adds the padding mask to it (so that later layers do not
# redo either), and hands the same `(batch or 1, H, L, L)` tensor to every block.
#
# Wrong input would otherwise fail deep inside the embedding or the attention with an unhelpful
# message — or, worse, not fail at all (a padding mask of the wrong batch size broadcasts silently).
# Two small checks run first: token ids must be a non-empty `(batch, length)` tensor inside the
# vocabulary, and the padding mask must have the same shape.

# %%
#| export
def check_token_ids(ids, vocab_size, name="input_ids"):
    """Fail clearly unless `ids` is a non-empty (batch, length) integer tensor with ids in [0, vocab_size)."""
    if ids.dtype.is_floating_point:
        raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor (batch, length), got shape {tuple(ids.shape)}; "
                         "for a single sequence add a batch dimension: ids[None]")
    if ids.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(ids.shape)}): pass at least one sequence of "
                         "at least one token")
    if torch.compiler.is_compiling():
        return  # reading values back would split the compiled graph; eager calls still check them
    low, high = torch.stack(torch.aminmax(ids)).tolist()  # one device sync, not two
    if low < 0 or high >= vocab_size:
        bad = ids[(ids < 0) | (ids >= vocab_size)]
        raise ValueError(f"{name} contains token id {int(bad[0])} outside the vocabulary "
                         f"[0, {vocab_size}); is the tokenizer's vocabulary larger than the model's?")


def check_attention_mask(mask, shape, name="attention_mask", of="input_ids"):
    """Fail clearly when a padding mask's shape is not `shape`, the (batch, length) of what it masks."""
    if mask is not None and tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(mask.shape)} but {of} has shape {tuple(shape)}; "
                         "the mask needs one 1 (token) or 0 (padding) per token")


# %% [markdown]
# Chapter 05's decoder stack is built from the same parts — an embedding, blocks of which the first owns
# the relative-bias table, a final RMS norm, dropout — and reads its input the same way, so those live in
# a small base class, `T5Stack` (Hugging Face's name for it too); the encoder adds only its `forward`.

# %%
#| export
class T5Stack(nn.Module):
    """What the encoder and decoder stacks share: the embedding (one matrix for both in the full model),
    `num_layers` blocks made by `make_block` (the first owns the relative-bias table), final RMS norm."""

    def __init__(self, config, make_block, num_layers, embed_tokens=None):
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens if embed_tokens is not None else nn.Embedding(config.vocab_size,
                                                                                       config.d_model)
        self.block = nn.ModuleList([make_block(config, has_relative_attention_bias=(i == 0))
                                    for i in range(num_layers)])
        self.final_layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def embed(self, input_ids, inputs_embeds, name="input_ids"):
        """The embeddings of checked `input_ids`, or `inputs_embeds` as given: exactly one of the two."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            check_token_ids(input_ids, self.embed_tokens.num_embeddings, name)
            inputs_embeds = self.embed_tokens(input_ids)
        return inputs_embeds


# %% [markdown]
# The encoder adds only what is its own: the bias that it computes once for all its blocks (the first
# block's table plus the padding mask), and its `forward`, which runs the checks, the embedding and dropout,
# every block with that one bias, the final norm and dropout.

# %%
#| export
class T5Encoder(T5Stack):
    """Embedding (shared with the decoder in the full model), blocks, final RMS norm."""

    def __init__(self, config, embed_tokens=None):
        super().__init__(config, T5EncoderBlock, config.num_layers, embed_tokens)

    def attention_bias(self, length, attention_mask=None):
        """Relative position bias (1, H, L, L) plus the padding mask -> (batch or 1, H, L, L)."""
        bias = self.block[0].layer[0].SelfAttention.relative_attention_bias(length, length)
        if attention_mask is not None and not bool(attention_mask.all()):
            bias = bias + padding_bias(attention_mask, bias.dtype)
        return bias

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        """input_ids (batch, L) -> hidden states (batch, L, d_model); attention_mask: 1 = token, 0 = pad."""
        inputs_embeds = self.embed(input_ids, inputs_embeds)
        check_attention_mask(attention_mask, inputs_embeds.shape[:2],
                             of="input_ids" if input_ids is not None else "inputs_embeds (batch, length)")
        bias = self.attention_bias(inputs_embeds.shape[1], attention_mask)
        hidden_states = self.dropout(inputs_embeds)
        for block in self.block:
            hidden_states = block(hidden_states, bias=bias)
        return self.dropout(self.final_layer_norm(hidden_states))


# %% [markdown]
# ## 4.6 Initialisation
#
# T5 draws every weight from a normal distribution whose standard deviation depends on its role
# (Mesh TensorFlow's choices, also used by Hugging Face), times `initializer_factor` (1.0):
#
# | weight | std |
# | --- | --- |
# | embedding `shared` | 1.0 |
# | attention `q` | $(d_{model} \cdot d_{kv})^{-1/2}$ — the folded-in $1/\sqrt{d_{kv}}$ of Chapter 02 |
# | attention `k`, `v` | $d_{model}^{-1/2}$ |
# | attention `o` | $(H \cdot d_{kv})^{-1/2}$ |
# | relative bias table | $d_{model}^{-1/2}$ |
# | FFN `wi`, `wi_0`, `wi_1` | $d_{model}^{-1/2}$ |
# | FFN `wo` | $d_{ff}^{-1/2}$ |
# | layer norm weights | 1.0 |
#
# Each projection's std is $1/\sqrt{\text{fan-in}}$, so a unit-variance input gives a unit-variance
# output. The embedding's std of 1.0 matches: RMS norm comes right after it anyway. The output head
# is the model's business (Chapter 05).

# %%
#| export
@torch.no_grad()
def init_t5_weights(module, config):
    """Initialise every T5 part inside `module` in place, with the standard deviations of T5."""
    f, d_model = config.initializer_factor, config.d_model
    for m in module.modules():
        if isinstance(m, T5LayerNorm):
            m.weight.fill_(f * 1.0)
        elif isinstance(m, nn.Embedding):
            m.weight.normal_(0.0, f * 1.0)
        elif isinstance(m, T5Attention):
            m.q.weight.normal_(0.0, f * (d_model * m.d_kv) ** -0.5)
            m.k.weight.normal_(0.0, f * d_model ** -0.5)
            m.v.weight.normal_(0.0, f * d_model ** -0.5)
            m.o.weight.normal_(0.0, f * (m.num_heads * m.d_kv) ** -0.5)
        elif isinstance(m, RelativePositionBias):
            m.weight.normal_(0.0, f * d_model ** -0.5)
        elif isinstance(m, (T5DenseActDense, T5DenseGatedActDense)):
            for name in ("wi", "wi_0", "wi_1"):
                if hasattr(m, name):
                    getattr(m, name).weight.normal_(0.0, f * d_model ** -0.5)
            m.wo.weight.normal_(0.0, f * m.wo.weight.shape[1] ** -0.5)


# %% [markdown]
# Build a tiny encoder and look at its parameter names — the same as in a Hugging Face checkpoint
# (`encoder.` is added by the full model in Chapter 05):

# %%
torch.manual_seed(0)
encoder = T5Encoder(tiny).eval()
init_t5_weights(encoder, tiny)
for name, p in encoder.named_parameters():
    if name.startswith(("embed", "block.0.", "final")):
        print(f"{name:55s} {tuple(p.shape)}")
print(f"... {sum(p.numel() for p in encoder.parameters()):,} parameters in total")
assert "block.0.layer.0.SelfAttention.relative_attention_bias.weight" in dict(encoder.named_parameters())
assert "block.1.layer.0.SelfAttention.relative_attention_bias.weight" not in dict(encoder.named_parameters())

# %% [markdown]
# **Check: padding does not leak.** Encode a sentence alone, then in a batch padded to a longer
# length: the real positions must get the same vectors. (This is what the padding bias is for — and
# because positions are relative, the pads after a sentence do not shift anything.)

# %%
ids = torch.tensor([[5, 17, 42, 8, 1]])
alone = encoder(ids)
batch = torch.tensor([[5, 17, 42, 8, 1, 0, 0, 0], [9, 3, 14, 15, 92, 65, 35, 1]])
mask = (torch.arange(8) < torch.tensor([[5], [8]])).long()
padded = encoder(batch, attention_mask=mask)
print("alone == padded on the real tokens (to 1e-5):", torch.allclose(padded[0, :5], alone[0], atol=1e-5))
assert torch.allclose(padded[0, :5], alone[0], atol=1e-5)
assert torch.allclose(padded[1:], encoder(batch[1:]), atol=1e-5)

# %% [markdown]
# **Check: bad input fails clearly** — an id outside the vocabulary, a sequence without its batch
# dimension, and a mask for the wrong batch (which would otherwise broadcast without a word):

# %%
for bad in (dict(input_ids=torch.tensor([[5, 100]])), dict(input_ids=torch.tensor([5, 17, 42])),
            dict(input_ids=batch, attention_mask=mask[:1])):
    try:
        encoder(**bad)
    except ValueError as err:
        print("ValueError:", err)

# %% [markdown]
# **What the residual stream does.** With pre-norm, nothing rescales the residual stream between
# blocks: every sub-layer adds to it. Here is its root mean square after each sub-layer of a
# freshly initialised 6-block encoder with t5-small's widths (fewer tokens, smaller vocabulary) — it
# grows, and the final RMS norm brings it back to about 1 at the end.

# %%
torch.manual_seed(0)
cfg6 = T5Config.preset("t5-small", vocab_size=1000, dropout_rate=0.0)
enc6 = T5Encoder(cfg6).eval()
init_t5_weights(enc6, cfg6)
rms_trace = []
with torch.no_grad():
    h = enc6.embed_tokens(torch.randint(0, 1000, (4, 32)))
    bias = enc6.attention_bias(32)
    rms_trace.append(h.pow(2).mean().sqrt().item())
    for block in enc6.block:
        h = block.layer[0](h, bias=bias)
        rms_trace.append(h.pow(2).mean().sqrt().item())
        h = block.layer[1](h)
        rms_trace.append(h.pow(2).mean().sqrt().item())
    final = enc6.final_layer_norm(h).pow(2).mean().sqrt().item()
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(rms_trace, marker="o", label="residual stream")
ax.axhline(final, color="C1", ls="--", label="after final RMS norm")
ax.set_xlabel("sub-layer (0 = embeddings)")
ax.set_ylabel("RMS")
ax.set_title("The residual stream grows through a 6-block encoder", fontsize=10)
ax.legend()
plt.show()
print(f"RMS: embeddings {rms_trace[0]:.1f}, after 12 sub-layers {rms_trace[-1]:.1f}, "
      f"after the final norm {final:.1f}")
assert rms_trace[-1] > rms_trace[0] and abs(final - 1) < 0.1

# %% [markdown]
# *Figure 4.3 — Each sub-layer adds to the residual stream, so its root mean square rises from block
# to block; only the final RMS norm brings it back to 1.*

# %% [markdown]
# ## 4.7 Under the hood: reading and writing `config.json`
#
# The main path is done: the encoder works. This section holds the plumbing that lets `T5Config` read
# real checkpoints' `config.json` files — skip it on a first reading. A real file has keys we do not
# use (`architectures`, `model_type`, `transformers_version`, `task_specific_params`, …): they are
# ignored. It also has keys *derived* from ours (`dense_act_fn`, `is_gated_act`): they are checked
# against `feed_forward_proj`. Recent `transformers` versions always write `tie_word_embeddings: true`
# and record the output scaling separately as `scale_decoder_outputs`; we keep that field too.
# Some configs list several end-of-sequence ids, or write `null` for the padding and start ids; we
# take the first id, and the defaults. And a broken file — not JSON, not a JSON object, a number
# written as a string — gives one `ConfigError` that names the file and the field.

# %%
#| export config
def config_to_dict(config):
    """A dict that Hugging Face's T5Config accepts (and that config_from_dict reads back)."""
    data = dataclasses.asdict(config)
    if data["scale_decoder_outputs"] == data["tie_word_embeddings"]:
        del data["scale_decoder_outputs"]  # the common case: older readers know only tie_word_embeddings
    data.update(architectures=["T5ForConditionalGeneration"], model_type="t5", is_encoder_decoder=True,
                dense_act_fn=config.dense_act_fn, is_gated_act=config.is_gated_act)
    return dict(sorted(data.items()))


def config_from_dict(data, cls=None):
    """Read a Hugging Face config.json dict into `cls` (T5Config); unknown keys are ignored."""
    cls = cls or T5Config
    if not isinstance(data, dict):
        raise ConfigError(f"a T5 config must be a JSON object of fields, got {type(data).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in fields}
    if isinstance(kwargs.get("eos_token_id"), list) and kwargs["eos_token_id"]:  # some configs list several
        kwargs["eos_token_id"] = kwargs["eos_token_id"][0]
    for key in ("pad_token_id", "decoder_start_token_id"):
        if key in kwargs and kwargs[key] is None:  # Hugging Face allows null here: keep our default
            kwargs.pop(key)
    config = cls(**kwargs)
    for key in ("dense_act_fn", "is_gated_act"):
        if key in data and data[key] != getattr(config, key) and not (
                key == "dense_act_fn" and {data[key], config.dense_act_fn} <= {"gelu", "gelu_new"}):
            raise ConfigError(f"config says {key}={data[key]!r} but feed_forward_proj="
                              f"{config.feed_forward_proj!r} means {getattr(config, key)!r}")
    return config


def read_config(path, cls=None):
    """Read a config.json file; a missing, unreadable or invalid file raises one error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (a T5 checkpoint folder holds config.json)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file (not UTF-8); expected a JSON config") from None
    if not text.strip():
        raise ConfigError(f"{path} is empty; expected a JSON object of T5Config fields")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}, "
                          f"column {err.colno}") from None
    try:
        return config_from_dict(data, cls)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


# %% [markdown]
# A `config.json` as written for `google-t5/t5-small` (abridged, but with its unknown keys) reads
# back into the preset, and `to_dict` → `from_dict` is lossless:

# %%
t5_small_json = {
    "architectures": ["T5ForConditionalGeneration"], "d_ff": 2048, "d_kv": 64, "d_model": 512,
    "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1, "initializer_factor": 1.0,
    "is_encoder_decoder": True, "layer_norm_epsilon": 1e-06, "model_type": "t5", "n_positions": 512,
    "num_heads": 8, "num_layers": 6, "output_past": True, "pad_token_id": 0,
    "relative_attention_num_buckets": 32, "task_specific_params": {"translation_en_to_de": {}},
    "vocab_size": 32128,
}
assert T5Config.from_dict(t5_small_json) == T5Config.preset("t5-small")
v11 = T5Config.preset("t5-v1_1-small")
assert T5Config.from_dict(v11.to_dict()) == v11
print({k: v for k, v in v11.to_dict().items() if k in ("feed_forward_proj", "dense_act_fn", "is_gated_act",
                                                          "tie_word_embeddings", "model_type")})

# %% [markdown]
# And broken files, each with one message that names the file and what is wrong:

# %%
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "config.json"
    for text in ('{"d_model": 512,', "[512, 8]", '{"dropout_rate": "0.1"}', '{"num_layers": null}'):
        path.write_text(text)
        try:
            read_config(path)
        except ConfigError as err:
            print("ConfigError:", str(err).replace(tmp, "<tmp>"))

# %% [markdown]
# ## Summary
#
# - **Pre-norm residual sub-layers**: every sub-layer computes $x + \text{dropout}(f(\text{norm}(x)))$, so the
#   residual stream is an untouched sum and one final RMS norm closes the stack (Figures 4.2, 4.3).
# - **RMS norm** (float32 variance, no mean, no bias) and **no biases** anywhere (T5 paper, §2.1).
# - **Feed-forward**: ReLU for T5, gated GELU-tanh for v1.1 (Shazeer, 2020) — three matrices instead of two.
# - The relative bias is computed once per stack and shared with every block, padding mask included.
# - Parameter names equal those of the published checkpoints; bad ids, shapes and masks fail with one
#   clear message; `T5Config` validates every value when it is made.
#
# **What is in the package now**
#
# ```python
# from t5edu.config import T5Config, T5_PRESETS, ConfigError, read_config
# from t5edu.encoder import T5LayerNorm, T5LayerFF, T5LayerSelfAttention, T5Block, T5EncoderBlock, T5Stack
# from t5edu.encoder import T5Encoder
# from t5edu.encoder import init_t5_weights
# ```
#
# Previous: [Chapter 03 — Relative position bias](03_relative_bias.ipynb) ·
# Next: [Chapter 05 — The decoder and the full model](05_decoder.ipynb) ·
# Exercises: [Chapter 04 exercises](../exercises/ch04_encoder.ipynb)
#
# ## Further reading
#
# - Raffel et al. (2020), *Exploring the Limits of Transfer Learning with a Unified Text-to-Text
#   Transformer*, JMLR — [arXiv:1910.10683](https://arxiv.org/abs/1910.10683); §2.1 describes the model,
#   §3.2 compares architectures.
# - Zhang & Sennrich (2019), *Root Mean Square Layer Normalization* —
#   [arXiv:1910.07467](https://arxiv.org/abs/1910.07467).
# - Shazeer (2020), *GLU Variants Improve Transformer* — [arXiv:2002.05202](https://arxiv.org/abs/2002.05202).
# - Vaswani et al. (2017), *Attention Is All You Need* — [arXiv:1706.03762](https://arxiv.org/abs/1706.03762);
#   the post-norm original.
