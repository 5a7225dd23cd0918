"""t5edu.generate: the API, the cache, sampling, the CLI and the benchmark (parity with transformers is in
tests/test_generate_parity.py)."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from t5edu.config import T5Config
from t5edu.generate import (
    DecoderCache,
    GenerateOutput,
    decoder_step,
    generate,
    hypothesis_score,
    last_logits,
    no_repeat_ngram_mask,
    sample_next,
    top_k_filter,
    top_p_filter,
)
from t5edu.model import T5

PAD, EOS = 0, 1


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny(seed=0, eos_boost=0.0, **overrides):
    torch.manual_seed(seed)
    kwargs = dict(vocab_size=50, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0,
                  relative_attention_num_buckets=8, relative_attention_max_distance=16)
    kwargs.update(overrides)
    model = T5(T5Config(**kwargs)).eval()
    if eos_boost:
        with torch.no_grad():
            model.lm_head.weight[EOS] *= eos_boost
    return model


@pytest.fixture(scope="module")
def model():
    return tiny(0, eos_boost=3.0, tie_word_embeddings=False)


def batch():
    ids = torch.tensor([[5, 6, 7, 8, 9, EOS], [10, 11, EOS, PAD, PAD, PAD], [12, 13, 14, 15, EOS, PAD]])
    return ids, (ids != PAD).long()


# -- the cache ------------------------------------------------------------------------------------

def test_decoder_step_equals_the_full_forward(model):
    ids, mask = batch()
    prefix = torch.randint(2, 50, (3, 9), generator=torch.Generator().manual_seed(1))
    prefix[:, 0] = 0
    with torch.no_grad():
        encoded = model.encode(ids, mask)
        cache = DecoderCache(model, encoded, mask)
        for t in range(prefix.shape[1]):
            stepped = decoder_step(model, cache, prefix[:, t])
            full = last_logits(model, encoded, mask, prefix[:, :t + 1])
            torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)
    assert len(cache) == prefix.shape[1]


def test_reorder_follows_rows(model):
    ids, mask = batch()
    with torch.no_grad():
        encoded = model.encode(ids, mask)
        cache = DecoderCache(model, encoded, mask)
        decoder_step(model, cache, torch.zeros(3, dtype=torch.long))
        before = [layer["self"]["k"].clone() for layer in cache.layers]
        cache.reorder(torch.tensor([2, 2, 0]))
    for old, layer in zip(before, cache.layers, strict=True):
        assert torch.equal(layer["self"]["k"], old[[2, 2, 0]])


@pytest.mark.parametrize("kwargs", [dict(), dict(num_beams=3, num_return_sequences=2),
                                    dict(num_beams=2, no_repeat_ngram_size=2, length_penalty=0.5),
                                    dict(num_beams=4, early_stopping=True, min_new_tokens=3)])
def test_cached_equals_uncached(model, kwargs):
    ids, mask = batch()
    cached = generate(model, ids, mask, max_new_tokens=9, **kwargs)
    uncached = generate(model, ids, mask, max_new_tokens=9, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)


def test_greedy_equals_chapter_07_greedy_decode(model):
    from t5edu.metrics import greedy_decode

    ids, mask = batch()
    ours = generate(model, ids, mask, max_new_tokens=12)
    assert torch.equal(ours[:, 1:], greedy_decode(model, ids, mask, max_new_tokens=12))


# -- the API --------------------------------------------------------------------------------------

def test_output_starts_with_the_start_token_and_pads_after_eos(model):
    ids, mask = batch()
    for kwargs in (dict(), dict(num_beams=3, num_return_sequences=3)):
        out = generate(model, ids, mask, max_new_tokens=12, **kwargs)
        assert out.dtype == torch.long and bool((out[:, 0] == model.config.decoder_start_token_id).all())
        is_eos = (out == EOS).long()
        after = (is_eos.cumsum(1) - is_eos) > 0
        assert bool((out[after] == PAD).all())
        assert bool(is_eos.any())  # the EOS-boosted model does finish some rows


def test_lengths(model):
    ids, mask = batch()
    big = dict(min_new_tokens=30)
    assert generate(model, ids, mask, **big).shape == (3, 21)  # neither given: 20 new tokens
    assert generate(model, ids, mask, max_length=6, **big).shape == (3, 6)  # counts the start token
    # max_new_tokens wins
    assert generate(model, ids, mask, max_length=6, max_new_tokens=8, **big).shape == (3, 9)
    assert generate(model, ids, mask, max_new_tokens=7, num_beams=3, **big).shape == (3, 8)
    for kwargs in (dict(), dict(num_beams=3, num_return_sequences=2), dict(do_sample=True)):
        out = generate(model, ids, mask, max_new_tokens=0, **kwargs)
        assert out.tolist() == [[0]] * (3 * kwargs.get("num_return_sequences", 1))


def test_attention_mask_defaults_to_non_pad(model):
    ids, mask = batch()
    assert torch.equal(generate(model, ids, max_new_tokens=8), generate(model, ids, mask, max_new_tokens=8))


def test_padding_does_not_change_a_row(model):
    ids, mask = batch()
    alone = generate(model, ids[1:2, :3], max_new_tokens=8, num_beams=3, num_return_sequences=2)
    together = generate(model, ids, mask, max_new_tokens=8, num_beams=3, num_return_sequences=2)[2:4]
    assert torch.equal(alone, together[:, :alone.shape[1]])


def test_output_scores_are_length_penalised_logprobs(model):
    ids, mask = batch()
    out = generate(model, ids, mask, max_new_tokens=8, num_beams=3, num_return_sequences=2,
                   length_penalty=1.5,
                   output_scores=True)
    assert isinstance(out, GenerateOutput) and out.sequences_scores.shape == (6,)
    for i, (seq, score) in enumerate(zip(out.sequences, out.sequences_scores.tolist(), strict=True)):
        row = i // 2
        with torch.no_grad():
            logits = model(input_ids=ids[row:row + 1], attention_mask=mask[row:row + 1],
                           decoder_input_ids=seq[None, :-1]).logits
        logp = F.log_softmax(logits[0].float(), -1).gather(-1, seq[1:, None])[:, 0]
        n = int((seq[1:] == EOS).nonzero()[0]) + 1 if (seq[1:] == EOS).any() else len(seq) - 1
        assert abs(hypothesis_score(logp[:n].sum().item(), n, 1.5) - score) < 1e-4
    assert generate(model, ids, mask, max_new_tokens=4, output_scores=True).sequences_scores is None


def test_training_mode_is_restored_and_dropout_is_off():
    model = tiny(1, dropout_rate=0.5)
    ids, mask = batch()
    model.eval()
    expected = generate(model, ids, mask, max_new_tokens=6, num_beams=2)
    model.train()
    assert torch.equal(generate(model, ids, mask, max_new_tokens=6, num_beams=2), expected)
    assert model.training


def test_decoder_deeper_than_encoder():
    model = tiny(2, num_layers=1, num_decoder_layers=3)
    ids, mask = batch()
    for kwargs in (dict(), dict(num_beams=3)):
        assert torch.equal(generate(model, ids, mask, max_new_tokens=6, **kwargs),
                           generate(model, ids, mask, max_new_tokens=6, use_cache=False, **kwargs))


@pytest.mark.parametrize("kwargs, words", [
    (dict(num_beams=0), "num_beams"), (dict(num_beams=1.5), "num_beams"),
    (dict(max_new_tokens=-1), "max_new_tokens"), (dict(max_length=0), "max_length"),
    (dict(do_sample=True, top_p=0.0), "top_p"), (dict(do_sample=True, top_p=1.5), "top_p"),
    (dict(do_sample=True, top_k=-1), "top_k"), (dict(do_sample=True, temperature=0.0), "temperature"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(num_return_sequences=2), "num_return_sequences"),
    (dict(num_return_sequences=0), "num_return_sequences"),
    (dict(num_beams=2, early_stopping="sometimes"), "early_stopping"),
    (dict(num_beams=2, do_sample=True), "sampling with beams"),
    (dict(min_new_tokens=-2), "min_new_tokens"), (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size"),
])
def test_bad_arguments_fail_clearly(model, kwargs, words):
    ids, mask = batch()
    with pytest.raises(ValueError, match=words):
        generate(model, ids, mask, **kwargs)


def test_bad_input_ids(model):
    with pytest.raises(ValueError, match="2-D"):
        generate(model, torch.tensor([5, 6, 1]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        generate(model, torch.tensor([[5, 600, 1]]))


# -- rules and sampling ---------------------------------------------------------------------------

def test_min_new_tokens_and_no_repeat_ngram(model):
    ids, mask = batch()
    for kwargs in (dict(), dict(num_beams=3)):
        out = generate(model, ids, mask, max_new_tokens=10, min_new_tokens=6, **kwargs)
        assert not bool((out[:, 1:7] == EOS).any())
        out = generate(model, ids, mask, max_new_tokens=10, no_repeat_ngram_size=2, min_new_tokens=10,
                       **kwargs)
        for row in out.tolist():
            bigrams = list(itertools.pairwise(row))
            assert len(bigrams) == len(set(bigrams)), row
    assert no_repeat_ngram_mask(torch.tensor([[0, 5, 7, 5]]), 2, 10).nonzero()[:, 1].tolist() == [7]


def test_sampling_is_reproducible_with_a_generator(model):
    ids, mask = batch()

    def draw(seed, **kwargs):
        return generate(model, ids, mask, max_new_tokens=10, do_sample=True, temperature=2.0,
                        generator=torch.Generator().manual_seed(seed), **kwargs)

    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))
    assert torch.equal(draw(3, top_k=4, top_p=0.9), draw(3, top_k=4, top_p=0.9))
    several = draw(5, num_return_sequences=3)
    assert several.shape[0] == 9
    greedy = generate(model, ids, mask, max_new_tokens=10)
    assert torch.equal(draw(7, top_k=1), greedy)  # top-1 sampling is greedy


@pytest.mark.parametrize("seed", range(5))
def test_top_k_and_top_p_only_emit_allowed_tokens(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 40, generator=g) * (1 + seed)
    probs = logits.softmax(-1)
    for k in (1, 3, 10):
        allowed = logits >= logits.topk(k).values[:, -1:]
        for s in range(30):
            token = sample_next(logits, top_k=k, generator=torch.Generator().manual_seed(s))
            assert bool(allowed.gather(1, token[:, None]).all())
    for p in (0.1, 0.5, 0.9, 1.0):
        kept = top_p_filter(logits, p).isfinite()
        mass = (probs * kept).sum(-1)
        assert bool((mass >= p - 1e-6).all())
        # minimal: dropping the least likely kept token would fall below p
        least = probs.masked_fill(~kept, math.inf).min(-1).values
        assert bool((kept.sum(-1) == 1).all() | (mass - least < p + 1e-6).all())
        for s in range(30):
            token = sample_next(logits, top_p=p, temperature=0.8, generator=torch.Generator().manual_seed(s))
            assert bool(top_p_filter(logits / 0.8, p).isfinite().gather(1, token[:, None]).all())
    assert torch.equal(top_k_filter(logits, 40), logits) and torch.equal(top_p_filter(logits, 1.0), logits)


# -- command line and benchmark -------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from t5edu.tokenizer import Tokenizer

    directory = tmp_path_factory.mktemp("gen-model")
    lines = [f"summarize: the {w} sat on the {v} and looked at the {u}."
             for w in ("cat", "dog", "bird", "fox")
             for v in ("mat", "log", "chair") for u in ("moon", "sun", "sea", "sky")] * 3
    tok = Tokenizer.train(lines, directory, vocab_size=40, extra_ids=4)
    tiny(3, vocab_size=tok.vocab_size).save_pretrained(directory)
    return directory


def test_cli_generate(model_dir, capsys):
    from t5edu.cli import main

    assert main(["generate", "--model", str(model_dir), "--max-new-tokens", "5",
                 "summarize: the cat sat"]) == 0
    greedy = capsys.readouterr().out.splitlines()
    assert len(greedy) == 1
    assert main(["generate", "--model", str(model_dir), "--max-new-tokens", "5", "--num-beams", "3",
                 "--num-return-sequences", "2", "--show-scores", "summarize: the cat sat", "the dog"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and lines[0] == "# summarize: the cat sat" and lines[1].startswith("[")
    sampling = ["generate", "--model", str(model_dir), "--sample", "--seed", "1", "--top-p", "0.9", "x"]
    assert main(sampling) == 0
    first = capsys.readouterr().out
    assert main(sampling) == 0
    assert capsys.readouterr().out == first
    assert main(["generate", "--model", str(model_dir), "--num-beams", "0", "x"]) == 2
    assert "--num-beams" in capsys.readouterr().err
    assert main(["generate", "--model", str(model_dir / "nowhere"), "x"]) == 2


def test_cli_generate_refuses_bad_options_with_a_message(model_dir, tmp_path, capsys):
    from t5edu.cli import main

    for size in ("0", "-1"):
        assert main(["generate", "--model", str(model_dir), "--batch-size", size, "x"]) == 2
        err = capsys.readouterr().err
        assert "--batch-size" in err and ">= 1" in err
    assert main(["generate", "--model", str(model_dir), "--max-input-length", "0", "x"]) == 2
    assert "--max-input-length" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["generate", "--model", str(model_dir), "--device", "cuda", "x"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    corrupt = tmp_path / "spiece.model"
    corrupt.write_bytes(b"this is not a sentencepiece model")
    assert main(["generate", "--model", str(model_dir), "--tokenizer", str(corrupt), "x"]) == 2
    assert str(corrupt) in capsys.readouterr().err


def test_cli_generate_truncates_long_inputs_and_takes_fast(model_dir, capsys):
    from t5edu.cli import main

    long_text = "summarize: " + "the cat sat on the mat " * 20
    assert main(["generate", "--model", str(model_dir), "--max-new-tokens", "4", "--max-input-length", "16",
                 long_text]) == 0
    captured = capsys.readouterr()
    assert "cut to --max-input-length 16" in captured.err
    assert main(["generate", "--model", str(model_dir), "--max-new-tokens", "4", "--max-input-length", "16",
                 "--fast", long_text]) == 0
    assert capsys.readouterr().out == captured.out  # the fast path: the same text


def test_bench_generate_runs(capsys):
    from t5edu.authoring.bench_generate import run_generate_bench

    results = run_generate_bench("t5-tiny", input_tokens=8, new_tokens=3, beams=2, runs=1, vocab_size=500,
                                 copy_megabytes=16)
    out = capsys.readouterr().out
    assert "greedy" in out and "beam-2" in out and "floor" in out and "same tokens: yes" in out
    assert results["floor"] > 0 and results["greedy"]["book"] > 0 and results["greedy"]["fast"] > 0
    if "transformers" in results["greedy"]:
        assert results["greedy"]["book_speedup"] > 0 and results["beam-2"]["fast_speedup"] > 0


def test_bench_modules_do_not_import_each_other():
    import ast
    from pathlib import Path

    import t5edu.authoring.bench as bench

    folder = Path(bench.__file__).parent
    for name in ("bench_generate.py", "bench_common.py"):
        tree = ast.parse((folder / name).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "t5edu.authoring.bench" not in imported, name


# -- the book's modules on the default path -------------------------------------------------------

def test_a_hook_on_the_first_decoder_attention_changes_generate():
    model = tiny(5, eos_boost=2.0)
    ids, mask = batch()
    attention = model.decoder.block[0].layer[0].SelfAttention
    for kwargs in ({}, {"num_beams": 4}):
        before = generate(model, ids, mask, max_new_tokens=8, **kwargs)
        calls = []

        def hook(module, args, output, calls=calls):
            calls.append(args[0].shape)
            return output * 3.0 + 1.0  # a different attention output

        handle = attention.register_forward_hook(hook)
        try:
            hooked = generate(model, ids, mask, max_new_tokens=8, **kwargs)
            fast = generate(model, ids, mask, max_new_tokens=8, fast=True, **kwargs)
        finally:
            handle.remove()
        assert calls and all(shape[1] == 1 for shape in calls)  # one new position per cached step
        assert not torch.equal(hooked, before), kwargs
        assert torch.equal(fast, before)  # the opt-in fast path reads the weights, not the modules
        assert torch.equal(generate(model, ids, mask, max_new_tokens=8, **kwargs), before)


class Scaled(torch.nn.Module):
    """Wraps a module and scales its output."""

    def __init__(self, inner, factor):
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs) * self.factor


def test_a_replaced_feed_forward_changes_generate():
    model = tiny(6, eos_boost=2.0)
    ids, mask = batch()
    layer = model.decoder.block[0].layer[2]
    before = {beams: generate(model, ids, mask, max_new_tokens=8, num_beams=beams) for beams in (1, 4)}
    original = layer.DenseReluDense
    layer.DenseReluDense = Scaled(original, 25.0)
    try:
        for beams in (1, 4):
            changed = generate(model, ids, mask, max_new_tokens=8, num_beams=beams)
            assert not torch.equal(changed, before[beams])
    finally:
        layer.DenseReluDense = original
    assert torch.equal(generate(model, ids, mask, max_new_tokens=8), before[1])


def test_bad_inputs_fail_with_one_clear_error(model):
    ids, mask = batch()
    with pytest.raises(ValueError, match="attention_mask has shape"):
        generate(model, ids, mask[:2])
    with pytest.raises(ValueError, match="attention_mask has shape"):
        generate(model, ids, mask[:, :4])
    with pytest.raises(ValueError, match="empty"):
        generate(model, ids[:0])
    with pytest.raises(ValueError, match=r"2-D.*ids\[None\]"):
        generate(model, ids[0])


def test_fast_is_for_the_cpu_only():
    from t5edu.generate import fast_path_allowed

    assert fast_path_allowed(True, torch.device("cpu")) and not fast_path_allowed(False, "cpu")
    with pytest.warns(UserWarning, match="CPU path"):
        assert not fast_path_allowed(True, torch.device("cuda"))


# -- the opt-in fast path ---------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["t5-tiny", "t5-v1_1-tiny"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_gives_the_tokens_of_the_default_path(preset, seed):
    torch.manual_seed(seed)
    model = T5(T5Config.preset(preset, vocab_size=300, dropout_rate=0.0)).eval()
    with torch.no_grad():
        model.lm_head.weight[EOS] *= 2.0  # some rows finish early
    ids = torch.randint(3, 300, (3, 9), generator=torch.Generator().manual_seed(seed))
    ids[1, 6:] = PAD
    for kwargs in ({}, {"num_beams": 4}, {"num_beams": 4, "num_return_sequences": 2, "length_penalty": 0.6}):
        default = generate(model, ids, max_new_tokens=12, **kwargs)
        assert torch.equal(generate(model, ids, max_new_tokens=12, fast=True, **kwargs), default), kwargs
        assert torch.equal(model.generate(ids, max_new_tokens=12, fast=True, **kwargs), default), kwargs


@pytest.mark.parametrize("ff", ["relu", "gated-gelu"])
def test_fast_steps_equal_the_model_blocks(ff):
    from t5edu.fast_generate import packed_weights

    model = tiny(4, eos_boost=3.0, feed_forward_proj=ff, tie_word_embeddings=False)
    ids, mask = batch()
    for kwargs in ({}, {"num_beams": 3, "num_return_sequences": 2}, {"do_sample": True}):
        gen = (lambda: {"generator": torch.Generator().manual_seed(0)}) if kwargs.get("do_sample") else dict
        fast = generate(model, ids, mask, max_new_tokens=9, fast=True, **kwargs, **gen())
        plain = generate(model, ids, mask, max_new_tokens=9, **kwargs, **gen())
        assert torch.equal(fast, plain)
    first = packed_weights(model)
    assert packed_weights(model) is first
    with torch.no_grad():
        model.lm_head.weight[5] += 1.0  # an in-place change must not leave a stale copy
    assert packed_weights(model) is not first
    assert torch.equal(packed_weights(model).lm_head, model.lm_head.weight.t())


def test_fast_step_uses_chapter_02_attention(monkeypatch):
    import t5edu.fast_generate as fast_generate

    model = tiny(7)
    ids, mask = batch()
    calls = []
    original = fast_generate.attention
    monkeypatch.setattr(fast_generate, "attention", lambda *args: calls.append(1) or original(*args))
    generate(model, ids, mask, max_new_tokens=3, min_new_tokens=3, fast=True)
    assert len(calls) == 3 * 2 * model.config.num_decoder_layers  # self + cross, per block, per step


@pytest.mark.parametrize("parts", [1, 2, 3, 4])
@pytest.mark.parametrize("rows", [1, 4])
def test_column_blocks_product_equals_linear(parts, rows):
    from t5edu.fast_generate import column_blocks, product

    torch.manual_seed(parts)
    weight, x = torch.randn(12, 5), torch.randn(rows, 5)
    blocks = column_blocks(weight, parts)
    # 12 columns split into 1, 2 or 4 blocks; 3 divides 12 too; a plain (in, out) matrix for 1 block
    assert blocks.shape == ((5, 12) if parts == 1 else (parts, 5, 12 // parts))
    torch.testing.assert_close(product(x, blocks), F.linear(x, weight), rtol=0, atol=1e-5)
    assert column_blocks(torch.randn(10, 5), 4).shape == (5, 10)  # 4 does not divide 10: plain


def test_fast_step_uses_blocks_and_matches_plain_with_one_thread():
    from t5edu.fast_generate import packed_weights

    torch.manual_seed(0)
    model = T5(T5Config.preset("t5-tiny", vocab_size=300, dropout_rate=0.0)).eval()
    ids = torch.randint(3, 300, (2, 9))
    threads = torch.get_num_threads()
    try:
        outputs = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            assert packed_weights(model).lm_head.dim() == (2 if n == 1 else 3)
            outputs[n] = generate(model, ids, num_beams=3, max_new_tokens=8, fast=True)
        assert torch.equal(outputs[1], outputs[2])
        assert torch.equal(outputs[1], generate(model, ids, num_beams=3, max_new_tokens=8))
    finally:
        torch.set_num_threads(threads)
