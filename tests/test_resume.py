"""Chapter 07: a training process killed with SIGKILL and resumed ends with exactly the weights of an
uninterrupted run (on the CPU, same seed) — through the real command line, `python -m t5edu train`."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow  # `make test-fast` skips this file; `make test` (CI) runs it

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONHASHSEED": "0"}
STEPS, SAVE_EVERY = 24, 6
# dropout on: the resumed run must also restore the random generators to draw the same masks
ARGS = ["--recipe", "smoke", "--max-steps", str(STEPS), "--save-every", str(SAVE_EVERY), "--seed", "3",
        "--no-progress", "--threads", "1", "--dropout", "0.1"]

def _run(cmd):
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300, check=False)



def cli(out, *extra):
    return [sys.executable, "-m", "t5edu", "train", "--out", str(out), *ARGS, *extra]


def test_sigkill_then_resume_is_bit_exact(tmp_path):
    # The run to kill is slowed down (a sleep per batch, outside the arithmetic) so that it is surely
    # still training when we kill it, a few steps after its first checkpoint (step 6 of 24).
    victim = subprocess.Popen(cli(tmp_path / "killed", "--step-delay", "0.2"), cwd=ROOT, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = tmp_path / "killed" / "latest"
    deadline = time.monotonic() + 240
    while not latest.exists():
        assert victim.poll() is None, victim.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    time.sleep(0.5)  # a few steps past the checkpoint: the resumed run must redo them
    assert victim.poll() is None, "the run finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    killed_at = latest.read_text().strip()
    assert killed_at < f"checkpoint-{STEPS:08d}", killed_at
    assert not (tmp_path / "killed" / "model.safetensors").exists()  # it never finished

    resumed = _run(cli(tmp_path / "killed", "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = _run(cli(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-2000:]

    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert (tmp_path / "killed" / "latest").read_text().strip() == f"checkpoint-{STEPS:08d}"
    lines = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert steps == list(range(1, STEPS + 1))  # the steps redone after the kill are logged once
