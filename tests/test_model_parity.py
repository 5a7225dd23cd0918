"""Chapter 05: the full model against transformers' T5ForConditionalGeneration (eager attention, float32,
random weights), in both directions: HF save_pretrained -> t5edu, and t5edu save_pretrained -> HF."""

import pytest
import torch

from t5edu import T5, T5Config
from t5edu.model import shift_right

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

TINY = dict(vocab_size=160, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.1)
CASES = {
    "t5-small shape (relu, tied)": dict(T5Config.preset("t5-small").to_dict()),
    "v1.1 shape (gated-gelu, untied)": dict(TINY, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                           num_layers=3, num_heads=6, d_kv=6, d_ff=40),
    "num_decoder_layers != num_layers": dict(TINY, num_layers=3, num_decoder_layers=1),
    "num_heads * d_kv != d_model": dict(TINY, num_heads=3, d_kv=20),
    "non-default buckets / max distance": dict(TINY, relative_attention_num_buckets=12,
                                               relative_attention_max_distance=18),
}


def hf_model(config_dict, seed=0):
    cfg = {k: v for k, v in config_dict.items() if k not in ("architectures", "model_type")}
    cfg["decoder_start_token_id"] = 0
    torch.manual_seed(seed)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**cfg, attn_implementation="eager"))
    # make every tensor distinct (layer norms start at 1, the untied head is tied in HF 5)
    with torch.no_grad():
        if config_dict.get("tie_word_embeddings") is False:
            model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight) * 0.3)
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if "layer_norm" in name else 0.02))
    return model.eval()


def batch(vocab, seed=1, batch_size=3, src_len=40, tgt_len=11):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (batch_size, src_len), generator=g)
    mask = torch.ones(batch_size, src_len, dtype=torch.long)
    mask[0, 25:] = 0  # right padding
    mask[1, :6] = 0   # left padding
    labels = torch.randint(2, vocab, (batch_size, tgt_len), generator=g)
    labels[0, 7:] = -100
    dec_mask = (labels != -100).long()
    dec_mask[:, 0] = 1
    return dict(input_ids=ids, attention_mask=mask, labels=labels,
                decoder_input_ids=shift_right(labels), decoder_attention_mask=dec_mask)


def compare(hf, ours, data):
    with torch.no_grad():
        a = hf(**data)
        b = ours(**data)
    d_logits = (a.logits - b.logits).abs().max().item()
    d_loss = abs(a.loss.item() - b.loss.item())
    return d_logits, d_loss


def loss_agrees(d_loss, d_logits):
    """The mean cross-entropy moves by at most 2 x the largest logit change (it is 2-Lipschitz in the max
    norm), so identical losses cannot be asked of logits that agree to float32 noise only: on a loss of 11.3,
    one float32 step is 1e-6, and the kernels' summation order alone moves t5-small's logits by ~5e-6. A loss
    computed another way (counting the -100 positions, summing instead of averaging) is off by far more."""
    return d_loss <= 1e-6 + 2 * d_logits


@pytest.mark.parametrize("case", list(CASES))
def test_hf_to_t5edu(case, tmp_path):
    hf = hf_model(CASES[case])
    hf.save_pretrained(tmp_path)
    ours = T5.from_pretrained(tmp_path)
    data = batch(ours.config.vocab_size)
    d_logits, d_loss = compare(hf, ours, data)
    assert d_logits <= 1e-5, d_logits
    assert loss_agrees(d_loss, d_logits), (d_loss, d_logits)
    # labels only: decoder inputs derived by shift_right, no decoder mask
    data = {k: data[k] for k in ("input_ids", "attention_mask", "labels")}
    d_logits, d_loss = compare(hf, ours, data)
    assert d_logits <= 1e-5 and loss_agrees(d_loss, d_logits)


@pytest.mark.parametrize("case", ["v1.1 shape (gated-gelu, untied)", "num_heads * d_kv != d_model",
                                  "non-default buckets / max distance"])
def test_t5edu_to_hf(case, tmp_path):
    cfg = {k: v for k, v in CASES[case].items() if k not in ("architectures", "model_type")}
    torch.manual_seed(0)
    ours = T5(T5Config(**cfg)).eval()
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    ours.save_pretrained(tmp_path)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path, attn_implementation="eager").eval()
    d_logits, d_loss = compare(hf, ours, batch(ours.config.vocab_size, seed=5))
    assert d_logits <= 1e-5 and loss_agrees(d_loss, d_logits)
    if not ours.config.tie_word_embeddings:
        assert torch.equal(hf.lm_head.weight, ours.lm_head.weight)
        assert not torch.equal(hf.lm_head.weight, hf.shared.weight)


def test_state_dict_keys_equal_hf():
    cfg = CASES["v1.1 shape (gated-gelu, untied)"]
    hf = hf_model(cfg)
    ours = T5(T5Config(**{k: v for k, v in cfg.items()}))
    hf_keys = set(hf.state_dict())
    assert set(ours.state_dict()) == hf_keys
    ours.load_state_dict(hf.state_dict())  # no key map needed


def test_encode_matches_hf_encoder():
    hf = hf_model(CASES["num_heads * d_kv != d_model"])
    ours = T5(T5Config(**CASES["num_heads * d_kv != d_model"]))
    ours.load_checkpoint_state(hf.state_dict())
    ours.eval()
    data = batch(160)
    with torch.no_grad():
        a = hf.encoder(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).last_hidden_state
        b = ours.encode(data["input_ids"], data["attention_mask"])
    assert (a - b).abs().max() <= 1e-5


def test_incremental_decoding_with_cache_matches_full_pass():
    torch.manual_seed(0)
    model = T5(T5Config(**CASES["num_decoder_layers != num_layers"])).eval()
    data = batch(160)
    with torch.no_grad():
        full = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"],
                     decoder_input_ids=data["decoder_input_ids"]).logits
        enc = model.encode(data["input_ids"], data["attention_mask"])
        cache = model.decoder.new_cache()
        steps = [model(attention_mask=data["attention_mask"], encoder_hidden_states=enc, cache=cache,
                       decoder_input_ids=data["decoder_input_ids"][:, t:t + 1]).logits for t in range(11)]
    assert (torch.cat(steps, 1) - full).abs().max() < 1e-5


def test_bf16_autocast_runs_and_backward():
    torch.manual_seed(0)
    model = T5(T5Config(**CASES["v1.1 shape (gated-gelu, untied)"]))
    data = batch(160)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**data)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits).all()
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_float16_large_activations_stay_finite():
    torch.manual_seed(0)
    cfg = T5Config(**CASES["v1.1 shape (gated-gelu, untied)"])
    model = T5(cfg).eval()
    with torch.no_grad():  # blow up the FFN outputs: the residual stream exceeds float16's 65504
        for block in list(model.encoder.block) + list(model.decoder.block):
            block.layer[-1].DenseReluDense.wo.weight.mul_(3000.0)
    data = batch(160)
    with torch.no_grad():
        ref = model(**data)
        assert ref.encoder_last_hidden_state.isfinite().all()
        h = model.encoder.embed_tokens(data["input_ids"]).half()
        half = model.half()
        raw = half.encoder.block[0](h)  # a single block already exceeds the float16 range without clamping...
        assert raw.isfinite().all()  # ...but clamp_fp16 keeps it finite
        out = half(**data)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.loss)


def test_sdpa_path_close_to_explicit(tmp_path):
    """The optional fused path: same model, different summation order -> close, not bit-equal."""
    torch.manual_seed(0)
    model = T5(T5Config(**CASES["num_heads * d_kv != d_model"])).eval()
    data = batch(160)
    with torch.no_grad():
        explicit = model(**data)
        fused = model.set_sdpa(True)(**data)
    assert (explicit.logits - fused.logits).abs().max() < 1e-5
    assert abs(explicit.loss.item() - fused.loss.item()) < 1e-5
