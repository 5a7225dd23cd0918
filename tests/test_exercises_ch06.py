"""Chapter 06 exercise checks: each passes on the reference solution, fails on the student stub and
on plausible wrong answers, and prints one friendly line."""

import numpy as np

from t5edu.classroom.checks import ch06
from t5edu.classroom.solutions import ch06 as solutions

# -- plausible wrong answers -----------------------------------------------------------------------

def sst2_labels_swapped(row):
    return "sst2 sentence: " + row["sentence"].strip(), ("positive", "negative")[row["label"]]


def sst2_without_strip(row):
    return "sst2 sentence: " + row["sentence"], ("negative", "positive")[row["label"]]


def segments_may_be_empty(num_items, num_segments, rng):
    return rng.multinomial(num_items, [1 / num_segments] * num_segments).tolist()


def segments_not_uniform(num_items, num_segments, rng):
    """Positive and random, but a multinomial on top of ones favours balanced splits."""
    return (1 + rng.multinomial(num_items - num_segments, [1 / num_segments] * num_segments)).tolist()


def segments_not_random(num_items, num_segments, rng):
    base, extra = divmod(num_items, num_segments)
    return [base + (i < extra) for i in range(num_segments)]


def sentinels_counting_up(tokens, noise_mask, first_sentinel_id):
    out, k, previous = [], 0, False
    for t, m in zip(tokens, noise_mask, strict=True):
        if m and not previous:
            out.append(first_sentinel_id + k)
            k += 1
        elif not m:
            out.append(t)
        previous = m
    return out


def sentinel_for_every_noise_token(tokens, noise_mask, first_sentinel_id):
    out, k = [], 0
    for t, m in zip(tokens, noise_mask, strict=True):
        if m:
            out.append(first_sentinel_id - k)
            k += 1
        else:
            out.append(t)
    return out


def lengths_without_eos(inputs_length, noise_density=0.15, mean_noise_span_length=3.0):
    def lengths(n):
        k = round(n * noise_density)
        s = round(k / mean_noise_span_length)
        return n - k + s, k + s

    n = inputs_length - 1
    while lengths(n + 1)[0] <= inputs_length:
        n += 1
    return n, lengths(n)[1]


def lengths_one_too_many(inputs_length, noise_density=0.15, mean_noise_span_length=3.0):
    n, t = solutions.span_corruption_lengths(inputs_length, noise_density, mean_noise_span_length)
    return n + 1, t


CASES = [
    (ch06.exercise_1, solutions.sst2_to_text, [sst2_labels_swapped, sst2_without_strip]),
    (ch06.exercise_2, solutions.segment_lengths, [segments_may_be_empty, segments_not_uniform,
                                                  segments_not_random]),
    (ch06.exercise_3, solutions.replace_noise_spans, [sentinels_counting_up, sentinel_for_every_noise_token]),
    (ch06.exercise_4, solutions.span_corruption_lengths, [lengths_without_eos, lengths_one_too_many]),
]


def test_messages_say_what_is_wrong():
    assert "positive" in ch06.exercise_1.run(sst2_labels_swapped).message
    assert "at least one item" in ch06.exercise_2.run(segments_may_be_empty).message
    assert "not uniform" in ch06.exercise_2.run(segments_not_uniform).message
    assert "random" in ch06.exercise_2.run(segments_not_random).message
    assert "expected" in ch06.exercise_3.run(sentinels_counting_up).message
    assert "(568, 114)" in ch06.exercise_4.run(lengths_without_eos).message


def stub(*args, **kwargs):
    raise NotImplementedError("Your turn: replace this line with your solution.")


def test_calling_a_check_prints_one_line(capsys):
    ch06.exercise_4(solutions.span_corruption_lengths)
    ch06.exercise_3(stub)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("✅ Exercise 6.4") and lines[1].startswith("❌ Exercise 6.3")


def test_reference_solutions_agree_with_the_book():
    from t5edu.span_corruption import compute_input_and_target_lengths, noise_span_to_unique_sentinel

    assert solutions.span_corruption_lengths(512) == compute_input_and_target_lengths(512) == (568, 114)
    mask = [True, True, False, False, True, False]
    assert solutions.replace_noise_spans([10, 11, 12, 13, 14, 15], mask, 999) == \
        noise_span_to_unique_sentinel([10, 11, 12, 13, 14, 15], mask, 999)
    assert sum(solutions.segment_lengths(10, 4, np.random.default_rng(0))) == 10
