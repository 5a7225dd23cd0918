"""Every exercise check, proven three ways: it passes on the reference solution (printing one friendly
line), fails on the student stub ("not done yet"), and fails on each plausible wrong answer with a
message that names the mistake where the case gives a hint. The cases live beside each chapter's own
check tests (`CASES` in tests/test_exercises_chNN.py): (check, reference solution, wrong answers),
where a wrong answer is a function or a (function, words the message must contain) pair."""

import importlib

import pytest

CASE_MODULES = ["test_exercises_ch01", "test_exercises_ch02_05", "test_exercises_ch06",
                "test_exercises_ch08", "test_exercises_ch09", "test_exercises_new"]
CASES = [case for name in CASE_MODULES for case in importlib.import_module(name).CASES]
IDS = [check.number for check, _, _ in CASES]


def stub(*args, **kwargs):
    """What the student notebook holds before the exercise is done."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


def test_every_check_has_one_case():
    assert len(IDS) == len(set(IDS)), "an exercise is listed twice"


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
    assert wrong, "every check needs at least one plausible wrong answer"
    for answer in wrong:
        answer, hint = answer if isinstance(answer, tuple) else (answer, "")
        result = check.run(answer)
        assert not result.passed, answer.__name__
        assert result.message.startswith("❌") and "Traceback" not in result.message, result.message
        assert hint in result.message, (answer.__name__, hint, result.message)
