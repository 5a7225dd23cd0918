"""t5edu.generate against Hugging Face `transformers` (eager attention, float32, random weights).

Each model is built and randomly initialised by `transformers`, saved, and loaded with
`t5edu.T5.from_pretrained`, so both sides hold the same weights. Outputs must be the same tokens up to
and including EOS (after EOS, HF fills beam outputs with EOS and we fill with pad: both are checked),
and beam scores must agree to 1e-4. Random models rarely emit EOS, so some models get a boosted EOS
row in the output layer to exercise finished hypotheses, early stopping and padding.
"""

import warnings

import pytest
import torch

from t5edu.generate import generate
from t5edu.model import T5

transformers = pytest.importorskip("transformers")

PAD, EOS = 0, 1


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
MODELS = {
    # name: (seed, T5Config overrides, factor for the output layer's EOS row: 0 = untouched; a negative
    # factor flips it). The factors were chosen so that EOS comes at varied steps, in some beams only.
    "v1_0-tied": (0, dict(feed_forward_proj="relu", tie_word_embeddings=True), 0.0),
    "v1_0-tied-eos": (0, dict(feed_forward_proj="relu", tie_word_embeddings=True), 4.0),
    "v1_1-untied-eos": (2, dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False), -4.0),
    "v1_1-eos-heavy": (4, dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False), -6.0),
}


def build(tmp_path_factory, seed, overrides, eos_boost):
    torch.manual_seed(seed)
    kwargs = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0,
                  relative_attention_num_buckets=8, relative_attention_max_distance=16,
                  decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    kwargs.update(overrides)
    config = transformers.T5Config(**kwargs)
    config._attn_implementation = "eager"
    hf = transformers.T5ForConditionalGeneration(config).eval()
    if eos_boost:
        with torch.no_grad():
            if config.tie_word_embeddings:
                hf.shared.weight[EOS] *= eos_boost
            else:
                hf.lm_head.weight[EOS] *= eos_boost
    directory = tmp_path_factory.mktemp(f"hf-{seed}")
    hf.save_pretrained(directory)
    return hf, T5.from_pretrained(directory)


@pytest.fixture(scope="module", params=list(MODELS))
def models(request, tmp_path_factory):
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    seed, overrides, boost = MODELS[request.param]
    return build(tmp_path_factory, seed, overrides, boost)


@pytest.fixture(scope="module")
def eos_model(tmp_path_factory):
    """One EOS-boosted model, for the tests that need not run on every model."""
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    seed, overrides, boost = MODELS["v1_1-untied-eos"]
    return build(tmp_path_factory, seed, overrides, boost)


def batch():
    """Three inputs of different lengths, right-padded."""
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, EOS],
                        [12, 13, 14, EOS, PAD, PAD, PAD, PAD],
                        [20, 21, 22, 23, 24, EOS, PAD, PAD]])
    return ids, (ids != PAD).long()


def hf_generate(hf, ids, mask, **kwargs):
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return hf.generate(input_ids=ids, attention_mask=mask, return_dict_in_generate=True,
                           output_scores=True,
                           **kwargs)


def assert_same_tokens(ours, theirs, scores=None, per_input=1):
    """Same shape; same tokens up to and including each row's first EOS; pad after it on our side.

    With beam `scores` (HF's), hypotheses of one input whose scores differ by less than the score
    tolerance (1e-4) are tied at float32 precision: their order may differ, their set may not."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    is_eos = (theirs == EOS).long()
    after_eos = (is_eos.cumsum(1) - is_eos) > 0
    assert bool((ours[after_eos] == PAD).all())
    ours = ours.masked_fill(after_eos, -1)
    theirs = theirs.masked_fill(after_eos, -1)
    if scores is None:
        assert torch.equal(ours, theirs), f"\nours:\n{ours}\ntheirs:\n{theirs}"
        return
    for start in range(0, len(theirs), per_input):
        group = [start]
        for i in range(start + 1, start + per_input + 1):
            if i < start + per_input and abs(float(scores[i] - scores[i - 1])) < 1e-4:
                group.append(i)
                continue
            mine = sorted(tuple(ours[j].tolist()) for j in group)
            reference = sorted(tuple(theirs[j].tolist()) for j in group)
            assert mine == reference, f"rows {group}:\nours:\n{ours}\ntheirs:\n{theirs}"
            group = [i]


@pytest.mark.parametrize("min_new_tokens", [0, 6])
def test_greedy_matches_hf(models, min_new_tokens):
    hf, ours = models
    ids, mask = batch()
    ref = hf_generate(hf, ids, mask, max_new_tokens=12, min_new_tokens=min_new_tokens, do_sample=False,
                      num_beams=1)
    out = generate(ours, ids, mask, max_new_tokens=12, min_new_tokens=min_new_tokens)
    assert_same_tokens(out, ref.sequences)
    assert torch.equal(out, ref.sequences)  # greedy: HF pads finished rows with pad too


BEAM_SETTINGS = [
    dict(num_beams=2),
    dict(num_beams=3, num_return_sequences=3),
    dict(num_beams=4, length_penalty=0.0, early_stopping=True),
    dict(num_beams=4, length_penalty=0.0, early_stopping=False),
    dict(num_beams=4, length_penalty=0.0, early_stopping="never"),
    dict(num_beams=5, length_penalty=2.0, early_stopping="never", num_return_sequences=2),
    # these two differ from early_stopping=False
    dict(num_beams=2, length_penalty=2.0, early_stopping="never"),
    dict(num_beams=2, length_penalty=0.5, early_stopping="never"),  # on some of the models above
    dict(num_beams=3, length_penalty=2.0, early_stopping=False),
    dict(num_beams=3, length_penalty=2.0, early_stopping=True),
    dict(num_beams=2, length_penalty=1.0, early_stopping="never", no_repeat_ngram_size=2),
    dict(num_beams=3, min_new_tokens=5, num_return_sequences=2),
    dict(num_beams=4, length_penalty=0.5, early_stopping=False, num_return_sequences=4),
]


@pytest.mark.parametrize("settings", BEAM_SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_beam_search_matches_hf(models, settings):
    hf, ours = models
    ids, mask = batch()
    ref = hf_generate(hf, ids, mask, max_new_tokens=10, do_sample=False, **settings)
    out = generate(ours, ids, mask, max_new_tokens=10, output_scores=True, **settings)
    assert_same_tokens(out.sequences, ref.sequences, ref.sequences_scores,
                       settings.get("num_return_sequences", 1))
    assert torch.allclose(out.sequences_scores, ref.sequences_scores, atol=1e-4, rtol=0), \
        (out.sequences_scores, ref.sequences_scores)


def test_parity_tests_exercise_eos(tmp_path_factory):
    """The EOS-boosted models do finish hypotheses early (else the tests above would not cover it)."""
    transformers.utils.logging.disable_progress_bar()
    seed, overrides, boost = MODELS["v1_1-eos-heavy"]
    _, ours = build(tmp_path_factory, seed, overrides, boost)
    ids, mask = batch()
    out = generate(ours, ids, mask, max_new_tokens=10, num_beams=3, num_return_sequences=3)
    lengths = [(row == EOS).nonzero()[0].item() if (row == EOS).any() else None for row in out]
    assert sum(n is not None and n < 10 for n in lengths) >= 3, lengths  # EOS before the length limit
    assert sum(n is None for n in lengths) >= 2, lengths  # ... but not everywhere


def test_max_length_means_what_hf_means(eos_model):
    hf, ours = eos_model
    ids, mask = batch()
    for beams in (1, 3):
        ref = hf_generate(hf, ids, mask, max_length=7, do_sample=False, num_beams=beams)
        assert_same_tokens(generate(ours, ids, mask, max_length=7, num_beams=beams), ref.sequences)


@pytest.mark.parametrize("settings", [dict(temperature=0.7, top_k=0), dict(top_k=5), dict(top_p=0.8, top_k=0),
                                      dict(temperature=1.3, top_k=10, top_p=0.9)],
                         ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_sampling_matches_hf_with_the_same_global_seed(eos_model, settings):
    """With generator=None both draw from torch's global generator, in the same order."""
    hf, ours = eos_model
    ids, mask = batch()
    torch.manual_seed(123)
    ref = hf_generate(hf, ids, mask, max_new_tokens=10, do_sample=True, num_beams=1, **settings)
    torch.manual_seed(123)
    ours_settings = dict(settings, top_k=settings.get("top_k") or None)
    out = generate(ours, ids, mask, max_new_tokens=10, do_sample=True, **ours_settings)
    assert torch.equal(out, ref.sequences)


@pytest.mark.parametrize("settings", [dict(num_beams=1), dict(num_beams=3, num_return_sequences=2),
                                      dict(num_beams=2, early_stopping=True, length_penalty=0.0)],
                         ids=["greedy", "beam3", "beam2-early"])
def test_decoder_deeper_than_encoder(tmp_path_factory, settings):
    """num_decoder_layers != num_layers: transformers 5.24's cached generate fails there (IndexError), so the
    reference runs without its cache; ours uses its cache as always."""
    transformers.utils.logging.disable_progress_bar()
    hf, ours = build(tmp_path_factory, 7, dict(num_layers=1, num_decoder_layers=3, tie_word_embeddings=False),
                     4.0)
    ids, mask = batch()
    ref = hf_generate(hf, ids, mask, max_new_tokens=8, do_sample=False, use_cache=False, **settings)
    out = generate(ours, ids, mask, max_new_tokens=8, output_scores=settings["num_beams"] > 1, **settings)
    if settings["num_beams"] > 1:
        assert_same_tokens(out.sequences, ref.sequences, ref.sequences_scores,
                           settings.get("num_return_sequences", 1))
        assert torch.allclose(out.sequences_scores, ref.sequences_scores, atol=1e-4, rtol=0)
    else:
        assert_same_tokens(out, ref.sequences)
