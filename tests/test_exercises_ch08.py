"""Chapter 08 exercise checks: each passes on the reference solution, fails on the student stub and on
plausible wrong answers, and prints one friendly line."""

import torch

from t5edu.classroom.checks import ch08
from t5edu.classroom.solutions import ch08 as solutions

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


# -- 8.9 capstone: beam search with one plausible mistake each ---------------------------------------

def beam_variant(model, input_ids, num_beams, max_new_tokens, length_penalty=1.0, normalise=True,
                 pool_from=None, eos_runs=False, keep_finished_running=False):
    """Exercise 8.9's reference with one mistake switched on (see the wrappers below)."""
    config = model.config
    start, eos, pad = config.decoder_start_token_id, config.eos_token_id, config.pad_token_id
    best = []
    with torch.no_grad():
        for row in input_ids:
            ids = row[None]
            mask = (ids != pad).long()
            encoded = model.encode(ids, mask)
            beams, beam_scores = [[start]], torch.zeros(1)
            pool = []
            for length in range(1, max_new_tokens + 1):
                rows = len(beams)
                logits = model(encoder_hidden_states=encoded.expand(rows, -1, -1),
                               attention_mask=mask.expand(rows, -1),
                               decoder_input_ids=torch.tensor(beams)).logits[:, -1].float()
                scores = torch.log_softmax(logits, dim=-1) + beam_scores[:, None]
                vocab = scores.shape[-1]
                top_scores, top_index = torch.topk(scores.view(-1), 2 * num_beams)
                next_beams, next_scores = [], []
                lim = num_beams if pool_from is None else pool_from
                for rank, (score, index) in enumerate(zip(top_scores, top_index.tolist(), strict=True)):
                    tokens = beams[index // vocab] + [index % vocab]
                    ended = (tokens[-1] == eos and not eos_runs) or length == max_new_tokens
                    if ended:
                        if rank < lim:
                            norm = length ** length_penalty if normalise else 1.0
                            pool.append((float(score / norm), tokens))
                            pool.sort(key=lambda e: -e[0])
                            pool = pool[:num_beams]
                        if keep_finished_running and len(next_beams) < num_beams and length < max_new_tokens:
                            next_beams.append(tokens)
                            next_scores.append(score)
                    elif len(next_beams) < num_beams:
                        next_beams.append(tokens)
                        next_scores.append(score)
                if length == max_new_tokens or not next_beams:
                    break
                beams, beam_scores = next_beams, torch.stack(next_scores)
                norm = length ** length_penalty if normalise else 1.0
                if len(pool) == num_beams and float(beam_scores[0] / norm) <= pool[-1][0]:
                    break
            best.append(pool[0][1])
    longest = max(len(t) for t in best)
    return torch.tensor([t + [pad] * (longest - len(t)) for t in best])


def beam_without_length_normalisation(model, input_ids, num_beams, max_new_tokens, length_penalty=1.0):
    return beam_variant(model, input_ids, num_beams, max_new_tokens, length_penalty, normalise=False)


def beam_pool_from_all_candidates(model, input_ids, num_beams, max_new_tokens, length_penalty=1.0):
    return beam_variant(model, input_ids, num_beams, max_new_tokens, length_penalty, pool_from=10**9)


def beam_finished_keep_running(model, input_ids, num_beams, max_new_tokens, length_penalty=1.0):
    return beam_variant(model, input_ids, num_beams, max_new_tokens, length_penalty,
                        keep_finished_running=True)


def beam_eos_never_finishes(model, input_ids, num_beams, max_new_tokens, length_penalty=1.0):
    return beam_variant(model, input_ids, num_beams, max_new_tokens, length_penalty, eos_runs=True)


def beam_greedy(model, input_ids, num_beams, max_new_tokens, length_penalty=1.0):
    return beam_variant(model, input_ids, 1, max_new_tokens, length_penalty)


CASES = [
    (ch08.exercise_1, solutions.length_penalised_score,
     [score_counting_the_start_token, score_without_the_exponent]),
    (ch08.exercise_2, solutions.banned_next_tokens, [banned_every_ngram_end, banned_suffix_off_by_one]),
    (ch08.exercise_3, solutions.nucleus_filter, [nucleus_stops_before_crossing, nucleus_in_place]),
    (ch08.exercise_4, solutions.reorder_beam_cache, [reorder_without_batch_offset, reorder_cross_too,
                                                     reorder_keys_only]),
    (ch08.exercise_9, solutions.beam_search_from_scratch,
     [(beam_without_length_normalisation, "sum / length ** length_penalty"),
      (beam_finished_keep_running, "goes on after EOS"), (beam_eos_never_finishes, "goes on after EOS"),
      (beam_pool_from_all_candidates, "expected"), (beam_greedy, "greedy")]),
]


def test_messages_say_what_was_tried():
    message = ch08.exercise_1.run(score_counting_the_start_token).message
    assert "length_penalised_score([0, 7, 9, 1]" in message and "expected" in message
    message = ch08.exercise_2.run(banned_every_ngram_end).message
    assert "banned_next_tokens(" in message and "expected" in message
    assert "changed its input" in ch08.exercise_3.run(nucleus_in_place).message
    assert "cross-attention" in ch08.exercise_4.run(reorder_cross_too).message
