"""Chapters 02-05 exercise checks: each passes on the reference solution, fails on the student stub and
on plausible wrong answers (with a helpful message), and prints one friendly line."""

import math
from unittest import mock

import torch
import torch.nn.functional as F

from t5edu.attention import T5Attention
from t5edu.classroom.checks import ch02, ch03, ch04, ch05
from t5edu.classroom.solutions import ch02 as s02
from t5edu.classroom.solutions import ch03 as s03
from t5edu.classroom.solutions import ch04 as s04
from t5edu.classroom.solutions import ch05 as s05
from t5edu.relative_bias import RelativePositionBias

# -- plausible wrong answers, with a word the failure message should contain -------------------------------

def causal_upper(length):
    return torch.zeros(length, length).masked_fill(torch.ones(length, length, dtype=torch.bool).tril(),
                                                   torch.finfo(torch.float32).min)


def causal_inf(length):
    return torch.zeros(length, length).masked_fill(~torch.ones(length, length, dtype=torch.bool).tril(),
                                                   float("-inf"))


def weights_scaled(q, k, bias=None):
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(s if bias is None else s + bias, -1)


def weights_wrong_axis(q, k, bias=None):
    s = q @ k.transpose(-1, -2)
    return torch.softmax(s if bias is None else s + bias, -2)


def merge_plain_reshape(x):
    b, h, length, d = x.shape
    return x.reshape(b, length, h * d)


def relpos_flipped(q_len, k_len, offset=0):
    return (torch.arange(q_len)[:, None] + offset) - torch.arange(k_len)[None, :]


def relpos_no_offset(q_len, k_len, offset=0):
    return torch.arange(k_len)[None, :] - torch.arange(q_len)[:, None]


_LONG, _CLAMP = torch.Tensor.long, torch.Tensor.clamp


def _long_rounding_floats(self, *args, **kwargs):
    return _LONG(self.round() if self.is_floating_point() else self, *args, **kwargs)


def _clamp_ignoring_max(self, min=None, max=None):
    return self if min is None else _CLAMP(self, min=min)


def _reference_bucket_with(method, replacement):
    """The reference bucketing with one tensor method swapped for a wrong one: the mistake under test."""

    def bucket(rel, bidirectional=True, num_buckets=32, max_distance=128):
        with mock.patch.object(torch.Tensor, method, replacement):
            return s03.bucket(rel, bidirectional, num_buckets, max_distance)

    return bucket


bucket_rounded = _reference_bucket_with("long", _long_rounding_floats)  # rounds the log bucket up or down
bucket_no_cap = _reference_bucket_with("clamp", _clamp_ignoring_max)  # far distances overflow the last bucket


def table_reshape(table, buckets):
    return table[buckets].reshape(1, table.shape[1], *buckets.shape)


def layer_norm_like(x, weight, eps=1e-6):
    return F.layer_norm(x, x.shape[-1:], weight, eps=eps)


def rms_no_eps(x, weight, eps=1e-6):
    return weight * x / x.pow(2).mean(-1, keepdim=True).sqrt()


def ffn_exact_gelu(x, wi_0, wi_1, wo):
    return (F.gelu(x @ wi_0.T) * (x @ wi_1.T)) @ wo.T


def ffn_gate_swapped(x, wi_0, wi_1, wo):
    return ((x @ wi_0.T) * F.gelu(x @ wi_1.T, approximate="tanh")) @ wo.T


def count_bias_every_layer(config):
    return s04.encoder_param_count(config) + config.relative_attention_num_buckets * config.num_heads * (
        config.num_layers - 1)


def count_ignores_gating(config):
    inner = config.num_heads * config.d_kv
    block = 4 * config.d_model * inner + 2 * config.d_model * config.d_ff + 2 * config.d_model
    table = config.relative_attention_num_buckets * config.num_heads
    return config.num_layers * block + table + config.d_model


def shift_keeps_minus_100(labels, start=0, pad=0):
    out = torch.full_like(labels, start)
    out[:, 1:] = labels[:, :-1]
    return out


def shift_left(labels, start=0, pad=0):
    out = torch.full_like(labels, pad)
    out[:, :-1] = labels[:, 1:]
    return out.masked_fill(out == -100, pad)


def loss_counts_pads(logits, labels):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.clamp(min=0).reshape(-1))


def loss_sum(logits, labels):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                           reduction="sum")


def logits_unscaled(hidden, embedding):
    return hidden @ embedding.T


def logits_wrong_way(hidden, embedding):
    return hidden @ embedding.T * hidden.shape[-1] ** 0.5


# -- 5.9 capstone: attention classes with one plausible mistake each, driven by the check's runner -----------


class AttentionScaled(s05.T5AttentionFromScratch):
    """Divides the scores by sqrt(d_kv), as the Transformer paper does and T5 does not."""

    def forward(self, hidden_states, key_value_states=None, mask=None, position_bias=None, cache=None):
        weight = self.q.weight.detach().clone()
        with torch.no_grad():
            self.q.weight.mul_(self.d_kv ** -0.5)
        try:
            return super().forward(hidden_states, key_value_states, mask, position_bias, cache)
        finally:
            with torch.no_grad():
                self.q.weight.copy_(weight)


class AttentionCacheNoOffset(s05.T5AttentionFromScratch):
    """The cache works, but a cached step's bias is computed as if its query were at position 0."""

    def compute_bias(self, query_length, key_length, offset=0):
        return super().compute_bias(query_length, key_length, 0)


class AttentionRenamed(s05.T5AttentionFromScratch):
    """`query` instead of Hugging Face's `q`: the library's (and every checkpoint's) weights do not load."""

    def __init__(self, d_model, num_heads, d_kv, **settings):
        super().__init__(d_model, num_heads, d_kv, **settings)
        self.query = self.q
        del self.q


class AttentionIgnoresGivenBias(s05.T5AttentionFromScratch):
    """Recomputes the bias even when an earlier layer's position_bias is given."""

    def forward(self, hidden_states, key_value_states=None, mask=None, position_bias=None, cache=None):
        return super().forward(hidden_states, key_value_states, mask, None, cache)


class AttentionCrossAppends(s05.T5AttentionFromScratch):
    """Caches cross-attention like self-attention: appends the encoder's keys/values again at every step."""

    def forward(self, hidden_states, key_value_states=None, mask=None, position_bias=None, cache=None):
        if key_value_states is None or cache is None:
            return super().forward(hidden_states, key_value_states, mask, position_bias, cache)
        batch, length = hidden_states.shape[:2]

        def heads(x):
            return x.view(batch, -1, self.num_heads, self.d_kv).transpose(1, 2)

        q = heads(self.q(hidden_states))
        k, v = heads(self.k(key_value_states)), heads(self.v(key_value_states))
        if "k" in cache:
            k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
        cache["k"], cache["v"] = k, v
        scores = q @ k.transpose(-1, -2) + (0 if mask is None else mask)
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, -1)
        return self.o(out), mask


class AttentionOnTheLibrary(T5Attention):
    """The library's class with the exercise's constructor: not written from scratch."""

    def __init__(self, d_model, num_heads, d_kv, has_relative_attention_bias=False, bidirectional=True,
                 num_buckets=32, max_distance=128):
        table = RelativePositionBias(num_heads, num_buckets, max_distance, bidirectional) \
            if has_relative_attention_bias else None
        super().__init__(d_model, num_heads, d_kv, relative_attention_bias=table)

    def forward(self, hidden_states, key_value_states=None, mask=None, position_bias=None, cache=None):
        return super().forward(hidden_states, key_value_states, mask, cache), mask


CAPSTONE_WRONG = [
    (ch05.attention_runner(AttentionScaled), "divided by sqrt(d_kv)"),
    (ch05.attention_runner(AttentionCacheNoOffset), "cached length"),
    (ch05.attention_runner(AttentionRenamed), "Hugging Face's names"),
    (ch05.attention_runner(AttentionIgnoresGivenBias), "given position_bias"),
    (ch05.attention_runner(AttentionCrossAppends), "cross-attention"),
    (ch05.attention_runner(AttentionOnTheLibrary), "built on the library's t5edu.attention.T5Attention"),
]


CASES = [
    (ch02.exercise_1, s02.causal_bias, [(causal_upper, "causal_bias"), (causal_inf, "-inf")]),
    (ch02.exercise_2, s02.attention_weights,
     [(weights_scaled, "√d"), (weights_wrong_axis, "normalises over")]),
    (ch02.exercise_3, s02.heads_to_features, [(merge_plain_reshape, "transpose")]),
    (ch03.exercise_1, s03.relative_position_matrix,
     [(relpos_flipped, "sign"), (relpos_no_offset, "offset=5")]),
    (ch03.exercise_2, s03.bucket, [(bucket_rounded, "differ"), (bucket_no_cap, "differ")]),
    (ch03.exercise_3, s03.bias_from_table, [(table_reshape, "permute")]),
    (ch04.exercise_1, s04.rms_norm, [(layer_norm_like, "LayerNorm"), (rms_no_eps, "eps")]),
    (ch04.exercise_2, s04.gated_ffn, [(ffn_exact_gelu, "tanh"), (ffn_gate_swapped, "wrong branch")]),
    (ch04.exercise_3, s04.encoder_param_count, [(count_bias_every_layer, "every layer"),
                                                (count_ignores_gating, "gated-gelu")]),
    (ch05.exercise_1, s05.shift_labels_right, [(shift_keeps_minus_100, "-100"), (shift_left, "expected")]),
    (ch05.exercise_2, s05.seq2seq_loss, [(loss_counts_pads, "-100 positions"), (loss_sum, "sum")]),
    (ch05.exercise_3, s05.tied_logits,
     [(logits_unscaled, "scaling is missing"), (logits_wrong_way, "wrong way")]),
    (ch05.exercise_9, ch05.attention_runner(s05.T5AttentionFromScratch), CAPSTONE_WRONG),
]


def test_crashing_code_is_reported_in_one_line():
    def crashes(*args):
        return torch.ones(2) @ torch.ones(3)

    result = ch02.exercise_2.run(crashes)
    assert not result.passed and "RuntimeError" in result.message
