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
# # Chapter 05 — The decoder and the full model
#
# The decoder writes the output one token at a time. Each of its blocks has three sub-layers:
# causal self-attention over what has been written so far, *cross-attention* over the encoder's
# output, and the same feed-forward network as the encoder. On top sits the output head that turns
# each vector into scores over the vocabulary. Put together with Chapter 04's encoder, that is T5 —
# and because every parameter has the name it has in the published checkpoints, Hugging Face's
# weights load into it without renaming and give the same numbers.
#
# **What you will build**
# - `T5LayerCrossAttention`, `T5DecoderBlock`, `T5Decoder` (causal, with a key/value cache);
# - `T5`: shared embedding, encoder, decoder, output head (tied and scaled in T5, untied in v1.1),
#   `shift_right` and the loss — checked against `transformers` to 1e-5;
# - under the hood: `T5.from_pretrained` / `save_pretrained` for Hugging Face–format checkpoint folders.
#
# **Why T5 does it this way.** T5 is an *encoder-decoder*: the input is read by a fully visible
# encoder, and the decoder attends to it through cross-attention while it writes the output
# causally. The paper (Raffel et al., 2020) describes the model in §2.1 and, in §3.2
# ("Architectures"), compares it with a decoder-only language model and a prefix LM (one stack
# whose attention is fully visible over the input part): with the denoising objective, the
# encoder-decoder performed best, at the computational cost of a decoder-only model with half its
# parameters.
# The output layer's weights are shared with the input embedding (§2.1) — in the original release,
# with the decoder output scaled by $d_{model}^{-1/2}$ first (a detail of the Mesh TensorFlow code,
# not of the paper); T5 v1.1 unties the two and drops the scaling. The decoder is trained with
# *teacher forcing* (§2.4: every task is text in, text out, trained by maximum likelihood): its input is
# the target shifted right by one position, so one forward pass predicts every target token at once.

# %%
#| default_exp decoder

# %%
#| export
import torch
from torch import nn

from t5edu.attention import T5Attention, mask_value, padding_bias
from t5edu.encoder import (
    T5Block,
    T5LayerFF,
    T5LayerNorm,
    T5LayerSelfAttention,
    T5Stack,
    check_attention_mask,
)

# %%
import json
import math
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

from t5edu.config import T5Config
from t5edu.encoder import init_t5_weights

_ = torch.manual_seed(0)

# %% [markdown]
# ## 5.1 Cross-attention
#
# Cross-attention is Chapter 02's attention with queries from the decoder and keys and values from
# the encoder output (`key_value_states`). It is where the decoder *reads the input*. It has no
# relative position bias (decoder position $i$ and encoder position $j$ are in different sequences);
# its only bias is the encoder's padding mask, so that no decoder position reads a pad.
#
# In the checkpoints it is `layer[1]` of each decoder block, called `EncDecAttention`, pre-normed
# like the other sub-layers.

# %%
#| export
class T5LayerCrossAttention(nn.Module):
    """x + dropout(cross_attention(norm(x), encoder_states)); no position bias."""

    def __init__(self, config):
        super().__init__()
        self.EncDecAttention = T5Attention(config.d_model, config.num_heads, config.d_kv, config.dropout_rate)
        self.layer_norm = T5LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout_rate)

    def forward(self, hidden_states, key_value_states, bias=None, cache=None):
        """Queries from `hidden_states` (batch, L, d_model), keys and values from `key_value_states`."""
        attended = self.EncDecAttention(self.layer_norm(hidden_states), key_value_states=key_value_states,
                                        bias=bias, cache=cache)
        return hidden_states + self.dropout(attended)


# %% [markdown]
# ## 5.2 The decoder block and stack
#
# A decoder block is a `T5Block` (Chapter 04) of three sub-layers: `layer[0]` causal self-attention
# (the first block owns a **causal** relative bias table), `layer[1]` cross-attention, `layer[2]`
# feed-forward. The stack builds two biases once:
#
# - self-attention: relative position bias + causal mask (+ the decoder's own padding mask, if given);
# - cross-attention: the encoder's padding mask only.
#
# **The cache.** When generating, step $t$ feeds only the newest token. Its self-attention needs the
# keys and values of all earlier tokens — which earlier steps computed already — and its cross-attention
# needs the encoder's keys and values, which never change. `new_cache()` returns one pair of dicts per
# block (`self`, `cross`) for `T5Attention` to fill; the query's position for the relative bias is the
# number of tokens already cached (the `offset` of Chapter 03).

# %%
#| export
class T5DecoderBlock(T5Block):
    """layer[0] causal self-attention, layer[1] cross-attention, layer[2] feed-forward."""

    def __init__(self, config, has_relative_attention_bias=False):
        super().__init__(T5LayerSelfAttention(config, has_relative_attention_bias, bidirectional=False),
                         T5LayerCrossAttention(config), T5LayerFF(config))

    def forward(self, hidden_states, encoder_hidden_states, self_bias=None, cross_bias=None, cache=None):
        """(batch, L, d_model) -> the same shape; `cache` is this block's entry of T5Decoder.new_cache()."""
        self_kwargs = dict(bias=self_bias, cache=None if cache is None else cache["self"])
        cross_kwargs = dict(key_value_states=encoder_hidden_states, bias=cross_bias,
                            cache=None if cache is None else cache["cross"])
        return super().forward(hidden_states, self_kwargs, cross_kwargs, {})


# %% [markdown]
# The stack checks its masks before anything else: a padding mask of the wrong batch size or length
# would otherwise broadcast without a word and give the wrong answer (Chapter 04 did the same for the
# encoder). Like `T5Encoder`, `T5Decoder` is a `T5Stack` (Chapter 04): the embedding, the blocks, the
# final norm and the checked reading of its input come from there.

# %%
#| export
def check_decoder_masks(shape, attention_mask, encoder_hidden_states, encoder_attention_mask):
    """Fail clearly when the decoder's masks or the encoder output do not fit the decoder input.

    `shape` is (batch, cached + new positions); attention_mask must have it, and encoder_attention_mask
    the (batch, length) of encoder_hidden_states."""
    if encoder_hidden_states is None:
        raise ValueError("the decoder needs encoder_hidden_states")
    check_attention_mask(attention_mask, shape, "decoder_attention_mask",
                         of="the decoder input (cached positions included)")
    if encoder_hidden_states.shape[0] != shape[0]:
        raise ValueError(f"decoder_input_ids has batch size {shape[0]} but encoder_hidden_states has "
                         f"{encoder_hidden_states.shape[0]}; they must describe the same sequences")
    check_attention_mask(encoder_attention_mask, encoder_hidden_states.shape[:2],
                         "encoder_attention_mask", of="encoder_hidden_states (batch, length)")


# %%
#| export
class T5Decoder(T5Stack):
    """Embedding (shared), decoder blocks, final RMS norm. Self-attention is causal."""

    def __init__(self, config, embed_tokens=None):
        super().__init__(config, T5DecoderBlock, config.num_decoder_layers, embed_tokens)

    def new_cache(self):
        """An empty key/value cache: one {'self': {}, 'cross': {}} per block."""
        return [{"self": {}, "cross": {}} for _ in self.block]

    @staticmethod
    def cache_length(cache):
        """How many decoder positions the cache already holds."""
        if not cache or "k" not in cache[0]["self"]:
            return 0
        return cache[0]["self"]["k"].shape[2]

    def self_attention_bias(self, query_length, past_length=0, attention_mask=None):
        """Causal relative bias (+ decoder padding mask) -> (batch or 1, H, L_q, past + L_q)."""
        table = self.block[0].layer[0].SelfAttention.relative_attention_bias
        key_length = past_length + query_length
        bias = table(query_length, key_length, offset=past_length)
        allowed = torch.ones(query_length, key_length, dtype=torch.bool, device=bias.device).tril(past_length)
        allowed = allowed[None, None]  # query past + i sees keys 0 .. past + i
        if attention_mask is not None and not bool(attention_mask.all()):
            allowed = allowed & attention_mask[:, None, None, :].bool()
        return torch.where(allowed, bias, mask_value(bias.dtype))

    def forward(self, input_ids=None, encoder_hidden_states=None, attention_mask=None,
                encoder_attention_mask=None, inputs_embeds=None, cache=None):
        """(batch, L) ids + encoder output (batch, L_enc, d_model) -> (batch, L, d_model); mask 1 = token."""
        inputs_embeds = self.embed(input_ids, inputs_embeds, "decoder_input_ids")
        (batch, length), past = inputs_embeds.shape[:2], self.cache_length(cache)
        check_decoder_masks((batch, past + length), attention_mask,
                            encoder_hidden_states, encoder_attention_mask)
        self_bias = self.self_attention_bias(length, past, attention_mask)
        cross_bias = None
        if encoder_attention_mask is not None and not bool(encoder_attention_mask.all()):
            cross_bias = padding_bias(encoder_attention_mask, self_bias.dtype)
        hidden_states = self.dropout(inputs_embeds)
        for i, block in enumerate(self.block):
            hidden_states = block(hidden_states, encoder_hidden_states, self_bias, cross_bias,
                                  cache=None if cache is None else cache[i])
        return self.dropout(self.final_layer_norm(hidden_states))


# %% [markdown]
# Checks on a tiny decoder: causality (changing a later decoder token changes nothing before it),
# encoder padding is ignored, and decoding step by step with the cache reproduces the full pass.

# %%
tiny = T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0)
torch.manual_seed(0)
decoder = T5Decoder(tiny).eval()
init_t5_weights(decoder, tiny)
enc_out = torch.randn(2, 7, 32)
enc_mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1] * 7])
dec_ids = torch.randint(2, 100, (2, 6))
with torch.no_grad():
    full = decoder(dec_ids, enc_out, encoder_attention_mask=enc_mask)
    edited = dec_ids.clone()
    edited[:, 4] = 7
    assert torch.allclose(decoder(edited, enc_out, encoder_attention_mask=enc_mask)[:, :4], full[:, :4], atol=1e-6)
    scribbled = enc_out.clone()
    scribbled[0, 5:] = 50.0
    assert torch.allclose(decoder(dec_ids, scribbled, encoder_attention_mask=enc_mask), full, atol=1e-6)
    cache = decoder.new_cache()
    steps = [decoder(dec_ids[:, t:t + 1], enc_out, encoder_attention_mask=enc_mask, cache=cache) for t in range(6)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
print("causal: ok | encoder pads ignored: ok | cached decoding == full pass: ok;",
      "cache holds", T5Decoder.cache_length(cache), "positions")

# %% [markdown]
# ## 5.3 The full model
#
# T5 shares **one** embedding matrix `shared` between the encoder input, the decoder input and —
# in the original T5 — the output head: the logit of token $w$ is the dot product of the final
# decoder vector with $w$'s embedding. Because the embedding's entries have std 1 and the decoder's
# output has RMS about 1, these dot products would be of size $\sqrt{d_{model}}$; T5 therefore
# multiplies the decoder output by $d_{model}^{-1/2}$ before the tied head. T5 v1.1 unties the head
# (a separate `lm_head` matrix) and drops the scaling.
#
# **Training input.** The decoder learns to predict token $t$ from tokens $< t$. Its input is the
# target shifted one step to the right, starting with `decoder_start_token_id` (0, the pad id, in
# T5): labels `[A, B, C, </s>]` → decoder input `[0, A, B, C]`. Label positions set to $-100$
# (padding) are ignored by the loss, and become pad tokens in the decoder input. The whole model, in
# one picture:

# %%
fig, ax = plt.subplots(figsize=(9, 5))
ax.set_xlim(0, 10.4)
ax.set_ylim(-0.3, 6.5)
ax.axis("off")


def box(x, y, w, h, text, color, size=9):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04", facecolor=color, edgecolor="black"))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)


def arrow(start, end, text=None, color="black"):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", lw=1.4, color=color))
    if text:
        ax.text((start[0] + end[0]) / 2 + 0.1, (start[1] + end[1]) / 2, text, fontsize=9, color=color)


def tokens(x, y, words, color):
    for i, word in enumerate(words):
        box(x + 0.8 * i, y, 0.65, 0.45, word, color, size=8)


tokens(0.4, 0.75, ["x₁", "x₂", "x₃", "</s>"], "#e0e0e0")
ax.text(0.4, 0.5, "input tokens", fontsize=8)
box(0.3, 1.5, 3.2, 1.9, "Encoder\n(self-attention sees\nthe whole input)\n× num_layers", "#b9d7f0")
arrow((1.9, 1.2), (1.9, 1.5))
box(0.3, 3.8, 3.2, 0.6, "encoder states", "#dbe9f6")
arrow((1.9, 3.4), (1.9, 3.8))
box(5.4, 1.3, 4.2, 3.3, "", "#fbe5c8")
box(5.6, 1.5, 3.8, 0.6, "causal self-attention", "#fdd9a0")
box(5.6, 2.5, 3.8, 0.8, "cross-attention\nQ: decoder, K and V: encoder", "#fdd9a0")
box(5.6, 3.7, 3.8, 0.6, "feed-forward", "#fdd9a0")
ax.text(9.5, 4.45, "Decoder × num_decoder_layers", ha="right", fontsize=8)
arrow((7.5, 2.1), (7.5, 2.5), "Q")
arrow((7.5, 3.3), (7.5, 3.7))
arrow((3.5, 4.1), (5.6, 2.9), "K, V", color="tab:blue")
box(5.6, 5.0, 3.8, 0.5, "output head → logits", "#e0e0e0")
arrow((7.5, 4.6), (7.5, 5.0))
arrow((7.5, 5.5), (7.5, 5.9))
tokens(5.9, 5.9, ["A", "B", "C", "</s>"], "#c7e9c0")
ax.text(9.2, 6.12, "predictions\n(= labels)", fontsize=8, va="center")
tokens(5.9, 0.75, ["0", "A", "B", "C"], "#fdd9a0")
ax.text(9.2, 0.97, "decoder input:\nlabels shifted right,\nstart token 0", fontsize=8, va="center")
tokens(5.9, -0.1, ["A", "B", "C", "</s>"], "#c7e9c0")
ax.text(9.2, 0.12, "labels", fontsize=8, va="center")
arrow((7.5, 1.2), (7.5, 1.5))
for i in range(3):  # label i becomes decoder input i + 1
    arrow((6.22 + 0.8 * i, 0.35), (6.22 + 0.8 * (i + 1), 0.75), color="0.45")
ax.set_title("T5: encoder, decoder with cross-attention, and the shifted-right decoder input", fontsize=10)
plt.show()

# %% [markdown]
# *Figure 5.1 — Cross-attention takes its queries (Q) from the decoder and its keys and values (K, V)
# from the encoder states; the decoder input is the label sequence shifted right by one, starting
# with token 0, so position $t$ predicts label $t$ having seen only labels $< t$.*
#
# The model class collects the pieces. `forward` accepts the names Hugging Face uses (`input_ids`,
# `attention_mask`, `decoder_input_ids`, `decoder_attention_mask`, `labels`), derives the decoder
# input from `labels` when it is not given, and returns the logits and (with labels) the mean
# cross-entropy over the non-ignored positions. `encode` runs the encoder alone — a generator encodes
# once and then calls `forward(encoder_hidden_states=..., cache=...)` once per new token.
#
# **Initialisation of the output head.** Tied, it is the embedding (std 1, then scaled by
# $d_{model}^{-1/2}$). Untied, we draw it with std $d_{model}^{-1/2}$ — $1/\sqrt{\text{fan-in}}$ like
# every other projection, and Mesh TensorFlow's default. Hugging Face draws the untied head with
# std 1.0, which with no output scaling gives initial logits of size $\sqrt{d_{model}}$ (≈ 22 for
# t5-small): a known quirk that makes the first steps of training from scratch very unstable.
# Loading a checkpoint overwrites it either way.

# %%
#| export model
import dataclasses
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from t5edu.attention import T5Attention
from t5edu.config import T5Config, read_config
from t5edu.decoder import T5Decoder
from t5edu.encoder import T5Encoder, check_attention_mask, init_t5_weights
from t5edu.files import atomic_write


def shift_right(labels, decoder_start_token_id=0, pad_token_id=0):
    """Decoder inputs from labels: prepend the start token, drop the last label, -100 -> pad."""
    shifted = labels.new_zeros(labels.shape)
    shifted[..., 1:] = labels[..., :-1]
    shifted[..., 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def check_labels(labels, vocab_size):
    """Fail clearly on labels that are neither token ids in [0, vocab_size) nor -100 (ignored)."""
    ok = (labels == -100) | ((labels >= 0) & (labels < vocab_size))
    if not bool(ok.all()):
        raise ValueError(f"labels must be token ids in [0, {vocab_size}) or -100 (ignored); "
                         f"found {int(labels[~ok][0])}")


@dataclasses.dataclass
class Seq2SeqOutput:
    """What T5.forward returns."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    cache: list | None = None


# %% [markdown]
# As in `transformers`, the network is one class and the machinery every model shares is another:
# `PretrainedModel` counts parameters, switches the attention kernel, hands `generate` to Chapter 08,
# and loads and saves checkpoint folders — whose real work is in Section 5.8, "Under the hood".

# %%
#| export model
class PretrainedModel(nn.Module):
    """What every t5edu model shares: checkpoint folders (Section 5.8), generation, small utilities."""

    @classmethod
    def from_pretrained(cls, name_or_path, dtype=None):
        """Load a Hugging Face-format checkpoint folder (or a hub id, when huggingface_hub can fetch it)."""
        return load_hf_folder(cls, name_or_path, dtype)

    def save_pretrained(self, directory):
        """Write config.json and model.safetensors in Hugging Face's format, each file atomically."""
        return save_hf_folder(self, directory)

    def load_checkpoint_state(self, state):
        """Load a Hugging Face-named state dict; one CheckpointError lists every problem."""
        return load_checkpoint_state(self, state)

    def generate(self, input_ids, **options):
        """Output token ids for `input_ids`: greedy, beam search or sampling (Chapter 08, t5edu.generate)."""
        from t5edu.generate import generate  # Chapter 08 imports this module, so import it on first use

        return generate(self, input_ids, **options)

    def set_sdpa(self, enabled=True):
        """Run every attention through PyTorch's fused kernel (True) or the explicit math (False, default)."""
        for module in self.modules():
            if isinstance(module, T5Attention):
                module.use_sdpa = enabled
        return self

    def num_parameters(self):
        """Trainable numbers, each shared tensor counted once."""
        return sum(p.numel() for p in self.parameters())


# %%
#| export model
class T5(PretrainedModel):
    """The T5 encoder-decoder with a language-modelling head; state_dict names match Hugging Face's
    T5ForConditionalGeneration, so checkpoints load without any renaming."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Encoder(config, embed_tokens=self.shared)
        self.decoder = T5Decoder(config, embed_tokens=self.shared)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.shared.weight
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        """T5's initialisation (Section 4.6); an untied head gets std d_model**-0.5."""
        init_t5_weights(self, self.config)
        if not self.config.tie_word_embeddings:
            self.lm_head.weight.normal_(0.0, self.config.initializer_factor * self.config.d_model ** -0.5)

    def encode(self, input_ids, attention_mask=None):
        """The encoder alone: (batch, L) -> (batch, L, d_model)."""
        return self.encoder(input_ids, attention_mask=attention_mask)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, labels=None, encoder_hidden_states=None, cache=None):
        """Logits for every decoder position, and the mean loss over the labels when they are given.

        input_ids, attention_mask: (batch, L_in), the input and its padding mask (1 = token, 0 = pad).
        encoder_hidden_states: the output of `encode`, instead of input_ids (generation encodes once).
        decoder_input_ids: (batch, L_out); derived from labels with shift_right when not given.
        labels: (batch, L_out) target ids, -100 where the loss ignores a position.
        cache: T5Decoder.new_cache(), filled as decoder_input_ids arrive one step at a time.
        Returns a Seq2SeqOutput: logits (batch, L_out, vocab_size), loss, encoder states, cache.
        """
        config = self.config
        if encoder_hidden_states is None:
            if input_ids is None:
                raise ValueError("pass input_ids (or encoder_hidden_states from T5.encode)")
            encoder_hidden_states = self.encode(input_ids, attention_mask)
        else:
            check_attention_mask(attention_mask, encoder_hidden_states.shape[:2], of="encoder_hidden_states")
        if labels is not None:
            check_labels(labels, config.vocab_size)
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass decoder_input_ids, or labels to derive them with shift_right")
            decoder_input_ids = shift_right(labels, config.decoder_start_token_id, config.pad_token_id)
        hidden = self.decoder(decoder_input_ids, encoder_hidden_states, attention_mask=decoder_attention_mask,
                              encoder_attention_mask=attention_mask, cache=cache)
        if config.scale_decoder_outputs:
            hidden = hidden * config.d_model ** -0.5
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), ignore_index=-100)
        return Seq2SeqOutput(logits, loss, encoder_last_hidden_state=encoder_hidden_states, cache=cache)


# %% [markdown]
# `shift_right` and the loss, checked by hand:

# %%
labels = torch.tensor([[11, 12, 13, 1], [21, 1, -100, -100]])
print(shift_right(labels))
assert shift_right(labels).tolist() == [[0, 11, 12, 13], [0, 21, 1, 0]]

torch.manual_seed(0)
model = T5(tiny).eval()
out = model(input_ids=torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0]]),
            attention_mask=torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]), labels=labels)
log_probs = torch.log_softmax(out.logits, dim=-1)
picked = [-log_probs[b, t, labels[b, t]] for b in range(2) for t in range(4) if labels[b, t] != -100]
print(f"loss {out.loss.item():.4f} = mean over {len(picked)} labelled positions {torch.stack(picked).mean().item():.4f}")
assert torch.allclose(out.loss, torch.stack(picked).mean())
print("logits:", tuple(out.logits.shape), "| tied head is the embedding:", model.lm_head.weight is model.shared.weight)

# %% [markdown]
# The output scaling, checked: for the tied model the logits are the decoder output times
# $d_{model}^{-1/2}$, dotted with the embedding.

# %%
with torch.no_grad():
    ids = torch.tensor([[5, 6, 7, 1]])
    dec_in = torch.tensor([[0, 11, 12]])
    h = model.decoder(dec_in, model.encode(ids))
    manual = (h * tiny.d_model ** -0.5) @ model.shared.weight.T
    assert torch.allclose(model(input_ids=ids, decoder_input_ids=dec_in).logits, manual, atol=1e-6)
print("logits = (decoder output / sqrt(d_model)) @ embeddingᵀ")

# %% [markdown]
# **Check: bad input fails clearly.** A mask for the wrong batch used to broadcast silently and return
# logits for the wrong number of sequences; a sequence without its batch dimension, or an empty batch,
# failed deep inside attention. Each now gets one message:

# %%
for bad in (dict(input_ids=torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0]]), attention_mask=torch.ones(1, 4)),
            dict(input_ids=torch.tensor([5, 6, 7, 1])), dict(input_ids=torch.zeros(0, 4, dtype=torch.long))):
    try:
        model(**bad, decoder_input_ids=dec_in)
    except ValueError as err:
        print("ValueError:", err)

# %% [markdown]
# ## 5.4 Parameter counts
#
# With the model assembled we can count parameters for the real sizes. Building t5-large in memory
# takes 3 GB, so we build the models on PyTorch's `meta` device: shapes without storage. t5-small
# must come to **60,506,624** — the number `transformers` reports for `google-t5/t5-small`.

# %%
counts = {}
for name in ("t5-small", "t5-base", "t5-large", "t5-v1_1-small", "t5-v1_1-base", "t5-tiny", "t5-mini"):
    with torch.device("meta"):
        counts[name] = T5(T5Config.preset(name)).num_parameters()
    print(f"{name:14s} {counts[name]:>13,}")
assert counts["t5-small"] == 60_506_624
assert counts["t5-base"] == 222_903_552 and counts["t5-large"] == 737_668_096
assert counts["t5-v1_1-small"] == 76_961_152 and counts["t5-v1_1-base"] == 247_577_856

# %% [markdown]
# Where t5-small's 60.5 M parameters live: a quarter in the shared embedding, and the decoder is
# bigger than the encoder because every block has a second attention.

# %%
with torch.device("meta"):
    small = T5(T5Config.preset("t5-small"))
parts = {"shared embedding": small.shared.weight.numel(),
         "encoder": sum(p.numel() for n, p in small.encoder.named_parameters() if "embed_tokens" not in n),
         "decoder": sum(p.numel() for n, p in small.decoder.named_parameters() if "embed_tokens" not in n)}
for part, n in parts.items():
    print(f"{part:17s} {n:>11,}  ({n / counts['t5-small']:.1%})")
assert sum(parts.values()) == counts["t5-small"]

# %% [markdown]
# ## 5.5 Parity with Hugging Face `transformers`
#
# The strongest check of the whole model: build `transformers`' own T5 with random weights from the
# same configuration, hand its `state_dict` to PyTorch's **strict** `load_state_dict` — it accepts it
# as is, because every name matches — and compare the logits on a padded batch. We do it for both
# flavours: the original (ReLU, tied and scaled head) and v1.1 (gated GELU, untied head), with a
# decoder depth and a head width that differ from the defaults. (`attn_implementation="eager"` selects
# the reference's plain attention. The test suite also goes through checkpoint files, both ways.)

# %%
import transformers
from transformers import T5ForConditionalGeneration

transformers.logging.set_verbosity_error()


def hf_parity(**overrides):
    config = T5Config(vocab_size=120, d_model=32, d_kv=12, d_ff=48, num_layers=3, num_decoder_layers=2,
                      num_heads=3, relative_attention_num_buckets=16, relative_attention_max_distance=20,
                      **overrides)
    torch.manual_seed(0)
    hf = T5ForConditionalGeneration(transformers.T5Config(**config.to_dict(), attn_implementation="eager"))
    if not config.tie_word_embeddings:  # give the untied head its own values
        hf.lm_head.weight = nn.Parameter(torch.randn_like(hf.lm_head.weight) * 0.2)
    ours = T5(config)
    ours.load_state_dict(hf.state_dict())  # strict: every name must match, none may be left over
    batch = dict(input_ids=torch.randint(2, 120, (2, 30)), attention_mask=torch.ones(2, 30, dtype=torch.long),
                 labels=torch.randint(2, 120, (2, 9)))
    batch["attention_mask"][0, 22:] = 0
    batch["labels"][1, 6:] = -100
    with torch.no_grad():
        a, b = hf.eval()(**batch), ours.eval()(**batch)
    return (a.logits - b.logits).abs().max().item(), abs(a.loss.item() - b.loss.item())


for name, overrides in [("T5 (relu, tied)", {}),
                        ("T5 v1.1 (gated-gelu, untied)", dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False))]:
    d_logits, d_loss = hf_parity(**overrides)
    print(f"{name:30s} logits max |Δ| ≤ 1e-5: {d_logits <= 1e-5}   loss |Δ| ≤ 1e-6: {d_loss <= 1e-6}")
    assert d_logits <= 1e-5 and d_loss <= 1e-6

# %% [markdown]
# ## 5.6 Gradients flow: a tiny T5 memorises
#
# A last sanity check of the whole chain — embedding, both stacks, head, loss, backward: a tiny T5
# must be able to memorise a handful of random input → output pairs in under a hundred Adam steps.
# (Learning a real task takes real data and longer training: later chapters.)

# %%
torch.manual_seed(0)
cfg = T5Config(vocab_size=32, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, dropout_rate=0.0)
toy = T5(cfg)
opt = torch.optim.AdamW(toy.parameters(), lr=3e-3)
src, tgt = torch.randint(3, 32, (16, 8)), torch.randint(3, 32, (16, 6))
losses = []
for step in range(80):
    loss = toy(input_ids=src, labels=tgt).loss
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
toy.eval()
with torch.no_grad():
    pred = toy(input_ids=src, labels=tgt).logits.argmax(-1)
accuracy = (pred == tgt).float().mean().item()
print(f"loss: start {losses[0]:.1f} (uniform guessing: ln 32 = {math.log(32):.1f}), after 80 steps < 0.1: {losses[-1] < 0.1};",
      "≥ 95% of target tokens reproduced:", accuracy >= 0.95)
assert losses[-1] < 0.1 and accuracy >= 0.95

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(losses)
ax.set_yscale("log")
ax.set_xlabel("step")
ax.set_ylabel("training loss")
ax.set_title("A tiny T5 memorising 16 random pairs", fontsize=10)
plt.show()

# %% [markdown]
# *Figure 5.2 — The training loss of the tiny T5 on its 16 pairs, on a log scale: from 4.6 — above
# the ln 32 ≈ 3.5 of uniform guessing — to below 0.1 within 80 AdamW steps.*

# %% [markdown]
# ## 5.7 Half precision
#
# On CPUs and recent GPUs, `bfloat16` autocast is the safe default: it has float32's exponent range,
# so T5's large activations cannot overflow. `float16` overflows above 65504; T5 checkpoints (notably
# v1.1 and its FFN outputs) are known to get there, which is why every block clamps the residual
# stream in float16 (`clamp_fp16`, as in `transformers`). The test suite checks that float16 stays
# finite on large activations; here the bfloat16 autocast run:

# %%
with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
    low = toy(input_ids=src, labels=tgt)
agree = (low.logits.argmax(-1) == pred).float().mean().item()
print("bfloat16 autocast: logits dtype", low.logits.dtype, "| finite:", bool(torch.isfinite(low.logits).all()),
      "| same predictions on ≥ 90% of tokens:", agree >= 0.9)
assert torch.isfinite(low.logits).all() and agree >= 0.9

# %% [markdown]
# ## 5.8 Under the hood: checkpoint files
#
# The model is complete. This section is the plumbing that reads and writes checkpoints on disk —
# skip it on a first reading. `save_pretrained` writes Hugging Face's format: `config.json` and
# `model.safetensors` (safetensors is a flat file of named tensors; unlike a pickle, loading it cannot
# run code). Aliases of the shared embedding — and the head, when tied — are not stored twice. Each
# file goes through `t5edu.files.atomic_write` (Chapter 07 explains it): written under a temporary
# name, then renamed into place, so an interrupted save never leaves a corrupt checkpoint.
#
# `from_pretrained` reads a folder: `model.safetensors`, a sharded `model.safetensors.index.json`
# (a `weight_map` from tensor name to shard file), or an old `pytorch_model.bin` (strictly as tensors,
# `torch.load(weights_only=True)`); or a hub id when `huggingface_hub` can fetch it. Everything that
# can go wrong gives **one** error naming the file and the problem: a folder that does not exist
# (with a guess at the name you meant), a truncated or empty tensor file, a `config.json` that is not
# a JSON object of valid fields (Section 4.7), an index without its `weight_map`, and — as
# `CheckpointError` — tensors that do not fit the configuration, all listed at once.

# %%
#| export model
class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: an unreadable file, or tensors that do not fit the model."""


# Names that the checkpoint may omit or carry without harm: aliases of `shared`, and a table that a
# few old checkpoints store in the first cross-attention although T5 never uses it.
ALIASES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
IGNORED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)


def load_checkpoint_state(model, state):
    """Load a Hugging Face-named state dict into `model` (a T5); one CheckpointError lists every problem."""
    state = dict(state)
    if "shared.weight" not in state:  # some checkpoints store the embedding under an alias only
        alias = next((a for a in ALIASES if a in state), None)
        if alias is not None:
            state["shared.weight"] = state[alias]
    tied = model.config.tie_word_embeddings
    if tied and "lm_head.weight" in state and "shared.weight" in state and \
            not torch.equal(state["lm_head.weight"], state["shared.weight"]):
        # a separate head in the file wins (newer `transformers` write tie_word_embeddings=true even
        # for untied T5 v1.1 models); keep the configured output scaling
        model.config = dataclasses.replace(model.config, tie_word_embeddings=False,
                                           scale_decoder_outputs=model.config.scale_decoder_outputs)
        model.lm_head.weight = nn.Parameter(model.shared.weight.detach().clone())
        tied = False
    expected = model.state_dict()
    optional = set(ALIASES) | ({"lm_head.weight"} if tied else set())
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected and k not in IGNORED]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)}"
                  for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        lines = ["checkpoint does not match the model configuration:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if items:
                shown = items[:10] + ([f"... and {len(items) - 10} more"] if len(items) > 10 else [])
                lines.append(f"  {title} ({len(items)}): " + "; ".join(shown))
        raise CheckpointError("\n".join(lines))
    skip = optional if tied else set(ALIASES)
    model.load_state_dict({k: v for k, v in state.items() if k in expected and k not in skip}, strict=False)
    return model


# %%
#| export model
def load_hf_folder(cls, name_or_path, dtype=None):
    """`cls` (T5) from a checkpoint folder or hub id, in eval mode; see T5.from_pretrained."""
    directory = resolve_checkpoint(name_or_path)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} has no config.json, so it is not a T5 checkpoint folder "
                                "(save_pretrained writes config.json and model.safetensors)")
    model = cls(read_config(directory / "config.json", T5Config))
    model.load_checkpoint_state(read_state_dict(directory))
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def save_hf_folder(model, directory):
    """Write config.json and model.safetensors (Hugging Face's format) into `directory`, each atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    skip = set(ALIASES) | ({"lm_head.weight"} if model.config.tie_word_embeddings else set())
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in skip}
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(state, tmp, {"format": "pt"}))
    atomic_write(directory / "config.json", json.dumps(model.config.to_dict(), indent=2) + "\n")
    return directory


# %% [markdown]
# Finding the folder. A string that does not name an existing folder is either a typo or a hub id
# (`google-t5/t5-small`). When it looks like a path (`./…`, `/…`, `~/…`, or a parent folder that
# exists), or when the hub cannot be asked (`HF_HUB_OFFLINE=1`, or `huggingface_hub` not installed),
# the error says that the local folder does not exist and suggests the closest existing name.

# %%
#| export model
def looks_like_path(text):
    """True when `text` cannot be a hub id ('name' or 'owner/name'), or its first part is a local folder."""
    import re

    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", text) or text.startswith(".") or ".." in text:
        return True
    return "/" in text and Path(text.split("/")[0]).is_dir()


def _missing_folder(path, why=""):
    """FileNotFoundError for a checkpoint folder that does not exist, with the closest existing name."""
    import difflib

    parent = path.parent if str(path.parent) else Path(".")
    names = [p.name for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []
    close = difflib.get_close_matches(path.name, names, n=1)
    hint = f"; did you mean {str(parent / close[0])!r}?" if close else ""
    return FileNotFoundError(f"checkpoint folder {str(path)!r} does not exist{why}{hint}")


def resolve_checkpoint(name_or_path):
    """A local checkpoint folder as a Path, or a hub id fetched (or found in the cache) by huggingface_hub."""
    import os

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"{path} is a file; from_pretrained expects the checkpoint's folder")
    text = str(name_or_path)
    if looks_like_path(text):
        raise _missing_folder(path)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise _missing_folder(path, " (and huggingface_hub, which could fetch a hub id, is not installed: "
                                    'pip install "t5edu[hub]")') from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        local = Path(snapshot_download(text, allow_patterns=["*.json", "*.safetensors"]))
        if not any(local.glob("*.safetensors")):
            local = Path(snapshot_download(text, allow_patterns=["*.json", "pytorch_model.bin"]))
    except Exception as err:  # offline, unknown id, no access: one clear message
        if offline:
            why = " (offline, HF_HUB_OFFLINE=1: not in the local hub cache either)"
            raise _missing_folder(path, why) from None
        raise FileNotFoundError(
            f"{text!r} is not a local folder and could not be fetched from the Hugging Face hub "
            f"({type(err).__name__}: {err})") from None
    return local


# %% [markdown]
# Reading the tensors, with the file named in every error:

# %%
#| export model
def _load_safetensors(file):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not file.is_file():
        raise FileNotFoundError(f"{file}: tensor file not found")
    try:
        return load_file(file)
    except SafetensorError as err:
        size = file.stat().st_size
        raise CheckpointError(f"{file} is not a readable safetensors file ({size:,} bytes; {err}); it is "
                              "probably empty or truncated: save or download it again") from None


def read_state_dict(directory):
    """Tensors of a Hugging Face checkpoint folder: model.safetensors, its shards, or pytorch_model.bin."""
    directory = Path(directory)
    if (directory / "model.safetensors").exists():
        return _load_safetensors(directory / "model.safetensors")
    index = directory / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError):
            raise CheckpointError(f'{index} must be a JSON object with a "weight_map" from tensor names to '
                                  "shard files; it is not (truncated, or not a safetensors index?)") from None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f'{index}: "weight_map" must map tensor names to shard file names')
        state = {}
        for shard in sorted(set(weight_map.values())):
            state.update(_load_safetensors(directory / shard))
        return state
    if (directory / "pytorch_model.bin").exists():
        # weights_only=True: tensors and plain containers only; a pickle cannot run code
        return torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{directory} holds no model.safetensors, model.safetensors.index.json or "
                            "pytorch_model.bin")


# %% [markdown]
# Save and reload the tiny model, then load the same file with a configuration of another size, then
# break the files in the ways the test suite checks (`tests/test_model_errors.py`):

# %%
with tempfile.TemporaryDirectory() as tmp:
    model.save_pretrained(tmp)
    print("files:", sorted(p.name for p in Path(tmp).iterdir()))
    again = T5.from_pretrained(tmp)
    with torch.no_grad():
        same = torch.equal(again(input_ids=ids, decoder_input_ids=dec_in).logits,
                           model(input_ids=ids, decoder_input_ids=dec_in).logits)
    print("saved and reloaded, same logits:", same)
    assert same
    cfg = json.loads((Path(tmp) / "config.json").read_text())
    (Path(tmp) / "config.json").write_text(json.dumps({**cfg, "d_ff": 48, "num_decoder_layers": 1}))
    try:
        T5.from_pretrained(tmp)
    except CheckpointError as err:
        for line in str(err).splitlines():
            print(line if len(line) < 150 else line[:147] + "...")

# %%
def show_error(name, damage, load_from="demo-model"):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "demo-model"
        model.save_pretrained(folder)
        damage(folder)
        try:
            T5.from_pretrained(Path(tmp) / load_from)
        except (ValueError, FileNotFoundError) as err:
            print(f"{name:22s} {type(err).__name__}: {str(err).replace(tmp, '<tmp>')}")


def cut_weights(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:len(data) // 2])


def index_without_map(folder):
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    (folder / "model.safetensors.index.json").write_text('{"metadata": {}}')


show_error("truncated weights", cut_weights)
show_error("config not JSON", lambda f: (f / "config.json").write_text("d_model: 32"))
show_error("wrong type in config", lambda f: (f / "config.json").write_text('{"dropout_rate": "0.1"}'))
show_error("index, no weight_map", index_without_map)
show_error("typo in the path", lambda f: None, load_from="demo-modle")

# %% [markdown]
# ## Summary
#
# - **The decoder block** is causal self-attention (the first block owns a causal bias table),
#   cross-attention (queries from the decoder, keys and values from the encoder, no position bias)
#   and the feed-forward network, each pre-norm and residual as in Chapter 04; the stack keeps a
#   key/value cache for generation.
# - **Encoder-decoder** (T5 paper §2.1, compared with decoder-only models in §3.2): the input is read
#   with full visibility once, the output written causally (Figure 5.1).
# - **Shared embedding**: the head is tied and scaled by $d_{model}^{-1/2}$ (T5) or untied and unscaled (v1.1).
# - **Teacher forcing**: decoder inputs are `shift_right(labels)`, starting with token 0; the loss
#   ignores −100.
# - Parameter names equal Hugging Face's, so its `state_dict` loads strictly and the logits agree with
#   `transformers` to 1e-5; a tiny T5 memorises 16 pairs (Figure 5.2); bad input and broken checkpoint
#   files fail with one message naming the problem.
#
# **What is in the package now**
#
# ```python
# from t5edu import T5, T5Config
# from t5edu.model import shift_right, Seq2SeqOutput, CheckpointError, read_state_dict
# from t5edu.decoder import T5Decoder, T5DecoderBlock, T5LayerCrossAttention
# ```
#
# Previous: [Chapter 04 — The encoder](04_encoder.ipynb) ·
# Next: [Chapter 06 — Text-to-text data](06_data.ipynb), where the examples this model learns from
# come from · Exercises: [Chapter 05 exercises](../exercises/ch05_decoder.ipynb)
#
# ## Further reading
#
# - Raffel et al. (2020), *Exploring the Limits of Transfer Learning with a Unified Text-to-Text
#   Transformer*, JMLR — [arXiv:1910.10683](https://arxiv.org/abs/1910.10683); §2.1 the model, §2.4 the
#   text-to-text format, §3.2 encoder-decoder versus decoder-only architectures.
# - Vaswani et al. (2017), *Attention Is All You Need* — [arXiv:1706.03762](https://arxiv.org/abs/1706.03762);
#   the encoder-decoder with cross-attention.
# - Shazeer (2020), *GLU Variants Improve Transformer* — [arXiv:2002.05202](https://arxiv.org/abs/2002.05202);
#   the feed-forward network of T5 v1.1.
# - Zhang & Sennrich (2019), *Root Mean Square Layer Normalization* —
#   [arXiv:1910.07467](https://arxiv.org/abs/1910.07467).
