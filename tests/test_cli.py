"""The command line's error policy: bad input gets exit status 2 and one to three lines naming the problem,
no traceback, and nothing on disk is lost; bugs keep their traceback (exit 1); --debug shows everything.

The matrix runs the real commands in-process (`t5edu.cli.main`) on a tiny model; a case fails when the
command exits 0, prints a traceback, or says something else.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from t5edu import cli, errors
from t5edu.rundir import LOCK_NAME, read_lock

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ fixtures: a tiny model, bad files


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with a tiny saved model and the damaged inputs the matrix points the commands at."""
    from t5edu import demo
    from t5edu.model import T5, T5Config
    from t5edu.tokenizer import Tokenizer

    work = tmp_path_factory.mktemp("cli")
    model = work / "model"
    rows = demo.mixture(64, 0, "train")
    tokenizer = Tokenizer.train(demo.tokenizer_corpus(rows), out_dir=model, vocab_size=235)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=4, d_ff=32, num_layers=1,
                      num_decoder_layers=1, num_heads=2, relative_attention_num_buckets=8,
                      relative_attention_max_distance=16)
    T5(config).save_pretrained(model)
    for name, damage in {"bad_config": "config", "cut_weights": "weights"}.items():
        broken = work / name
        broken.mkdir()
        for file in model.iterdir():
            (broken / file.name).write_bytes(file.read_bytes())
        if damage == "config":
            (broken / "config.json").write_text('{"d_model": 16,\n')
        else:
            data = (model / "model.safetensors").read_bytes()
            (broken / "model.safetensors").write_bytes(data[: len(data) // 3])
    (work / "corrupt.model").write_bytes(b"this is not a sentencepiece model\n" * 4)
    (work / "no_rows.jsonl").write_bytes(b"")  # names without the words the messages must say
    (work / "fractional.jsonl").write_text(json.dumps({"sentence": "a fine film", "label": 1.0}) + "\n")
    sst2 = [{"sentence": f"film number {i} is {'good' if i % 2 else 'bad'}", "label": i % 2}
            for i in range(8)]
    (work / "sst2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sst2))
    (work / "a_file").write_text("not a folder\n")
    previous = work / "previous_run"  # what a finished `t5edu train` leaves behind
    (previous / "checkpoint-00000020").mkdir(parents=True)
    (previous / "checkpoint-00000020" / "model.safetensors").write_bytes(b"trained weights")
    (previous / "latest").write_text("checkpoint-00000020\n")
    for file in ("config.json", "model.safetensors", "spiece.model"):
        (previous / file).write_bytes((model / file).read_bytes())
    (previous / "metrics.jsonl").write_text('{"step": 20, "loss": 1.25}\n')
    return work


def _read_only_dir(work):
    """A folder this process cannot write into: chmod 555 for a normal user; root ignores permissions,
    so for root a folder on a read-only file system, if there is one."""
    if os.geteuid() != 0:
        folder = work / "read_only"
        folder.mkdir(exist_ok=True)
        folder.chmod(0o555)
        return folder
    if Path("/proc/sys").is_dir() and not os.access("/proc/sys", os.W_OK):
        return Path("/proc/sys")
    pytest.skip("running as root and no read-only file system to write into")


def _snapshot(folder):
    """Every file under `folder` (the lock excluded) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


def _run(argv, capsys, monkeypatch=None):
    capsys.readouterr()
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _error_lines(stderr):
    """The error report: from the last line `t5edu CMD: ...` to the end (progress bars come before)."""
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("t5edu ")]
    assert starts, f"no `t5edu CMD: ...` line in stderr:\n{stderr}"
    return lines[starts[-1]:]


def _assert_clean_refusal(status, stderr, fragments):
    assert status == 2, f"exit status {status}, stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    report = _error_lines(stderr)
    assert 1 <= len(report) <= 3, f"{len(report)} lines of error report:\n{stderr}"
    for fragment in fragments:
        assert fragment in stderr, f"{fragment!r} not in stderr:\n{stderr}"


# --------------------------------------------------------------------------- the matrix

GEN = ["generate", "--model", "{work}/model"]
TRAIN = ["train", "--no-progress", "--out", "{work}/train_out"]
FT = ["finetune", "--model", "{work}/model", "--task", "classify", "--out", "{work}/ft_out",
      "--max-steps", "1", "--no-progress"]

# id -> (argv, fragments the error must contain)
MATRIX = {
    "generate --batch-size 0": ([*GEN, "--batch-size", "0", "copy: a b"], ["--batch-size", ">= 1"]),
    "generate --batch-size -1": ([*GEN, "--batch-size", "-1", "copy: a b"], ["--batch-size", ">= 1"]),
    "generate --device cuda without CUDA": ([*GEN, "--device", "cuda", "copy: a b"],
                                            ["--device", "CUDA is not available"]),
    "generate --tokenizer corrupt": ([*GEN, "--tokenizer", "{work}/corrupt.model", "copy: a b"],
                                     ["corrupt.model", "not a valid SentencePiece model"]),
    "generate model path typo": (["generate", "--model", "{work}/modle", "copy: a b"], ["modle"]),
    "generate config.json not JSON": (["generate", "--model", "{work}/bad_config", "copy: a b"],
                                      ["bad_config", "JSON"]),
    "generate truncated model.safetensors": (["generate", "--model", "{work}/cut_weights", "copy: a b"],
                                             ["cut_weights", "safetensors"]),
    "train --lr -1": ([*TRAIN, "--lr", "-1"], ["--lr", "> 0"]),
    "train --lr inf": ([*TRAIN, "--lr", "inf"], ["--lr", "finite"]),
    "train --batch-size 0": ([*TRAIN, "--batch-size", "0"], ["--batch-size", ">= 1"]),
    "train --grad-accum 0": ([*TRAIN, "--grad-accum", "0"], ["--grad-accum", ">= 1"]),
    "train --threads -1": ([*TRAIN, "--threads", "-1"], ["--threads"]),
    "train --dropout 1.5": ([*TRAIN, "--dropout", "1.5"], ["--dropout", "[0, 1)"]),
    "train --max-steps 0": ([*TRAIN, "--max-steps", "0"], ["--max-steps", ">= 1"]),
    "train --max-steps -5": ([*TRAIN, "--max-steps", "-5"], ["--max-steps", ">= 1"]),
    "train --model JSON not an object": ([*TRAIN, "--model", "[1, 2]"], ["--model", "JSON object"]),
    "train --out is a file": (["train", "--out", "{work}/a_file"], ["a_file", "is a file, not a folder"]),
    "train --out read-only": (["train", "--out", "{read_only}/run"], ["cannot write into"]),
    "train into another run without --resume": (
        ["train", "--out", "{work}/previous_run"],
        ["previous_run", "already holds a run", "--resume", "--overwrite"]),
    "finetune empty .jsonl": ([*FT, "--data", "{work}/no_rows.jsonl"], ["no_rows.jsonl", "empty"]),
    "finetune float label": ([*FT, "--data", "{work}/fractional.jsonl"], ["fractional.jsonl", "label"]),
    "finetune --limit -3": ([*FT, "--data", "{work}/sst2.jsonl", "--limit", "-3"], ["--limit", ">= 1"]),
    "finetune --batch-size 0": ([*FT, "--data", "{work}/sst2.jsonl", "--batch-size", "0"],
                                ["--batch-size", ">= 1"]),
    "finetune model path typo": (["finetune", "--model", "{work}/modle", "--task", "classify", "--data",
                                  "{work}/sst2.jsonl", "--out", "{work}/ft_out"], ["modle"]),
}


@pytest.mark.parametrize("case", list(MATRIX))
def test_bad_input_is_refused_in_one_clear_message(case, work, capsys):
    argv, fragments = MATRIX[case]
    if "CUDA" in " ".join(fragments):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    read_only = _read_only_dir(work) if "{read_only}" in " ".join(argv) else None
    argv = [a.format(work=work, read_only=read_only) for a in argv]
    before = _snapshot(work)
    status, _, stderr = _run(argv, capsys)
    _assert_clean_refusal(status, stderr, fragments)
    assert _snapshot(work) == before, "a refused command changed files on disk"


HOLDER = textwrap.dedent("""
    import sys, time
    from t5edu.rundir import claim_run_dir
    with claim_run_dir(sys.argv[1]):
        print("ready", flush=True)
        sys.stdin.read()
""")


def test_second_run_on_one_folder_refuses_at_once(work, capsys):
    folder = work / "busy"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "ready"
        cpu = time.process_time()
        status, _, stderr = _run(["train", "--no-progress", "--out", folder], capsys)
        cpu = time.process_time() - cpu
        _assert_clean_refusal(status, stderr, ["busy", "in use by another run", f"pid {holder.pid}"])
        assert cpu < 2, f"the refusal came after {cpu:.1f} s of CPU work: claim the folder first"
        assert read_lock(folder)["pid"] == holder.pid
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0 and not (folder / LOCK_NAME).exists()


def test_stale_lock_is_taken_over_and_the_run_completes(work, capsys):
    folder = work / "stale"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                                "started": "earlier", "command": "t5edu train"}))
    status, out, stderr = _run(["train", "--no-progress", "--max-steps", "1", "--out", folder], capsys)
    assert status == 0, stderr
    assert "stale lock" in stderr and f"pid {dead.pid}" in stderr
    assert json.loads(out.splitlines()[-1])["steps"] == 1
    assert (folder / "model.safetensors").is_file() and not (folder / LOCK_NAME).exists()


# --------------------------------------------------------------------------- the policy itself


def _fake_command(monkeypatch, raise_):
    """`t5edu generate` replaced by a function raising `raise_` (the policy is the CLI's)."""
    from t5edu.commands import generate

    def main(args):
        raise raise_

    monkeypatch.setattr(generate, "main", main)
    return ["generate", "--model", "m", "x"]


@pytest.mark.parametrize(("error", "fragment"), [
    (errors.UsageError("--thing must be round"), "--thing must be round"),
    (FileNotFoundError(2, "No such file or directory", "/no/such/file.json"),
     "No such file or directory: /no/such/file.json"),
    (json.JSONDecodeError("Expecting value", "{", 1), "not valid JSON"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "not UTF-8"),
])
def test_user_errors_exit_2_in_one_line(error, fragment, monkeypatch, capsys):
    status, _, stderr = _run(_fake_command(monkeypatch, error), capsys)
    _assert_clean_refusal(status, stderr, [fragment])
    assert stderr.startswith("t5edu generate: error: ") and len(stderr.splitlines()) == 1


def test_library_errors_are_user_errors(monkeypatch, capsys):
    from t5edu.data import DataError
    from t5edu.extras import MissingExtra, require
    from t5edu.model import CheckpointError

    for error in (DataError("train.jsonl: row 3: missing field 'label'"),
                  CheckpointError("3 tensors missing")):
        status, _, stderr = _run(_fake_command(monkeypatch, error), capsys)
        _assert_clean_refusal(status, stderr, [str(error)])
    with pytest.raises(MissingExtra) as missing:
        require("t5edu_no_such_module", "eval")
    status, _, stderr = _run(_fake_command(monkeypatch, missing.value), capsys)
    _assert_clean_refusal(status, stderr, ['pip install "t5edu[eval]"'])


def test_a_missing_extra_names_the_extra_and_other_missing_modules_are_bugs(monkeypatch, capsys):
    missing = ModuleNotFoundError("No module named 'rouge_score'", name="rouge_score")
    status, _, stderr = _run(_fake_command(monkeypatch, missing), capsys)
    _assert_clean_refusal(status, stderr, ["rouge_score", 'pip install "t5edu[eval]"'])
    missing = ModuleNotFoundError("No module named 't5edu.nope'", name="t5edu.nope")
    status, _, stderr = _run(_fake_command(monkeypatch, missing), capsys)
    assert status == 1 and "Traceback" in stderr


def test_long_messages_are_cut_to_three_lines(monkeypatch, capsys):
    error = errors.UsageError("\n".join(f"tensor {i} is missing" for i in range(10)))
    status, _, stderr = _run(_fake_command(monkeypatch, error), capsys)
    _assert_clean_refusal(status, stderr, ["tensor 0 is missing", "8 more lines", "--debug"])


@pytest.mark.parametrize("how", ["flag before the command", "flag after the command", "environment"])
def test_debug_shows_the_traceback_of_user_errors(how, monkeypatch, capsys):
    argv = _fake_command(monkeypatch, errors.UsageError("--thing must be round"))
    if how == "flag before the command":
        argv = ["--debug", *argv]
    elif how == "flag after the command":
        argv = [*argv, "--debug"]
    else:
        monkeypatch.setenv(cli.DEBUG_ENV, "1")
    status, _, stderr = _run(argv, capsys)
    assert status == 2 and "Traceback" in stderr and stderr.rstrip().endswith("--thing must be round")


def test_bugs_keep_their_traceback_and_ask_for_a_report(monkeypatch, capsys):
    status, _, stderr = _run(_fake_command(monkeypatch, ZeroDivisionError("division by zero")), capsys)
    assert status == 1 and "Traceback" in stderr and "ZeroDivisionError" in stderr
    assert "bug" in stderr.splitlines()[-1] and "report" in stderr.splitlines()[-1]


def test_interrupt_and_terminate(monkeypatch, capsys):
    status, _, stderr = _run(_fake_command(monkeypatch, KeyboardInterrupt()), capsys)
    assert status == 130 and stderr == "t5edu generate: interrupted\n"
    status, _, stderr = _run(_fake_command(monkeypatch, errors.Terminated()), capsys)
    assert status == 143 and stderr == "t5edu generate: terminated\n"


def test_usage_errors_are_short_and_help_still_works(capsys):
    status, _, stderr = _run(["no-such-command"], capsys)
    assert status == 2 and len(stderr.splitlines()) == 2 and "invalid choice" in stderr
    status, out, _ = _run(["--help"], capsys)
    assert status == 0 and "--debug" in out and "Exit status" in out
    status, _, stderr = _run([], capsys)
    assert status == 2 and "COMMAND" in stderr


def test_the_module_entry_point_exits_with_the_status():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "t5edu", "generate", "--model", "no/such/model", "x"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "no/such/model" in proc.stderr


# --------------------------------------------------------------------------- the argparse types


@pytest.mark.parametrize(("kind", "good", "bad"), [
    (errors.positive_int, {"1": 1, "64": 64}, ["0", "-1", "1.5", "x", ""]),
    (errors.non_negative_int, {"0": 0, "3": 3}, ["-3", "2.0", "all"]),
    (errors.positive_float, {"1e-3": 1e-3, "2": 2.0}, ["0", "-1", "inf", "-inf", "nan", "x"]),
    (errors.non_negative_float, {"0": 0.0, "0.5": 0.5}, ["-0.1", "inf", "nan"]),
    (errors.probability, {"0": 0.0, "0.1": 0.1, "0.999": 0.999}, ["1", "1.5", "-0.1", "nan"]),
    (errors.threads, {"0": 0, "1": 1, "8": 8}, ["-1", "two"]),
    (errors.json_object, {'{"d_model": 256}': {"d_model": 256}, "{}": {}},
     ["[1, 2]", '"text"', "3", "{oops", ""]),
])
def test_argparse_types(kind, good, bad):
    for text, value in good.items():
        assert kind(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)


def test_path_types(tmp_path, monkeypatch):
    file = tmp_path / "f.txt"
    file.write_text("x")
    assert errors.existing_file(str(file)) == str(file)
    with pytest.raises(argparse.ArgumentTypeError, match="no such file"):
        errors.existing_file(str(tmp_path / "nope"))
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder"):
        errors.existing_file(str(tmp_path))
    assert errors.existing_dir(str(tmp_path)) == str(tmp_path)
    with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
        errors.existing_dir(str(file))
    assert errors.existing_path(str(file)) == str(file)
    with pytest.raises(argparse.ArgumentTypeError, match="no such file or folder"):
        errors.existing_path(str(tmp_path / "nope"))
    assert errors.output_dir(str(tmp_path / "new" / "deeper")) == str(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # checking creates nothing
    with pytest.raises(argparse.ArgumentTypeError, match="is a file, not a folder"):
        errors.output_dir(str(file))
    with pytest.raises(argparse.ArgumentTypeError, match="is a file, not a folder"):
        errors.output_dir(str(file / "below"))
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only folder, also for root
    with pytest.raises(argparse.ArgumentTypeError, match="cannot write into"):
        errors.output_dir(str(tmp_path / "new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]  # no probe file left behind


def test_device_type():
    import torch

    assert errors.device("cpu") == "cpu"
    for bad in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(argparse.ArgumentTypeError):
            errors.device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(argparse.ArgumentTypeError, match="CUDA is not available"):
            errors.device("cuda")
    else:
        assert errors.device("cuda") == "cuda"
        with pytest.raises(argparse.ArgumentTypeError, match="CUDA device"):
            errors.device(f"cuda:{torch.cuda.device_count()}")


def test_user_input_names_what_failed():
    with pytest.raises(errors.UsageError, match=r"cannot load m: x is not a valid SentencePiece model"), \
            errors.user_input("cannot load m"):
        raise ValueError("x is not a valid SentencePiece model")
    with pytest.raises(ZeroDivisionError), errors.user_input("cannot load m"):
        1 / 0  # noqa: B018 (a bug stays a bug)
