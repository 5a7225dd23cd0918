"""Run folders are never clobbered (t5edu.rundir), and files get normal permissions (t5edu.files)."""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from t5edu.errors import UsageError
from t5edu.files import atomic_write, make_temp_dir
from t5edu.rundir import LOCK_NAME, RunFolderLocked, RunFolderTaken, claim_run_dir, read_lock, run_files

ROOT = Path(__file__).resolve().parent.parent


def _fake_run(folder):
    """What a finished run leaves behind (contents only need to be recognisable)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "checkpoint-00000020").mkdir()
    (folder / "checkpoint-00000020" / "state.pt").write_bytes(b"weights")
    (folder / "latest").write_text("checkpoint-00000020\n")
    (folder / "config.json").write_text('{"d_model": 32}\n')
    (folder / "metrics.jsonl").write_text('{"step": 20, "loss": 1.5}\n')
    return _snapshot(folder)


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(folder, **info):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps(info))


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_claim_creates_locks_and_releases(tmp_path, umask_022):
    out = tmp_path / "a" / "run"
    with claim_run_dir(out) as folder:
        assert folder == out and out.is_dir()
        info = read_lock(out)
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and info["started"]
        assert _mode(out / LOCK_NAME) == 0o644
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # no temporary file left behind
        (out / "config.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_lock_released_on_exception_and_an_empty_new_folder_removed(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), claim_run_dir(tmp_path / "a" / "run"):
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # created for nothing: removed, parents too
    with pytest.raises(RuntimeError, match="boom"), claim_run_dir(tmp_path / "a" / "run"):
        (tmp_path / "a" / "run" / "metrics.jsonl").write_text("{}\n")
        raise RuntimeError("boom")
    assert not (tmp_path / "a" / "run" / LOCK_NAME).exists()
    assert (tmp_path / "a" / "run" / "metrics.jsonl").exists()  # what the run wrote stays


def test_folder_with_a_run_is_refused_and_kept(tmp_path):
    out = tmp_path / "run"
    before = _fake_run(out)
    assert run_files(out) == ["checkpoint-00000020", "config.json", "latest", "metrics.jsonl"]
    with pytest.raises(RunFolderTaken) as err, claim_run_dir(out):
        pytest.fail("the block must not run")
    message = str(err.value)
    assert str(out) in message and "--resume" in message and "--overwrite" in message
    assert _snapshot(out) == before and not (out / LOCK_NAME).exists()
    assert isinstance(err.value, UsageError)


def test_unrelated_files_do_not_count_as_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with claim_run_dir(tmp_path):
        pass
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_resume_keeps_the_run(tmp_path):
    out = tmp_path / "run"
    before = _fake_run(out)
    with claim_run_dir(out, resume=True):
        assert _snapshot(out) == before
    assert _snapshot(out) == before


def test_overwrite_moves_the_old_run_aside(tmp_path):
    out = tmp_path / "run"
    before = _fake_run(out)
    messages = []
    with claim_run_dir(out, overwrite=True, log=messages.append):
        assert run_files(out) == []
        (out / "config.json").write_text("new")
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and _snapshot(aside[0]) == before
    assert (out / "config.json").read_text() == "new"
    assert len(messages) == 1 and str(aside[0]) in messages[0]


def test_resume_and_overwrite_together_is_an_error(tmp_path):
    with pytest.raises(UsageError, match="contradict"), claim_run_dir(tmp_path, resume=True, overwrite=True):
        pass


def test_output_that_is_a_file_is_refused(tmp_path):
    file = tmp_path / "out"
    file.write_text("a file")
    with pytest.raises(UsageError, match="is a file, not a folder"), claim_run_dir(file):
        pass
    assert file.read_text() == "a file"


def test_nested_claim_in_one_process_is_refused(tmp_path):
    with claim_run_dir(tmp_path), pytest.raises(RunFolderLocked, match="in use by another run"), \
            claim_run_dir(tmp_path):
        pass


HOLDER = textwrap.dedent("""
    import sys, time
    from t5edu.errors import Terminated
    from t5edu.rundir import claim_run_dir
    try:
        with claim_run_dir(sys.argv[1]):
            print("ready", flush=True)
            time.sleep(60)
    except Terminated as err:
        sys.exit(err.exit_status)
""")


def _holder(folder):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_second_run_on_a_locked_folder_refuses_at_once(tmp_path):
    holder = _holder(tmp_path)
    try:
        start = time.monotonic()
        with pytest.raises(RunFolderLocked) as err, claim_run_dir(tmp_path):
            pass
        assert time.monotonic() - start < 2
        assert f"pid {holder.pid}" in str(err.value) and str(tmp_path) in str(err.value)
        assert read_lock(tmp_path)["pid"] == holder.pid  # the holder's lock is untouched
    finally:
        holder.send_signal(signal.SIGTERM)
        assert holder.wait(timeout=30) == 143  # SIGTERM: the block's finally ran ...
    assert not (tmp_path / LOCK_NAME).exists()  # ... and released the lock


def test_stale_lock_is_taken_over_with_a_warning(tmp_path):
    pid = _dead_pid()
    _write_lock(tmp_path, pid=pid, host=socket.gethostname(), started="yesterday", command="t5edu train")
    messages = []
    with claim_run_dir(tmp_path, log=messages.append):
        assert read_lock(tmp_path)["pid"] == os.getpid()
    assert len(messages) == 1 and "stale" in messages[0] and f"pid {pid}" in messages[0]


def test_lock_of_another_host_is_not_taken_over(tmp_path):
    _write_lock(tmp_path, pid=_dead_pid(), host="some-other-machine", started="yesterday")
    with pytest.raises(RunFolderLocked, match="delete"), claim_run_dir(tmp_path):
        pass
    assert read_lock(tmp_path)["host"] == "some-other-machine"


def test_unreadable_lock_is_taken_over_only_when_old(tmp_path):
    (tmp_path / LOCK_NAME).write_text("")
    with pytest.raises(RunFolderLocked), claim_run_dir(tmp_path):  # fresh: maybe being written right now
        pass
    old = time.time() - 60
    os.utime(tmp_path / LOCK_NAME, (old, old))
    messages = []
    with claim_run_dir(tmp_path, log=messages.append):
        pass
    assert len(messages) == 1 and "stale" in messages[0]


def test_other_torchrun_ranks_do_not_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    _fake_run(tmp_path)
    with claim_run_dir(tmp_path):
        assert not (tmp_path / LOCK_NAME).exists()


# --------------------------------------------------------------------------- permissions (t5edu.files)


def test_atomic_write_and_temp_dir_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert _mode(atomic_write(tmp_path / "a.txt", "text")) == 0o644
        assert _mode(atomic_write(tmp_path / "b.bin", b"\0\1")) == 0o644
        assert _mode(make_temp_dir(tmp_path, "t-")) == 0o755
        os.umask(0o027)
        assert _mode(atomic_write(tmp_path / "c.txt", "text")) == 0o640
        assert _mode(make_temp_dir(tmp_path, "u-")) == 0o750
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").read_text() == "text" and (tmp_path / "b.bin").read_bytes() == b"\0\1"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temporary files left behind


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")

    def broken(tmp):
        Path(tmp).write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
