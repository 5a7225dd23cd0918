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
# # Exercises for Chapter 07 — Training
#
# Exercises on the parts of a training loop that are easy to get subtly wrong. In each,
# replace the `raise NotImplementedError(...)` line with your code, run the cell, then run the check
# cell below it: it prints one line, ✅ or ❌ with what went wrong. Chapter 07
# (`chapters/07_train.ipynb`) has everything you need.
#
# **Read first:** [Chapter 07 — Training](../chapters/07_train.ipynb). These exercises use its sections: *7.2 The loss: cross-entropy on the target tokens*; *7.4 Optimizers: AdamW and Adafactor*; *7.5 Learning-rate schedules*; *7.6 One training step: accumulation and clipping*; *7.7 Data order you can resume*.

# %%
from t5edu.classroom.checks import ch07

# %% [markdown]
# ## Exercise 7.1 — The inverse square-root schedule
#
# Return the learning rate of optimizer step `step` (counting from 1) under T5's schedule with a
# linear warm-up: it rises linearly to `peak_lr` at step `warmup` (step `s < warmup` gets
# `peak_lr * s / warmup`), then decays as `peak_lr * sqrt(warmup / s)`.

# %%
import math

import torch.nn.functional as F


def inverse_sqrt_lr(step, peak_lr, warmup):
    """Learning rate at optimizer step `step` (1, 2, ...): linear warm-up, then 1/sqrt decay."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
print([round(inverse_sqrt_lr(s, 1e-2, 4), 5) for s in (1, 2, 4, 16)])
ch07.exercise_1(inverse_sqrt_lr)

# %% [markdown]
# ## Exercise 7.2 — Cross-entropy that ignores padding
#
# `logits` has shape `(batch, length, vocab)`, `labels` shape `(batch, length)`, with `-100` where
# the target is padding. Return the mean cross-entropy over the **real** target tokens only, as a
# scalar tensor. Write it with `log_softmax` and `gather`, without `F.cross_entropy`.
#
# Hint: `gather` cannot index with -100; replace it by any valid id first, and mask afterwards.

# %%
def masked_cross_entropy(logits, labels):
    """Mean of -log p(label) over the positions where labels != -100."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
import torch

torch.manual_seed(0)
print(masked_cross_entropy(torch.randn(2, 3, 5), torch.tensor([[1, 2, -100], [4, -100, -100]])))
ch07.exercise_2(masked_cross_entropy)

# %% [markdown]
# ## Exercise 7.3 — Gradient accumulation, exactly
#
# One optimizer step is split into `micro_batches`, each a dict with `input_ids` and `labels`
# (`-100` on padding); `model(input_ids)` returns logits `(batch, length, vocab)`. Run forward and
# backward on each micro-batch so that, at the end, every parameter's `.grad` holds exactly the
# gradient of the **mean loss per target token over all micro-batches together** — what one big
# batch would give. Return that mean loss as a float. (The parameters' `.grad` start at `None`.)
#
# Careful: the micro-batches hold different numbers of real tokens. Averaging the per-batch means
# is not the same thing.

# %%
def accumulate_gradients(model, micro_batches):
    """Backward over all micro-batches; .grad ends as the gradient of the per-token mean loss."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch07.exercise_3(accumulate_gradients)

# %% [markdown]
# ## Exercise 7.4 — Where to resume
#
# A run reads `grad_accum` micro-batches per optimizer step, walking through epochs of
# `batches_per_epoch` micro-batches each (epochs and batches counted from 0). After `step` optimizer
# steps it is killed. Return `(epoch, batch)`: the epoch and the index within that epoch of the
# first micro-batch the resumed run must read.

# %%
def resume_position(step, grad_accum, batches_per_epoch):
    """(epoch, batch index within the epoch) of the next micro-batch after `step` optimizer steps."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
print(resume_position(7, 2, 5))
ch07.exercise_4(resume_position)

# %% [markdown]
# ## Exercise 7.5 — Predict: the learning rate around warm-up
#
# Chapter 07's schedules take `step`, the number of optimizer steps already taken, and compute the
# multiplier for the step about to be taken, `s = step + 1`. With T5's inverse square root and
# `warmup=100` (`t5edu.train.Schedule("inverse_sqrt", warmup=100)`), what are the multipliers at
# `step=49` and at `step=399`? Return the pair of floats.

# %%
def predicted_multipliers():
    """(Schedule('inverse_sqrt', warmup=100)(49), ...(399))."""
    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch07.exercise_5(predicted_multipliers)

# %% [markdown]
# ## Exercise 7.6 — Debug: clipping each parameter on its own
#
# Chapter 07's training step clips the gradient by its *global* norm. This version is a common slip:

# %%
def clip_broken(parameters, max_norm):
    for p in parameters:
        norm = p.grad.norm()
        if norm > max_norm:
            p.grad.mul_(max_norm / norm)


# %% [markdown]
# It changes the direction of the gradient (each tensor is scaled differently). Write the fixed
# `clip_global_norm(parameters, max_norm)`: compute the norm of all gradients together (the square root
# of the sum of every gradient's squared entries); if it exceeds `max_norm`, scale every gradient by
# `max_norm / (norm + 1e-6)`; return the norm before clipping as a float. Do not call
# `torch.nn.utils.clip_grad_norm_`.

# %%
def clip_global_norm(parameters, max_norm):
    """Scale all gradients together so that their global norm is at most max_norm; return the old norm."""
    import torch

    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
ch07.exercise_6(clip_global_norm)

# %% [markdown]
# ## Exercise 7.7 — Experiment: what the optimizer remembers
#
# Chapter 07's section on optimizers says Adafactor keeps far less state than AdamW. Measure it: for
# `name` in `"adamw"` and `"adafactor"`, make `t5edu.train.make_optimizer(model, name)`, take one step
# on the loss `sum((p ** 2).sum() for p in model.parameters())`, and count the optimizer's state: the
# sum of `t.numel()` over every tensor in `optimizer.state[p].values()`, over all parameters. Zero the
# gradients between the two runs. Return `{"adamw": count, "adafactor": count}`.

# %%
def optimizer_state_sizes(model):
    """How many numbers each optimizer keeps after one step: {"adamw": n, "adafactor": n}."""
    import torch

    raise NotImplementedError("Your turn: replace this line with your solution.")


# %%
from t5edu.model import T5, T5Config

_ = torch.manual_seed(0)
small = T5(T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4))
sizes = optimizer_state_sizes(small)
print(f"parameters {sum(p.numel() for p in small.parameters()):,}; state: AdamW {sizes['adamw']:,}, "
      f"Adafactor {sizes['adafactor']:,}")
ch07.exercise_7(optimizer_state_sizes)

# %% [markdown]
# ## Exercise 7.8 — Explain: sum, then divide once
#
# Chapter 07's loss returns the *sum* of the token losses and the number of tokens, and the training
# step divides once by the number of target tokens in the whole accumulated batch. In two to four
# sentences: why not average the loss of each micro-batch and then average those means?

# %% [markdown]
# *Your answer here.*
