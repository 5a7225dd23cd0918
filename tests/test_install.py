"""The lean install: `pip install t5edu` (the core, no extras) in a fresh virtual environment is enough to
load, train and generate; a command that needs an extra says which one to install, in one line.

Slow (one to three minutes: a venv, torch from the local wheel, the package built from a copy of the tree).
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TORCH_PIN = "torch==2.13.0"

pytestmark = pytest.mark.slow

# Run inside the venv, from a folder outside the repository, so that the installed package is imported.
LEAN_CHECK = textwrap.dedent("""
    import importlib.util, json, sys
    import torch
    import t5edu
    from t5edu import T5, T5Config, Tokenizer

    assert "site-packages" in t5edu.__file__, t5edu.__file__
    extras = [m for m in ("transformers", "datasets", "huggingface_hub", "rouge_score", "sacrebleu",
                          "jupytext", "matplotlib", "nbformat", "nbclient", "ipykernel", "pytest")
              if importlib.util.find_spec(m) is not None]
    assert not extras, f"not a lean install: {extras}"

    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    corpus = [f"copy: {' '.join(words[i:i + 4])}" for i in range(len(words))] * 20 + words * 10
    tokenizer = Tokenizer.train(corpus, out_dir="model", vocab_size=130)
    torch.manual_seed(0)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=4, d_ff=32, num_layers=1,
                      num_decoder_layers=1, num_heads=2, relative_attention_num_buckets=8,
                      relative_attention_max_distance=16, dropout_rate=0.0)
    T5(config).save_pretrained("model")
    model = T5.from_pretrained("model")
    assert Tokenizer.load("model").encode("copy: alpha beta") == tokenizer.encode("copy: alpha beta")

    batch = tokenizer.batch_encode(["copy: alpha beta", "copy: gamma delta epsilon"])
    labels = tokenizer.batch_encode(["alpha beta", "gamma delta epsilon"])["input_ids"]
    labels[labels == tokenizer.pad_id] = -100
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(2):  # one training step, and the loss after it
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert losses[1] < losses[0], losses
    model.eval()
    out = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=5)
    ids = out.sequences if hasattr(out, "sequences") else out
    assert ids.shape[0] == 2 and ids.shape[1] <= 6, ids.shape
    print(json.dumps({"torch": torch.__version__, "losses": [round(x, 3) for x in losses]}))
""")


def _run(cmd, cwd, timeout=600, env=None):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.fixture(scope="module")
def lean_venv(tmp_path_factory):
    """A venv holding torch and t5edu's core only (no --system-site-packages)."""
    base = tmp_path_factory.mktemp("lean")
    source = base / "src"  # a copy: building in the tree would leave build/ and *.egg-info behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "t5edu", source / "t5edu", ignore=shutil.ignore_patterns("__pycache__"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
    python = venv / "bin" / "python"
    for args in (["install", "-q", TORCH_PIN], ["install", "-q", source]):
        proc = _run([python, "-m", "pip", *args], cwd=base)
        assert proc.returncode == 0, f"pip {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
    work = base / "work"
    work.mkdir()
    return venv, work


def _env(venv):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1")
    return env


def test_core_install_loads_trains_and_generates(lean_venv):
    venv, work = lean_venv
    proc = _run([venv / "bin" / "python", "-c", LEAN_CHECK], cwd=work, env=_env(venv))
    assert proc.returncode == 0, proc.stderr
    assert '"torch": "2.13.0' in proc.stdout
    proc = _run([venv / "bin" / "t5edu", "generate", "--model", "model", "copy: alpha beta"], cwd=work,
                env=_env(venv))
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr


@pytest.mark.parametrize(("argv", "extra"), [
    (["finetune", "--model", "model", "--task", "classify", "--data", "rows.jsonl", "--out", "ft"],
     r"(hub|eval)"),
    (["book", "chapters/01_empty.ipynb"], r"book"),
])
def test_a_command_whose_extra_is_missing_says_which_to_install(lean_venv, argv, extra):
    import re

    venv, work = lean_venv
    (work / "rows.jsonl").write_text('{"sentence": "a fine film", "label": 1}\n')
    (work / "chapters").mkdir(exist_ok=True)
    (work / "chapters" / "01_empty.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, '
                                                       '"nbformat_minor": 5}\n')
    proc = _run([venv / "bin" / "t5edu", *argv], cwd=work, env=_env(venv))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(rf'pip install "t5edu\[{extra}\]"', proc.stderr), proc.stderr
    assert 1 <= len(proc.stderr.strip().splitlines()) <= 3, proc.stderr
