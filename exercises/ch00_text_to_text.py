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
# # Exercises for Chapter 00 — Every task is text to text
#
# Warm-ups on the idea the whole book rests on: every task, written as text in and text out. Replace
# each `raise NotImplementedError(...)` line with your code (or write your answer where it says *Your
# answer here*), run the cell, then run the check cell below it: it prints one line, ✅ or ❌ with what
# went wrong.
#
# **Read first:** [Chapter 00 — Every task is text to text](../chapters/00_text_to_text.ipynb). These exercises use its sections: *0.1 One model, one format*; *0.2 The architecture at a glance*; *0.3 A map of the book*.

# %%
from t5edu.classroom.checks import ch00

# %% [markdown]
# ## Exercise 0.1 — A regression task as text
#
# Chapter 00, the section on one model and one format, writes classification as text: the label is a
# word. The T5 paper goes one step further and writes a *regression* task as text. STS-B scores how
# similar two sentences are, from 0 to 5; T5 rounds the score to the nearest multiple of 0.2 and writes
# it with one decimal, so that the task becomes a choice among 26 strings (`"0.0"`, `"0.2"`, ...,
# `"5.0"`).
#
# Write `stsb_to_text(sentence1, sentence2, score)` returning the pair `(inputs, targets)`:
# inputs `"stsb sentence1: <sentence1> sentence2: <sentence2>"`, targets the rounded score as text.

# %%
def stsb_to_text(sentence1, sentence2, score):
    """An STS-B example as (inputs, targets) text, the score rounded to the nearest 0.2."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch00.exercise_1(stsb_to_text)

# %% [markdown]
# ## Exercise 0.2 — Predict a span-corruption target
#
# Chapter 00's tour of the architecture mentions the pre-training task, *span corruption*: some spans
# of the text are dropped from the input and replaced by sentinels `<extra_id_0>`, `<extra_id_1>`,
# ...; the target lists each dropped span after its sentinel and ends with one more sentinel.
# (Chapter 06 builds it for real.)
#
# Below, the words at positions 2, 3 and 8 (counting from 0) of the sentence are the noise. Without
# running anything, write the **target** the model must produce, words separated by single spaces.

# %%
WORDS = "Thank you for inviting me to your party last week .".split()
NOISE = [2, 3, 8]


# %%
def predicted_target():
    """The span-corruption target for WORDS with NOISE dropped, as one string."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch00.exercise_2(predicted_target)

# %% [markdown]
# ## Exercise 0.3 — Predict the input
#
# Same example: now write the **input** the encoder sees.

# %%
def predicted_inputs():
    """The span-corruption input for WORDS with NOISE dropped, as one string."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch00.exercise_3(predicted_inputs)

# %% [markdown]
# ## Exercise 0.4 — Debug: reading a prediction back
#
# A text-to-text model answers a classification task with text, and the text has to be turned back into
# a label to compute an accuracy. Here is the version many people write first:

# %%
def label_from_text_broken(text):
    return 1 if text == "positive" else 0


print([label_from_text_broken(t) for t in ["positive", "negative", " positive", "great movie"]])

# %% [markdown]
# It scores `" positive"` (a stray space) as negative, and it scores text that is not a label at all
# (`"great movie"`) as *negative* too: a model that never learned the format still gets every negative
# example right. Write the fixed `label_from_text`: strip surrounding white space, return 1 for
# `"positive"`, 0 for `"negative"`, and -1 for anything else (an invalid answer, counted as wrong).

# %%
def label_from_text(text):
    """1 for "positive", 0 for "negative" (surrounding spaces ignored), -1 for anything else."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch00.exercise_4(label_from_text)

# %% [markdown]
# ## Exercise 0.5 — Experiment: how many different answers?
#
# Chapter 06 trains on a synthetic mixture of five tasks (`t5edu.data.synthetic_mixture`). Some are
# really classification (few possible targets), some are generation (almost every target is new), yet
# the model and the loss are the same for all. Measure it: return a dict `{task: number of distinct
# targets}` over the first `n` examples of `synthetic_mixture(n, seed=0)`.

# %%
def distinct_targets(n):
    """{task: how many different target strings} in the first n synthetic examples (seed 0)."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch00.exercise_5(distinct_targets)

# %% [markdown]
# ## Exercise 0.6 — Explain: why one model for all tasks?
#
# In three to five sentences: what does writing every task as text in, text out buy T5, compared with
# one model (or one output head) per task? Name one thing it costs. Refer to Chapter 00, the section on
# one model and one format, and to your measurement in Exercise 0.5.

# %% [markdown]
# *Your answer here.*
