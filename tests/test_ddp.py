"""Chapter 07: the same script under `torchrun --nproc_per_node 2` (gloo, CPU) trains with
DistributedDataParallel and ends with the weights of one process on the same global batch."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow  # `make test-fast` skips this file; `make test` (CI) runs it

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONHASHSEED": "0",
       "OMP_NUM_THREADS": "1"}
# dropout off: each process would draw masks for its half of the batch, not for the whole
ARGS = ["--recipe", "smoke", "--max-steps", "6", "--batch-size", "8", "--grad-accum", "2", "--seed", "1",
        "--no-progress", "--threads", "1", "--dropout", "0"]

def _run(cmd):
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300, check=False)



def torchrun():
    exe = Path(sys.executable).with_name("torchrun")
    if exe.exists():
        return [str(exe)]
    if shutil.which("torchrun"):
        return ["torchrun"]
    return [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_processes_equal_one(tmp_path):
    single = _run([sys.executable, "-m", "t5edu", "train", "--out", str(tmp_path / "one"), *ARGS])
    assert single.returncode == 0, single.stderr[-3000:]
    double = _run([*torchrun(), "--standalone", "--nproc_per_node", "2", "-m", "t5edu", "train",
                "--out", str(tmp_path / "two"), *ARGS])
    assert double.returncode == 0, double.stderr[-3000:]
    summary = json.loads(double.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["steps"] == 6

    one = load_file(tmp_path / "one" / "model.safetensors")
    two = load_file(tmp_path / "two" / "model.safetensors")
    start = load_file(tmp_path / "one" / "checkpoint-00000006" / "model.safetensors")
    assert one.keys() == two.keys()
    worst = max((one[k] - two[k]).abs().max().item() for k in one)
    assert worst < 1e-6, f"largest difference between 1 and 2 processes: {worst:.3g}"
    assert all(torch.equal(one[k], start[k]) for k in one)  # the final weights are the last checkpoint's
    # the two runs logged the same losses and the same gradient norms (Adam hardly notices a gradient
    # scaled by a constant, e.g. a forgotten factor world_size; the norm does)
    rows1 = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    rows2 = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows1) == len(rows2) == 6
    for key in ("loss", "grad_norm"):
        assert [r[key] for r in rows1] == pytest.approx([r[key] for r in rows2], rel=1e-5), key
