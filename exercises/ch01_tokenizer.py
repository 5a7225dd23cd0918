# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercises for Chapter 01 — The tokenizer
#
# Short exercises, from warm-ups to a careful implementation. In each, replace the `raise NotImplementedError(...)` line with your code,
# run the cell, then run the check cell below it: it prints one line, ✅ or ❌ with what went wrong.
# Chapter 01 (`chapters/01_tokenizer.ipynb`) has everything you need.
#
# **Read first:** [Chapter 01 — The tokenizer](../chapters/01_tokenizer.ipynb). These exercises use its sections: *1.1 Why subwords*; *1.2 Training a unigram model with T5's conventions*; *1.3 Unigram segmentation from scratch: Viterbi*; *1.5 Sentinels and special ids*; *1.6 Batches: padding, truncation, attention masks*; *1.7 The `Tokenizer`, one piece at a time*.

# %%
from t5edu.classroom.checks import ch01

# %% [markdown]
# ## Exercise 1.1 — Sentinel ids
#
# T5 appends its 100 sentinels `<extra_id_0>` … `<extra_id_99>` **after** the SentencePiece
# vocabulary, counting down from the top: `<extra_id_0>` has the highest id. With a full
# vocabulary of `vocab_size` ids (sentinels included; T5: 32,100), return the id of `<extra_id_i>`.

# %%
def sentinel_id(i, vocab_size):
    """Id of the sentinel `<extra_id_i>` in a vocabulary of `vocab_size` ids (sentinels included)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch01.exercise_1(sentinel_id)

# %% [markdown]
# ## Exercise 1.2 — Viterbi on a toy lattice
#
# `scores` maps each piece of a toy vocabulary to its log-probability. Return the segmentation of
# `text` into pieces of `scores` with the **highest total score**, as a list of strings. Every single
# character of `text` is a piece, so a segmentation always exists; the checks have no ties.
#
# Hint: `best[j]` = best score of a segmentation of `text[:j]`; remember where its last piece starts.
# Greedy "longest piece first" is *not* the answer — the check has a case where it loses.

# %%
def best_segmentation(text, scores):
    """The highest-scoring way to write `text` as a sequence of pieces from `scores` (piece -> log p)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch01.exercise_2(best_segmentation)

# %% [markdown]
# ## Exercise 1.3 — Truncate, append EOS, pad
#
# Given a batch of id lists (without EOS), build T5's rectangle of width `max_length`: append
# `eos_id` to each sequence; if it is then longer than `max_length`, cut the *text* so that the
# sequence ends with `eos_id` and is exactly `max_length` long; pad with `pad_id` on the right.
# Return `(input_ids, attention_mask)` as lists of lists (mask: 1 for real ids, 0 for padding).

# %%
def pad_and_truncate(sequences, max_length, pad_id=0, eos_id=1):
    """Append EOS, truncate to `max_length` keeping EOS last, right-pad; return (ids, mask)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch01.exercise_3(pad_and_truncate)

# %% [markdown]
# ## Exercise 1.4 — Reading a span-corruption target
#
# In T5's pre-training (Chapter 06) the decoder's target looks like
# `<extra_id_0> a block <extra_id_1> of code </s>`: each sentinel is followed by the text it stands
# for. Given such target ids and a `t5edu.Tokenizer`, return a dict
# `{sentinel number: decoded text}` — here `{0: "a block", 1: "of code"}`. Stop at `</s>` or
# `<pad>`. Use the tokenizer (`tok.is_sentinel`, `tok.vocab_size`, `tok.decode`, …).

# %%
from t5edu.tokenizer import train_default_tokenizer

tok = train_default_tokenizer()  # the book's tokenizer, trained in about a second
target = tok.encode("<extra_id_0> a block <extra_id_1> of code")
print(target)
print(tok.tokenize("<extra_id_0> a block <extra_id_1> of code") + ["</s>"])

# %%
def spans_from_target(ids, tok):
    """{k: text after <extra_id_k>} for the ids of a span-corruption target."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch01.exercise_4(spans_from_target)

# %% [markdown]
# ## Exercise 1.5 — Predict: a padded batch
#
# Chapter 01's section on batches pads with `t5edu.tokenizer.pad_batch`. Before running it: what does
# `pad_batch([[8, 3, 1], [5, 1], [9, 9, 9, 1]])` return? Return the pair `(ids, attention_mask)` as
# lists of lists.

# %%
def predicted_padded_batch():
    """What pad_batch([[8, 3, 1], [5, 1], [9, 9, 9, 1]]) returns."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch01.exercise_5(predicted_padded_batch)

# %% [markdown]
# ## Exercise 1.6 — Debug: pieces back to text
#
# SentencePiece marks the start of each word with `▁` (U+2581). Turning pieces back into text looks
# easy:

# %%
def pieces_to_text_broken(pieces):
    return "".join(pieces).replace("▁", " ")


print(repr(pieces_to_text_broken(["▁The", "▁cat", "s", "▁sat", "."])))

# %% [markdown]
# The text gains a space at the front, so `decode(encode(text)) != text`. Write the fixed
# `pieces_to_text(pieces)`: the same, without the single leading space that the first word's `▁` adds
# (and only that one: text that truly starts with spaces is not this exercise's concern).

# %%
def pieces_to_text(pieces):
    """Join SentencePiece pieces into text: ▁ becomes a space, minus the first word's leading space."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch01.exercise_6(pieces_to_text)

# %% [markdown]
# ## Exercise 1.7 — Explain: why subwords?
#
# In three to five sentences, using Chapter 01's section on why subwords: what goes wrong with a
# vocabulary of whole words, and with a vocabulary of single characters, and how does a unigram
# subword vocabulary of a few thousand pieces avoid both?

# %% [markdown]
# *Your answer here.*

# %% [markdown]
# ## Exercise 1.8 — Predict: padding to a length that is too short
#
# `t5edu.tokenizer.pad_batch(sequences, length=...)` from Chapter 01's section on batches pads every
# sequence to `length`. What are the lengths of the two rows of ids that
# `pad_batch([[4, 1], [5, 6, 7, 8, 1]], length=3)` returns? Read the code in the chapter, then return
# the pair of ints.

# %%
def predicted_row_lengths():
    """Lengths of the two id rows of pad_batch([[4, 1], [5, 6, 7, 8, 1]], length=3)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch01.exercise_8(predicted_row_lengths)
