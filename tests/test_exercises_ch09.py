"""Chapter 09 exercise checks: each passes on the reference solution, fails on the student stub and
on plausible wrong answers, and prints one friendly line."""

import re
from collections import Counter

from t5edu.classroom.checks import ch09
from t5edu.classroom.solutions import ch09 as solutions

# -- plausible wrong answers -----------------------------------------------------------------------

def unmasked(labels, pad_id=0):  # the blog: padding counted in the loss
    return labels.clone()


def masks_eos_too(labels, pad_id=0):
    return labels.masked_fill(labels <= max(pad_id, 1), -100)


def in_place(labels, pad_id=0):
    labels[labels == pad_id] = -100
    return labels


def mask_after_first_pad_only_zero(labels, pad_id=0):  # ignores pad_id
    return labels.masked_fill(labels == 0, -100)


def reversed_direction(task, row):
    if task == "translate":
        return "translate German to English: " + row["translation"]["de"], row["translation"]["en"]
    return solutions.format_example(task, row)


def swapped_labels(task, row):
    if task == "classify":
        return "sst2 sentence: " + row["sentence"], ("positive", "negative")[row["label"]]
    return solutions.format_example(task, row)


def no_space_after_colon(task, row):
    inputs, targets = solutions.format_example(task, row)
    return inputs.replace(": ", ":", 1), targets


def power_not_root(sizes, cap=None, temperature=1.0):
    weights = {t: min(n, cap or n) ** temperature for t, n in sizes.items()}
    return {t: w / sum(weights.values()) for t, w in weights.items()}


def cap_ignored(sizes, cap=None, temperature=1.0):
    return solutions.mixing_rates(sizes, None, temperature)


def not_normalised(sizes, cap=None, temperature=1.0):
    return {t: min(n, cap or n) ** (1 / temperature) for t, n in sizes.items()}


def set_overlap(prediction, reference):
    def words(text):
        return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()

    p, r = words(prediction), words(reference)
    overlap = len(set(p) & set(r))
    if not overlap:
        return 0.0
    precision, recall = overlap / len(p), overlap / len(r)
    return 2 * precision * recall / (precision + recall)


def precision_only(prediction, reference):
    p, r = Counter(prediction.lower().split()), Counter(reference.lower().split())
    return sum((p & r).values()) / max(sum(p.values()), 1)


def whitespace_tokens(prediction, reference):
    p, r = Counter(prediction.lower().split()), Counter(reference.lower().split())
    overlap = sum((p & r).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(p.values()), overlap / sum(r.values())
    return 2 * precision * recall / (precision + recall)


CASES = [
    (ch09.exercise_1, solutions.mask_label_padding,
     [unmasked, masks_eos_too, in_place, mask_after_first_pad_only_zero]),
    (ch09.exercise_2, solutions.format_example, [reversed_direction, swapped_labels, no_space_after_colon]),
    (ch09.exercise_3, solutions.mixing_rates, [power_not_root, cap_ignored, not_normalised]),
    (ch09.exercise_4, solutions.rouge1_f1, [set_overlap, precision_only, whitespace_tokens]),
]


def test_wrong_answer_messages_say_what_was_tried():
    message = ch09.exercise_1.run(unmasked).message
    assert "mask_label_padding([[37, 12, 9, 1], [54, 1, 0, 0]], pad_id=0)" in message and "-100" in message
    assert "changed its input" in ch09.exercise_1.run(in_place).message
    message = ch09.exercise_2.run(reversed_direction).message
    assert "translate English to German: The house is small." in message
    message = ch09.exercise_3.run(power_not_root).message
    assert "temperature=2.0" in message and "expected" in message
    message = ch09.exercise_4.run(set_overlap).message
    assert "rouge1_f1(" in message and "expected: 0.833333" in message
