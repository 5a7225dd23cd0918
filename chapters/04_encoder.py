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
# - `T5Config`: every size of the model in one dataclass, with the names of Hugging Face's `config.json`;
# - `T5LayerNorm` (RMS norm) and the two feed-forward networks (ReLU for T5, gated GELU for T5 v1.1);
# - the pre-norm residual sub-layers, the encoder block and `T5Encoder`, whose parameter names match
#   the checkpoints; and `init_t5_weights`, T5's initialisation.

# %%
#| default_exp encoder

# %%
#| export
import dataclasses
import json

import torch
import torch.nn.functional as F
from torch import nn

from t5edu.attention import T5Attention, padding_bias
from t5edu.relative_bias import RelativePositionBias

# %%
import math

import matplotlib.pyplot as plt

_ = torch.manual_seed(0)

# %% [markdown]
# ## 4.1 The configuration
#
# A T5 model is fully described by a dozen numbers. We keep them in a dataclass whose field names are
# exactly those of Hugging Face's `T5Config`, so that a checkpoint's `config.json` can be read
# directly:
#
# | field | meaning | t5-small |
# | --- | --- | --- |
# | `vocab_size` | rows of the embedding | 32128 |
# | `d_model` | width of the residual stream | 512 |
# | `d_kv` | width of one attention head | 64 |
# | `d_ff` | hidden width of the feed-forward network | 2048 |
# | `num_layers` / `num_decoder_layers` | blocks in the encoder / decoder | 6 / 6 |
# | `num_heads` | attention heads | 8 |
# | `relative_attention_num_buckets` / `_max_distance` | Chapter 03 | 32 / 128 |
# | `dropout_rate`, `layer_norm_epsilon` | | 0.1, 1e-6 |
# | `feed_forward_proj` | `relu` (T5) or `gated-gelu` (T5 v1.1) | relu |
# | `tie_word_embeddings` | output head shares the embedding matrix (Chapter 05) | True |
#
# `from_dict` accepts a real `config.json`: unknown keys (`architectures`, `model_type`,
# `transformers_version`, …) are ignored, derived keys (`dense_act_fn`, `is_gated_act`) are checked
# against `feed_forward_proj`. Recent `transformers` versions always write `tie_word_embeddings: true`
# and record the output scaling separately as `scale_decoder_outputs`; we keep that field too
# (`None` means "same as `tie_word_embeddings`"). Invalid values fail at once with a message that
# names the field.

# %%
#| export
FEED_FORWARD_PROJ = ("relu", "gated-gelu", "gelu", "gated-relu", "silu", "gated-silu")


@dataclasses.dataclass
class T5Config:
    """Sizes and options of a T5 model; field names follow Hugging Face's `T5Config` / `config.json`."""

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None  # None: same as num_layers
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "relu"
    tie_word_embeddings: bool = True
    scale_decoder_outputs: bool | None = None  # None: same as tie_word_embeddings
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0

    def __post_init__(self):
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        if self.scale_decoder_outputs is None:
            self.scale_decoder_outputs = bool(self.tie_word_embeddings)
        self.validate()

    def validate(self):
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                     "relative_attention_num_buckets", "relative_attention_max_distance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"T5Config.{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"T5Config.dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        if not self.layer_norm_epsilon > 0:
            raise ValueError(f"T5Config.layer_norm_epsilon must be positive, got {self.layer_norm_epsilon!r}")
        if self.feed_forward_proj not in FEED_FORWARD_PROJ:
            raise ValueError(f"T5Config.feed_forward_proj must be one of {', '.join(FEED_FORWARD_PROJ)}; "
                             f"got {self.feed_forward_proj!r}")
        if self.relative_attention_num_buckets < 2:
            raise ValueError("T5Config.relative_attention_num_buckets must be at least 2")
        for name in ("pad_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(f"T5Config.{name} must be a token id in [0, vocab_size={self.vocab_size}), "
                                 f"got {value!r}")

    @property
    def is_gated_act(self):
        return self.feed_forward_proj.startswith("gated-")

    @property
    def dense_act_fn(self):
        """The activation's Hugging Face name: 'gated-gelu' means the tanh approximation, 'gelu_new'."""
        act = self.feed_forward_proj.split("-")[-1]
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else act

    @classmethod
    def preset(cls, name, **overrides):
        """A named size (see T5_PRESETS), optionally with some fields changed."""
        if name not in T5_PRESETS:
            raise ValueError(f"unknown T5 preset {name!r}; known: {', '.join(T5_PRESETS)}")
        return cls(**{**T5_PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, data):
        """Read a Hugging Face config.json dict; unknown keys are ignored."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in fields}
        if isinstance(kwargs.get("eos_token_id"), list):  # some configs list several
            kwargs["eos_token_id"] = kwargs["eos_token_id"][0]
        for key in ("pad_token_id", "decoder_start_token_id"):
            if kwargs.get(key, 0) is None:
                kwargs.pop(key)
        config = cls(**kwargs)
        for key in ("dense_act_fn", "is_gated_act"):
            if key in data and data[key] != getattr(config, key) and not (
                    key == "dense_act_fn" and {data[key], config.dense_act_fn} <= {"gelu", "gelu_new"}):
                raise ValueError(f"config says {key}={data[key]!r} but feed_forward_proj="
                                 f"{config.feed_forward_proj!r} means {getattr(config, key)!r}")
        return config

    def to_dict(self):
        """A dict that Hugging Face's T5Config accepts (and that from_dict reads back)."""
        data = dataclasses.asdict(self)
        if data["scale_decoder_outputs"] == data["tie_word_embeddings"]:
            del data["scale_decoder_outputs"]  # the common case: older readers know only tie_word_embeddings
        data.update(architectures=["T5ForConditionalGeneration"], model_type="t5", is_encoder_decoder=True,
                    dense_act_fn=self.dense_act_fn, is_gated_act=self.is_gated_act)
        return dict(sorted(data.items()))

    @classmethod
    def from_json(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


_V1_1 = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)
T5_PRESETS = {
    # the original T5 (Raffel et al., 2020)
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

# %% [markdown]
# The presets, and what happens with a bad value:

# %%
for name in T5_PRESETS:
    c = T5Config.preset(name)
    print(f"{name:14s} d_model={c.d_model:4d} layers={c.num_layers:2d}+{c.num_decoder_layers:<2d} heads={c.num_heads:2d} "
          f"d_ff={c.d_ff:4d} {c.feed_forward_proj:10s} tied={c.tie_word_embeddings}")
try:
    T5Config(d_model=0)
except ValueError as err:
    print("ValueError:", err)
try:
    T5Config(feed_forward_proj="swiglu")
except ValueError as err:
    print("ValueError:", err)

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


class T5DenseActDense(nn.Module):
    """T5 v1.0 feed-forward: wo(dropout(act(wi(x)))), no biases."""

    def __init__(self, config):
        super().__init__()
        self.wi = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.dropout = nn.Dropout(config.dropout_rate)
        self.act = ACTIVATIONS[config.dense_act_fn]

    def forward(self, hidden_states):
        hidden_states = self.dropout(self.act(self.wi(hidden_states)))
        if hidden_states.dtype != self.wo.weight.dtype and not torch.is_autocast_enabled(hidden_states.device.type):
            hidden_states = hidden_states.to(self.wo.weight.dtype)  # a float32 `wo` in a half-precision model
        return self.wo(hidden_states)


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
        hidden_states = self.dropout(self.act(self.wi_0(hidden_states)) * self.wi_1(hidden_states))
        if hidden_states.dtype != self.wo.weight.dtype and not torch.is_autocast_enabled(hidden_states.device.type):
            hidden_states = hidden_states.to(self.wo.weight.dtype)
        return self.wo(hidden_states)


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
ax.legend()
plt.show()

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
# branch ("pre-norm") the residual path from the input to the output is an untouched sum, which
# keeps gradients healthy in deep stacks without a learning-rate warm-up trick. The price: the
# residual stream is never normalised along the way, so the stack ends with a final norm (4.5).
#
# Names again follow the checkpoints: a block is a list `layer`; `layer[0]` is a
# `T5LayerSelfAttention` holding `SelfAttention` and `layer_norm`, the last is a `T5LayerFF` holding
# `DenseReluDense` and `layer_norm`. Only the first block's self-attention gets the relative-position
# table.

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
        return hidden_states + self.dropout(self.DenseReluDense(self.layer_norm(hidden_states)))


def clamp_fp16(hidden_states):
    """In float16, keep the residual stream finite (as Hugging Face does): large activations in T5
    checkpoints can overflow float16's range of ±65504. A no-op in any other dtype."""
    if hidden_states.dtype != torch.float16:
        return hidden_states
    limit = torch.finfo(torch.float16).max
    limit = torch.where(torch.isinf(hidden_states).any(), limit - 1000, limit)
    return torch.clamp(hidden_states, min=-limit, max=limit)


class T5EncoderBlock(nn.Module):
    """One encoder block: layer[0] self-attention, layer[1] feed-forward."""

    def __init__(self, config, has_relative_attention_bias=False):
        super().__init__()
        self.layer = nn.ModuleList([T5LayerSelfAttention(config, has_relative_attention_bias, bidirectional=True),
                                    T5LayerFF(config)])

    def forward(self, hidden_states, bias=None):
        hidden_states = clamp_fp16(self.layer[0](hidden_states, bias=bias))
        return clamp_fp16(self.layer[1](hidden_states))


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
# A token id outside the vocabulary would fail deep inside the embedding with an unhelpful
# `IndexError`; we check up front.

# %%
#| export
def check_token_ids(ids, vocab_size, name="input_ids"):
    """Fail clearly when token ids fall outside [0, vocab_size)."""
    if ids.dtype.is_floating_point:
        raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        bad = ids[(ids < 0) | (ids >= vocab_size)]
        raise ValueError(f"{name} contains token id {int(bad[0])} outside the vocabulary "
                         f"[0, {vocab_size}); is the tokenizer's vocabulary larger than the model's?")


class T5Encoder(nn.Module):
    """Embedding (shared with the decoder in the full model), blocks, final RMS norm."""

    def __init__(self, config, embed_tokens=None):
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens if embed_tokens is not None else nn.Embedding(config.vocab_size,
                                                                                       config.d_model)
        self.block = nn.ModuleList([T5EncoderBlock(config, has_relative_attention_bias=(i == 0))
                                    for i in range(config.num_layers)])
        self.final_layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def attention_bias(self, length, attention_mask=None):
        """Relative position bias (1, H, L, L) plus the padding mask -> (batch or 1, H, L, L)."""
        bias = self.block[0].layer[0].SelfAttention.relative_attention_bias(length, length)
        if attention_mask is not None and not bool(attention_mask.all()):
            bias = bias + padding_bias(attention_mask, bias.dtype)
        return bias

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        """input_ids (batch, L) -> hidden states (batch, L, d_model)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            check_token_ids(input_ids, self.embed_tokens.num_embeddings)
            inputs_embeds = self.embed_tokens(input_ids)
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
# **Check: bad ids fail clearly.**

# %%
try:
    encoder(torch.tensor([[5, 100]]))
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
ax.legend()
plt.show()
print(f"RMS: embeddings {rms_trace[0]:.1f}, after 12 sub-layers {rms_trace[-1]:.1f}, after the final norm {final:.1f}")
assert rms_trace[-1] > rms_trace[0] and abs(final - 1) < 0.1

# %% [markdown]
# ## 4.7 Summary
#
# - `T5Config` holds the sizes with Hugging Face's names and reads `config.json`.
# - `T5LayerNorm` is RMS norm (float32 variance, no mean, no bias); the FFN is ReLU (T5) or gated
#   GELU-tanh (v1.1); every sub-layer is pre-norm + residual; the stack ends with a final norm.
# - The relative bias is computed once per stack and shared with every block, padding mask included.
#
# In the package now:
#
# ```python
# from t5edu.encoder import T5Config, T5LayerNorm, T5LayerFF, T5LayerSelfAttention, T5Encoder, init_t5_weights
# ```
#
# Chapter 05 adds the decoder, the output head, and loads real checkpoints.
