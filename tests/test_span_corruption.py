"""Span corruption (t5edu.span_corruption, Chapter 06) against T5/seqio's definitions."""

import math
from collections import Counter

import numpy as np
import pytest

from t5edu.span_corruption import (
    _random_segmentation,
    compute_input_and_target_lengths,
    noise_span_to_unique_sentinel,
    random_spans_noise_mask,
    reconstruct,
    span_corruption,
)

VOCAB = 32100
FIRST_SENTINEL = VOCAB - 1  # <extra_id_0>


def spans(mask):
    """Lengths of the runs of True in `mask`."""
    out, run = [], 0
    for m in [*list(mask), False]:
        if m:
            run += 1
        elif run:
            out.append(run)
            run = 0
    return out


# ---- compute_input_and_target_lengths: T5's random_spans_helper -------------------------------

def test_t5_numbers_for_512():
    assert compute_input_and_target_lengths(512, 0.15, 3.0) == (568, 114)
    assert compute_input_and_target_lengths() == (568, 114)


@pytest.mark.parametrize("inputs_length,expected", [(64, (70, 14)), (128, (141, 29)), (256, (284, 58)),
                                                    (1024, (1137, 229))])
def test_lengths_other_sizes(inputs_length, expected):
    assert compute_input_and_target_lengths(inputs_length) == expected


@pytest.mark.parametrize("inputs_length", [16, 64, 100, 128, 512, 1000])
@pytest.mark.parametrize("density,span", [(0.15, 3.0), (0.3, 2.0), (0.15, 8.0)])
def test_lengths_are_the_largest_that_fit(inputs_length, density, span):
    """Brute force from the definition: n raw tokens -> inputs n - k + s + 1, targets k + s + 1."""
    def lengths(n):
        k = round(n * density)
        s = round(k / span)
        return n - k + s + 1, k + s + 1

    tokens_length, targets_length = compute_input_and_target_lengths(inputs_length, density, span)
    assert lengths(tokens_length)[0] <= inputs_length < lengths(tokens_length + 1)[0]
    assert targets_length == lengths(tokens_length)[1]


def test_lengths_density_half_makes_targets_no_longer_than_inputs():
    tokens_length, targets_length = compute_input_and_target_lengths(512, 0.5, 3.0)
    assert targets_length <= 512 and tokens_length == 766


# ---- random_spans_noise_mask ------------------------------------------------------------------

@pytest.mark.parametrize("length", [*range(2, 120), 511, 568, 1137])
def test_noise_count_and_span_count(length):
    k = min(max(round(length * 0.15), 1), length - 1)
    s = max(round(k / 3.0), 1)
    for seed in range(5):
        mask = random_spans_noise_mask(length, 0.15, 3.0, rng=seed)
        assert mask.dtype == bool and mask.shape == (length,)
        assert int(mask.sum()) == k
        assert len(spans(mask)) == s
        assert len(spans(~mask)) == s  # as many non-noise spans, interleaved
        assert not mask[0] and mask[-1]  # starts with non-noise, ends with noise


def test_noise_fraction_on_long_sequences():
    mask = random_spans_noise_mask(568, rng=0)
    assert mask.sum() == 85 and len(spans(mask)) == 28
    assert abs(mask.mean() - 0.15) < 0.001
    lengths = [n for seed in range(200) for n in spans(random_spans_noise_mask(568, rng=seed))]
    assert abs(np.mean(lengths) - 85 / 28) < 1e-9  # mean span length = noise tokens / spans, exactly


def test_degenerate_lengths_like_seqio():
    assert random_spans_noise_mask(0, rng=0).tolist() == []
    assert random_spans_noise_mask(1, rng=0).tolist() == [False]
    assert random_spans_noise_mask(2, rng=0).tolist() == [False, True]
    assert random_spans_noise_mask(10, 0.0, rng=0).tolist() == [False] * 10


def test_mask_is_deterministic_in_the_seed_and_varies_across_seeds():
    a = random_spans_noise_mask(200, rng=np.random.default_rng(7))
    b = random_spans_noise_mask(200, rng=7)
    assert np.array_equal(a, b)
    distinct = {random_spans_noise_mask(200, rng=seed).tobytes() for seed in range(20)}
    assert len(distinct) == 20


def test_too_many_spans_is_an_error():
    with pytest.raises(ValueError, match="noise spans"):
        random_spans_noise_mask(10, noise_density=0.95, mean_noise_span_length=1.0, rng=0)


def test_random_segmentation_is_uniform():
    rng = np.random.default_rng(0)
    n = 12000
    counts = Counter(tuple(_random_segmentation(6, 3, rng).tolist()) for _ in range(n))
    assert len(counts) == math.comb(5, 2)  # every composition of 6 into 3 positive parts
    for composition, c in counts.items():
        assert sum(composition) == 6 and min(composition) >= 1
        assert abs(c / n - 0.1) < 0.015


def test_random_segmentation_edges():
    rng = np.random.default_rng(0)
    assert _random_segmentation(5, 1, rng).tolist() == [5]
    assert _random_segmentation(5, 5, rng).tolist() == [1] * 5
    with pytest.raises(ValueError):
        _random_segmentation(3, 4, rng)


# ---- sentinels, inputs, targets -----------------------------------------------------------------

def test_seqio_unit_example():
    """seqio's test: vocabulary of 1000 ids, so <extra_id_0> = 999."""
    mask = np.array([True, True, False, False, True, False])
    tokens = [10, 11, 12, 13, 14, 15]
    assert noise_span_to_unique_sentinel(tokens, mask, 999) == [999, 12, 13, 998, 15]
    assert noise_span_to_unique_sentinel(tokens, ~mask, 999) == [10, 11, 999, 14, 998]


def test_inputs_and_targets_by_hand():
    # a fixed mask: keep 0-2, noise 3-4, keep 5, noise 6
    tokens = [100, 101, 102, 103, 104, 105, 106]
    mask = np.array([0, 0, 0, 1, 1, 0, 1], dtype=bool)
    assert noise_span_to_unique_sentinel(tokens, mask, FIRST_SENTINEL) == [100, 101, 102, 32099, 105, 32098]
    assert noise_span_to_unique_sentinel(tokens, ~mask, FIRST_SENTINEL) == [32099, 103, 104, 32098, 106]


def test_sentinels_descend_from_extra_id_0():
    tokens = list(range(3, 603))
    inputs, targets = span_corruption(tokens, FIRST_SENTINEL, rng=0)
    sent_in = [t for t in inputs if t > VOCAB - 101]
    sent_out = [t for t in targets if t > VOCAB - 101]
    k = len(spans(random_spans_noise_mask(600, rng=0)))
    assert sent_in == sent_out == [FIRST_SENTINEL - i for i in range(k)]
    assert targets[0] == FIRST_SENTINEL  # targets start with <extra_id_0>


def test_span_corruption_lengths_and_eos():
    tokens = list(range(3, 571))  # 568 raw tokens
    inputs, targets = span_corruption(tokens, FIRST_SENTINEL, rng=1, eos_id=1)
    assert len(inputs) == 512 and len(targets) == 114
    assert inputs[-1] == 1 and targets[-1] == 1 and 1 not in inputs[:-1] + targets[:-1]


@pytest.mark.parametrize("seed", range(4))
def test_reconstruct_round_trip(seed):
    rng = np.random.default_rng(seed)
    for length in range(0, 700, 3):
        tokens = rng.integers(3, 32000, size=length).tolist()
        inputs, targets = span_corruption(tokens, FIRST_SENTINEL, rng)
        assert reconstruct(inputs, targets, FIRST_SENTINEL) == tokens
        if length >= 2:  # inputs: n - k + s + 1 ids, targets: k + s + 1
            s = sum(t > VOCAB - 101 for t in inputs)
            assert len(inputs) + len(targets) == length + 2 * s + 2


def test_reconstruct_detects_mismatch():
    inputs, targets = span_corruption(list(range(3, 60)), FIRST_SENTINEL, rng=0)
    with pytest.raises(ValueError):
        reconstruct(inputs, targets[1:], FIRST_SENTINEL)  # targets lose their first sentinel
    bad = [t if t != FIRST_SENTINEL else FIRST_SENTINEL - 50 for t in inputs]
    with pytest.raises(ValueError):
        reconstruct(bad, targets, FIRST_SENTINEL)


def test_span_corruption_is_deterministic():
    tokens = list(range(3, 300))
    assert span_corruption(tokens, FIRST_SENTINEL, rng=5) == span_corruption(tokens, FIRST_SENTINEL, rng=5)
    assert span_corruption(tokens, FIRST_SENTINEL, rng=5) != span_corruption(tokens, FIRST_SENTINEL, rng=6)


def test_too_many_spans_for_the_sentinels():
    with pytest.raises(ValueError, match="sentinels"):
        span_corruption(list(range(3, 3000)), FIRST_SENTINEL, rng=0, num_sentinels=100)
