"""The exercises of the new kinds (predict, debug, experiment, capstone), proven like every check: each
passes on the reference solution, fails on the stub ("not done yet"), and fails on each plausible wrong
answer with a message naming the mistake. `CASES` has the shape tests/test_exercise_checks.py reads on
main: (check, reference solution, wrong answers), a wrong answer a function or a (function, hint) pair."""

import math

import torch

from t5edu.classroom.checks import ch00, ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09
from t5edu.classroom.solutions import ch00 as s00
from t5edu.classroom.solutions import ch01 as s01
from t5edu.classroom.solutions import ch02 as s02
from t5edu.classroom.solutions import ch03 as s03
from t5edu.classroom.solutions import ch04 as s04
from t5edu.classroom.solutions import ch05 as s05
from t5edu.classroom.solutions import ch06 as s06
from t5edu.classroom.solutions import ch07 as s07
from t5edu.classroom.solutions import ch08 as s08
from t5edu.classroom.solutions import ch09 as s09

# -- plausible wrong answers --------------------------------------------------------------------------------


def stsb_one_decimal(s1, s2, score):
    return f"stsb sentence1: {s1} sentence2: {s2}", f"{score:.1f}"


def stsb_number(s1, s2, score):
    return f"stsb sentence1: {s1} sentence2: {s2}", round(score * 5) / 5


def target_no_final_sentinel():
    return "<extra_id_0> for inviting <extra_id_1> last"


def target_one_sentinel():
    return "<extra_id_0> for inviting <extra_id_0> last <extra_id_1>"


def inputs_sentinel_per_word():
    return "Thank you <extra_id_0> <extra_id_1> me to your party <extra_id_2> week ."


def label_broken(text):
    return 1 if text == "positive" else 0


def label_no_strip(text):
    return {"positive": 1, "negative": 0}.get(text, -1)


def distinct_counts_examples(n):
    from t5edu.data import synthetic_mixture

    counts = {}
    for row in synthetic_mixture(n, seed=0):
        counts[row["task"]] = counts.get(row["task"], 0) + 1
    return counts


def shape_of_q():
    return (2, 8, 5, 64)


def shape_heads_third():
    return (2, 5, 8, 7)


def shape_transposed():
    return (2, 8, 7, 5)


def pairs_no_diagonal():
    return 15


def pairs_all():
    return 36


def padding_bias_broken(attention_mask):
    return attention_mask * torch.finfo(torch.float32).min


def padding_bias_inverted(attention_mask):
    return (attention_mask.float() * torch.finfo(torch.float32).min)[:, None, None, :]


def padding_bias_flat(attention_mask):
    return (1.0 - attention_mask.float()) * torch.finfo(torch.float32).min


def entropy_ignores_scale(d, scale):
    return s02.attention_entropy(d, False)


def entropy_log2(d, scale):
    return s02.attention_entropy(d, scale) / math.log(2)


def entropy_scale_multiplies(d, scale):
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, d, generator=g), torch.randn(16, d, generator=g)
    w = torch.softmax(q @ k.T * (math.sqrt(d) if scale else 1.0), dim=-1)
    return float(-(w * w.clamp_min(1e-30).log()).sum(-1).mean())


def neighbours_swapped():
    return (17, 1)


def neighbours_same():
    return (1, 1)


def decoder_buckets_all_exact():
    return 20


def decoder_buckets_16():
    return 16


def step_bias_broken(rel_bias, step):
    return rel_bias(1, step + 1)


def step_bias_last_row_of_square(rel_bias, step):
    return rel_bias(step + 1, step + 1)[:, :, :1, :]


def gap_ignores_bias(use_bias):
    return s03.permutation_gap(False)


def gap_forgets_to_permute_output(use_bias):
    from t5edu.attention import T5Attention
    from t5edu.relative_bias import RelativePositionBias

    torch.manual_seed(0)
    attn = T5Attention(16, 2, 8)
    rel = RelativePositionBias(2, num_buckets=8, max_distance=16)
    with torch.no_grad():
        rel.weight.copy_(torch.randn(8, 2, generator=torch.Generator().manual_seed(1)))
        x = torch.randn(1, 6, 16, generator=torch.Generator().manual_seed(2))
        bias = rel(6, 6) if use_bias else None
        return float((attn(x.flip(1), bias=bias) - attn(x, bias=bias)).abs().max())


def positions_no_start_token():
    return (15, 6)


def positions_same():
    return (6, 6)


def append_step_broken(sequences, next_tokens, finished, eos_id=1, pad_id=0):
    sequences = torch.cat([sequences, next_tokens[:, None]], dim=1)
    return sequences, finished | (next_tokens == eos_id)


def append_step_pads_new_eos(sequences, next_tokens, finished, eos_id=1, pad_id=0):
    finished = finished | (next_tokens == eos_id)
    next_tokens = torch.where(finished, torch.full_like(next_tokens, pad_id), next_tokens)
    return torch.cat([sequences, next_tokens[:, None]], dim=1), finished


def cache_experiment_ignores_flag(model, input_ids, steps):
    result = s08.cache_experiment(model, input_ids, steps)
    return dict(result, positions_without_cache=result["positions_with_cache"])


def cache_experiment_counts_encoder(model, input_ids, steps):
    result = s08.cache_experiment(model, input_ids, steps)
    extra = input_ids.numel()
    return dict(result, positions_with_cache=result["positions_with_cache"] + extra,
                positions_without_cache=result["positions_without_cache"] + extra)


def norm_with_bias():
    return 1024


def ffn_two_matrices():
    return 2 * 8 * 32


def ffn_with_biases():
    return 3 * 8 * 32 + 2 * 32 + 8


def sublayer_post_norm(x, norm, f):
    return norm(x + f(x))


def sublayer_normalised_residual(x, norm, f):
    return norm(x) + f(norm(x))


def logits_last_only():
    return (2, 100)


def logits_follow_input():
    return (2, 9, 100)


def tables_per_layer():
    return 6


def tables_one():
    return 1


def tied_untied_swapped(vocab_size, d_model):
    return s05.tied_untied_parameters(vocab_size, d_model)[::-1]


def tied_untied_flag_ignored(vocab_size, d_model):
    tied = s05.tied_untied_parameters(vocab_size, d_model)[0]
    return (tied, tied)


def noise_one_span_per_token():
    return (15, 15)


def noise_density_misread():
    return (3, 1)


def heldout_salted_hash(inputs):
    return hash(inputs) % 10 == 0


def heldout_wrong_modulus(inputs):
    import zlib

    return zlib.crc32(inputs.encode("utf-8")) % 5 == 0


def ratios_inverted(inputs_length=512):
    return [1 / r for r in s06.target_ratios(inputs_length)]


def ratios_input_over_raw(inputs_length=512):
    from t5edu.span_corruption import compute_input_and_target_lengths

    return [compute_input_and_target_lengths(inputs_length, d)[0] / inputs_length
            for d in (0.05, 0.15, 0.3, 0.5)]


def multipliers_off_by_one():
    return (0.49, 0.5)


def multipliers_no_warmup():
    return (0.5, 0.05)


def clip_per_parameter(parameters, max_norm):
    total = float(torch.sqrt(sum((p.grad ** 2).sum() for p in parameters)))
    for p in parameters:
        norm = p.grad.norm()
        if norm > max_norm:
            p.grad.mul_(max_norm / norm)
    return total


def clip_never_scales(parameters, max_norm):
    return float(torch.sqrt(sum((p.grad ** 2).sum() for p in parameters)))


def state_counts_parameters(model):
    n = sum(p.numel() for p in model.parameters())
    return {"adamw": n, "adafactor": n}


def state_swapped(model):
    sizes = s07.optimizer_state_sizes(model)
    return {"adamw": sizes["adafactor"], "adafactor": sizes["adamw"]}


def truncate_after_eos(ids, max_length, eos_id=1):
    return [*ids, eos_id][:max_length]


def truncate_too_long(ids, max_length, eos_id=1):
    return [*list(ids)[:max_length], eos_id]


def rouge_recall():
    return 0.5


def rouge_precision():
    return 1.0


def padded_left():
    return ([[0, 8, 3, 1], [0, 0, 5, 1], [9, 9, 9, 1]], [[0, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]])


def padded_mask_without_eos():
    return ([[8, 3, 1, 0], [5, 1, 0, 0], [9, 9, 9, 1]], [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]])


def pieces_broken(pieces):
    return "".join(pieces).replace("▁", " ")


def pieces_strip(pieces):
    return "".join(pieces).replace("▁", " ").strip()


def rows_truncated():
    return (3, 3)


def rms_as_layer_norm():
    return (-1.0, 1.0)


def rms_as_unit_vector():
    return (0.6, 0.8)


def decoder_inputs_keep_ignore():
    return [0, 7, 1, -100]


def decoder_inputs_unshifted():
    return [7, 1, 0, 0]


CASES = [
    (ch00.exercise_1, s00.stsb_to_text, [(stsb_one_decimal, "0.2"), stsb_number]),
    (ch00.exercise_2, s00.predicted_target, [(target_no_final_sentinel, "one more sentinel"),
                                             (target_one_sentinel, "its own sentinel")]),
    (ch00.exercise_3, s00.predicted_inputs, [(inputs_sentinel_per_word, "one sentinel per span")]),
    (ch00.exercise_4, s00.label_from_text, [(label_broken, "invalid"), (label_no_strip, "strip")]),
    (ch00.exercise_5, s00.distinct_targets, [(distinct_counts_examples, "distinct")]),
    (ch01.exercise_5, s01.predicted_padded_batch, [(padded_left, "left"),
                                                   (padded_mask_without_eos, "attention mask")]),
    (ch01.exercise_6, s01.pieces_to_text, [(pieces_broken, "leading space"), (pieces_strip, "strip()")]),
    (ch01.exercise_8, s01.predicted_row_lengths, [(rows_truncated, "only pads")]),
    (ch04.exercise_8, s04.predicted_rms_output, [(rms_as_layer_norm, "mean"),
                                                 (rms_as_unit_vector, "Euclidean")]),
    (ch05.exercise_8, s05.predicted_decoder_inputs, [(decoder_inputs_keep_ignore, "pad id"),
                                                     (decoder_inputs_unshifted, "prepends the start token")]),
    (ch02.exercise_4, s02.predicted_scores_shape, [(shape_of_q, "one number per (query, key) pair"),
                                                   (shape_heads_third, "head axis second"),
                                                   (shape_transposed, "rows")]),
    (ch02.exercise_5, s02.predicted_allowed_pairs, [(pairs_no_diagonal, "diagonal"), (pairs_all, "forbids")]),
    (ch02.exercise_6, s02.padding_bias_fixed, [(padding_bias_broken, "broadcast"),
                                               (padding_bias_inverted, "inverted"),
                                               (padding_bias_flat, "(batch, 1, 1, L_k)")]),
    (ch02.exercise_7, s02.attention_entropy, [(entropy_ignores_scale, "no effect"), entropy_log2,
                                              (entropy_scale_multiplies, "direction")]),
    (ch03.exercise_4, s03.predicted_neighbour_buckets, [(neighbours_swapped, "swapped"),
                                                        (neighbours_same, "upper half")]),
    (ch03.exercise_5, s03.predicted_decoder_buckets, [(decoder_buckets_all_exact, "exact"),
                                                      (decoder_buckets_16, "logarithmic")]),
    (ch03.exercise_6, s03.step_bias, [(step_bias_broken, "offset"), step_bias_last_row_of_square]),
    (ch03.exercise_7, s03.permutation_gap, [(gap_ignores_bias, "use_bias"),
                                            (gap_forgets_to_permute_output, "reverse the output")]),
    (ch04.exercise_4, s04.predicted_norm_parameters, [(norm_with_bias, "no bias")]),
    (ch04.exercise_5, s04.predicted_gated_ffn_parameters, [(ffn_two_matrices, "two input projections"),
                                                           (ffn_with_biases, "biases")]),
    (ch04.exercise_6, s04.pre_norm_sublayer, [(sublayer_post_norm, "post-norm"),
                                              (sublayer_normalised_residual, "unnormalised")]),
    (ch05.exercise_4, s05.predicted_logits_shape, [(logits_last_only, "teacher forcing"),
                                                   (logits_follow_input, "follow the target")]),
    (ch05.exercise_5, s05.predicted_bias_tables, [(tables_per_layer, "not per layer"),
                                                  (tables_one, "own table")]),
    (ch05.exercise_6, s05.tied_untied_parameters, [(tied_untied_swapped, "swapped"),
                                                   (tied_untied_flag_ignored, "tie_word_embeddings")]),
    (ch06.exercise_5, s06.predicted_noise_counts, [(noise_one_span_per_token, "round(noise_tokens"),
                                                   (noise_density_misread, "noise_density")]),
    (ch06.exercise_6, s06.is_heldout_fixed, [(heldout_salted_hash, "PYTHONHASHSEED"),
                                             (heldout_wrong_modulus, "inputs differ")]),
    (ch06.exercise_7, s06.target_ratios, [(ratios_inverted, "above 1"), ratios_input_over_raw]),
    (ch07.exercise_5, s07.predicted_multipliers, [(multipliers_off_by_one, "s = step + 1"),
                                                  (multipliers_no_warmup, "leaves out the warm-up")]),
    (ch07.exercise_6, s07.clip_global_norm, [(clip_per_parameter, "its own norm"), clip_never_scales]),
    (ch07.exercise_7, s07.optimizer_state_sizes, [(state_counts_parameters, "not the parameters"),
                                                  (state_swapped, "direction")]),
    (ch08.exercise_5, s08.predicted_decoder_positions, [(positions_no_start_token, "start token"),
                                                        (positions_same, "recomputes")]),
    (ch08.exercise_6, s08.append_step, [(append_step_broken, "pad_id"),
                                        (append_step_pads_new_eos, "EOS itself")]),
    (ch08.exercise_7, s08.cache_experiment, [(cache_experiment_ignores_flag, "use_cache"),
                                             cache_experiment_counts_encoder]),
    (ch09.exercise_5, s09.truncate_with_eos, [(truncate_after_eos, "lost its EOS"),
                                              (truncate_too_long, "counts toward max_length")]),
    (ch09.exercise_6, s09.predicted_rouge1, [(rouge_recall, "recall"), (rouge_precision, "precision")]),
]
