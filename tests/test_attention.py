"""Chapter 02: attention, masks, heads, T5Attention (SDPA path == explicit math == Hugging Face)."""

import pytest
import torch

import t5edu.attention as attention_module
from t5edu.attention import (
    T5Attention,
    attention,
    causal_mask,
    mask_to_bias,
    mask_value,
    merge_heads,
    padding_bias,
    split_heads,
)
from t5edu.relative_bias import RelativePositionBias


def test_attention_matches_formula_and_rows_sum_to_one():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 6, 5), torch.randn(2, 3, 6, 5)
    bias = torch.randn(1, 3, 4, 6)
    out, w = attention(q, k, v, bias)
    expected_w = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1)  # no 1/sqrt(d)
    assert torch.allclose(w, expected_w, atol=1e-6)
    assert torch.allclose(out, expected_w @ v, atol=1e-6)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 4))


def test_masks():
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool())
    b = padding_bias(torch.tensor([[1, 1, 0]]))
    assert b.shape == (1, 1, 1, 3)
    assert b[0, 0, 0].tolist() == [0.0, 0.0, mask_value(torch.float32)]
    allowed = torch.tensor([[True, False]])
    assert mask_to_bias(allowed, torch.bfloat16).dtype == torch.bfloat16
    assert torch.isfinite(mask_to_bias(allowed, torch.float16)).all()


def test_fully_masked_row_is_finite():
    q = k = v = torch.randn(1, 3, 4)
    out, w = attention(q, k, v, mask_to_bias(torch.zeros(3, 3, dtype=torch.bool)))
    assert torch.isfinite(out).all() and torch.isfinite(w).all()


def test_fused_function_equals_explicit_and_returns_no_weights():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 6, 5), torch.randn(2, 3, 6, 5)
    bias = torch.randn(1, 3, 4, 6) + padding_bias(torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6]))
    explicit, weights = attention(q, k, v, bias)
    fused, none = attention(q, k, v, bias, fused=True)
    assert none is None and weights.shape == (2, 3, 4, 6)
    assert (fused - explicit).abs().max() < 1e-6


def test_dropout_only_when_training():
    torch.manual_seed(0)
    q = k = v = torch.randn(1, 2, 8, 4)
    plain, w = attention(q, k, v)
    assert torch.equal(attention(q, k, v, dropout_p=0.5, training=False)[0], plain)
    dropped, w_dropped = attention(q, k, v, dropout_p=0.5, training=True)
    assert not torch.equal(dropped, plain)
    assert torch.equal(w_dropped, w)  # the returned weights are the ones before dropout


def test_module_computes_through_the_one_attention_function(monkeypatch):
    calls = []
    original = attention_module.attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get("fused"))
        return original(*args, **kwargs)

    monkeypatch.setattr(attention_module, "attention", spy)
    attn = T5Attention(8, 2, 4)
    x = torch.randn(1, 3, 8)
    attn(x)
    attn.use_sdpa = True
    attn(x)
    attn.record_weights = True  # weights are needed: the explicit path even with use_sdpa
    attn(x)
    assert calls == [False, True, False]


def test_split_merge_roundtrip():
    x = torch.randn(2, 7, 12)
    h = split_heads(x, 4)
    assert h.shape == (2, 4, 7, 3)
    assert torch.equal(merge_heads(h), x)
    assert torch.equal(h[:, 2], x[:, :, 6:9])


@pytest.mark.parametrize("cross", [False, True])
def test_sdpa_equals_explicit(cross):
    torch.manual_seed(0)
    attn = T5Attention(d_model=16, num_heads=4, d_kv=6).eval()
    x = torch.randn(3, 5, 16)
    kv = torch.randn(3, 9, 16) if cross else None
    lk = 9 if cross else 5
    mask = torch.ones(3, lk, dtype=torch.long)
    mask[0, -2:] = 0
    mask[2, :1] = 0
    bias = padding_bias(mask) + (0 if cross else torch.randn(1, 4, 5, 5))
    assert attn.use_sdpa is False  # explicit math by default: op-for-op the reference computation
    slow = attn(x, key_value_states=kv, bias=bias)
    attn.use_sdpa = True
    fast = attn(x, key_value_states=kv, bias=bias)
    assert (fast - slow).abs().max() < 1e-6


def test_sdpa_backward_matches_explicit():
    torch.manual_seed(0)
    attn = T5Attention(16, 4, 4, relative_attention_bias=RelativePositionBias(4))
    torch.nn.init.normal_(attn.relative_attention_bias.weight)
    x = torch.randn(2, 6, 16)
    grads = []
    for sdpa in (True, False):
        attn.use_sdpa = sdpa
        attn.zero_grad()
        attn(x, bias=attn.relative_attention_bias(6, 6)).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in attn.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_cache_matches_full_causal():
    torch.manual_seed(0)
    attn = T5Attention(16, 2, 8).eval()
    x = torch.randn(2, 5, 16)
    bias = mask_to_bias(causal_mask(5))
    full = attn(x, bias=bias)
    cache = {}
    rows = [attn(x[:, t:t + 1], bias=bias[t:t + 1, :t + 1], cache=cache) for t in range(5)]
    assert torch.allclose(torch.cat(rows, 1), full, atol=1e-6)


def test_record_weights():
    attn = T5Attention(8, 2, 4)
    attn.record_weights = True
    attn(torch.randn(1, 3, 8), bias=mask_to_bias(causal_mask(3)))
    assert attn.last_weights.shape == (1, 2, 3, 3)
    assert torch.triu(attn.last_weights[0, 0], 1).abs().max() == 0


def test_bf16_bias_is_finite():
    attn = T5Attention(8, 2, 4)
    x = torch.randn(1, 3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(x, bias=padding_bias(torch.tensor([[1, 1, 0]])))
    assert torch.isfinite(out).all()


# --- parity with transformers' T5Attention ---------------------------------------------------------------

def _hf():
    """transformers and its T5 modelling module, or skip the test when transformers is missing."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.t5 import modeling_t5

    return transformers, modeling_t5


def _hf_config(**kw):
    transformers, _ = _hf()
    base = dict(vocab_size=50, d_model=24, d_kv=10, d_ff=40, num_layers=2, num_heads=3, dropout_rate=0.0,
                relative_attention_num_buckets=16, relative_attention_max_distance=40)
    return transformers.T5Config(**{**base, **kw}, attn_implementation="eager")


@pytest.mark.parametrize("is_decoder", [False, True])
def test_self_attention_with_bias_and_masks_matches_hf(is_decoder):
    torch.manual_seed(0)
    cfg = _hf_config(is_decoder=is_decoder)
    hf = _hf()[1].T5Attention(cfg, has_relative_attention_bias=True, layer_idx=0).eval()
    for p in hf.parameters():
        torch.nn.init.normal_(p, std=0.3)
    table = RelativePositionBias(3, 16, 40, bidirectional=not is_decoder)
    ours = T5Attention(24, 3, 10, relative_attention_bias=table)
    ours.load_state_dict(hf.state_dict())
    x = torch.randn(2, 50, 24)
    pad = torch.ones(2, 50, dtype=torch.long)
    pad[0, 41:] = 0
    allowed = pad[:, None, None, :].bool()
    if is_decoder:
        allowed = allowed & causal_mask(50)
    hf_mask = mask_to_bias(allowed)
    with torch.no_grad():
        expected = hf(x, mask=hf_mask)[0]
        got = ours(x, bias=ours.relative_attention_bias(50, 50) + hf_mask)
    assert (got - expected).abs().max() < 1e-5


def test_cross_attention_matches_hf():
    torch.manual_seed(0)
    cfg = _hf_config(is_decoder=True)
    hf = _hf()[1].T5Attention(cfg, has_relative_attention_bias=False, layer_idx=0).eval()
    for p in hf.parameters():
        torch.nn.init.normal_(p, std=0.3)
    ours = T5Attention(24, 3, 10)
    ours.load_state_dict(hf.state_dict())
    x, enc = torch.randn(2, 7, 24), torch.randn(2, 11, 24)
    enc_mask = torch.ones(2, 11, dtype=torch.long)
    enc_mask[1, :3] = 0
    bias = padding_bias(enc_mask)
    with torch.no_grad():
        expected = hf(x, mask=bias, key_value_states=enc)[0]
        got = ours(x, key_value_states=enc, bias=bias)
    assert (got - expected).abs().max() < 1e-5
