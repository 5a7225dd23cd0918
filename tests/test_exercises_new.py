"""The exercises of the new kinds (predict, debug, experiment, capstone), proven like every check: each
passes on the reference solution, fails on the stub ("not done yet"), and fails on each plausible wrong
answer with a message naming the mistake. Each wrong answer names its check (and the words the check's
message must contain) in `@wrong(...)`; `CASES` gathers them into the shape tests/test_exercise_checks.py
reads: (check, reference solution, wrong answers), a wrong answer a function or a (function, hint) pair."""

import importlib
import inspect
import math
from unittest import mock

import torch

from t5edu.classroom.checks import ch00, ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09
from t5edu.classroom.solutions import ch02 as s02
from t5edu.classroom.solutions import ch03 as s03
from t5edu.classroom.solutions import ch05 as s05
from t5edu.classroom.solutions import ch06 as s06
from t5edu.classroom.solutions import ch07 as s07
from t5edu.classroom.solutions import ch08 as s08

WRONG = {}  # check -> its plausible wrong answers, in the order they stand below


def wrong(check, hint=None):
    """Registers a plausible wrong answer to `check`; `hint`: words the check's message must contain."""

    def register(answer):
        WRONG.setdefault(check, []).append(answer if hint is None else (answer, hint))
        return answer

    return register


def reference(check):
    """A check's reference solution: the function its argument names, from the chapter's solutions."""
    (name,) = inspect.signature(check.__wrapped__).parameters
    chapter = int(check.number.split(".")[0])
    return getattr(importlib.import_module(f"t5edu.classroom.solutions.ch{chapter:02d}"), name)


# -- wrong predictions: a predict exercise's answer is a value, so each wrong one is a row -------------------


def predicted(check, hint, name, value):
    """Registers a wrong prediction `value` for `check`, as a function named `name` that returns it."""

    def answer():
        return value

    answer.__name__ = answer.__qualname__ = name
    wrong(check, hint)(answer)


WRONG_PREDICTIONS = [  # (check, words its message must contain, name, the wrong value)
    (
        ch00.exercise_2,
        "one more sentinel",
        "target_no_final_sentinel",
        "<extra_id_0> for inviting <extra_id_1> last",
    ),
    (
        ch00.exercise_2,
        "its own sentinel",
        "target_one_sentinel",
        "<extra_id_0> for inviting <extra_id_0> last <extra_id_1>",
    ),
    (
        ch00.exercise_3,
        "one sentinel per span",
        "inputs_sentinel_per_word",
        "Thank you <extra_id_0> <extra_id_1> me to your party <extra_id_2> week .",
    ),
    (ch02.exercise_4, "one number per (query, key) pair", "shape_of_q", (2, 8, 5, 64)),
    (ch02.exercise_4, "head axis second", "shape_heads_third", (2, 5, 8, 7)),
    (ch02.exercise_4, "rows", "shape_transposed", (2, 8, 7, 5)),
    (ch02.exercise_5, "diagonal", "pairs_no_diagonal", 15),
    (ch02.exercise_5, "forbids", "pairs_all", 36),
    (ch03.exercise_4, "swapped", "neighbours_swapped", (17, 1)),
    (ch03.exercise_4, "upper half", "neighbours_same", (1, 1)),
    (ch03.exercise_5, "exact", "decoder_buckets_all_exact", 20),
    (ch03.exercise_5, "logarithmic", "decoder_buckets_16", 16),
    (ch08.exercise_5, "start token", "positions_no_start_token", (15, 6)),
    (ch08.exercise_5, "recomputes", "positions_same", (6, 6)),
    (ch04.exercise_4, "no bias", "norm_with_bias", 1024),
    (ch04.exercise_5, "two input projections", "ffn_two_matrices", 2 * 8 * 32),
    (ch04.exercise_5, "biases", "ffn_with_biases", 3 * 8 * 32 + 2 * 32 + 8),
    (ch05.exercise_4, "teacher forcing", "logits_last_only", (2, 100)),
    (ch05.exercise_4, "follow the target", "logits_follow_input", (2, 9, 100)),
    (ch05.exercise_5, "not per layer", "tables_per_layer", 6),
    (ch05.exercise_5, "own table", "tables_one", 1),
    (ch06.exercise_5, "round(noise_tokens", "noise_one_span_per_token", (15, 15)),
    (ch06.exercise_5, "noise_density", "noise_density_misread", (3, 1)),
    (ch07.exercise_5, "s = step + 1", "multipliers_off_by_one", (0.49, 0.5)),
    (ch07.exercise_5, "leaves out the warm-up", "multipliers_no_warmup", (0.5, 0.05)),
    (ch09.exercise_6, "recall", "rouge_recall", 0.5),
    (ch09.exercise_6, "precision", "rouge_precision", 1.0),
    (
        ch01.exercise_5,
        "left",
        "padded_left",
        ([[0, 8, 3, 1], [0, 0, 5, 1], [9, 9, 9, 1]], [[0, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]]),
    ),
    (
        ch01.exercise_5,
        "attention mask",
        "padded_mask_without_eos",
        ([[8, 3, 1, 0], [5, 1, 0, 0], [9, 9, 9, 1]], [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]]),
    ),
    (ch01.exercise_8, "only pads", "rows_truncated", (3, 3)),
    (ch04.exercise_8, "mean", "rms_as_layer_norm", (-1.0, 1.0)),
    (ch04.exercise_8, "Euclidean", "rms_as_unit_vector", (0.6, 0.8)),
    (ch05.exercise_8, "pad id", "decoder_inputs_keep_ignore", [0, 7, 1, -100]),
    (ch05.exercise_8, "prepends the start token", "decoder_inputs_unshifted", [7, 1, 0, 0]),
]
for row in WRONG_PREDICTIONS:
    predicted(*row)


# -- plausible wrong answers --------------------------------------------------------------------------------


@wrong(ch00.exercise_1, "0.2")
def stsb_one_decimal(s1, s2, score):
    return f"stsb sentence1: {s1} sentence2: {s2}", f"{score:.1f}"


@wrong(ch00.exercise_1)
def stsb_number(s1, s2, score):
    return f"stsb sentence1: {s1} sentence2: {s2}", round(score * 5) / 5


@wrong(ch00.exercise_4, "invalid")
def label_broken(text):
    return 1 if text == "positive" else 0


@wrong(ch00.exercise_4, "strip")
def label_no_strip(text):
    return {"positive": 1, "negative": 0}.get(text, -1)


@wrong(ch00.exercise_5, "distinct")
def distinct_counts_examples(n):
    from t5edu.data import synthetic_mixture

    counts = {}
    for row in synthetic_mixture(n, seed=0):
        counts[row["task"]] = counts.get(row["task"], 0) + 1
    return counts


@wrong(ch02.exercise_6, "broadcast")
def padding_bias_broken(attention_mask):
    return attention_mask * torch.finfo(torch.float32).min


@wrong(ch02.exercise_6, "inverted")
def padding_bias_inverted(attention_mask):
    return (attention_mask.float() * torch.finfo(torch.float32).min)[:, None, None, :]


@wrong(ch02.exercise_6, "(batch, 1, 1, L_k)")
def padding_bias_flat(attention_mask):
    return (1.0 - attention_mask.float()) * torch.finfo(torch.float32).min


@wrong(ch02.exercise_7, "no effect")
def entropy_ignores_scale(d, scale):
    return s02.attention_entropy(d, False)


@wrong(ch02.exercise_7)
def entropy_log2(d, scale):
    return s02.attention_entropy(d, scale) / math.log(2)


@wrong(ch02.exercise_7, "direction")
def entropy_scale_multiplies(d, scale):
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, d, generator=g), torch.randn(16, d, generator=g)
    w = torch.softmax(q @ k.T * (math.sqrt(d) if scale else 1.0), dim=-1)
    return float(-(w * w.clamp_min(1e-30).log()).sum(-1).mean())


@wrong(ch03.exercise_6, "offset")
def step_bias_broken(rel_bias, step):
    return rel_bias(1, step + 1)


@wrong(ch03.exercise_6)
def step_bias_last_row_of_square(rel_bias, step):
    return rel_bias(step + 1, step + 1)[:, :, :1, :]


@wrong(ch03.exercise_7, "use_bias")
def gap_ignores_bias(use_bias):
    return s03.permutation_gap(False)


@wrong(ch03.exercise_7, "reverse the output")
def gap_forgets_to_permute_output(use_bias):
    """The reference's own experiment, with the output left unreversed: attn(x reversed) - attn(x)."""
    from t5edu.attention import T5Attention

    outputs = []

    class Recorded(T5Attention):
        def forward(self, *args, **kwargs):
            outputs.append(super().forward(*args, **kwargs))
            return outputs[-1]

    with mock.patch("t5edu.attention.T5Attention", Recorded):
        s03.permutation_gap(use_bias)
    of_reversed_input, of_input = outputs  # the reference calls attention twice, in this order
    return float((of_reversed_input - of_input).abs().max())


@wrong(ch08.exercise_6, "pad_id")
def append_step_broken(sequences, next_tokens, finished, eos_id=1, pad_id=0):
    sequences = torch.cat([sequences, next_tokens[:, None]], dim=1)
    return sequences, finished | (next_tokens == eos_id)


@wrong(ch08.exercise_6, "EOS itself")
def append_step_pads_new_eos(sequences, next_tokens, finished, eos_id=1, pad_id=0):
    finished = finished | (next_tokens == eos_id)
    next_tokens = torch.where(finished, torch.full_like(next_tokens, pad_id), next_tokens)
    return torch.cat([sequences, next_tokens[:, None]], dim=1), finished


@wrong(ch08.exercise_7, "use_cache")
def cache_experiment_ignores_flag(model, input_ids, steps):
    result = s08.cache_experiment(model, input_ids, steps)
    return dict(result, positions_without_cache=result["positions_with_cache"])


@wrong(ch08.exercise_7)
def cache_experiment_counts_encoder(model, input_ids, steps):
    result = s08.cache_experiment(model, input_ids, steps)
    extra = input_ids.numel()
    return dict(result, positions_with_cache=result["positions_with_cache"] + extra,
                positions_without_cache=result["positions_without_cache"] + extra)


@wrong(ch04.exercise_6, "post-norm")
def sublayer_post_norm(x, norm, f):
    return norm(x + f(x))


@wrong(ch04.exercise_6, "unnormalised")
def sublayer_normalised_residual(x, norm, f):
    return norm(x) + f(norm(x))


@wrong(ch05.exercise_6, "swapped")
def tied_untied_swapped(vocab_size, d_model):
    return s05.tied_untied_parameters(vocab_size, d_model)[::-1]


@wrong(ch05.exercise_6, "tie_word_embeddings")
def tied_untied_flag_ignored(vocab_size, d_model):
    tied = s05.tied_untied_parameters(vocab_size, d_model)[0]
    return (tied, tied)


@wrong(ch06.exercise_6, "PYTHONHASHSEED")
def heldout_salted_hash(inputs):
    return hash(inputs) % 10 == 0


@wrong(ch06.exercise_6, "inputs differ")
def heldout_wrong_modulus(inputs):
    import zlib

    return zlib.crc32(inputs.encode("utf-8")) % 5 == 0


@wrong(ch06.exercise_7, "above 1")
def ratios_inverted(inputs_length=512):
    return [1 / r for r in s06.target_ratios(inputs_length)]


@wrong(ch06.exercise_7)
def ratios_input_over_raw(inputs_length=512):
    from t5edu.span_corruption import compute_input_and_target_lengths

    return [compute_input_and_target_lengths(inputs_length, d)[0] / inputs_length
            for d in (0.05, 0.15, 0.3, 0.5)]


@wrong(ch07.exercise_6, "its own norm")
def clip_per_parameter(parameters, max_norm):
    total = float(torch.sqrt(sum((p.grad ** 2).sum() for p in parameters)))
    for p in parameters:
        norm = p.grad.norm()
        if norm > max_norm:
            p.grad.mul_(max_norm / norm)
    return total


@wrong(ch07.exercise_6)
def clip_never_scales(parameters, max_norm):
    return float(torch.sqrt(sum((p.grad ** 2).sum() for p in parameters)))


@wrong(ch07.exercise_7, "not the parameters")
def state_counts_parameters(model):
    n = sum(p.numel() for p in model.parameters())
    return {"adamw": n, "adafactor": n}


@wrong(ch07.exercise_7, "direction")
def state_swapped(model):
    sizes = s07.optimizer_state_sizes(model)
    return {"adamw": sizes["adafactor"], "adafactor": sizes["adamw"]}


@wrong(ch09.exercise_5, "lost its EOS")
def truncate_after_eos(ids, max_length, eos_id=1):
    return [*ids, eos_id][:max_length]


@wrong(ch09.exercise_5, "counts toward max_length")
def truncate_too_long(ids, max_length, eos_id=1):
    return [*list(ids)[:max_length], eos_id]


@wrong(ch01.exercise_6, "leading space")
def pieces_broken(pieces):
    return "".join(pieces).replace("▁", " ")


@wrong(ch01.exercise_6, "strip()")
def pieces_strip(pieces):
    return "".join(pieces).replace("▁", " ").strip()


CASES = [(check, reference(check), answers) for check, answers in WRONG.items()]
