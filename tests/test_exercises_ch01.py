"""Chapter 01 exercise checks: each passes on the reference solution, fails on the student stub and
on a plausible wrong answer, and prints one friendly line."""


from t5edu.classroom.checks import ch01
from t5edu.classroom.solutions import ch01 as solutions

# -- plausible wrong answers -----------------------------------------------------------------------

def sentinel_off_by_one(i, vocab_size):
    return vocab_size - i


def sentinel_counting_up(i, vocab_size):
    return vocab_size - 100 + i


def greedy_longest_match(text, scores):
    pieces, i = [], 0
    while i < len(text):
        j = max(j for j in range(i + 1, len(text) + 1) if text[i:j] in scores)
        pieces.append(text[i:j])
        i = j
    return pieces


def fewest_pieces(text, scores):
    best = {0: []}
    for j in range(1, len(text) + 1):
        options = [best[i] + [text[i:j]] for i in range(j) if i in best and text[i:j] in scores]
        best[j] = min(options, key=len)
    return best[len(text)]


def truncate_after_eos(sequences, max_length, pad_id=0, eos_id=1):
    ids = [([*list(s), eos_id])[:max_length] for s in sequences]
    return ([s + [pad_id] * (max_length - len(s)) for s in ids],
            [[1] * len(s) + [0] * (max_length - len(s)) for s in ids])


def mask_of_ones(sequences, max_length, pad_id=0, eos_id=1):
    ids, _ = solutions.pad_and_truncate(sequences, max_length, pad_id, eos_id)
    return ids, [[1] * max_length for _ in ids]


def sentinel_counted_from_the_bottom(ids, tok):
    """Reads sentinel id t as span t - num_pieces: <extra_id_0>, the top id, becomes the last span."""
    sentinels = tok.vocab_size - tok.num_pieces
    return {sentinels - 1 - k: text for k, text in solutions.spans_from_target(ids, tok).items()}


def ignores_eos(ids, tok):
    """Stops only at padding: what follows </s> is read into the last span."""

    class WithoutEos:
        eos_id = None  # no token id equals it

        def __getattr__(self, name):
            return getattr(tok, name)

    return solutions.spans_from_target(ids, WithoutEos())


CASES = [
    (ch01.exercise_1, solutions.sentinel_id, [sentinel_off_by_one, sentinel_counting_up]),
    (ch01.exercise_2, solutions.best_segmentation, [greedy_longest_match, fewest_pieces]),
    (ch01.exercise_3, solutions.pad_and_truncate, [truncate_after_eos, mask_of_ones]),
    (ch01.exercise_4, solutions.spans_from_target, [sentinel_counted_from_the_bottom, ignores_eos]),
]


def test_wrong_answer_messages_say_what_was_tried():
    message = ch01.exercise_1.run(sentinel_off_by_one).message
    assert "sentinel_id(0, vocab_size=32100)" in message and "32099" in message and "32100" in message
    message = ch01.exercise_2.run(greedy_longest_match).message
    assert "expected" in message and "score" in message
    message = ch01.exercise_3.run(truncate_after_eos).message
    assert "input_ids" in message and "[5, 6, 1]" in message


def test_checks_catch_malformed_answers():
    assert not ch01.exercise_2.run(lambda text, scores: list(text)).passed  # valid but not best
    assert not ch01.exercise_2.run(lambda text, scores: [text]).passed  # not in the vocabulary
    assert not ch01.exercise_3.run(lambda seqs, n, pad_id=0, eos_id=1: [[0] * n for _ in seqs]).passed

    def mutating(sequences, max_length, pad_id=0, eos_id=1):
        for s in sequences:
            s.append(eos_id)
            del s[max_length - 1:-1]
        return solutions.pad_and_truncate([s[:-1] for s in sequences], max_length, pad_id, eos_id)

    assert not ch01.exercise_3.run(mutating).passed
