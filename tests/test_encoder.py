"""Chapter 04: T5Config (t5edu.config), RMS norm, feed-forward networks, encoder block and stack, init."""

import dataclasses
import json

import pytest
import torch

from t5edu.config import T5_PRESETS, T5Config
from t5edu.encoder import (
    T5DenseActDense,
    T5DenseGatedActDense,
    T5Encoder,
    T5EncoderBlock,
    T5LayerNorm,
    gelu_new,
    init_t5_weights,
)


def tiny(**kw):
    base = dict(vocab_size=60, d_model=24, d_kv=10, d_ff=40, num_layers=2, num_heads=3, dropout_rate=0.0,
                relative_attention_num_buckets=16, relative_attention_max_distance=40)
    return T5Config(**{**base, **kw})


# --- T5Config ---------------------------------------------------------------------------------------------

def test_presets():
    small = T5Config.preset("t5-small")
    sizes = (small.d_model, small.d_ff, small.num_layers, small.num_decoder_layers, small.num_heads)
    assert sizes == (512, 2048, 6, 6, 8)
    assert small.feed_forward_proj == "relu" and small.tie_word_embeddings and small.scale_decoder_outputs
    v11 = T5Config.preset("t5-v1_1-small")
    assert v11.is_gated_act and v11.dense_act_fn == "gelu_new" and not v11.tie_word_embeddings
    assert not v11.scale_decoder_outputs
    assert T5Config.preset("t5-small", num_layers=2).num_decoder_layers == 2
    assert {"t5-small", "t5-base", "t5-large", "t5-v1_1-small", "t5-v1_1-base"} <= set(T5_PRESETS)
    with pytest.raises(ValueError, match="unknown T5 preset"):
        T5Config.preset("t5-huge")


@pytest.mark.parametrize("field,value,message", [
    ("d_model", 0, "d_model must be a positive integer"),
    ("num_heads", -1, "num_heads must be a positive integer"),
    ("d_ff", 2.5, "d_ff must be a positive integer"),
    ("feed_forward_proj", "swiglu", "feed_forward_proj must be one of"),
    ("dropout_rate", 1.0, "dropout_rate"),
    ("layer_norm_epsilon", 0.0, "layer_norm_epsilon"),
    ("decoder_start_token_id", 99999, "decoder_start_token_id"),
])
def test_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        T5Config(**{field: value})


def test_dict_roundtrip_and_hf_keys():
    for name in T5_PRESETS:
        cfg = T5Config.preset(name)
        d = cfg.to_dict()
        assert d["model_type"] == "t5" and d["architectures"] == ["T5ForConditionalGeneration"]
        assert T5Config.from_dict(json.loads(json.dumps(d))) == cfg
    hf_style = {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "d_model": 512,
                "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": True,
                "tie_word_embeddings": False, "transformers_version": "4.40", "n_positions": 512,
                "task_specific_params": {}, "eos_token_id": [1], "decoder_start_token_id": None}
    cfg = T5Config.from_dict(hf_style)
    assert cfg.is_gated_act and cfg.eos_token_id == 1 and cfg.decoder_start_token_id == 0
    with pytest.raises(ValueError, match="is_gated_act"):
        T5Config.from_dict({"feed_forward_proj": "relu", "is_gated_act": True})
    # transformers 5 writes tie_word_embeddings=true and the scaling separately
    v5 = T5Config.from_dict({"feed_forward_proj": "gated-gelu", "tie_word_embeddings": True,
                             "scale_decoder_outputs": False})
    assert v5.tie_word_embeddings and not v5.scale_decoder_outputs
    assert T5Config.from_dict(v5.to_dict()) == v5


def test_hf_accepts_our_config():
    transformers = pytest.importorskip("transformers")
    for name in ("t5-small", "t5-v1_1-small"):
        ours = T5Config.preset(name)
        hf = transformers.T5Config(**ours.to_dict())
        assert hf.d_ff == ours.d_ff and hf.is_gated_act == ours.is_gated_act
        assert hf.scale_decoder_outputs == ours.scale_decoder_outputs
        assert hf.decoder_start_token_id == 0


# --- building blocks --------------------------------------------------------------------------------------

def test_layer_norm_formula_and_fp16():
    x = torch.randn(4, 16) * 3 + 1
    norm = T5LayerNorm(16)
    torch.nn.init.normal_(norm.weight)
    expected = norm.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    assert torch.allclose(norm(x), expected, atol=1e-5)
    big = torch.full((2, 512), 300.0, dtype=torch.float16)
    out = T5LayerNorm(512).half()(big)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_gelu_new_formula():
    import math
    x = torch.linspace(-6, 6, 1001)
    f = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    assert torch.allclose(gelu_new(x), f, atol=1e-6)


def test_encoder_state_dict_names():
    enc = T5Encoder(tiny())
    names = list(enc.state_dict())
    assert "block.0.layer.0.SelfAttention.relative_attention_bias.weight" in names
    assert not any(n.startswith("block.1.") and "relative_attention_bias" in n for n in names)
    assert "block.1.layer.1.DenseReluDense.wi.weight" in names and "final_layer_norm.weight" in names
    gated = T5Encoder(tiny(feed_forward_proj="gated-gelu"))
    assert "block.0.layer.1.DenseReluDense.wi_1.weight" in gated.state_dict()


def test_out_of_vocab_ids_fail_clearly():
    enc = T5Encoder(tiny())
    with pytest.raises(ValueError, match="outside the vocabulary"):
        enc(torch.tensor([[1, 60]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        enc(torch.tensor([[-1, 3]]))


def test_padding_invariance():
    torch.manual_seed(0)
    cfg = tiny()
    enc = T5Encoder(cfg).eval()
    init_t5_weights(enc, cfg)
    ids = torch.randint(2, 60, (1, 9))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = (padded != 0).long()
    mask[0, :9] = 1
    with torch.no_grad():
        assert torch.allclose(enc(padded, attention_mask=mask)[:, :9], enc(ids), atol=1e-5)


def test_init_standard_deviations():
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=2000, d_model=256, d_kv=32, d_ff=1024, num_layers=1, num_heads=8)
    enc = T5Encoder(cfg)
    init_t5_weights(enc, cfg)
    att = enc.block[0].layer[0].SelfAttention
    ffn = enc.block[0].layer[1].DenseReluDense
    checks = {att.q.weight: (256 * 32) ** -0.5, att.k.weight: 256 ** -0.5, att.v.weight: 256 ** -0.5,
              att.o.weight: 256 ** -0.5, ffn.wi.weight: 256 ** -0.5, ffn.wo.weight: 1024 ** -0.5,
              enc.embed_tokens.weight: 1.0, att.relative_attention_bias.weight: 256 ** -0.5}
    for w, std in checks.items():
        assert abs(w.std().item() / std - 1) < 0.1, (tuple(w.shape), w.std().item(), std)
    assert torch.equal(enc.final_layer_norm.weight, torch.ones(256))


# --- parity with transformers -----------------------------------------------------------------------------

transformers = pytest.importorskip("transformers")
hf_t5 = pytest.importorskip("transformers.models.t5.modeling_t5")


def hf_config(cfg, **kw):
    d = {k: v for k, v in cfg.to_dict().items() if k not in ("architectures",)}
    return transformers.T5Config(**{**d, **kw}, attn_implementation="eager")


def perturb(module, std=0.2):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * std)


def test_layer_norm_matches_hf():
    hf = hf_t5.T5LayerNorm(24)
    perturb(hf)
    ours = T5LayerNorm(24)
    ours.load_state_dict(hf.state_dict())
    x = torch.randn(3, 5, 24) * 4
    assert torch.equal(ours(x), hf(x))
    hf_b, ours_b = hf.to(torch.bfloat16), ours.to(torch.bfloat16)
    xb = x.to(torch.bfloat16)
    assert torch.equal(ours_b(xb), hf_b(xb))


@pytest.mark.parametrize("proj", ["relu", "gated-gelu"])
def test_ffn_matches_hf(proj):
    cfg = tiny(feed_forward_proj=proj)
    hcfg = hf_config(cfg)
    hf = (hf_t5.T5DenseGatedActDense if cfg.is_gated_act else hf_t5.T5DenseActDense)(hcfg).eval()
    perturb(hf)
    ours = (T5DenseGatedActDense if cfg.is_gated_act else T5DenseActDense)(cfg).eval()
    ours.load_state_dict(hf.state_dict())
    x = torch.randn(2, 7, 24) * 2
    assert (ours(x) - hf(x)).abs().max() < 1e-5


@pytest.mark.parametrize("proj", ["relu", "gated-gelu"])
def test_encoder_block_matches_hf(proj):
    cfg = tiny(feed_forward_proj=proj)
    hf = hf_t5.T5Block(hf_config(cfg), has_relative_attention_bias=True, layer_idx=0).eval()
    perturb(hf)
    ours = T5EncoderBlock(cfg, has_relative_attention_bias=True).eval()
    ours.load_state_dict(hf.state_dict())
    x = torch.randn(2, 45, 24)
    mask = torch.ones(2, 45, dtype=torch.long)
    mask[1, 30:] = 0
    from t5edu.attention import padding_bias
    hf_mask = padding_bias(mask)
    bias = ours.layer[0].SelfAttention.relative_attention_bias(45, 45) + hf_mask
    with torch.no_grad():
        assert (ours(x, bias=bias) - hf(x, attention_mask=hf_mask)[0]).abs().max() < 1e-5


def test_encoder_stack_matches_hf_encoder_model():
    cfg = tiny(num_layers=3, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    hf = transformers.T5EncoderModel(hf_config(cfg)).eval()
    perturb(hf)
    ours = T5Encoder(cfg).eval()
    state = {k.removeprefix("encoder."): v for k, v in hf.state_dict().items() if k.startswith("encoder.")}
    ours.load_state_dict(state)
    ids = torch.randint(0, 60, (3, 33))
    mask = torch.ones(3, 33, dtype=torch.long)
    mask[0, 20:] = 0
    mask[2, :4] = 0  # left padding too
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(ids, attention_mask=mask)
    assert (got - expected).abs().max() < 1e-5


def test_config_dataclass_is_plain():
    cfg = tiny()
    assert dataclasses.replace(cfg, d_ff=8).d_ff == 8
