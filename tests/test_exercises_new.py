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


# -- plausible wrong answers --------------------------------------------------------------------------------


@wrong(ch00.exercise_1, "0.2")
def stsb_one_decimal(s1, s2, score):
    return f"stsb sentence1: {s1} sentence2: {s2}", f"{score:.1f}"


@wrong(ch00.exercise_1)
def stsb_number(s1, s2, score):
    return f"stsb sentence1: {s1} sentence2: {s2}", round(score * 5) / 5


@wrong(ch00.exercise_2, "one more sentinel")
def target_no_final_sentinel():
    return "<extra_id_0> for inviting <extra_id_1> last"


@wrong(ch00.exercise_2, "its own sentinel")
def target_one_sentinel():
    return "<extra_id_0> for inviting <extra_id_0> last <extra_id_1>"


@wrong(ch00.exercise_3, "one sentinel per span")
def inputs_sentinel_per_word():
    return "Thank you <extra_id_0> <extra_id_1> me to your party <extra_id_2> week ."


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


@wrong(ch02.exercise_4, "one number per (query, key) pair")
def shape_of_q():
    return (2, 8, 5, 64)


@wrong(ch02.exercise_4, "head axis second")
def shape_heads_third():
    return (2, 5, 8, 7)


@wrong(ch02.exercise_4, "rows")
def shape_transposed():
    return (2, 8, 7, 5)


@wrong(ch02.exercise_5, "diagonal")
def pairs_no_diagonal():
    return 15


@wrong(ch02.exercise_5, "forbids")
def pairs_all():
    return 36


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


@wrong(ch03.exercise_4, "swapped")
def neighbours_swapped():
    return (17, 1)


@wrong(ch03.exercise_4, "upper half")
def neighbours_same():
    return (1, 1)


@wrong(ch03.exercise_5, "exact")
def decoder_buckets_all_exact():
    return 20


@wrong(ch03.exercise_5, "logarithmic")
def decoder_buckets_16():
    return 16


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


@wrong(ch08.exercise_5, "start token")
def positions_no_start_token():
    return (15, 6)


@wrong(ch08.exercise_5, "recomputes")
def positions_same():
    return (6, 6)


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


@wrong(ch04.exercise_4, "no bias")
def norm_with_bias():
    return 1024


@wrong(ch04.exercise_5, "two input projections")
def ffn_two_matrices():
    return 2 * 8 * 32


@wrong(ch04.exercise_5, "biases")
def ffn_with_biases():
    return 3 * 8 * 32 + 2 * 32 + 8


@wrong(ch04.exercise_6, "post-norm")
def sublayer_post_norm(x, norm, f):
    return norm(x + f(x))


@wrong(ch04.exercise_6, "unnormalised")
def sublayer_normalised_residual(x, norm, f):
    return norm(x) + f(norm(x))


@wrong(ch05.exercise_4, "teacher forcing")
def logits_last_only():
    return (2, 100)


@wrong(ch05.exercise_4, "follow the target")
def logits_follow_input():
    return (2, 9, 100)


@wrong(ch05.exercise_5, "not per layer")
def tables_per_layer():
    return 6


@wrong(ch05.exercise_5, "own table")
def tables_one():
    return 1


@wrong(ch05.exercise_6, "swapped")
def tied_untied_swapped(vocab_size, d_model):
    return s05.tied_untied_parameters(vocab_size, d_model)[::-1]


@wrong(ch05.exercise_6, "tie_word_embeddings")
def tied_untied_flag_ignored(vocab_size, d_model):
    tied = s05.tied_untied_parameters(vocab_size, d_model)[0]
    return (tied, tied)


@wrong(ch06.exercise_5, "round(noise_tokens")
def noise_one_span_per_token():
    return (15, 15)


@wrong(ch06.exercise_5, "noise_density")
def noise_density_misread():
    return (3, 1)


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


@wrong(ch07.exercise_5, "s = step + 1")
def multipliers_off_by_one():
    return (0.49, 0.5)


@wrong(ch07.exercise_5, "leaves out the warm-up")
def multipliers_no_warmup():
    return (0.5, 0.05)


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


@wrong(ch09.exercise_6, "recall")
def rouge_recall():
    return 0.5


@wrong(ch09.exercise_6, "precision")
def rouge_precision():
    return 1.0


@wrong(ch01.exercise_5, "left")
def padded_left():
    return ([[0, 8, 3, 1], [0, 0, 5, 1], [9, 9, 9, 1]], [[0, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]])


@wrong(ch01.exercise_5, "attention mask")
def padded_mask_without_eos():
    return ([[8, 3, 1, 0], [5, 1, 0, 0], [9, 9, 9, 1]], [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]])


@wrong(ch01.exercise_6, "leading space")
def pieces_broken(pieces):
    return "".join(pieces).replace("▁", " ")


@wrong(ch01.exercise_6, "strip()")
def pieces_strip(pieces):
    return "".join(pieces).replace("▁", " ").strip()


@wrong(ch01.exercise_8, "only pads")
def rows_truncated():
    return (3, 3)


@wrong(ch04.exercise_8, "mean")
def rms_as_layer_norm():
    return (-1.0, 1.0)


@wrong(ch04.exercise_8, "Euclidean")
def rms_as_unit_vector():
    return (0.6, 0.8)


@wrong(ch05.exercise_8, "pad id")
def decoder_inputs_keep_ignore():
    return [0, 7, 1, -100]


@wrong(ch05.exercise_8, "prepends the start token")
def decoder_inputs_unshifted():
    return [7, 1, 0, 0]


CASES = [(check, reference(check), answers) for check, answers in WRONG.items()]
