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
# # Chapter 07 — Training
#
# We have a model (Chapters 02–05), a tokenizer (Chapter 01) and data (Chapter 06). This chapter
# writes the loop that turns random weights into a model that answers: a plain `for` loop, no
# framework, with everything a real run needs and nothing hidden. It ends with the book's own model,
# trained from nothing on the synthetic task mixture, answering held-out questions.
#
# **What you will build**
# - the loss over target tokens, AdamW and T5's Adafactor, the inverse-square-root schedule,
#   gradient clipping and gradient accumulation — one `train_step` (`t5edu.train`);
# - checkpoints that survive a crash and a `--resume` that continues **bit for bit** (`t5edu.checkpoint`);
# - greedy decoding and the metrics (exact match, ROUGE, BLEU) to evaluate what the model learned
#   (`t5edu.metrics`);
# - `train(...)`, the loop that runs the same on a CPU, a GPU, or many GPUs under `torchrun` — and a
#   0.69 M-parameter T5 trained with it to about 99 % held-out exact match in a few minutes of one CPU core.
#
# **Why T5 does it this way.** Raffel et al. (2020, §3.1.2 "Training") train every model with
# teacher forcing and a cross-entropy loss on the target tokens, with **Adafactor** (Shazeer & Stern,
# 2018) — an Adam-like optimizer whose second-moment estimate of a matrix is factored into a row and a
# column vector, so the optimizer state of an 11-billion-parameter model fits next to it — and an
# **inverse-square-root** learning rate, $1/\sqrt{\max(n, k)}$ with $k = 10^4$ warm-up steps. Batches hold
# $2^{16}$ target tokens (128 sequences of 512), far more than one device holds, hence gradient
# accumulation and data parallelism. We keep all of that, and use AdamW (Loshchilov & Hutter, 2019) with a
# linear decay for the small demo, where it learns faster.

# %%
#| default_exp train

# %%
#| export
import contextlib
import functools
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from t5edu.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    unwrap,
)
from t5edu.distributed import barrier, global_batches, init_distributed, shard
from t5edu.files import atomic_write

# %%
#| export checkpoint
import json
import os
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from t5edu.files import atomic_write, fsync_path, make_temp_dir

# %%
#| export metrics
import torch

from t5edu.checkpoint import unwrap
from t5edu.extras import require

# %%
import copy
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

_ = torch.manual_seed(0)
torch.set_num_threads(1)  # tiny matrices: one thread is faster than two, and never waits for a busy core
WORK = Path(tempfile.mkdtemp(prefix="t5edu-ch07-"))  # the runs of this chapter go here

# %% [markdown]
# ## 7.1 Where to train: device and precision
#
# The loop asks for the best device there is: an NVIDIA GPU (`cuda`), an Apple GPU (`mps`), else the
# CPU. On a GPU two switches make training several times faster at no cost in quality:
#
# - **bfloat16 autocast.** Matrix products run in bf16 (8 exponent bits like float32, 8 mantissa bits),
#   while the weights, the optimizer and the loss stay in float32. T5 was trained in bf16 on TPUs, so
#   it is at home there. (Float16 is another story: T5's activations overflow its range — Chapter 04's
#   `clamp_fp16` is the patch Hugging Face uses.)
# - **TF32.** The float32 products that remain may use TensorFloat-32 on Ampere and newer GPUs.
#
# On a CPU both are off: `autocast_for` returns a context that does nothing.

# %%
#| export
def pick_device(prefer=None):
    """The best device available: CUDA, then Apple's MPS, then the CPU (or `prefer`, if given)."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_for(device, precision="auto"):
    """A context manager for the forward pass: bfloat16 autocast on a GPU that supports it, else nothing.

    `precision` is "auto" (bf16 where supported), "bf16" or "fp32"."""
    device = torch.device(device)
    if precision == "fp32" or device.type != "cuda":
        return contextlib.nullcontext()
    if precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def enable_tf32():
    """Let float32 matrix products on Ampere-or-newer GPUs use TensorFloat-32 (10-bit mantissa inputs)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


# %% [markdown]
# Two wrappers will sit around the model later: `DistributedDataParallel` (§7.11) keeps it as
# `.module`, and `torch.compile` as `._orig_mod`. Saving, loading and decoding want the bare model, so
# one small function takes the wrappers off. It lives in `t5edu.checkpoint`, the lowest of this
# chapter's three modules, so that the other two can import it.

# %%
#| export checkpoint
def unwrap(model):
    """The bare model inside DistributedDataParallel (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        inner = [getattr(model, name, None) for name in ("module", "_orig_mod")]
        inner = [m for m in inner if isinstance(m, torch.nn.Module)]
        if not inner:
            return model
        model = inner[0]


# %%
device = pick_device()
assert device.type in {"cuda", "mps", "cpu"}
device = torch.device("cpu")  # this chapter runs on the CPU, so that its numbers are the same everywhere
with autocast_for(device):
    assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32  # no autocast on the CPU
layer = torch.nn.Linear(2, 2)
assert unwrap(layer) is layer and unwrap(torch.compile(layer)) is layer
print("training on", device.type)

# %% [markdown]
# ## 7.2 The loss: cross-entropy on the target tokens
#
# T5 is trained with teacher forcing: the decoder reads the target shifted right by one (starting
# with the pad id, Chapter 05) and predicts every target token at once. The loss is the cross-entropy
# of those predictions. In a batch, targets have different lengths; the collator (Chapter 06) pads
# them with the label **-100**, which `cross_entropy` ignores.
#
# We return the **sum** over tokens and the **count**, not the mean. The mean over a batch is
# what we want in the end, but which batch? With gradient accumulation and with several processes,
# one optimizer step sees several micro-batches, each with its own number of real tokens. Averaging
# per micro-batch and then averaging the averages would weight a token in a short batch more than one
# in a long batch. Summing everywhere and dividing once, by the tokens of the whole step, is exact.

# %%
#| export
IGNORE_INDEX = -100


def token_loss_sum(logits, labels):
    """Summed cross-entropy over the target tokens, and how many there are.

    Positions whose label is -100 (padding) contribute nothing. Returning the *sum* rather than the
    mean lets the caller divide by the number of tokens in the whole (accumulated, distributed) batch."""
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, int((labels != IGNORE_INDEX).sum())


# %% [markdown]
# **Check.** On a small batch, the sum divided by the count is PyTorch's mean, and the padded
# positions change nothing, whatever logits sit there.

# %%
logits = torch.randn(2, 4, 11)
labels = torch.tensor([[5, 3, 1, -100], [7, 1, -100, -100]])
total, count = token_loss_sum(logits, labels)
assert count == 5
assert torch.allclose(total / count, F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1)))
scrambled = logits.clone()
scrambled[labels == -100] = 100.0
assert torch.allclose(token_loss_sum(scrambled, labels)[0], total)
print(f"loss per token {total.item() / count:.4f} over {count} target tokens")

# %% [markdown]
# ## 7.3 The model and the data
#
# Until §7.15 the chapter trains a deliberately tiny T5 on the synthetic multi-task mixture of
# Chapter 06, so that every cell runs in seconds. The tokenizer is trained on the task's words, and
# Chapter 06's `featurize` turns rows of text into token ids.

# %%
from t5edu.data import TextToTextCollator, featurize, synthetic_mixture, synthetic_tokenizer_corpus
from t5edu.config import T5Config
from t5edu.model import T5
from t5edu.tokenizer import Tokenizer

train_rows = synthetic_mixture(1000, seed=0, split="train")
tokenizer = Tokenizer.train(synthetic_tokenizer_corpus(n=1000, prose=False), vocab_size=200)
features = featurize(list(train_rows), tokenizer)
collate = TextToTextCollator(pad_id=tokenizer.pad_id)

config = T5Config(vocab_size=tokenizer.vocab_size, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                  relative_attention_num_buckets=16, relative_attention_max_distance=32, dropout_rate=0.0)
_ = torch.manual_seed(0)
model = T5(config)
print(f"{len(features)} training examples, e.g. {train_rows[0]['inputs']!r} -> {train_rows[0]['targets']!r}")
print(f"vocabulary {tokenizer.vocab_size}, model {sum(p.numel() for p in model.parameters()):,} parameters")


# %% [markdown]
# ## 7.4 Optimizers: AdamW and Adafactor
#
# **AdamW** keeps two running averages per parameter (of the gradient and of its square) and
# decays weights separately from the gradient step. **Adafactor** (Shazeer & Stern, 2018), the
# optimizer T5 was trained with, saves memory: for a matrix it keeps only the row and column sums of
# the squared-gradient average (a rank-one factorisation) and no first moment. PyTorch ships it as
# `torch.optim.Adafactor`; its `lr` caps the *relative* step size, which is scaled by the size of
# each parameter (the RMS of its entries).
#
# We decay only matrices: the RMS-norm scales are vectors and should stay near one.

# %%
#| export
def make_optimizer(model, name="adamw", lr=1e-3, weight_decay=0.0):
    """AdamW or Adafactor over the model's parameters; weight decay only on matrices (not on norm scales)."""
    params = [p for p in model.parameters() if p.requires_grad]
    matrices = [p for p in params if p.dim() >= 2]
    vectors = [p for p in params if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": weight_decay}]
    if vectors:
        groups.append({"params": vectors, "weight_decay": 0.0})
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    if name == "adafactor":
        return torch.optim.Adafactor(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}: use 'adamw' or 'adafactor'")


# %% [markdown]
# **Check.** After one step, AdamW holds two full-size tensors for each matrix; Adafactor holds
# one row vector and one column vector.

# %%
def optimizer_state_numbers(opt_name):
    net = copy.deepcopy(model)
    opt = make_optimizer(net, opt_name, lr=1e-3)
    batch = collate(features[:4])
    token_loss_sum(net(**batch).logits, batch["labels"])[0].backward()
    opt.step()
    return sum(t.numel() for s in opt.state.values() for t in s.values()
               if torch.is_tensor(t) and t.dim() > 0)


n_params = sum(p.numel() for p in model.parameters())
adamw_numbers, adafactor_numbers = optimizer_state_numbers("adamw"), optimizer_state_numbers("adafactor")
assert adamw_numbers == 2 * n_params
assert adafactor_numbers < n_params / 4
print(f"parameters {n_params:,}; optimizer state: AdamW {adamw_numbers:,} numbers, "
      f"Adafactor {adafactor_numbers:,}")

# %% [markdown]
# ## 7.5 Learning-rate schedules
#
# T5 used the **inverse square root**: constant for the first $w$ steps, then proportional to
# $1/\sqrt{\text{step}}$ (the paper: $1/\sqrt{\max(n, 10^4)}$). We warm up linearly instead of
# holding constant — with AdamW a cold start at full rate can blow up — and then follow
# $\sqrt{w/\text{step}}$, so the peak is the `lr` you ask for. Linear and cosine decay to zero at
# the last step are the usual alternatives. A schedule is a multiplier of the peak rate; PyTorch's
# `LambdaLR` applies it. It is a small dataclass rather than a `lambda`, because `LambdaLR` can save
# the fields of an object in its `state_dict` but not a lambda.

# %%
#| export
@dataclass
class Schedule:
    """The learning-rate multiplier after `step` optimizer steps (for `torch.optim.lr_scheduler.LambdaLR`).

    kind: "inverse_sqrt" (T5), "linear", "cosine" or "constant"; all warm up linearly over `warmup` steps.
    A dataclass, not a lambda, so that the scheduler's state_dict can save it."""

    kind: str = "inverse_sqrt"
    warmup: int = 100
    total: int = 1000
    final_ratio: float = 0.0

    def __call__(self, step):
        s = step + 1  # the step about to be taken, counting from 1
        w = max(self.warmup, 1)
        if s < w:
            return s / w
        if self.kind == "constant":
            return 1.0
        if self.kind == "inverse_sqrt":
            return math.sqrt(w / s)
        progress = min(1.0, (s - w) / max(1, self.total - w))
        if self.kind == "linear":
            return 1.0 - (1.0 - self.final_ratio) * progress
        if self.kind == "cosine":
            return self.final_ratio + (1.0 - self.final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        raise ValueError(f"unknown schedule {self.kind!r}")


def make_scheduler(optimizer, kind="inverse_sqrt", warmup=100, total=1000, final_ratio=0.0):
    """A LambdaLR scheduler following `Schedule(kind, warmup, total, final_ratio)` times each group's lr."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, Schedule(kind, warmup, total, final_ratio))


# %% [markdown]
# **Check.** By hand: with $w = 100$, step 1 gets $1/100$ of the peak, step 100 the peak, step 400
# half of it ($\sqrt{100/400}$); cosine is at half the peak midway through its decay.

# %%
t5 = Schedule("inverse_sqrt", warmup=100, total=1000)
assert math.isclose(t5(0), 0.01) and t5(99) == 1.0 and math.isclose(t5(399), 0.5)
cos = Schedule("cosine", warmup=100, total=1000)
assert math.isclose(cos(549), 0.5) and cos(999) == 0.0
lin = Schedule("linear", warmup=100, total=1000)
assert math.isclose(lin(549), 0.5)

steps = range(1000)
fig, ax = plt.subplots(figsize=(6, 3))
for kind in ("inverse_sqrt", "linear", "cosine", "constant"):
    ax.plot(steps, [Schedule(kind, 100, 1000)(s) for s in steps], label=kind)
ax.set_xlabel("optimizer step")
ax.set_ylabel("lr / peak lr")
ax.legend()
ax.set_title("Figure 7.1: learning-rate schedules (warm-up 100 steps)")
plt.show()

# %% [markdown]
# *Figure 7.1 — Every schedule climbs linearly to the peak during warm-up; T5's inverse square root
# then decays slowly and never reaches zero, while linear and cosine decay reach zero at the last step.*

# %% [markdown]
# ## 7.6 One training step: accumulation and clipping
#
# `train_step` takes the micro-batches of one optimizer step. It counts the target tokens of all
# of them first (and, with several processes, of all processes), then runs forward and backward on
# each micro-batch with its loss sum divided by that one count. Gradients add up in `.grad`, so after
# the last micro-batch they are exactly the gradient of the mean loss over the whole step.
# Then **gradient clipping** rescales the gradient if its global norm exceeds `clip_norm` (1.0): a
# rare bad batch cannot throw the weights far. Then the optimizer and the schedule take their step.
# A loss or gradient that is not a finite number (a learning rate far too high, bad data) stops the
# step *before* the optimizer touches the weights, with a `FloatingPointError`.

# %%
fig, ax = plt.subplots(figsize=(8, 3.2))
ax.set_xlim(0, 10)
ax.set_ylim(0, 4)
ax.axis("off")


def box(x, y, w, h, text, color):
    ax.add_patch(plt.Rectangle((x, y), w, h, facecolor=color, edgecolor="black"))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)


def arrow(x0, y0, x1, y1):
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="->"))


for k in range(3):
    y = 2.9 - 1.2 * k
    box(0.1, y, 2.0, 0.8, f"micro-batch {k + 1}\n{[31, 12, 20][k]} target tokens", "#dbe9f6")
    box(2.9, y, 2.3, 0.8, f"forward + backward\nof loss sum / N", "#fde2c8")
    arrow(2.1, y + 0.4, 2.9, y + 0.4)
    arrow(5.2, y + 0.4, 6.0, 1.9)
box(6.0, 1.4, 1.7, 1.0, ".grad adds up\nN = 63 tokens", "#e4f2d8")
box(8.3, 1.4, 1.6, 1.0, "clip norm\none optimizer\nstep", "#f6d5d5")
arrow(7.7, 1.9, 8.3, 1.9)
ax.set_title("Figure 7.2: gradient accumulation — three micro-batches, one optimizer step")
plt.show()

# %% [markdown]
# *Figure 7.2 — Each micro-batch adds the gradient of its summed token loss divided by N, the target
# tokens of all micro-batches together, so the optimizer's single step sees the gradient of the mean
# loss over the whole batch, as if it had fitted in memory at once.*

# %%
#| export
def _count_tokens(micro_batches, world_size):
    """Target tokens in the global batch: this process's micro-batches, summed over processes."""
    device = micro_batches[0]["labels"].device
    n = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in micro_batches)
    n_tokens = torch.tensor(float(n), device=device)
    if world_size > 1:
        dist.all_reduce(n_tokens)
    return n_tokens


def train_step(model, micro_batches, optimizer, scheduler=None, *, clip_norm=1.0, autocast=None,
               world_size=1):
    """One optimizer step over `micro_batches` (this process's share of one global batch).

    The loss is normalised once, by the number of target tokens in the *whole* global batch, so that
    accumulating k micro-batches, or splitting the batch over n processes, gives the same gradient as
    one big batch. Returns the batch's mean loss per token, its token count and the gradient norm.
    Raises FloatingPointError, before the optimizer changes anything, if the loss or the gradient
    is not finite."""
    autocast = autocast or contextlib.nullcontext
    n_tokens = _count_tokens(micro_batches, world_size)
    total = torch.zeros((), device=n_tokens.device)
    for i, batch in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        # DDP all-reduces gradients on every backward; between micro-batches there is no need.
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast():
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            labels=batch["labels"])
            loss_sum, _ = token_loss_sum(out.logits, batch["labels"])
            # DDP averages gradients over processes, hence the factor world_size.
            (loss_sum * (world_size / n_tokens)).backward()
        total += loss_sum.detach()
    if world_size > 1:
        dist.all_reduce(total)
    params = [p for p in model.parameters() if p.grad is not None]
    if clip_norm:  # the norm before clipping
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip_norm))
    else:
        grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
    loss = (total / n_tokens).item()
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        raise FloatingPointError(f"the loss is {loss} and the gradient norm {grad_norm}")
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": loss, "target_tokens": int(n_tokens.item()), "grad_norm": grad_norm}


# %% [markdown]
# **Check: accumulation is exact.** Two micro-batches of four examples, with different lengths and
# so different padding, give the same gradient as one batch of eight. We take the step with plain
# SGD at learning rate 1, so that the change of the weights *is* the gradient. (Adam would hide
# nothing but amplify float rounding: its first step moves every weight by about `lr`, whatever
# the size of the gradient, even one that is zero up to rounding.)

# %%
def one_step(micro):
    net = copy.deepcopy(model).eval()  # eval(): no dropout
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    stats = train_step(net, micro, opt, clip_norm=None)
    return net, stats


eight = sorted(features[:8], key=lambda f: len(f["labels"]))  # short targets first
big, big_stats = one_step([collate(eight)])
small, small_stats = one_step([collate(eight[:4]), collate(eight[4:])])
assert collate(eight[:4])["labels"].shape != collate(eight[4:])["labels"].shape  # different padding
assert big_stats["target_tokens"] == small_stats["target_tokens"]
assert math.isclose(big_stats["loss"], small_stats["loss"], rel_tol=1e-5)
diff = max((a - b).abs().max().item() for a, b in zip(big.parameters(), small.parameters(), strict=True))
assert diff < 1e-6
print(f"loss {big_stats['loss']:.4f} on {big_stats['target_tokens']} target tokens; "
      f"largest weight difference after the step: {'< 1e-6' if diff < 1e-6 else diff}")

# %% [markdown]
# **Check: a non-finite loss stops the step.** With weights full of NaN the step refuses, and the
# weights it was given are untouched.

# %%
broken = copy.deepcopy(model)
with torch.no_grad():
    broken.lm_head.weight.fill_(float("nan"))
before = [p.detach().clone() for p in broken.parameters()]
refused = False
try:
    train_step(broken, [collate(eight)], torch.optim.SGD(broken.parameters(), lr=1.0))
except FloatingPointError as err:
    refused = True
    print("refused:", err)
assert refused
assert all(torch.equal(a.nan_to_num(), b.nan_to_num())
           for a, b in zip(before, broken.parameters(), strict=True))

# %% [markdown]
# ## 7.7 Data order you can resume
#
# To continue a run exactly, we must know which batches it has seen. A `DataLoader` with a random
# sampler keeps that inside its iterator; we make it explicit. Each epoch's order is a permutation
# drawn from a generator seeded with `(seed, epoch)` only, so any epoch's order can be recomputed at
# any time, and the stream of batches is numbered: batch `p` is batch `p % per_epoch` of epoch
# `p // per_epoch`. A checkpoint stores the number of the next batch; resuming starts the stream
# there and skips exactly what was consumed — without reading it.
#
# With several processes, every process computes the same global batch and takes its own contiguous
# share (`shard`). This is what `DistributedSampler` does, but with batches numbered the same way
# whatever the number of processes.

# %%
#| export distributed
import os

import torch
import torch.distributed as dist


def epoch_order(num_examples, seed, epoch):
    """The shuffled order of one epoch: a function of (seed, epoch) only, so resuming can recompute it."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_examples, generator=g).tolist()


def global_batches(num_examples, batch_size, seed, start=0):
    """Yield (position, indices) for every global micro-batch, forever, from micro-batch number `start`.

    Position p is batch p % per_epoch of epoch p // per_epoch; the last incomplete batch of an epoch is
    dropped so that every batch has exactly `batch_size` examples (and splits evenly over processes)."""
    per_epoch = num_examples // batch_size
    if per_epoch == 0:
        raise ValueError(f"{num_examples} examples cannot fill one batch of {batch_size}")
    position = start
    while True:
        epoch, first = divmod(position, per_epoch)
        order = epoch_order(num_examples, seed, epoch)
        for k in range(first, per_epoch):
            yield position, order[k * batch_size:(k + 1) * batch_size]
            position += 1


def shard(rows, rank, world_size):
    """This process's contiguous share of a global batch (a list, or a dict of tensors)."""
    if isinstance(rows, dict):
        return {k: shard(v, rank, world_size) for k, v in rows.items()}
    n = len(rows)
    if n % world_size:
        raise ValueError(f"a batch of {n} does not split evenly over {world_size} processes")
    per = n // world_size
    return rows[rank * per:(rank + 1) * per]


# %% [markdown]
# **Check.** Starting the stream at batch 7 gives exactly batches 7, 8, ... of a stream started at 0,
# across an epoch boundary; each epoch visits every example once; and two shards make one batch.

# %%
from itertools import islice

n, bs = 20, 6  # 3 batches per epoch, 2 examples left over each epoch
full = list(islice(global_batches(n, bs, seed=0), 12))
resumed = list(islice(global_batches(n, bs, seed=0, start=7), 5))
assert resumed == full[7:12]
epoch0 = [i for _, idx in full[:3] for i in idx]
assert len(set(epoch0)) == 18 and set(epoch0) <= set(range(n))
assert shard(full[0][1], 0, 2) + shard(full[0][1], 1, 2) == full[0][1]
print("epoch 0:", [idx for _, idx in full[:3]])

# %% [markdown]
# ## 7.8 Checkpoints you can resume from
#
# A checkpoint is everything needed to continue as if nothing happened:
#
# - the weights, as `model.safetensors` + `config.json` (the same format as the final model);
# - the optimizer's state (AdamW's moments), the scheduler's step count;
# - every random number generator (Python, NumPy, PyTorch, CUDA) — dropout draws from them;
# - the step and the number of the next batch.
#
# Everything but the weights goes in `state.pt`, which we read back with
# `torch.load(..., weights_only=True)`: that loader accepts only tensors, numbers, strings, lists,
# tuples and dicts, so a tampered checkpoint cannot run code. NumPy's generator state contains an
# array, so we store it as a tensor. These functions make `t5edu.checkpoint`.

# %%
#| export checkpoint
def rng_state():
    """Every random number generator the loop touches, in a form torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state):
    """Restore the generators saved by `rng_state`."""
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed):
    """Seed Python's, NumPy's and PyTorch's (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def save_weights(model, directory):
    """config.json + model.safetensors via the model's save_pretrained, or the bare weights."""
    model = unwrap(model)
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(directory)
    else:
        from safetensors.torch import save_model

        atomic_write(Path(directory) / "model.safetensors", lambda file: save_model(model, file))


def load_weights(model, directory):
    """Load model.safetensors into `model` in place (the optimizer keeps pointing at the same tensors)."""
    from safetensors.torch import load_file, load_model

    model = unwrap(model)
    file = str(Path(directory) / "model.safetensors")
    if hasattr(model, "load_checkpoint_state"):  # t5edu.T5: knows its tied embeddings
        model.load_checkpoint_state(load_file(file))
    else:
        load_model(model, file, strict=True)


# %% [markdown]
# A crash can come at any moment — during the write too. So a checkpoint is written into a fresh
# temporary folder next to its final place and only then **renamed**: within one file system a rename
# is atomic, so `checkpoint-00000200/` either exists complete or does not exist. The small file
# `latest`, naming the newest checkpoint, is replaced the same way (`t5edu.files.atomic_write`).
# A `manifest.json` records each file's size and SHA-256, so that a file damaged *after* the write
# (a full disk, a bad copy) is recognised when resuming. §7.14 looks under the hood: the `fsync`
# calls that make the rename durable, a crash simulated mid-write, and a damaged checkpoint.

# %%
#| export checkpoint
CHECKPOINT_PREFIX = "checkpoint-"
MANIFEST = "manifest.json"


def _sha256(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _set_aside(folder):
    """Rename a checkpoint folder out of the way, never deleting it: NAME.replaced-K."""
    k = 1
    while folder.with_name(f"{folder.name}.replaced-{k}").exists():
        k += 1
    os.replace(folder, folder.with_name(f"{folder.name}.replaced-{k}"))


def save_checkpoint(out_dir, step, model, optimizer=None, scheduler=None, extra=None, keep=2):
    """Write checkpoint-STEP/ into `out_dir` atomically, point the file `latest` at it, and keep the
    newest `keep` intact checkpoints (0: all). Returns the checkpoint's folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f"{CHECKPOINT_PREFIX}*.tmp-*"):  # leftovers of a crash during a write
        shutil.rmtree(stale, ignore_errors=True)
    final = out_dir / f"{CHECKPOINT_PREFIX}{step:08d}"
    tmp = make_temp_dir(out_dir, f"{final.name}.tmp-")
    try:
        save_weights(model, tmp)
        state = {"step": step, "rng": rng_state(), **(extra or {})}
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
            state["optimizer_class"] = type(optimizer).__name__
        if scheduler is not None:
            state["scheduler"] = scheduler.state_dict()
        atomic_write(tmp / "state.pt", lambda file: torch.save(state, file))
        files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(tmp.iterdir())}
        atomic_write(tmp / MANIFEST, json.dumps({"step": step, "files": files}, indent=1) + "\n")
        if final.exists():  # the same step saved before, e.g. a damaged copy: keep it, aside
            _set_aside(final)
        os.replace(tmp, final)  # the atomic moment
        fsync_path(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write(out_dir / "latest", final.name + "\n")
    if keep:
        intact = [p for p in list_checkpoints(out_dir) if not verify_checkpoint(p, full=False)]
        for old in intact[:-keep]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


# %% [markdown]
# Reading them back: `list_checkpoints` finds the complete folders, `verify_checkpoint` compares
# their files with the manifest, and `latest_checkpoint` returns the one to resume from — the one
# `latest` names, or else the newest — skipping, with a warning, any that fails verification
# (and leaving it on disk for a person to look at).

# %%
#| export checkpoint
class ResumeError(ValueError):
    """A checkpoint cannot continue this run: another model shape or another optimizer."""


def list_checkpoints(out_dir):
    """Complete checkpoint folders (holding state.pt), oldest first."""
    found = [p for p in Path(out_dir).glob(f"{CHECKPOINT_PREFIX}*")
             if p.is_dir() and p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / "state.pt").exists()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def verify_checkpoint(path, full=True):
    """What is wrong with a checkpoint folder ([] if nothing): missing files, and files whose size (and,
    with `full`, SHA-256) differ from its manifest. A folder without a manifest is not checked."""
    path = Path(path)
    if not (path / "state.pt").is_file():
        return ["state.pt is missing"]
    if not (path / MANIFEST).is_file():
        return []
    try:
        files = json.loads((path / MANIFEST).read_text())["files"]
    except (ValueError, KeyError) as err:
        return [f"{MANIFEST} is unreadable ({err})"]
    problems = []
    for name, saved in files.items():
        file = path / name
        if not file.is_file():
            problems.append(f"{name} is missing")
        elif file.stat().st_size != saved["bytes"]:
            problems.append(f"{name} has {file.stat().st_size} bytes, {saved['bytes']} when saved")
        elif full and _sha256(file) != saved["sha256"]:
            problems.append(f"{name} differs from the file saved (SHA-256)")
    return problems


def latest_checkpoint(out_dir, verify=True):
    """The checkpoint to resume from: the one `latest` names, else the newest; damaged ones are skipped
    with a warning (and left in place). None if there is none."""
    out_dir = Path(out_dir)
    candidates = list_checkpoints(out_dir)
    pointer = out_dir / "latest"
    named = out_dir / pointer.read_text().strip() if pointer.is_file() else None
    if named in candidates:
        candidates.remove(named)
        candidates.append(named)
    for path in reversed(candidates):
        problems = verify_checkpoint(path) if verify else []
        if not problems:
            return path
        warnings.warn(f"skipping the damaged checkpoint {path}: {'; '.join(problems)} "
                      "(left in place)", stacklevel=2)
    return None


# %%
#| export checkpoint
def read_checkpoint_state(path):
    """The state.pt of a checkpoint (step, position, rng, optimizer, ...), loaded with weights_only=True."""
    return torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=True)


_SHAPE_FIELDS = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                 "feed_forward_proj", "relative_attention_num_buckets", "tie_word_embeddings")


def _resume_problems(path, state, model, optimizer):
    problems = []
    config = getattr(unwrap(model), "config", None)
    if (path / "config.json").is_file() and hasattr(config, "to_dict"):
        saved, ours = json.loads((path / "config.json").read_text()), config.to_dict()
        problems += [f"{k}={saved[k]!r} (this model: {ours[k]!r})" for k in _SHAPE_FIELDS
                     if k in saved and k in ours and saved[k] != ours[k]]
    saved_class = state.get("optimizer_class")
    if optimizer is not None and saved_class and saved_class != type(optimizer).__name__:
        problems.append(f"optimizer {saved_class} (this run: {type(optimizer).__name__})")
    return problems


def load_checkpoint(path, model, optimizer=None, scheduler=None, restore_rng=True):
    """Load a checkpoint into existing objects; returns the saved state (step, position, ...).

    Raises ResumeError, naming every difference, if the checkpoint holds another model shape or was
    written with another optimizer."""
    path = Path(path)
    state = read_checkpoint_state(path)
    problems = _resume_problems(path, state, model, optimizer)
    if problems:
        raise ResumeError(f"cannot resume from {path}: it was saved with {', '.join(problems)}")
    load_weights(model, path)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        set_rng_state(state["rng"])
    return state


# %% [markdown]
# **Check.** A checkpoint taken after one step restores the weights, the optimizer's moments and the
# random generators: the next random numbers are the ones that followed the save.

# %%
opt = make_optimizer(model, "adamw", lr=1e-3)
sched = make_scheduler(opt, warmup=10)
train_step(model, [collate(features[:8])], opt, sched)
saved = save_checkpoint(WORK / "roundtrip", 1, model, opt, sched, extra={"position": 1})
expected = torch.rand(3)
other = copy.deepcopy(model)
with torch.no_grad():
    other.shared.weight.zero_()
opt2 = make_optimizer(other, "adamw", lr=1e-3)
state = load_checkpoint(latest_checkpoint(WORK / "roundtrip"), other, opt2, make_scheduler(opt2, warmup=10))
assert torch.equal(torch.rand(3), expected) and state["step"] == 1 and not verify_checkpoint(saved)
assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(),
                                             strict=True))
print(saved.name, sorted(p.name for p in saved.iterdir()))

# %% [markdown]
# ## 7.9 Greedy decoding and evaluation
#
# To evaluate, the model must produce text. **Greedy decoding** starts the decoder with
# `config.decoder_start_token_id` (the pad id, 0, for T5), runs the model, appends the most likely next
# token, and repeats until every row has produced `</s>` or the length limit is reached. The encoder
# runs once, and the decoder's key/value cache (Chapter 05) lets each step feed only the newest token.
# Chapter 08 explains decoding properly and adds beam search and sampling; its
# `generate(..., num_beams=1)` produces the same tokens as this function (a test checks it).
#
# The metrics (`t5edu.metrics`) and their scales: **exact match** is a fraction from 0 to 1 (the
# output must equal the target, up to whitespace — right for our synthetic tasks); **ROUGE** (Google's
# `rouge-score`, F1 of ROUGE-1, ROUGE-2 and ROUGE-L, with stemming) for summarization and **BLEU**
# (`sacrebleu`) for translation are on the 0–100 scale their users quote. The last two need the
# `eval` extra (`pip install "t5edu[eval]"`).

# %%
#| export metrics
@torch.no_grad()
def greedy_decode(model, input_ids, attention_mask=None, max_new_tokens=32, *, start_id=None, eos_id=None,
                  pad_id=None):
    """Generate up to `max_new_tokens` tokens per row, always taking the most likely next token.

    Starts from `model.config.decoder_start_token_id` (or `start_id`), like `t5edu.generate.generate`.
    Returns the generated ids without the start token; a row that has produced EOS is padded with
    `pad_id` afterwards. The encoder runs once; each step feeds the newest token with the decoder's cache."""
    model = unwrap(model)
    config = model.config
    start_id = config.decoder_start_token_id if start_id is None else start_id
    eos_id = config.eos_token_id if eos_id is None else eos_id
    pad_id = config.pad_token_id if pad_id is None else pad_id
    if attention_mask is None:
        attention_mask = (input_ids != pad_id).long()
    was_training = model.training
    model.eval()
    out = torch.full((input_ids.size(0), 1), start_id, dtype=torch.long, device=input_ids.device)
    done = torch.zeros(input_ids.size(0), dtype=torch.bool, device=input_ids.device)
    encoded = model.encode(input_ids, attention_mask)
    cache = model.decoder.new_cache()
    for _ in range(max_new_tokens):
        logits = model(attention_mask=attention_mask, encoder_hidden_states=encoded, cache=cache,
                       decoder_input_ids=out[:, -1:]).logits
        next_id = logits[:, -1].argmax(-1)
        next_id = torch.where(done, torch.full_like(next_id, pad_id), next_id)
        out = torch.cat([out, next_id[:, None]], dim=1)
        done |= next_id == eos_id
        if done.all():
            break
    model.train(was_training)
    return out[:, 1:]


# %%
#| export metrics
def normalize_answer(text):
    """Collapse runs of whitespace and strip the ends: the comparison exact match makes."""
    return " ".join(text.strip().split())


def _pairs(predictions, references):
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    return predictions, references


def exact_match(predictions, references):
    """The fraction (0 to 1) of predictions equal to their reference, after collapsing whitespace."""
    predictions, references = _pairs(predictions, references)
    if not references:
        return 0.0
    pairs = zip(predictions, references, strict=True)
    return sum(normalize_answer(p) == normalize_answer(r) for p, r in pairs) / len(references)


def rouge(predictions, references):
    """Mean ROUGE F1 scores on the 0-100 scale: {"rouge1", "rouge2", "rougeL"} (Google's rouge-score
    package with stemming, as in summarization papers; needs the `eval` extra)."""
    predictions, references = _pairs(predictions, references)
    scorer = require("rouge_score.rouge_scorer", "eval").RougeScorer(["rouge1", "rouge2", "rougeL"],
                                                                     use_stemmer=True)
    scores = [scorer.score(r, p) for p, r in zip(predictions, references, strict=True)]
    return {k: 100 * sum(s[k].fmeasure for s in scores) / max(len(scores), 1)
            for k in ("rouge1", "rouge2", "rougeL")}


def bleu(predictions, references):
    """Corpus BLEU on the 0-100 scale (sacrebleu's defaults, as in translation papers; needs `eval`)."""
    predictions, references = _pairs(predictions, references)
    return require("sacrebleu", "eval").corpus_bleu(predictions, [references]).score


# %%
#| export metrics
def _until_eos(ids, eos_id):
    return ids[:ids.index(eos_id)] if eos_id in ids else ids


def generate_texts(model, tokenizer, inputs, *, batch_size=64, max_new_tokens=32, device=None):
    """Greedy outputs for a list of input strings, batched by length."""
    device = device or next(unwrap(model).parameters()).device
    encoded = [tokenizer.encode(text) for text in inputs]
    order = sorted(range(len(inputs)), key=lambda i: len(encoded[i]))
    outputs = [None] * len(inputs)
    for k in range(0, len(order), batch_size):
        chunk = order[k:k + batch_size]
        width = max(len(encoded[i]) for i in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_id, dtype=torch.long)
        for row, i in enumerate(chunk):
            ids[row, :len(encoded[i])] = torch.tensor(encoded[i])
        ids = ids.to(device)
        generated = greedy_decode(model, ids, (ids != tokenizer.pad_id).long(), max_new_tokens,
                                  eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
        for row, i in enumerate(chunk):
            outputs[i] = tokenizer.decode(_until_eos(generated[row].tolist(), tokenizer.eos_id))
    return outputs


def _scores(metrics, predictions, references):
    scorers = {"exact_match": exact_match, "rouge": rouge, "bleu": bleu}
    out = {}
    for name in metrics:
        if name not in scorers:
            raise ValueError(f"unknown metric {name!r}: choose from {sorted(scorers)}")
        value = scorers[name](predictions, references)
        out.update(value if isinstance(value, dict) else {name: value})
    return out


def evaluate(model, tokenizer, examples, *, batch_size=64, max_new_tokens=32, metrics=("exact_match",)):
    """Score greedy outputs on `examples` (dicts with task/inputs/targets), per task and overall.

    `metrics` among "exact_match" (0-1), "rouge" (adds rouge1/rouge2/rougeL, 0-100) and "bleu" (0-100).
    Returns {metric: value, "per_task": {task: {metric: value, "n": count}}, "predictions": [...]}."""
    examples = list(examples)
    predictions = generate_texts(model, tokenizer, [e["inputs"] for e in examples],
                                 batch_size=batch_size, max_new_tokens=max_new_tokens)
    per_task = {}
    for task in sorted({e["task"] for e in examples}):
        rows = [i for i, e in enumerate(examples) if e["task"] == task]
        references = [examples[i]["targets"] for i in rows]
        per_task[task] = _scores(metrics, [predictions[i] for i in rows], references)
        per_task[task]["n"] = len(rows)
    result = _scores(metrics, predictions, [e["targets"] for e in examples])
    result.update(per_task=per_task, predictions=predictions)
    return result


# %% [markdown]
# **Check.** Greedy decoding agrees with the model on its own output: feeding the generated
# sequence back with teacher forcing, the argmax at every position is the next generated token.
# And the metrics on cases we can score by hand.

# %%
probe = collate(features[:3])
generated = greedy_decode(model, probe["input_ids"], probe["attention_mask"], max_new_tokens=6)
decoder_in = torch.cat([torch.zeros(3, 1, dtype=torch.long), generated[:, :-1]], dim=1)
with torch.no_grad():
    argmax = model.eval()(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"],
                          decoder_input_ids=decoder_in).logits.argmax(-1)
model.train()
finished = (generated == tokenizer.eos_id).cumsum(1) - (generated == tokenizer.eos_id).long() > 0  # after EOS
assert torch.equal(argmax[~finished], generated[~finished])

assert exact_match(["a b", "c"], ["a  b ", "d"]) == 0.5
assert math.isclose(rouge(["the cat sat"], ["the cat sat down"])["rougeL"], 100 * 2 * 1 * 0.75 / 1.75)
assert math.isclose(bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 100.0)
print("nearly untrained model, greedy:", [tokenizer.decode(g) for g in generated])

# %% [markdown]
# ## 7.10 The loop
#
# `train` puts the pieces together. Per step: read `grad_accum` global micro-batches, pad each once
# (so every process sees the same padding), keep this process's share, call `train_step`; then log,
# and checkpoint every `save_every` steps and at the end. A `tqdm` bar on stderr shows loss, learning
# rate and tokens per second; every `log_every` steps a line goes to `metrics.jsonl`. An optional
# `evaluate(model) -> dict` runs every `eval_every` steps and its numbers join that step's line.
#
# On `resume` it loads the newest intact checkpoint (weights, optimizer, schedule, random generators,
# data position) and rewrites `metrics.jsonl` up to that step, so a crashed run leaves no duplicate
# lines. Without `resume`, a folder that already holds checkpoints is refused rather than mixed up
# with a new run. A loss that stops being finite ends the run with an error naming the step, and
# nothing is saved after it: the last checkpoint stays the last good one.
#
# `train` also knows about many processes (§7.11): `init_distributed` reads what `torchrun`
# sets, and the model is wrapped in `DistributedDataParallel`.

# %%
#| export distributed
def init_distributed():
    """(rank, world_size, local_rank) — and the process group, when launched by torchrun.

    torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; we use NCCL between GPUs and gloo on CPUs."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return rank, world_size, local_rank


def barrier():
    """Wait for every process (a no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# %%
#| export
@dataclass
class TrainConfig:
    """Everything the loop needs to know besides the model and the data."""

    optimizer: str = "adamw"  # or "adafactor"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "inverse_sqrt"  # or "linear", "cosine", "constant"
    warmup_steps: int = 100
    max_steps: int = 1000
    batch_size: int = 32  # examples per micro-batch, over all processes
    grad_accum: int = 1  # micro-batches per optimizer step
    clip_norm: float = 1.0
    seed: int = 0
    save_every: int = 0  # 0: save only at the end
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_every: int = 0  # call train(..., evaluate=fn) every this many steps (0: never)
    max_seconds: float = 0.0  # a time budget: stop after this many seconds of training (0: none)
    precision: str = "auto"  # "auto" (bf16 on a capable GPU), "bf16", "fp32"
    compile: bool = False
    progress: bool = True  # a tqdm bar on stderr


# %%
#| export
def _read_metrics(path, up_to_step):
    """Metrics lines already written, up to a step (a resumed run rewrites what came after)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if row.get("step", 0) <= up_to_step:
                rows.append(row)
    return rows


def _start(model, optimizer, scheduler, cfg, out_dir, resume, rank):
    """(step, position, elapsed, history) to begin with: a checkpoint's when resuming, else zeros.
    metrics.jsonl is rewritten to hold the history up to that step."""
    checkpoint = latest_checkpoint(out_dir) if resume else None
    if not resume and list(out_dir.glob("checkpoint-*")):
        raise FileExistsError(f"{out_dir} already holds the checkpoints of a run: resume it "
                              "(resume=True, --resume) or choose another folder")
    state, history = {"step": 0, "position": 0}, []
    if checkpoint is None:
        seed_everything(cfg.seed)
    else:
        state = load_checkpoint(checkpoint, model, optimizer, scheduler)  # also restores the RNGs
        # The schedule's shape comes from this run's config (a resumed run may be given more steps).
        schedule = Schedule(cfg.schedule, cfg.warmup_steps, cfg.max_steps)
        scheduler.lr_lambdas = [schedule] * len(optimizer.param_groups)
        history = _read_metrics(out_dir / "metrics.jsonl", state["step"])
    if rank == 0:
        atomic_write(out_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    return state["step"], state["position"], state.get("elapsed", 0.0), history


def _device_for(device, local_rank):
    if device is None:
        device = pick_device()
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
    device = torch.device(device)
    if device.type == "cuda":
        enable_tf32()
    return device


def _wrap(model, cfg, world_size, local_rank, device):
    net = model
    if world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None)
    return torch.compile(net) if cfg.compile else net


# %%
#| export
def _aim_at_budget(scheduler, step, start_step, elapsed, start_elapsed, cfg, device, world_size):
    """With a time budget (max_seconds), decaying schedules end where the time will run out, at the speed
    so far; returns that step."""
    per_step = (elapsed - start_elapsed) / max(step - start_step, 1)
    fit = torch.tensor([step + (cfg.max_seconds - elapsed) / max(per_step, 1e-9)], device=device)
    if world_size > 1:  # every process must use the same schedule
        dist.all_reduce(fit, op=dist.ReduceOp.MIN)
    horizon = int(min(cfg.max_steps, max(step + 1, fit.item())))
    for schedule in scheduler.lr_lambdas:  # one per parameter group (the same object)
        schedule.total = horizon
    return horizon


def _all_agree(flag, device, world_size):
    if world_size > 1:  # every process must agree to stop
        flag = torch.tensor(float(flag), device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag)


class _Window:
    """Loss, tokens and seconds since the last metrics line."""

    def __init__(self):
        self.loss, self.steps, self.tokens, self.seconds = 0.0, 0, 0, 0.0

    def add(self, loss, seconds):
        self.loss, self.steps, self.seconds = self.loss + loss, self.steps + 1, self.seconds + seconds

    def row(self, step, scheduler, stats, elapsed):
        return {"step": step, "loss": self.loss / max(self.steps, 1), "lr": scheduler.get_last_lr()[0],
                "grad_norm": stats["grad_norm"], "tokens_per_s": self.tokens / max(self.seconds, 1e-9),
                "elapsed": elapsed}


def _next_micro_batches(batches, examples, collate, cfg, rank, world_size, device, window):
    micro = []
    for _ in range(cfg.grad_accum):
        position, indices = next(batches)
        batch = collate([examples[i] for i in indices])  # the same padding on every process
        window.tokens += int(batch["attention_mask"].sum()) + int((batch["labels"] != IGNORE_INDEX).sum())
        micro.append({k: v.to(device) for k, v in shard(batch, rank, world_size).items()})
    return micro, position + 1  # the next micro-batch to read


def _stopped(step, err, last_saved):
    kept = f"the last checkpoint is step {last_saved}" if last_saved > 0 else "nothing was saved"
    return FloatingPointError(f"training stopped at step {step}: {err}; {kept}")


def _save(out_dir, step, model, optimizer, scheduler, cfg, position, elapsed, rank, world_size, last_saved):
    """Checkpoint the run, never with weights that are not finite numbers."""
    bad = [name for name, p in unwrap(model).named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise _stopped(step, f"{len(bad)} weight tensors are not finite (first {bad[0]})", last_saved)
    extra = {"position": position, "elapsed": elapsed, "world_size": world_size, "train_config": asdict(cfg)}
    if rank == 0:
        save_checkpoint(out_dir, step, model, optimizer, scheduler, extra, keep=cfg.keep_checkpoints)
    barrier()


# %%
#| export
def train(model, examples, collate, config, out_dir, *, resume=False, device=None, evaluate=None):
    """Train `model` on `examples` (a list of features) and return the metrics history.

    `collate(features)` pads examples into a dict of tensors with input_ids, attention_mask and labels
    (-100 on padding). Checkpoints, `metrics.jsonl` and `latest` go to `out_dir`. `evaluate(model)`
    returns numbers added to the metrics every `config.eval_every` steps. Under torchrun: DDP."""
    cfg, out_dir = config, Path(out_dir)
    rank, world_size, local_rank = init_distributed()
    device = _device_for(device, local_rank)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(device).train()
    optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg.schedule, cfg.warmup_steps, cfg.max_steps)
    step, position, elapsed, history = _start(model, optimizer, scheduler, cfg, out_dir, resume, rank)
    net = _wrap(model, cfg, world_size, local_rank, device)
    autocast = functools.partial(autocast_for, device, cfg.precision)
    batches = global_batches(len(examples), cfg.batch_size, cfg.seed, start=position)
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not (cfg.progress and rank == 0), desc="train")
    window, last_saved = _Window(), step if resume and step else -1
    start_step, start_elapsed, loop_start = step, elapsed, time.perf_counter()
    with open(out_dir / "metrics.jsonl", "a") if rank == 0 else contextlib.nullcontext() as log:
        while step < cfg.max_steps:
            t0 = time.perf_counter()
            micro, position = _next_micro_batches(batches, examples, collate, cfg, rank, world_size, device,
                                                  window)
            try:
                stats = train_step(net, micro, optimizer, scheduler, clip_norm=cfg.clip_norm,
                                   autocast=autocast, world_size=world_size)
            except FloatingPointError as err:
                raise _stopped(step + 1, err, last_saved) from None
            step += 1
            window.add(stats["loss"], time.perf_counter() - t0)
            elapsed = start_elapsed + (time.perf_counter() - loop_start)
            evaluating = bool(evaluate and cfg.eval_every and step % cfg.eval_every == 0)
            if step % cfg.log_every == 0 or step == cfg.max_steps or evaluating:
                row = window.row(step, scheduler, stats, elapsed)
                row.update(evaluate(unwrap(model)) if evaluating else {})
                history.append(row)
                if rank == 0:
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.2e}")
                window = _Window()
            bar.update(1)
            if cfg.max_seconds and step % cfg.log_every == 0:
                bar.total = _aim_at_budget(scheduler, step, start_step, elapsed, start_elapsed, cfg, device,
                                           world_size)
            out_of_time = _all_agree(bool(cfg.max_seconds) and elapsed >= cfg.max_seconds, device, world_size)
            if cfg.save_every and step % cfg.save_every == 0:
                _save(out_dir, step, model, optimizer, scheduler, cfg, position, elapsed, rank, world_size,
                      last_saved)
                last_saved = step
            if out_of_time:
                break
    bar.close()
    if last_saved != step:
        _save(out_dir, step, model, optimizer, scheduler, cfg, position, elapsed, rank, world_size,
              last_saved)
    return history

# %% [markdown]
# We train the tiny model for 100 steps — a few seconds — and plot nothing yet: the loss curve worth
# looking at comes in §7.15. The progress bar is switched off here (it writes timings, which differ
# on every run).

# %%
cfg = TrainConfig(optimizer="adamw", lr=3e-3, schedule="inverse_sqrt", warmup_steps=20, max_steps=100,
                  batch_size=16, save_every=50, log_every=10, progress=False)
_ = torch.manual_seed(0)
model = T5(config)
history = train(model, features, collate, cfg, WORK / "run")
for row in history[::3]:
    print(f"step {row['step']:4d}  loss {row['loss']:.3f}  lr {row['lr']:.2e}")
assert history[-1]["loss"] < history[0]["loss"] / 2
assert sorted(p.name for p in (WORK / "run").iterdir()) == [
    "checkpoint-00000050", "checkpoint-00000100", "latest", "metrics.jsonl"]

# %% [markdown]
# **Check: resume is bit-exact.** A second run stops at step 50 (as if it had crashed right
# after its checkpoint); a third call resumes from that checkpoint and goes on to step 100. Its
# weights are *equal* — not close, equal — to those of the uninterrupted run above: the same data
# batches in the same order, the same optimizer moments, the same learning rate, the same dropout
# masks.

# %%
from dataclasses import replace

_ = torch.manual_seed(0)
first_half = T5(config)
train(first_half, features, collate, replace(cfg, max_steps=50), WORK / "interrupted")
_ = torch.manual_seed(123)  # a new process would start from other weights; resume must not care
resumed = T5(config)
train(resumed, features, collate, cfg, WORK / "interrupted", resume=True)
pairs = zip(model.state_dict().values(), resumed.state_dict().values(), strict=True)
same = [torch.equal(a, b) for a, b in pairs]
assert all(same)
print(f"{len(same)} tensors, all equal after resume: {all(same)}")

# %% [markdown]
# ## 7.11 Many GPUs: DistributedDataParallel
#
# With several GPUs, the same script runs once per GPU:
#
# ```bash
# torchrun --nproc_per_node 8 -m t5edu train --recipe demo --out runs/ddp
# ```
#
# `torchrun` starts the processes and sets `RANK`, `WORLD_SIZE`, `LOCAL_RANK`; `init_distributed`
# joins them into a process group (NCCL between GPUs, gloo between CPU processes). Each process
# holds a full copy of the model, wrapped in `DistributedDataParallel`. Every process computes the
# same global batch order and takes its own share of each batch, so the global batch — and the
# result — does not depend on the number of processes. During `backward`, DDP averages the
# gradients over processes in buckets, overlapping communication with computation; the optimizer
# steps then run identically everywhere, and the weights stay equal without ever being sent.
#
# Two details keep multi-process training equal to one process on the same global batch:
#
# - the loss is normalised by the number of target tokens **in the global batch** (an
#   `all_reduce` of the counts), times the number of processes, because DDP averages;
# - between accumulated micro-batches, `no_sync()` skips the all-reduce; only the last
#   backward of a step communicates.
#
# Only process 0 writes checkpoints and metrics; the others wait at a barrier. Every process
# draws the same random numbers (same seed, same shapes), so process 0's generator state serves all.
# `tests/test_ddp.py` runs two CPU processes with gloo under `torchrun` and checks that the weights
# after a few steps equal those of one process with the same global batch.

# %% [markdown]
# ## 7.12 What changes on a GPU
#
# The code above runs unchanged on a GPU; `train` picks it and switches on what makes it fast:
#
# - **bf16 autocast** (`autocast_for`): the forward pass runs its matrix products in bfloat16 on
#   tensor cores; weights, optimizer state and the loss (computed in float32, see `token_loss_sum`)
#   keep full precision. No loss scaling is needed, unlike float16.
# - **TF32** (`enable_tf32`) for the float32 products that remain.
# - **`torch.compile`** (`--compile`) fuses the element-wise work (RMS norm, activations, dropout,
#   the bias additions) into a few kernels. The first steps are slow while it compiles.
# - **Attention kernels.** T5 adds a relative position bias to the scores, so it cannot use the
#   FlashAttention path of `scaled_dot_product_attention`, which accepts no arbitrary bias; SDPA's
#   memory-efficient kernel accepts an additive bias (Chapter 02's fast path). PyTorch's
#   `FlexAttention` can compute the bias *inside* the kernel from the bucketed distance
#   (a `score_mod`), never materialising the `(heads, length, length)` bias tensor.
# - Bigger batches: tokens per second grow with the batch until the GPU is busy.
#
# To measure it on a GPU, run
# `t5edu bench train --device cuda --bf16 --preset t5-v1_1-base --batch-size 32`: it times a training
# step of t5edu next to Hugging Face's T5 on the same weights and prints tokens per second, TFLOP/s and
# MFU (model FLOPs utilisation: the step's matrix-product FLOPs per second over the GPU's bf16 peak).
# `t5edu train --recipe demo --out runs/gpu` shows the whole loop's tokens per second in `metrics.jsonl`.

# %% [markdown]
# ## 7.13 Training on a GPU, measured
#
# §7.12 named the switches; this section shows what they are worth, measured.
#
# **MFU** (model FLOPs utilisation) is the matrix-product FLOPs of a step divided by its time and by the
# GPU's dense bf16 peak (989 TFLOP/s on an H100 or H200). It says how much of the chip's arithmetic a
# step turns into useful work. `make gpu-report` measures, on one GPU and in one process, a training
# step (forward, backward, AdamW) of t5edu and of `transformers` (its eager attention and its SDPA
# attention) taking turns step by step on identical weights, in four precision modes, at the T5 paper's
# lengths (512 input and 114 target tokens). Every pair is checked to give the same loss at step 0.
# It writes one JSON file per GPU under `benchmarks/gpu/`, committed exactly as produced; the cells
# below read whatever is there.

# %%
import json
from pathlib import Path

root = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "pyproject.toml").exists())
reports = [json.loads(p.read_text()) for p in sorted((root / "benchmarks" / "gpu").glob("*.json"))]
reports = [r for r in reports if not r.get("smoke")]
if not reports:
    print("No GPU report is committed yet: no GPU was at hand when this book was built.\n"
          "Run `make gpu-report` on a CUDA machine and commit benchmarks/gpu/<device>.json to fill this section.")
for r in reports:
    print(f"{r['device']} (torch {r['torch']}, transformers {r['transformers']}), batch 32 (v1_1-base) "
          "or 64 (small) x 512 -> 114 tokens")
    print(f"{'model':13s} {'mode':13s} {'library':19s} {'tokens/s':>9s} {'MFU':>6s} {'memory GB':>9s} "
          f"{'same loss':>9s}")
    for row in r["train"]:
        mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "-"
        print(f"{row['model']:13s} {row['mode']:13s} {row['library']:19s} {row['tokens_per_s']:9,.0f} "
              f"{mfu:>6s} {row['peak_memory_gb']:9.1f} {'yes' if row['same_loss_as_t5edu'] else 'NO':>9s}")
    measured = {(row["model"], row["mode"]) for row in r["train"]}
    missing = [f"{m} {mode}" for mode in dict.fromkeys(x["mode"] for x in r["train"])
               for m in dict.fromkeys(x["model"] for x in r["train"]) if (m, mode) not in measured]
    print("not measured:", ", ".join(missing + r["skipped"]) or "nothing")

# %% [markdown]
# The chart shows the larger model, t5-v1_1-base, mode by mode.

# %%
import matplotlib.pyplot as plt

for r in reports:
    rows = [row for row in r["train"] if row["model"] == "t5-v1_1-base"]
    modes = list(dict.fromkeys(row["mode"] for row in rows))
    libraries = list(dict.fromkeys(row["library"] for row in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, label in ((axes[0], "tokens_per_s", "tokens / s"), (axes[1], "mfu", "MFU")):
        width = 0.8 / len(libraries)
        for j, lib in enumerate(libraries):
            values = [next((x[key] or 0 for x in rows if x["mode"] == m and x["library"] == lib), 0) for m in modes]
            ax.bar([i + j * width for i in range(len(modes))], values, width, label=lib)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(modes))], modes)
        ax.set_xlabel("precision mode")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"A t5-v1_1-base training step on {r['device']}: t5edu vs transformers")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# What each switch is worth, as ratios of the rows above (t5-v1_1-base):

# %%
def tokens_per_s(r, model, mode, library):
    return next((x["tokens_per_s"] for x in r["train"]
                 if (x["model"], x["mode"], x["library"]) == (model, mode, library)), None)


for r in reports:
    base = "t5-v1_1-base"
    ours = {mode: tokens_per_s(r, base, mode, "t5edu") for mode in ("fp32", "tf32", "bf16", "bf16+compile")}
    print(f"t5edu: TF32 over fp32 {ours['tf32'] / ours['fp32']:.2f}x, bf16 over fp32 {ours['bf16'] / ours['fp32']:.2f}x, "
          f"compile over bf16 {ours['bf16+compile'] / ours['bf16']:.2f}x")
    for mode in ("bf16", "bf16+compile"):
        best_hf = max(tokens_per_s(r, base, mode, lib) for lib in ("transformers-eager", "transformers-sdpa"))
        print(f"{mode:13s} t5edu / best transformers: {ours[mode] / best_hf:.2f}x")
    best_ours = max(x for x in ours.values())
    best_theirs = max(x["tokens_per_s"] for x in r["train"] if x["model"] == base and x["library"] != "t5edu")
    best_mfu = max(x["mfu"] for x in r["train"] if x["model"] == base and x["library"] == "t5edu")
    print(f"best t5edu / best transformers (any mode): {best_ours / best_theirs:.2f}x  (goal 1.5x); "
          f"best t5edu MFU {best_mfu:.1%} (goal 40%)")

# %% [markdown]
# Read from the H200 report:
#
# - **TF32 more than doubles fp32** (2.23×): the float32 matrix products move onto tensor cores at
#   TF32's 10-bit mantissa. The step-0 losses still agree (the last column).
# - **bf16 autocast adds little on top of TF32** (2.39× over fp32, against 2.23×), and t5edu's bf16
#   step uses only about 9 % of the chip's bf16 peak. The matrix products got fast; the rest did not.
# - **`torch.compile` nearly doubles bf16** (1.80× for t5edu) and lifts every library alike: with it,
#   `transformers` is slightly ahead (t5edu reaches 0.94× of its best mode). Without it, t5edu is
#   1.19× the faster `transformers` attention.
# - **Neither goal is met**: the goals were 1.5× `transformers`' best mode and 40 % MFU on this model;
#   the best t5edu step reaches 0.94× and 15.6 %.
#
# Why so far from the peak? The profile below splits the GPU time of one t5edu bf16 step of
# t5-v1_1-base by what the operators do.

# %%
for r in reports:
    prof = r.get("profile")
    if not prof:
        print("this report has no profile")
        continue
    groups = {"matmul": "matrix products", "softmax": "softmax (attention)",
              "optimizer": "AdamW update", "other": "everything else: norms, dropout, casts, adds, copies"}
    fig, ax = plt.subplots(figsize=(8, 1.6))
    left = 0.0
    for key, label in groups.items():
        share = prof["share"][key]
        ax.barh([0], [share], left=left, label=f"{label} ({share:.0%}, {prof['ms'][key]:.0f} ms)")
        left += share
    ax.set_xlim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("share of the step's GPU time")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5), ncol=2, fontsize=8)
    ax.set_title(f"Where one bf16 step of {prof['model']} (batch {prof['batch_size']}) spends GPU time")
    plt.show()

# %% [markdown]
# Matrix products, the only work MFU counts, take about a fifth of the time. More than two thirds go
# to the element-wise work around them: RMS norms (computed in float32, as in Chapter 04),
# dropout, residual additions, the relative position bias added to every score matrix, and the casts
# between float32 and bfloat16 that autocast inserts. Each such operator reads and writes whole
# activation tensors from memory and does almost no arithmetic, so its speed is set by memory
# bandwidth, not by tensor cores; and each is a separate kernel launch. That is exactly what
# `torch.compile` fuses, which is why it nearly doubles the step. The AdamW update (4 %) reads and
# writes four float32 numbers per weight, also bandwidth-bound, but it runs once per step.
#
# Memory tells a similar story: the same table's last columns show the peak GPU memory of each step
# (weights, gradients, AdamW state and activations). The optimizer's share is easy to compute:

# %%
for r in reports:
    for row in r["optimizer_memory"]:
        print(f"{row['model']:13s} {row['optimizer']:9s} state {row['state_gb'] * 1024:8.1f} MB")

# %% [markdown]
# AdamW keeps two float32 moments per weight (eight bytes), 1.8 GB for t5-v1_1-base; Adafactor, the
# T5 paper's optimizer, keeps only a row and a column of second-moment statistics per matrix, about
# 2 MB (§7.4).
#
# Decoding is a different kind of work. The report times greedy and beam-4 decoding of exactly 32
# tokens with t5-small:

# %%
for r in reports:
    rows = r["generate"]
    print(f"{'library':19s} {'beams':>5s} {'batch':>5s} {'ms':>7s} {'tokens/s':>9s}  same tokens")
    for row in rows:
        print(f"{row['library']:19s} {row['num_beams']:5d} {row['batch_size']:5d} {row['seconds'] * 1000:7.0f} "
              f"{row['tokens_per_s']:9,.0f}  {row['same_tokens_as_t5edu']}")
    for beams in (1, 4):
        for batch in (1, 64):
            t = {x["library"]: x["seconds"] for x in rows if (x["num_beams"], x["batch_size"]) == (beams, batch)}
            print(f"beams {beams}, batch {batch:2d}: t5edu is {t['transformers-eager'] / t['t5edu']:.2f}x "
                  "transformers")

# %% [markdown]
# Batch 64 takes barely longer than batch 1: 32 decoding steps of a small model leave the GPU mostly
# idle, waiting for Python to launch the next step's kernels, so the time is set by the number of
# steps and kernels, not by the arithmetic. That is also why t5edu's leaner decoding loop shows (1.39×
# to 1.51× `transformers`), but the goal of 2× for beam-4 at batch 64 is not met. CUDA graphs, which
# replay a whole step's kernels with one launch, are the usual next step there.
#
# Finally, the book's demo recipe (§7.15) trained on the same GPU:

# %%
for r in reports:
    demo = r.get("demo")
    if demo:
        print(f"{r['device']}: the demo recipe, {demo['steps']} steps, held-out exact match "
              f"{demo['exact_match']:.2f} in {demo['seconds']:.0f} s")

# %% [markdown]
# A model with fewer than a million parameters cannot keep an H200 busy: its kernels are tiny, so the
# time goes to launching them and to Python, not to arithmetic (compare the CPU run of §7.15). GPUs pay
# off at the shapes of the table above, not at this one.
#
# To measure your own GPU, run `make gpu-report` (about 8 minutes on an H100 or H200) and commit the
# file it writes; these cells will then show it next to this one.

# %% [markdown]
# ## 7.14 Under the hood: checkpoints that survive a crash
#
# *This section can be skipped on a first reading; §7.15 trains the book's model.*
#
# A rename is atomic for readers, but the operating system may keep both the new files and the
# rename itself in memory for a while; after a power cut, the disk can hold the rename without the
# file contents. `t5edu.files` therefore follows the usual recipe for every file the package writes:
# write to a temporary name, `fsync` the file (its bytes reach the disk), `os.replace` it over the
# target (the atomic moment), then `fsync` the **folder** (the new name reaches the disk).
# `save_checkpoint` does the same with a whole folder: `atomic_write` for each file inside the
# temporary folder, one `os.replace` of the folder, one `fsync` of the run folder.
#
# **Check: a crash during the write.** We save a checkpoint at step 1, then make the write of
# step 2 fail halfway — after the weights are written, while the optimizer state is being saved.
# `latest` still names step 1, no half-written folder is left, and step 1 loads.

# %%
ckpt_dir = WORK / "crash"
opt = make_optimizer(model, "adamw", lr=1e-3)
sched = make_scheduler(opt, warmup=10)
save_checkpoint(ckpt_dir, 1, model, opt, sched, extra={"position": 1})
real_save = torch.save


def torch_save_that_crashes(obj, f, *args, **kwargs):
    raise OSError("disk full (simulated)")


torch.save = torch_save_that_crashes
try:
    save_checkpoint(ckpt_dir, 2, model, opt, sched, extra={"position": 2})
except OSError as err:
    print("the write failed:", err)
finally:
    torch.save = real_save

assert (ckpt_dir / "latest").read_text().strip() == "checkpoint-00000001"
assert sorted(p.name for p in ckpt_dir.iterdir()) == ["checkpoint-00000001", "latest"]
state = load_checkpoint(latest_checkpoint(ckpt_dir), copy.deepcopy(model), opt, sched)
assert state["step"] == 1 and state["position"] == 1
print("still loadable:", latest_checkpoint(ckpt_dir).name)

# %% [markdown]
# **Check: a damaged checkpoint.** A checkpoint can also be damaged after it was written — a copy
# cut short, a disk that filled up. We cut the newest checkpoint's weights in half: its size no longer
# matches the manifest, so `latest_checkpoint` warns, skips it, falls back to the previous one, and
# leaves the damaged folder where it is.

# %%
import warnings

save_checkpoint(ckpt_dir, 2, model, opt, sched, extra={"position": 2})
weights = ckpt_dir / "checkpoint-00000002" / "model.safetensors"
weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    chosen = latest_checkpoint(ckpt_dir)
print(str(caught[0].message).replace(str(ckpt_dir), "<run>"))
assert chosen.name == "checkpoint-00000001" and weights.exists()

# %% [markdown]
# **Check: one clear error.** Resuming with another optimizer, or a model of another shape, stops
# at once with every difference named, instead of a long list of mismatched tensors — or worse,
# a run that silently continues with the wrong optimizer state.

# %%
other_shape = T5(replace(config, d_ff=96))
adafactor = make_optimizer(other_shape, "adafactor", lr=1e-3)
try:
    load_checkpoint(chosen, other_shape, adafactor)
except ResumeError as err:
    print(str(err).replace(str(ckpt_dir), "<run>"))

# %% [markdown]
# **Check: numbers that are not numbers.** An infinite learning rate turns the weights into NaN in
# the first step. The checkpoint of step 1 refuses to save them, and the run stops with an error
# naming the step; had it gone on, the loss of step 2 would have been NaN and stopped it there.
# Either way, no NaN model is ever saved: the newest checkpoint stays the last good one.

# %%
_ = torch.manual_seed(0)
try:
    train(T5(config), features, collate, replace(cfg, lr=float("inf"), save_every=1, max_steps=5),
          WORK / "diverged")
except FloatingPointError as err:
    print(err)
assert list_checkpoints(WORK / "diverged") == []

# %% [markdown]
# ## 7.15 The book's model, trained
#
# Everything is in place to train the model the book has been building towards: a 0.69 M-parameter
# T5 (d_model 128, two encoder and two decoder blocks) and its own 235-piece tokenizer, trained from
# nothing on 20,000 examples of Chapter 06's synthetic mixture — copy, reverse, sort, count and add —
# for 3,000 steps of 64 examples, with AdamW at a peak of $10^{-3}$, 200 warm-up steps and a linear
# decay to zero. Every 500 steps the loop scores 500 held-out examples (inputs never seen in training).
#
# `t5edu.demo` holds this recipe. `demo.load_or_train()` trains it with the `train` of this chapter —
# a few minutes of one CPU core — and keeps the result in a cache (`runs/cache/`, or the folder
# `T5EDU_CACHE` names), so that Chapter 08 and the later chapters load the same model in a second.
# The same run from the command line: `t5edu demo`.

# %%
from t5edu import demo

model, tokenizer, summary = demo.load_or_train(demo.DEMO, seed=0)
print(f"{summary['parameters']:,} parameters, {summary['steps']:,} steps, vocabulary {tokenizer.vocab_size}")

# %%
# NBVAL_IGNORE_OUTPUT
# Trained just now, or loaded from the cache: either way the run's own clock says what training cost
# (about 120 CPU-seconds on an idle core; `tests/test_demo.py` holds the command line to < 300).
print(f"the run took {summary['cpu_seconds']:.0f} CPU-seconds ({summary['seconds']:.0f} s on the clock)")
assert summary["cpu_seconds"] > 0 and summary["steps"] == demo.DEMO.train["max_steps"]

# %%
history = summary["history"]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot([r["step"] for r in history], [r["loss"] for r in history])
ax.set_xlabel("optimizer step")
ax.set_ylabel("cross-entropy per target token")
ax.set_yscale("log")
ax.set_title("Figure 7.3: training loss of the book's model")
ax.grid(alpha=0.3)
plt.show()
assert history[-1]["loss"] < history[0]["loss"] / 20

# %% [markdown]
# *Figure 7.3 — The loss falls fast through warm-up, pauses around step 500 while `copy` and `reverse`
# are still mostly wrong (Figure 7.4), then falls steadily, by almost three orders of magnitude, as the
# learning rate decays to zero.*

# %%
evals = [r for r in history if "exact_match_per_task" in r]
fig, ax = plt.subplots(figsize=(6, 3))
for task in sorted(evals[-1]["exact_match_per_task"]):
    ax.plot([r["step"] for r in evals], [r["exact_match_per_task"][task] for r in evals], marker="o",
            label=task)
ax.set_xlabel("optimizer step")
ax.set_ylabel("held-out exact match")
ax.set_ylim(0, 1.02)
ax.legend(loc="lower right")
ax.set_title("Figure 7.4: exact match per task during training")
plt.show()
for r in evals:
    print(f"step {r['step']:5d}: " + "  ".join(f"{t} {v:.2f}" for t, v in r["exact_match_per_task"].items()))

# %% [markdown]
# *Figure 7.4 — The tasks are learned in turn, not all at once: `add` is solved by step 500, while
# `copy` and `reverse`, which depend on word positions that T5 only knows relatively (Chapter 06,
# §6.2), come right last; `sort` ends lowest.*
#
# Now the model answers held-out inputs. A few per task, next to the expected target:

# %%
rows, report = demo.evaluate_run(model, tokenizer, demo.DEMO, seed=0)
shown = {}
print(f"{'input':34} {'output':22} {'target':22}")
for row, output in zip(rows, report["predictions"], strict=True):
    if shown.get(row["task"], 0) < 2:
        shown[row["task"]] = shown.get(row["task"], 0) + 1
        mark = "" if output == row["targets"] else "  <- wrong"
        print(f"{row['inputs']:34} {output:22} {row['targets']:22}{mark}")

# %% [markdown]
# Over all 500 held-out examples:

# %%
for task, scores in report["per_task"].items():
    print(f"{task:8} exact match {scores['exact_match']:.3f} on {scores['n']}")
assert report["exact_match"] >= 0.90 and min(s["exact_match"] for s in report["per_task"].values()) >= 0.80
print(f"held-out exact match: {report['exact_match']:.3f}")

# %% [markdown]
# ## Summary
#
# - The loss is a **sum** over target tokens, divided once by the tokens of the whole step: gradient
#   accumulation and many processes then give exactly the gradient of one big batch.
# - T5 trained with **Adafactor** and an **inverse-square-root** schedule; AdamW with a linear decay
#   learns our small demo faster. Warm-up, clipping, and a check that the loss is finite protect a run.
# - A run is resumable when the **data order** is a function of (seed, epoch) and a checkpoint holds
#   weights, optimizer, schedule, random generators and the position in the data; written atomically
#   and verified against its manifest, it survives a crash and is recognised when damaged.
# - `train` is one loop for a CPU, a GPU or many GPUs under `torchrun`, and it turned random weights
#   into a model that answers about 99 % of held-out questions exactly.
#
# **What is in the package now**
#
# ```python
# from t5edu.train import train, TrainConfig, train_step, make_optimizer, make_scheduler, Schedule, unwrap
# from t5edu.checkpoint import save_checkpoint, load_checkpoint, latest_checkpoint, verify_checkpoint
# from t5edu.metrics import greedy_decode, evaluate, exact_match, rouge, bleu
# from t5edu import demo                      # demo.run(out_dir), demo.load_or_train()
# ```
#
# On the command line: `t5edu train --recipe smoke --out runs/smoke` (seconds), `--resume` to continue,
# `torchrun --nproc_per_node N -m t5edu train ...` for many processes, and `t5edu demo` for the run of §7.15.
#
# **Previous:** [Chapter 06 — Data](06_data.ipynb). **Next:** [Chapter 08 — Generation](08_generate.ipynb)
# looks closely at decoding — the key/value cache, beam search and sampling — with the model trained here.
# **Exercises:** [`../exercises/ch07_train.ipynb`](../exercises/ch07_train.ipynb).
#
# ## Further reading
#
# - Raffel et al., *Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer*
#   (2020), §3.1.2 on training: [arXiv:1910.10683](https://arxiv.org/abs/1910.10683).
# - Shazeer & Stern, *Adafactor: Adaptive Learning Rates with Sublinear Memory Cost* (2018):
#   [arXiv:1804.04235](https://arxiv.org/abs/1804.04235).
# - Loshchilov & Hutter, *Decoupled Weight Decay Regularization* (AdamW, 2019):
#   [arXiv:1711.05101](https://arxiv.org/abs/1711.05101).
# - Vaswani et al., *Attention Is All You Need* (2017), §5.3 on warm-up and the inverse-square-root
#   schedule: [arXiv:1706.03762](https://arxiv.org/abs/1706.03762).
# - Li et al., *PyTorch Distributed: Experiences on Accelerating Data Parallel Training* (DDP, 2020):
#   [arXiv:2006.15704](https://arxiv.org/abs/2006.15704).
# - Micikevicius et al., *Mixed Precision Training* (2018):
#   [arXiv:1710.03740](https://arxiv.org/abs/1710.03740).
