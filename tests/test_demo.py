"""The main job, `t5edu demo`: first the pipeline on a short budget (tokenizer and model trained from nothing,
evaluated, samples printed, files written, one JSON line at the end), then the full demo and its promise
(>= 90 % exact match in under 5 minutes; about 2 minutes on one core of this machine)."""

import json
import os
import subprocess
import sys
from pathlib import Path
import pytest

pytestmark = pytest.mark.slow  # `make test-fast` skips this file; `make test` (CI) runs it

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONHASHSEED": "0"}

def _run(cmd):
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300, check=False)



def test_demo_pipeline_short(tmp_path):
    out = tmp_path / "demo"
    run = _run([sys.executable, "-m", "t5edu", "demo", "--preset", "tiny", "--out", str(out),
                "--max-steps", "40", "--no-progress", "--threads", "1", "--samples", "1"])
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    for key in ("exact_match", "seconds", "params", "steps", "exact_match_per_task"):
        assert key in summary, key
    assert 0.0 <= summary["exact_match"] <= 1.0 and summary["steps"] == 40 and summary["params"] > 0
    assert set(summary["exact_match_per_task"]) == {"copy", "reverse", "sort", "count", "add"}
    for task in summary["exact_match_per_task"]:  # a sample per task is printed
        assert any(line.strip().startswith(f"[{task}]") for line in lines), task
    for name in ("spiece.model", "config.json", "model.safetensors", "metrics.jsonl", "loss.png", "latest"):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes().startswith(b"\x89PNG")

    from t5edu.model import T5
    from t5edu.tokenizer import Tokenizer

    model = T5.from_pretrained(out)
    tok = Tokenizer.load(out)
    assert model.config.vocab_size == tok.vocab_size
    assert sum(p.numel() for p in model.parameters()) == summary["params"]
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 40 and all({"loss", "lr", "tokens_per_s"} <= set(m) for m in metrics)


def test_demo_learns_the_mixture_within_five_minutes(tmp_path):
    """The main job's promise, measured: >= 90% exact match on held-out examples in < 5 minutes, from nothing."""
    run = _run([sys.executable, "-m", "t5edu", "demo", "--out", str(tmp_path / "demo"), "--no-progress",
                "--samples", "0"])
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["exact_match"] >= 0.90, summary
    assert summary["seconds"] < 300, summary
    assert min(summary["exact_match_per_task"].values()) >= 0.80, summary  # no task left behind
