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
# framework, with everything a real run needs and nothing hidden.
#
# **What you will build**
# - the loss over target tokens, AdamW and T5's Adafactor, the inverse-square-root schedule,
#   gradient clipping and gradient accumulation — one `train_step`;
# - checkpoints that survive a crash and a `--resume` that continues **bit for bit**;
# - greedy decoding and the metrics (exact match, ROUGE, BLEU) to evaluate what the model learned;
# - `train(...)`, the loop that runs the same on a CPU, a GPU, or many GPUs under `torchrun`.

# %%
#| default_exp train

# %%
#| export
import contextlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F


# %%
import copy
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

torch.manual_seed(0)
torch.set_num_threads(1)  # tiny matrices: one thread is faster than two, and never waits for a busy core
WORK = Path(tempfile.mkdtemp(prefix="t5edu-ch07-"))  # checkpoints of this chapter go here

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


# %%
device = pick_device()
assert device.type in {"cuda", "mps", "cpu"}
device = torch.device("cpu")  # this chapter runs on the CPU, so that its numbers are the same everywhere
with autocast_for(device):
    assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32  # no autocast on the CPU
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
# The chapter trains a deliberately tiny T5 on the synthetic multi-task mixture of Chapter 06, so
# that every cell runs in seconds. The tokenizer is trained on the training texts, as `t5edu demo`
# does from nothing.

# %%
from t5edu.data import TextToTextCollator, synthetic_mixture, synthetic_tokenizer_corpus
from t5edu.encoder import T5Config
from t5edu.model import T5
from t5edu.tokenizer import Tokenizer

train_rows = synthetic_mixture(1000, seed=0, split="train")
test_rows = synthetic_mixture(100, seed=1, split="test")
tokenizer = Tokenizer.train(synthetic_tokenizer_corpus(n=1000, prose=False), vocab_size=200)
features = [{"input_ids": tokenizer.encode(x), "labels": tokenizer.encode(y)}
            for x, y in zip(train_rows["inputs"], train_rows["targets"])]
collate = TextToTextCollator(pad_id=tokenizer.pad_id)

config = T5Config(vocab_size=tokenizer.vocab_size, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                  relative_attention_num_buckets=16, relative_attention_max_distance=32, dropout_rate=0.0)
torch.manual_seed(0)
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
    """The learning-rate multiplier after `step` optimizer steps (used with `torch.optim.lr_scheduler.LambdaLR`).

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
ax.set_title("learning-rate schedules (warm-up 100 steps)")
plt.show()

# %% [markdown]
# ## 7.6 One training step: accumulation and clipping
#
# `train_step` takes the micro-batches of one optimizer step. It counts the target tokens of all
# of them first (and, with several processes, of all processes), then runs forward and backward on
# each micro-batch with its loss sum divided by that one count. Gradients add up in `.grad`, so after
# the last micro-batch they are exactly the gradient of the mean loss over the whole step.
# Then **gradient clipping** rescales the gradient if its global norm exceeds `clip_norm` (1.0): a
# rare bad batch cannot throw the weights far. Then the optimizer and the schedule take their step.

# %%
#| export
def train_step(model, micro_batches, optimizer, scheduler=None, *, clip_norm=1.0, autocast=None,
               world_size=1):
    """One optimizer step over `micro_batches` (this process's share of one global batch).

    The loss is normalised once, by the number of target tokens in the *whole* global batch, so that
    accumulating k micro-batches, or splitting the batch over n processes, gives the same gradient as
    one big batch. Returns the batch's mean loss per token, its token count and the gradient norm."""
    autocast = autocast or contextlib.nullcontext
    device = micro_batches[0]["labels"].device
    n_tokens = torch.tensor(float(sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in micro_batches)),
                            device=device)
    if world_size > 1:
        dist.all_reduce(n_tokens)  # tokens in the global batch, summed over processes
    total = torch.zeros((), device=device)
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
    if clip_norm:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip_norm)
    else:
        grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": (total / n_tokens).item(), "target_tokens": int(n_tokens.item()),
            "grad_norm": float(grad_norm)}


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
diff = max((a - b).abs().max().item() for a, b in zip(big.parameters(), small.parameters()))
assert diff < 1e-6
print(f"loss {big_stats['loss']:.4f} on {big_stats['target_tokens']} target tokens; "
      f"largest weight difference after the step: {'< 1e-6' if diff < 1e-6 else diff}")

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
#| export
def epoch_order(num_examples, seed, epoch):
    """The shuffled order of one epoch: a function of (seed, epoch) only, so it can be recomputed on resume."""
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
# ## 7.8 Checkpoints that survive a crash
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
# array, so we store it as a tensor.
#
# A crash can come at any moment — during the write too. So a checkpoint is written into a fresh
# temporary directory next to its final place, every file is `fsync`ed, and only then is the
# directory **renamed**: a rename within one file system is atomic, so `checkpoint-00000200/` either
# exists complete or does not exist. The small file `latest`, naming the newest checkpoint, is
# replaced the same way (`os.replace`). A reader that finds `latest` missing or pointing at nothing
# falls back to the newest complete directory.

# %%
#| export
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
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


# %%
#| export
def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path, text):
    """Write a small file so that readers see the old content or the new, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync(path.parent)


def save_weights(model, directory):
    """config.json + model.safetensors via the model's save_pretrained, or the bare weights."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(directory)
    else:
        from safetensors.torch import save_model

        save_model(model, str(Path(directory) / "model.safetensors"))


def load_weights(model, directory):
    """Load model.safetensors into `model` in place (the optimizer keeps pointing at the same tensors)."""
    from safetensors.torch import load_file, load_model

    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    file = str(Path(directory) / "model.safetensors")
    if hasattr(model, "load_checkpoint_state"):  # t5edu.T5: knows its tied embeddings
        model.load_checkpoint_state(load_file(file))
    else:
        load_model(model, file, strict=True)


CHECKPOINT_PREFIX = "checkpoint-"


def save_checkpoint(out_dir, step, model, optimizer=None, scheduler=None, extra=None, keep=2):
    """Write checkpoint-STEP/ into `out_dir` atomically and point the file `latest` at it.

    Everything goes into a fresh temporary directory next to its final place, is fsynced, and only
    then renamed; a crash at any moment leaves either the old checkpoint or the new one, complete."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f"{CHECKPOINT_PREFIX}*.tmp-*"):  # leftovers of a crash during a write
        shutil.rmtree(stale, ignore_errors=True)
    final = out_dir / f"{CHECKPOINT_PREFIX}{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=out_dir))
    try:
        save_weights(model, tmp)
        state = {"step": step, "rng": rng_state(), **(extra or {})}
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
        if scheduler is not None:
            state["scheduler"] = scheduler.state_dict()
        torch.save(state, tmp / "state.pt")
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        if final.exists():  # the same step saved again: move the old copy aside first
            old = out_dir / f"{final.name}.tmp-old"
            os.replace(final, old)
            shutil.rmtree(old)
        os.replace(tmp, final)  # the atomic moment
        _fsync(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(out_dir / "latest", final.name + "\n")
    if keep:
        for old in list_checkpoints(out_dir)[:-keep]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(out_dir):
    """Complete checkpoint directories, oldest first (a directory is complete once it holds state.pt)."""
    found = [p for p in Path(out_dir).glob(f"{CHECKPOINT_PREFIX}*")
             if p.is_dir() and ".tmp-" not in p.name and (p / "state.pt").exists()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def latest_checkpoint(out_dir):
    """The checkpoint `latest` names, or the newest complete one if that file is missing or stale."""
    out_dir = Path(out_dir)
    pointer = out_dir / "latest"
    if pointer.exists():
        named = out_dir / pointer.read_text().strip()
        if named.is_dir() and (named / "state.pt").exists():
            return named
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def load_checkpoint(path, model, optimizer=None, scheduler=None, restore_rng=True):
    """Load a checkpoint into existing objects; returns the saved state (step, position, ...)."""
    path = Path(path)
    load_weights(model, path)
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        set_rng_state(state["rng"])
    return state


# %% [markdown]
# **Check: a crash during the write.** We save a checkpoint at step 1, then make the write of
# step 2 fail halfway — after the weights are written, while the optimizer state is being saved.
# `latest` still names step 1, no half-written directory is left, and step 1 loads.

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
print("still loadable:", latest_checkpoint(ckpt_dir).name, sorted(p.name for p in latest_checkpoint(ckpt_dir).iterdir()))

# %% [markdown]
# The tests go further (`tests/test_resume.py`): they kill a real training process with
# `SIGKILL` right after a checkpoint appears, resume it, and compare every weight with an
# uninterrupted run.

# %% [markdown]
# ## 7.9 Greedy decoding and evaluation
#
# To evaluate, the model must produce text. **Greedy decoding** starts the decoder with the start
# id (pad, 0), runs the model, appends the most likely next token, and repeats until every row has
# produced `</s>` or the length limit is reached. This version recomputes the whole decoder at each
# step — quadratic, but short and obviously right. Chapter 08 explains decoding properly, adds the
# key/value cache that makes it linear, and beam search, and checks itself against this function.
#
# The metrics: **exact match** for tasks with one right answer (our synthetic tasks: the output must
# equal the target, up to whitespace); **ROUGE-L** (Google's `rouge-score`) for summarization and
# **BLEU** (`sacrebleu`) for translation, where many outputs are acceptable and overlap is scored.

# %%
#| export
@torch.no_grad()
def greedy_decode(model, input_ids, attention_mask=None, max_new_tokens=32, *, start_id=None, eos_id=None,
                  pad_id=None):
    """Generate up to `max_new_tokens` tokens per row, always taking the most likely next token.

    Returns the generated ids (without the decoder start token); a row that has produced EOS is padded
    with `pad_id` afterwards. The encoder runs once; if the model offers a key/value cache
    (`model.decoder.new_cache()`), each step feeds only the newest token, else the whole prefix.
    Chapter 08 explains the cache and adds beam search and sampling."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    config = getattr(model, "config", None)
    start_id = getattr(config, "decoder_start_token_id", 0) if start_id is None else start_id
    eos_id = getattr(config, "eos_token_id", 1) if eos_id is None else eos_id
    pad_id = getattr(config, "pad_token_id", 0) if pad_id is None else pad_id
    if attention_mask is None:
        attention_mask = (input_ids != pad_id).long()
    was_training = model.training
    model.eval()
    rows = input_ids.size(0)
    out = torch.full((rows, 1), start_id, dtype=torch.long, device=input_ids.device)
    done = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
    encoded = model.encode(input_ids, attention_mask) if hasattr(model, "encode") else None
    decoder = getattr(model, "decoder", None)
    cache = decoder.new_cache() if encoded is not None and hasattr(decoder, "new_cache") else None
    for _ in range(max_new_tokens):
        if encoded is None:
            logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=out).logits
        else:
            logits = model(attention_mask=attention_mask, encoder_hidden_states=encoded, cache=cache,
                           decoder_input_ids=out[:, -1:] if cache is not None else out).logits
        next_id = logits[:, -1].argmax(-1)
        next_id = torch.where(done, torch.full_like(next_id, pad_id), next_id)
        out = torch.cat([out, next_id[:, None]], dim=1)
        done |= next_id == eos_id
        if done.all():
            break
    model.train(was_training)
    return out[:, 1:]


# %%
#| export
def normalize_answer(text):
    return " ".join(text.strip().split())


def exact_match(predictions, references):
    """The fraction of predictions equal to their reference (after collapsing whitespace)."""
    if not references:
        return 0.0
    return sum(normalize_answer(p) == normalize_answer(r) for p, r in zip(predictions, references)) / len(references)


def rouge_l(predictions, references):
    """Mean ROUGE-L F1 (Google's rouge-score package, with stemming), as used for summarization."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
    return sum(scores) / max(len(scores), 1)


def bleu(predictions, references):
    """Corpus BLEU (sacrebleu), as used for translation."""
    import sacrebleu

    return sacrebleu.corpus_bleu(list(predictions), [list(references)]).score


def generate_texts(model, tokenizer, inputs, *, batch_size=64, max_new_tokens=32, device=None):
    """Greedy outputs for a list of input strings, batched by length."""
    device = device or next(getattr(model, "module", model).parameters()).device
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


def _until_eos(ids, eos_id):
    return ids[:ids.index(eos_id)] if eos_id in ids else ids


def evaluate(model, tokenizer, examples, *, batch_size=64, max_new_tokens=32, metrics=("exact_match",)):
    """Score greedy outputs on `examples` (dicts with task/inputs/targets), per task and overall.

    Returns {"exact_match": ..., "per_task": {task: {metric: value}}, "predictions": [...]}."""
    examples = list(examples)
    predictions = generate_texts(model, tokenizer, [e["inputs"] for e in examples],
                                 batch_size=batch_size, max_new_tokens=max_new_tokens)
    scorers = {"exact_match": exact_match, "rouge_l": rouge_l, "bleu": bleu}
    per_task = {}
    for task in sorted({e["task"] for e in examples}):
        rows = [i for i, e in enumerate(examples) if e["task"] == task]
        preds, refs = [predictions[i] for i in rows], [examples[i]["targets"] for i in rows]
        per_task[task] = {m: scorers[m](preds, refs) for m in metrics}
        per_task[task]["n"] = len(rows)
    refs = [e["targets"] for e in examples]
    result = {m: scorers[m](predictions, refs) for m in metrics}
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
assert math.isclose(rouge_l(["the cat sat"], ["the cat sat down"]), 2 * 1 * 0.75 / 1.75)
assert math.isclose(bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 100.0)
print("untrained model, greedy:", [tokenizer.decode(g) for g in generated])

# %% [markdown]
# ## 7.10 The loop
#
# `train` puts the pieces together. Per step: read `grad_accum` global micro-batches, pad each once
# (so every process sees the same padding), keep this process's share, call `train_step`; then log,
# and checkpoint every `save_every` steps and at the end. A `tqdm` bar on stderr shows loss, learning
# rate and tokens per second; every `log_every` steps a line goes to `metrics.jsonl`. On `resume`
# it loads the latest checkpoint (weights, optimizer, schedule, random generators, data position)
# and rewrites `metrics.jsonl` up to that step, so a crashed run leaves no duplicate lines.
#
# `train` also knows about many processes (§7.11): `init_distributed` reads what `torchrun`
# sets, and the model is wrapped in `DistributedDataParallel`.

# %%
#| export
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
    max_seconds: float = 0.0  # a time budget: stop after this many seconds of training (0: none)
    precision: str = "auto"  # "auto" (bf16 on a capable GPU), "bf16", "fp32"
    compile: bool = False
    progress: bool = True  # a tqdm bar on stderr


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


def train(model, examples, collate, config, out_dir, *, resume=False, device=None):
    """Train `model` on `examples` (a list of features) and return the metrics history.

    `collate(list_of_features)` pads a list of examples into a dict of tensors with input_ids,
    attention_mask and labels (-100 on padding). Checkpoints, `metrics.jsonl` and `latest` go to `out_dir`.
    Run it under torchrun and it trains with DistributedDataParallel, one process per device."""
    cfg = config
    out_dir = Path(out_dir)
    rank, world_size, local_rank = init_distributed()
    if device is None:
        device = pick_device()
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
    device = torch.device(device)
    if device.type == "cuda":
        enable_tf32()
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg.schedule, cfg.warmup_steps, cfg.max_steps)
    step, position, elapsed = 0, 0, 0.0
    checkpoint = latest_checkpoint(out_dir) if resume else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, scheduler)  # also restores the RNGs
        step, position, elapsed = state["step"], state["position"], state.get("elapsed", 0.0)
        # The schedule's shape comes from this run's config (a resumed run may be given more steps).
        schedule = Schedule(cfg.schedule, cfg.warmup_steps, cfg.max_steps)
        scheduler.lr_lambdas = [schedule] * len(optimizer.param_groups)
    else:
        seed_everything(cfg.seed)
    metrics_path = out_dir / "metrics.jsonl"
    history = _read_metrics(metrics_path, step) if checkpoint is not None else []
    if rank == 0:
        atomic_write_text(metrics_path, "".join(json.dumps(row) + "\n" for row in history))
    net = model
    if world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    def autocast():
        return autocast_for(device, cfg.precision)

    batches = global_batches(len(examples), cfg.batch_size, cfg.seed, start=position)

    def save():
        extra = {"position": position, "elapsed": elapsed, "world_size": world_size,
                 "train_config": asdict(cfg)}
        if rank == 0:
            save_checkpoint(out_dir, step, model, optimizer, scheduler, extra, keep=cfg.keep_checkpoints)
        barrier()

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.max_steps, initial=step, disable=not (cfg.progress and rank == 0),
               dynamic_ncols=True, desc="train")
    window = {"loss": 0.0, "steps": 0, "tokens": 0, "seconds": 0.0}
    last_saved = step if checkpoint is not None else -1
    start_step, start_elapsed, loop_start = step, elapsed, time.perf_counter()
    with open(metrics_path, "a") if rank == 0 else contextlib.nullcontext() as log:
        while step < cfg.max_steps:
            t0 = time.perf_counter()
            micro = []
            for _ in range(cfg.grad_accum):
                position, indices = next(batches)
                batch = collate([examples[i] for i in indices])  # the same padding on every process
                window["tokens"] += int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
                micro.append({k: v.to(device) for k, v in shard(batch, rank, world_size).items()})
            position += 1  # the next micro-batch to read
            stats = train_step(net, micro, optimizer, scheduler, clip_norm=cfg.clip_norm, autocast=autocast,
                               world_size=world_size)
            step += 1
            seconds = time.perf_counter() - t0
            elapsed = start_elapsed + (time.perf_counter() - loop_start)
            window["loss"] += stats["loss"]
            window["steps"] += 1
            window["seconds"] += seconds
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                row = {"step": step, "loss": window["loss"] / window["steps"],
                       "lr": scheduler.get_last_lr()[0], "grad_norm": stats["grad_norm"],
                       "tokens_per_s": window["tokens"] / max(window["seconds"], 1e-9), "elapsed": elapsed}
                history.append(row)
                if rank == 0:
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.2e}",
                                tok_s=f"{row['tokens_per_s']:.0f}")
                window = {"loss": 0.0, "steps": 0, "tokens": 0, "seconds": 0.0}
            bar.update(1)
            out_of_time = bool(cfg.max_seconds) and elapsed >= cfg.max_seconds
            if cfg.max_seconds and step % cfg.log_every == 0:
                # A time budget: the decaying schedules aim at the step where the time will run out.
                per_step = (elapsed - start_elapsed) / (step - start_step)
                fit = torch.tensor([step + (cfg.max_seconds - elapsed) / per_step], device=device)
                if world_size > 1:  # every process must use the same schedule
                    dist.all_reduce(fit, op=dist.ReduceOp.MIN)
                horizon = int(min(cfg.max_steps, max(step + 1, fit.item())))
                for schedule in scheduler.lr_lambdas:  # one per parameter group (the same object)
                    schedule.total = horizon
                bar.total = horizon
            if world_size > 1:  # every process must agree to stop
                flag = torch.tensor(float(out_of_time), device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                out_of_time = bool(flag.item())
            if cfg.save_every and step % cfg.save_every == 0:
                save()
                last_saved = step
            if out_of_time:
                break
    bar.close()
    if last_saved != step:
        save()
    return history


# %% [markdown]
# We train the tiny model for 100 steps — a few seconds — and plot the loss. The progress bar is
# switched off here (it writes timings, which differ on every run).

# %%
cfg = TrainConfig(optimizer="adamw", lr=3e-3, schedule="inverse_sqrt", warmup_steps=20, max_steps=100,
                  batch_size=16, save_every=50, log_every=10, progress=False)
torch.manual_seed(0)
model = T5(config)
history = train(model, features, collate, cfg, WORK / "run")
for row in history[::3]:
    print(f"step {row['step']:4d}  loss {row['loss']:.3f}  lr {row['lr']:.2e}")
assert history[-1]["loss"] < history[0]["loss"] / 2
assert sorted(p.name for p in (WORK / "run").iterdir()) == [
    "checkpoint-00000050", "checkpoint-00000100", "latest", "metrics.jsonl"]

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot([r["step"] for r in history], [r["loss"] for r in history], marker=".")
ax.set_xlabel("optimizer step")
ax.set_ylabel("loss per target token")
ax.set_yscale("log")
ax.set_title("training the tiny T5 on the synthetic mixture")
plt.show()

# %% [markdown]
# **Check: resume is bit-exact.** A second run stops at step 50 (as if it had crashed right
# after its checkpoint); a third call resumes from that checkpoint and goes on to step 100. Its
# weights are *equal* — not close, equal — to those of the uninterrupted run above: the same data
# batches in the same order, the same optimizer moments, the same learning rate, the same dropout
# masks.

# %%
from dataclasses import replace

torch.manual_seed(0)
first_half = T5(config)
train(first_half, features, collate, replace(cfg, max_steps=50), WORK / "interrupted")
torch.manual_seed(123)  # a new process would start from other weights; resume must not care
resumed = T5(config)
train(resumed, features, collate, cfg, WORK / "interrupted", resume=True)
same = [torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values())]
assert all(same)
print(f"{len(same)} tensors, all equal after resume: {all(same)}")

# %% [markdown]
# **Exact match on held-out examples.** After 100 steps of a 180k-parameter model the easy
# tasks are starting to come out right; `t5edu demo` trains a 0.69 M-parameter model for 3,000 steps
# (about two minutes on one CPU core) and gets about 99 % overall, at least 96 % on every task.

# %%
report = evaluate(model, tokenizer, test_rows, max_new_tokens=16)
for task, scores in report["per_task"].items():
    print(f"{task:8} exact match {scores['exact_match']:.2f} on {scores['n']}")
print(f"overall  {report['exact_match']:.2f}")
example = test_rows[0]
print(f"{example['inputs']!r} -> {report['predictions'][0]!r} (target {example['targets']!r})")
assert 0.0 <= report["exact_match"] <= 1.0 and len(report["predictions"]) == len(test_rows)


# %% [markdown]
# ## 7.11 Many GPUs: DistributedDataParallel
#
# With several GPUs, the same script runs once per GPU:
#
# ```bash
# torchrun --nproc_per_node 8 -m t5edu train --preset demo --out runs/ddp
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
# This book was written on a machine without a GPU, so the chapter takes the CPU path and shows no
# GPU figures: the speed-up of each switch above on a real GPU is still open. On one, run
# `t5edu bench train --device cuda --bf16 --preset t5-v1_1-base --batch-size 32`: it times a training
# step of t5edu next to Hugging Face's T5 on the same weights and prints tokens per second, TFLOP/s and
# MFU (model FLOPs utilisation: the step's matrix-product FLOPs per second over the GPU's bf16 peak).
# `t5edu train --preset demo --out runs/gpu` shows the whole loop's tokens per second in `metrics.jsonl`.

# %% [markdown]
# ## Summary
#
# - `token_loss_sum`, `make_optimizer` (AdamW, Adafactor), `Schedule` / `make_scheduler`
#   (inverse square root, linear, cosine), `train_step` with accumulation and clipping.
# - Resumable data order (`global_batches`, `shard`), atomic checkpoints
#   (`save_checkpoint`, `load_checkpoint`, `latest_checkpoint`) with every RNG state.
# - `greedy_decode`, `exact_match`, `rouge_l`, `bleu`, `evaluate`.
# - `train(model, examples, collate, TrainConfig(...), out_dir, resume=...)` — one process or many.
#
# In the package: `from t5edu.train import train, TrainConfig, greedy_decode, evaluate`. On the
# command line: `t5edu train --preset tiny --out runs/tiny`, and the main job, `t5edu demo`, which
# trains a tokenizer and a small T5 from nothing to over 90 % exact match in a few minutes on a CPU.
#
# **Next:** Chapter 08 looks closely at decoding: the key/value cache, beam search and sampling.
