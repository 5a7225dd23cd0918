"""The main job, `t5edu demo` / `t5edu.demo`: first the pipeline on a short budget (tokenizer and model
trained from nothing, evaluated, samples printed, files written, one JSON line at the end), the cache of
`load_or_train`, then the full demo and its promise (>= 90 % held-out exact match, every task >= 80 %,
in < 300 CPU-seconds)."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from t5edu import demo

pytestmark = pytest.mark.slow  # `make test-fast` skips this file; `make test` (CI) runs it

ROOT = Path(__file__).resolve().parent.parent
TASKS = {"copy", "reverse", "sort", "count", "add"}


def _env(**more):
    """The environment of a subprocess: this one's (the session's cache included), offline."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONHASHSEED": "0", **more}


def _run(cmd):
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900, check=False)


def test_demo_pipeline_short(tmp_path):
    out = tmp_path / "demo"
    run = _run([sys.executable, "-m", "t5edu", "demo", "--recipe", "smoke", "--out", str(out),
                "--max-steps", "40", "--no-progress", "--threads", "1", "--samples", "1"])
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    for key in ("exact_match", "seconds", "cpu_seconds", "parameters", "steps", "exact_match_per_task"):
        assert key in summary, key
    assert 0.0 <= summary["exact_match"] <= 1.0 and summary["steps"] == 40 and summary["parameters"] > 0
    assert set(summary["exact_match_per_task"]) == TASKS
    for task in summary["exact_match_per_task"]:  # a sample per task is printed
        assert any(line.strip().startswith(f"[{task}]") for line in lines), task
    for name in ("spiece.model", "config.json", "model.safetensors", "metrics.jsonl", "loss.png", "latest",
                 "summary.json"):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes().startswith(b"\x89PNG")

    from t5edu.model import T5
    from t5edu.tokenizer import Tokenizer

    model = T5.from_pretrained(out)
    tok = Tokenizer.load(out)
    assert model.config.vocab_size == tok.vocab_size
    assert sum(p.numel() for p in model.parameters()) == summary["parameters"]
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 40 and all({"loss", "lr", "tokens_per_s"} <= set(m) for m in metrics)


def test_train_refuses_a_folder_with_another_run_and_leaves_it_alone(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "t5edu", "train", "--recipe", "smoke", "--out", str(out),
            "--max-steps", "2", "--no-progress", "--threads", "1"]
    assert _run(args).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    again = _run([*args, "--seed", "5"])
    # refused before anything is touched (t5edu.rundir): exit 2, the folder and both ways out named
    assert again.returncode == 2 and str(out) in again.stderr, again.stderr
    assert "--resume" in again.stderr and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_load_or_train_caches_one_run(tmp_path, monkeypatch):
    import torch

    recipe = replace(demo.SMOKE, train={**demo.SMOKE.train, "max_steps": 6})
    model, tok, summary = demo.load_or_train(recipe, seed=1, cache_dir=tmp_path)
    folder = tmp_path / demo.cache_key(recipe, 1)
    assert summary["out"] == str(folder) and summary["steps"] == 6
    assert set(summary["exact_match_per_task"]) == TASKS
    # no temporary folder left; the (empty) lock file of the training stays, as locks must
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder.name, f".{folder.name}.lock"])
    assert not list(folder.glob("checkpoint-*"))  # the cache keeps the final model only
    assert [r["step"] for r in summary["history"]] == list(range(1, 7))

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cached run")

    monkeypatch.setattr(demo, "run", no_training)
    again, tok2, summary2 = demo.load_or_train(recipe, seed=1, cache_dir=tmp_path)
    assert summary2 == summary and tok2.vocab_size == tok.vocab_size
    pairs = zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    # another seed, another recipe, another format version: another key
    assert demo.cache_key(recipe, 2) != demo.cache_key(recipe, 1) != demo.cache_key(demo.SMOKE, 1)
    monkeypatch.setattr(demo, "CACHE_VERSION", demo.CACHE_VERSION + 1)
    assert demo.cache_key(recipe, 1) != folder.name
    monkeypatch.setenv("T5EDU_CACHE", str(tmp_path / "elsewhere"))
    assert demo.default_cache_dir() == tmp_path / "elsewhere"


def test_demo_learns_the_mixture_within_300_cpu_seconds():
    """The main job's promise, measured in CPU time (wall time depends on what else the machine runs).

    Trained through `load_or_train` into this session's fresh cache (tests/conftest.py): Chapters 07 and
    08, which nbval runs later in the same session, load this very model instead of training it again."""
    code = ("import json; from t5edu import demo; _, _, s = demo.load_or_train(demo.DEMO, seed=0); "
            "s.pop('history'); print(json.dumps(s))")
    run = _run([sys.executable, "-c", code])
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["recipe"] == "demo" and summary["steps"] == demo.DEMO.train["max_steps"], summary
    assert Path(summary["out"]).parent == Path(os.environ["T5EDU_CACHE"])  # the session's, not an old one
    assert summary["exact_match"] >= 0.90, summary
    assert summary["cpu_seconds"] < 300, summary
    assert min(summary["exact_match_per_task"].values()) >= 0.80, summary  # no task left behind


def test_two_processes_asking_for_the_same_run_train_it_once(tmp_path):
    # two notebooks (or test workers) calling load_or_train at once: one trains, the other waits and loads
    marks = tmp_path / "trained"
    marks.mkdir()
    code = f"""
import os, time
from dataclasses import replace
from t5edu import demo
train = demo.run
def counted(*args, **kwargs):
    open(os.path.join({str(marks)!r}, str(os.getpid())), "w").close()
    time.sleep(2)  # long enough that the other process asks while this one trains
    return train(*args, **kwargs)
demo.run = counted
recipe = replace(demo.SMOKE, train={{**demo.SMOKE.train, "max_steps": 4}})
_, _, summary = demo.load_or_train(recipe, seed=3, cache_dir={str(tmp_path / "cache")!r})
print(summary["steps"])
"""
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=_env(OMP_NUM_THREADS="1"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in results]
    assert [out.strip() for out, _ in results] == ["4", "4"]
    assert len(list(marks.iterdir())) == 1  # trained once
