"""Chapter 08 exercise checks: each passes on the reference solution, fails on the student stub and on
plausible wrong answers, and prints one friendly line."""

import pytest
import torch

from t5edu.classroom.checks import ch08
from t5edu.classroom.solutions import ch08 as solutions


def stub(*args, **kwargs):
    raise NotImplementedError("Your turn: replace this line with your solution.")


# -- plausible wrong answers -----------------------------------------------------------------------

def score_counting_the_start_token(token_ids, token_logprobs, length_penalty=1.0):
    return sum(token_logprobs) / len(token_ids) ** length_penalty


def score_without_the_exponent(token_ids, token_logprobs, length_penalty=1.0):
    return sum(token_logprobs) / (len(token_ids) - 1) * length_penalty


def banned_every_ngram_end(sequence, n):
    if len(sequence) < n:
        return []
    return sorted({sequence[i + n - 1] for i in range(len(sequence) - n + 1)})


def banned_suffix_off_by_one(sequence, n):
    if len(sequence) < n:
        return []
    suffix = tuple(sequence[len(sequence) - n:])  # n tokens instead of n - 1
    return sorted({sequence[i + n - 1] for i in range(len(sequence) - n + 1)
                   if tuple(sequence[i:i + n - 1]) == suffix[1:] or tuple(sequence[i:i + n]) == suffix})


def nucleus_stops_before_crossing(logits, top_p):
    probs, order = torch.sort(logits.softmax(-1), dim=-1, descending=True)
    keep_sorted = probs.cumsum(-1) <= top_p  # drops the token that crosses top_p
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))


def nucleus_in_place(logits, top_p):
    kept = solutions.nucleus_filter(logits, top_p)
    logits.copy_(kept)
    return logits


def reorder_without_batch_offset(cache, parents):
    rows = parents.flatten()
    for layer in cache:
        layer["self"]["k"] = layer["self"]["k"].index_select(0, rows)
        layer["self"]["v"] = layer["self"]["v"].index_select(0, rows)


def reorder_cross_too(cache, parents):
    batch, beams = parents.shape
    rows = (parents + torch.arange(batch)[:, None] * beams).flatten()
    for layer in cache:
        for kind in ("self", "cross"):
            layer[kind]["k"] = layer[kind]["k"].index_select(0, rows)
            layer[kind]["v"] = layer[kind]["v"].index_select(0, rows)


def reorder_keys_only(cache, parents):
    batch, beams = parents.shape
    rows = (parents + torch.arange(batch)[:, None] * beams).flatten()
    for layer in cache:
        layer["self"]["k"] = layer["self"]["k"].index_select(0, rows)


CASES = [
    (ch08.exercise_1, solutions.length_penalised_score,
     [score_counting_the_start_token, score_without_the_exponent]),
    (ch08.exercise_2, solutions.banned_next_tokens, [banned_every_ngram_end, banned_suffix_off_by_one]),
    (ch08.exercise_3, solutions.nucleus_filter, [nucleus_stops_before_crossing, nucleus_in_place]),
    (ch08.exercise_4, solutions.reorder_beam_cache, [reorder_without_batch_offset, reorder_cross_too,
                                                     reorder_keys_only]),
]
IDS = [c[0].number for c in CASES]


@pytest.mark.parametrize("check, solution, wrong", CASES, ids=IDS)
def test_passes_on_reference_solution(check, solution, wrong, capsys):
    result = check.run(solution)
    assert result.passed, result.message
    check(solution)
    out = capsys.readouterr().out
    assert out.startswith("✅") and out.count("\n") == 1


@pytest.mark.parametrize("check, solution, wrong", CASES, ids=IDS)
def test_fails_on_stub(check, solution, wrong, capsys):
    result = check.run(stub)
    assert not result.passed and "not done yet" in result.message
    check(stub)
    assert capsys.readouterr().out.startswith("❌")


@pytest.mark.parametrize("check, solution, wrong", CASES, ids=IDS)
def test_fails_on_plausible_wrong_answers(check, solution, wrong):
    for answer in wrong:
        result = check.run(answer)
        assert not result.passed, answer.__name__
        assert result.message.startswith("❌") and "Traceback" not in result.message


def test_messages_say_what_was_tried():
    message = ch08.exercise_1.run(score_counting_the_start_token).message
    assert "length_penalised_score([0, 7, 9, 1]" in message and "expected" in message
    message = ch08.exercise_2.run(banned_every_ngram_end).message
    assert "banned_next_tokens(" in message and "expected" in message
    assert "changed its input" in ch08.exercise_3.run(nucleus_in_place).message
    assert "cross-attention" in ch08.exercise_4.run(reorder_cross_too).message
