"""`t5edu grade` and `t5edu exercises release`: hand out, collect and grade assignments safely.

The acceptance test grades one folder holding the reference solutions, the untouched stubs, a partly
right submission and every hostile or broken case we promise to survive, on the fixture chapter in
tests/fixtures/grading (its own checks and solutions packages, so no other chapter is needed).
The submissions are built here from the fixture's source notebook, so the fixture stays small.
"""

import csv
import io
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from t5edu.classroom import exercises, grading
from t5edu.classroom.grading.runner import manual_items

slow = pytest.mark.slow  # tests that run kernels: `make test-fast` skips them, `make test` (CI) runs them
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "grading"
SOURCE = FIXTURE / "src" / "ch99_demo.ipynb"
HOSTILE = FIXTURE / "hostile"
NOT_DONE = "not done yet"
OS_EXIT = "Python process stopped (exit code 1) while running cell 8"
SOLVED = {  # exercise -> (marker of the stub line it replaces, a right answer)
    "add_one": "    return x + 1",
    "count_words": "    return len([w for w in text.split() if w.lower() not in stopwords])",
    "row_means": "    return t.double().mean(dim=1)",
}


def fixture_settings(**kw):
    base = {"timeout": 5, "total_timeout": 60, "jobs": 2, "memory_mb": 2048, "probe_timeout": 3,
            "checks_package": "gradefix.checks", "solutions_package": "gradefix.solutions",
            "pythonpath": (str(FIXTURE),)}
    base.update(kw)
    return grading.Settings(**base)


def source():
    return nbformat.read(SOURCE, as_version=4)


def stub():
    return exercises.student_notebook(source())


def cell_index(nb, text):
    """Index of the first cell whose source contains `text`."""
    return next(i for i, c in enumerate(nb.cells) if text in c.source)


def solve(nb, name, body=None):
    """Replace the stub of exercise `name` with `body` (default: a right answer of our own)."""
    i = cell_index(nb, f"def {name}(")
    assert f"    {exercises.STUB}" in nb.cells[i].source, f"{name} is already solved"
    nb.cells[i].source = nb.cells[i].source.replace(f"    {exercises.STUB}", body or SOLVED[name])
    return nb


def solved(*names):
    nb = stub()
    for name in names or SOLVED:
        solve(nb, name)
    return nb


def insert(nb, before, code):
    nb.cells.insert(before, nbformat.v4.new_code_cell(code))
    return nb


def build_submissions(folder):
    """{student: expected {exercise: (passed, message fragment)}} and the notebooks on disk."""
    folder.mkdir(parents=True, exist_ok=True)
    subs = {}

    def put(name, nb):
        nbformat.write(nb, folder / f"{name}.ipynb")

    put("reference", source())
    put("stub", stub())
    partial = solved("add_one", "row_means")
    solve(partial, "count_words", "    return len(text.split())")  # forgets the stop words
    put("partial", partial)

    # An endless function (interrupted by the per-check timeout) and an endless top-level cell.
    loop = solved("count_words", "row_means")
    solve(loop, "add_one", "    while True:\n        x += 1")
    insert(loop, cell_index(loop, "def count_words("), "while True:\n    pass")
    put("infinite_loop", loop)

    # A loop that swallows the interrupt: the kernel is stopped, the other exercises are not graded.
    stubborn = solved()
    insert(stubborn, cell_index(stubborn, "def count_words("),
           "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass")
    put("stubborn_loop", stubborn)

    # sys.exit() at the top of the notebook, and inside a function while it is being checked.
    leave = solved("add_one", "row_means")
    solve(leave, "count_words", "    import sys\n    sys.exit(3)")
    insert(leave, 1, "import sys\nsys.exit('bye')")
    put("sys_exit", leave)

    put("os_exit", insert(solved(), cell_index(solved(), "def count_words("), "import os\nos._exit(1)"))
    put("crash", insert(solved(), 2, "import ctypes\nctypes.string_at(0)"))
    flood = insert(solved(), 2, "print('x' * 100_000_000)")
    insert(flood, 2, "import resource\n"
                     "assert resource.getrlimit(resource.RLIMIT_AS) == (2048 << 20,) * 2, 'no cap'\n"
                     "assert resource.getrlimit(resource.RLIMIT_FSIZE)[1] == 1024 << 20, 'no cap'\n"
                     "assert resource.getrlimit(resource.RLIMIT_CORE) == (0, 0), 'no cap'\n"
                     "hog = bytearray(3 << 30)")  # 3 GiB under a 2 GiB cap: MemoryError, the kernel lives
    put("flood", flood)
    (folder / "malformed.ipynb").write_text('{"cells": [ this is not json', encoding="utf-8")

    other = solved()
    other.metadata["t5edu"] = {"chapter": "ch98"}
    put("other_chapter", other)

    missing = solved()
    del missing.cells[cell_index(missing, "ch99.exercise_2(")]  # the check cell only
    del missing.cells[cell_index(missing, "ch99.exercise_3(")]  # the whole exercise ...
    del missing.cells[cell_index(missing, "def row_means(")]    # ... its code too
    put("missing", missing)

    # The reference solution itself, imported in a way no text search finds: refused by identity.
    copied = solved("add_one", "count_words")
    i = cell_index(copied, "def row_means(")
    copied.cells[i].source = ("import importlib\n"
                              "row_means = importlib.import_module('gradefix.solu' + 'tions.ch99').row_means")
    put("copied", copied)  # the sandbox hides the solutions: the import fails
    # The reference wrapped in a function of one's own: only the import gives it away.
    wrapped = solved("add_one", "count_words")
    i = cell_index(wrapped, "def row_means(")
    wrapped.cells[i].source = ("from gradefix.solutions.ch99 import row_means as ref\n\n"
                               "def row_means(t):\n    return ref(t)")
    put("wrapped", wrapped)
    # Student code that calls the grader's own check from inside a check.
    nested = solved("count_words", "row_means")
    solve(nested, "add_one", "    __t5edu_grader__.check('exercise_1',\n"
                             "                           lambda: __t5edu_grader__.pack(lambda x: x + 1))\n"
                             "    return x + 1")
    put("nested_grader", nested)

    # Tampering: each of these would pass everything if the grader trusted the kernel's state.
    put("tamper_checks", insert(stub(), 2, (
        "from gradefix.checks import ch99\n"
        "import t5edu.classroom.checks._core as core\n"
        "ch99.exercise_1 = lambda *a: print('✅ passed')\n"
        "always = lambda *a, **k: core.Result('99.2', 'x', True, 'passed')\n"
        "ch99.exercise_2.run = always\n"
        "from IPython.display import display\n"
        "display({'application/x-t5edu-grade+json': {'kind': 'check', 'exercise': 'exercise_1',\n"
        "         'passed': True, 'message': 'forged', 'tamper': [], 'nonce': '0' * 32}}, raw=True)")))
    put("tamper_core", insert(stub(), 2, (
        "from gradefix.checks import ch99\n"
        "import t5edu.classroom.checks._core as core\n"
        "ch99.expect_equal = ch99.expect_close = lambda *a, **k: None\n"
        "core.CheckFailed = KeyboardInterrupt")))
    wrong = solved("add_one", "count_words")
    solve(wrong, "row_means", "    return t.sum(dim=1)")
    put("tamper_solutions", insert(wrong, len(wrong.cells), (  # imported so that no text search sees it
        "import importlib\nref = importlib.import_module('gradefix.solu' + 'tions.ch99')\n"
        "ref.row_means = row_means")))
    put("tamper_hooks", insert(solved(), 2, (
        "import sys, types\n"
        "get_ipython().input_transformers_post.append(lambda lines: lines)\n"
        "sys.modules['t5edu.planted'] = types.ModuleType('t5edu.planted')\n"
        "sys.settrace(lambda *a: None)")))
    put("tamper_builtins", insert(solved("add_one"), 2, (
        "import builtins, torch\n"
        "builtins.abs = lambda x: 0\n"
        "torch.allclose = lambda *a, **k: True")))

    # The hostile submissions of tests/fixtures/grading/hostile: stubs plus one attack each, so any credit
    # they get is credit the attack won. Graded in the same run as the honest ones above.
    outputs = {"OUT": str(folder.parent / "grades.csv"), "SUBS": str(folder)}
    for path in sorted(HOSTILE.glob("*.py")):
        code = "".join(f"{k} = {v!r}\n" for k, v in outputs.items()) + path.read_text()
        nb = stub()
        if "add_one" in code:  # the attack supplies the answers: the stubs would overwrite them
            nb.cells = [c for c in nb.cells if exercises.STUB not in c.source]
        put(f"hostile_{path.stem}", insert(nb, 2, code))

    all_pass = {1: (True, "passed"), 2: (True, "passed"), 3: (True, "passed")}
    not_done = {n: (False, NOT_DONE) for n in (1, 2, 3)}

    nothing = {n: (False, "") for n in (1, 2, 3)}
    subs.update({
        "reference": all_pass,
        "stub": not_done,
        "partial": {1: (True, "passed"), 2: (False, "expected: 2"), 3: (True, "passed")},
        "infinite_loop": {1: (False, "ran longer than 5 s"), 2: (True, "passed"), 3: (True, "passed")},
        "stubborn_loop": {1: (True, "passed"), 2: (False, "(`import signal`) did not stop when interrupted"),
                          3: (False, "did not stop when interrupted")},
        "sys_exit": {1: (True, "passed"), 2: (False, "sys.exit(3)"), 3: (True, "passed")},
        "os_exit": {1: (True, "passed"), 2: (False, OS_EXIT), 3: (False, OS_EXIT)},
        "crash": {n: (False, "Python process stopped (signal SIGSEGV) while running cell 3")
                  for n in (1, 2, 3)},
        "flood": all_pass,
        "malformed": {n: (False, "could not read this notebook") for n in (1, 2, 3)},
        "other_chapter": {n: (False, "the notebook for ch98, but the assignment is ch99") for n in (1, 2, 3)},
        "missing": {1: (True, "passed."), 2: (True, "check cell was missing"),
                    3: (False, "name 'row_means' is not defined")},
        "copied": {1: (True, "passed"), 2: (True, "passed"),
                   3: (False, "name 'row_means' is not defined")},
        "wrapped": {n: (False, "imports the reference solutions (gradefix.solutions.ch99)")
                    for n in (1, 2, 3)},
        # Verdicts are made in the grader's process from the recorded answers: tampering with the
        # kernel changes nothing but the answers, so each of these gets exactly what its answers earn.
        "nested_grader": {1: (False, "check was called from the student's code"), 2: (True, "passed"),
                          3: (True, "passed")},
        "tamper_checks": {1: (False, "the check stopped in your notebook"),
                          2: (False, "did not run to the end"), 3: (False, NOT_DONE)},
        "tamper_core": not_done,
        "tamper_solutions": {1: (True, "passed"), 2: (True, "passed"),
                             3: (False, "differs from the reference")},
        "tamper_hooks": all_pass,
        "tamper_builtins": {1: (True, "passed"), 2: (False, NOT_DONE), 3: (False, NOT_DONE)},
        "hostile_solutions_import": {n: (False, "is not defined") for n in (1, 2, 3)},
        "hostile_solutions_alias": {n: (False, "is not defined") for n in (1, 2, 3)},
        "hostile_torch_mode": {1: (False, "expected: 2"), 2: (False, "is not defined"),
                               3: (False, "differs from the reference")},
        "hostile_rebind_grader": {n: (False, "not graded") for n in (1, 2, 3)},
        "hostile_detached_child": not_done,
        "hostile_read_classmates": nothing,
        "hostile_kill_parent": not_done,
        "hostile_stop_parent": not_done,
        "hostile_interrupt_parent": not_done,
        "hostile_fork_bomb": nothing,
    })
    return subs


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap (bwrap) is not installed")
    tmp = tmp_path_factory.mktemp("grading")
    expected = build_submissions(tmp / "submissions")
    out = io.StringIO()
    started = time.monotonic()
    results, status = grading.run([tmp / "submissions"], tmp / "grades.csv", tmp / "feedback",
                                  fixture_settings(chapter="ch99"), FIXTURE / "src", stream=out)
    snapshot = {p.name: p.read_bytes() for p in tmp.glob("grades*.csv")}
    time.sleep(6)  # longer than the detached child of hostile_detached_child waits before it writes
    return {"tmp": tmp, "expected": expected, "results": results, "status": status, "snapshot": snapshot,
            "output": out.getvalue(), "seconds": time.monotonic() - started}


@slow
def test_every_submission_gets_the_expected_rows(graded):
    assert graded["status"] == 0, graded["output"]
    rows = read_rows(graded["tmp"] / "grades.csv")
    by_student = {}
    for row in rows:
        by_student.setdefault(row["student"], {})[row["exercise"]] = row
    assert sorted(by_student) == sorted(graded["expected"]), graded["output"]
    problems = []
    for student, expected in graded["expected"].items():
        got = by_student[student]
        assert sorted(got) == [f"ch99.exercise_{n}" for n in (1, 2, 3)], (student, sorted(got))
        for n, (passed, fragment) in expected.items():
            row = got[f"ch99.exercise_{n}"]
            max_points = {1: 1, 2: 2, 3: 3}[n]
            ok = ((row["passed"] == "yes") == passed and fragment in row["message"]
                  and float(row["points"]) == (max_points if passed else 0)
                  and float(row["max_points"]) == max_points)
            if not ok:
                problems.append(f"{student} exercise {n}: wanted passed={passed} with {fragment!r}, "
                                f"got {row}")
    assert not problems, "\n".join(problems) + "\n" + graded["output"]


@slow
def test_totals_feedback_and_summary(graded):
    totals = {r["student"]: r for r in read_rows(graded["tmp"] / "grades_totals.csv")}
    assert totals["reference"]["points"] == "6" and totals["reference"]["max_points"] == "6"
    assert totals["partial"]["points"] == "4" and totals["partial"]["passed"] == "2"
    assert totals["stub"]["points"] == "0"
    assert totals["tamper_checks"]["points"] == "0"
    assert all(totals[s]["points"] == "0" for s in graded["expected"] if s.startswith("hostile_"))
    feedback = graded["tmp"] / "feedback"
    assert sorted(p.name for p in feedback.glob("*.md")) == sorted(grading.feedback_name(s)
                                                                   for s in graded["expected"])
    text = (feedback / "partial.md").read_text()
    assert "**Total: 4 / 6 points**" in text and "expected: 2" in text and "got:      3" in text
    flood = (feedback / "flood.md").read_text()
    assert "printed 100.0 MB of output (not kept)" in flood
    assert "raised MemoryError" in flood and "no cap" not in flood
    loop = (feedback / "infinite_loop.md").read_text()
    assert "(`while True:`) ran longer than 5 s and was interrupted" in loop
    assert "raised SystemExit" in (feedback / "sys_exit.md").read_text()
    assert "check cell of Exercise 99.2 (Count words) is missing" in (feedback / "missing.md").read_text()
    for student in graded["expected"]:
        assert re.search(rf"^{student}\s+\d+ / \d+\s+\d/\d", graded["output"], re.MULTILINE), student
    n = len(graded["expected"])
    assert f"graded {n} notebook(s) of {n} student(s)" in graded["output"]


def sandbox_processes():
    """Processes of any sandbox: the executor, the kernels it starts, anything running as a sandbox user.
    Zombies are dead (they only wait for their parent, or for an init that may never reap them: this
    container's init does not), so they do not count."""
    import psutil  # jupyter_server depends on it, so it is in the dev environment

    found = []
    for p in psutil.process_iter(["cmdline", "uids", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(p.info["cmdline"] or [])
        uid = p.info["uids"].real if p.info["uids"] else -1
        if "t5edu.classroom.grading.executor" in cmdline or 61000 <= uid < 62000:
            found.append((p.pid, uid, cmdline[:100]))
    return found


def sandbox_processes_after_exit(seconds=20):
    """sandbox_processes(), once the kernel has had time to finish and reap what was killed: a killed
    process lingers for a moment (exiting, then a zombie) on a loaded machine; one still there after
    `seconds` was left behind."""
    deadline = time.monotonic() + seconds
    while (left := sandbox_processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@slow
def test_no_process_is_left_and_nothing_escaped(graded):
    import psutil

    assert sandbox_processes_after_exit() == []
    mine = psutil.Process()
    assert [p for p in mine.children(recursive=True) if "ipykernel" in " ".join(p.cmdline())] == []
    # The detached child could not rewrite the grades (it died with its sandbox, and could not see them).
    assert {p.name: p.read_bytes() for p in graded["tmp"].glob("grades*.csv")} == graded["snapshot"]
    assert b"mallory" not in graded["snapshot"]["grades.csv"]
    assert not Path("/root/t5edu-pwned").exists() and not (Path.home() / "pwned").exists()
    leftovers = [p for p in Path(tempfile.gettempdir()).glob("t5edu-grade-*")]
    assert leftovers == []


def start_slow_grading(tmp_path):
    """`t5edu grade` on three notebooks that sleep for a minute, returned once their kernels run."""
    import subprocess

    subs = tmp_path / "subs"
    subs.mkdir()
    for i in range(3):
        nbformat.write(insert(solved(), 2, "import time\ntime.sleep(60)"), subs / f"slow{i}.ipynb")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(FIXTURE)]))
    process = subprocess.Popen(
        [sys.executable, "-m", "t5edu", "grade", str(subs), "--out", str(tmp_path / "out" / "g.csv"),
         "--feedback", str(tmp_path / "fb"), "--source", str(FIXTURE / "src"), "--chapter", "ch99",
         "--checks-package", "gradefix.checks", "--solutions-package", "gradefix.solutions",
         "--pythonpath", str(FIXTURE), "--jobs", "2", "--timeout", "120"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any("grading.executor" in c for _, _, c in sandbox_processes()):
        time.sleep(0.5)
    time.sleep(2)  # the kernels are running the student's cells now
    return process


@slow
@needs_bwrap
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_instructor_interrupt_stops_cleanly(tmp_path, sig):
    """Ctrl-C or SIGTERM while grading: exit 130, every sandbox gone, no CSV and no feedback written."""
    import signal

    process = start_slow_grading(tmp_path)
    process.send_signal(getattr(signal, sig))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, (out, err)
    assert "interrupted" in err and "nothing written" in err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "fb").exists()
    assert sandbox_processes_after_exit() == []


@slow
@needs_bwrap
def test_a_killed_grader_takes_its_sandboxes_with_it(tmp_path):
    """SIGKILL gives the grader no chance to clean up: each executor must notice that the grader is gone
    (its lifeline pipe closes) and end its sandbox."""
    import signal

    before = set(Path(tempfile.gettempdir()).glob("t5edu-grade-*"))
    process = start_slow_grading(tmp_path)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    try:
        assert sandbox_processes_after_exit() == []
        assert not (tmp_path / "out").exists() and not (tmp_path / "fb").exists()
    finally:
        from t5edu.classroom.grading import sandbox

        for left in set(Path(tempfile.gettempdir()).glob("t5edu-grade-*")) - before:
            sandbox.remove(left)  # the private folders a killed grader could not delete


def test_csv_cells_and_feedback_names(tmp_path):
    rows = [grading.Row("=cmd|'/c calc'!A1", "nb.ipynb", "ch99.exercise_1", False, 0.0, 1.0, "+1 -2 @x"),
            grading.Row("José", "a.ipynb", "ch99.exercise_1", True, 1.0, 1.0, "\tx\rz"),
            grading.Row("Jos\u00e8", "b.ipynb", "ch99.exercise_1", True, 1.0, 1.0, "-"),
            grading.Row("李雷", "c.ipynb", "ch99.exercise_1", True, 1.0, 1.0, "ok"),
            grading.Row("韩梅梅", "d.ipynb", "ch99.exercise_1", True, 1.0, 1.0, "ok"),
            grading.Row("Jose\u0301", "e.ipynb", "ch99.exercise_1", True, 1.0, 1.0, "ok")]
    results = [grading.Graded(r.student, r.notebook, "ch99", [r], []) for r in rows]
    out, totals_path = grading.write_csv(results, tmp_path / "g.csv")
    got = read_rows(out)
    assert got[0]["student"] == "'=cmd|'/c calc'!A1" and got[0]["message"] == "'+1 -2 @x"
    assert got[1]["message"] == "'\tx\rz" and got[2]["message"] == "'-"
    assert got[0]["points"] == "0" and read_rows(totals_path)[0]["student"].startswith("'")
    written = grading.write_feedback(results, tmp_path / "fb")
    assert len({p.name for p in written}) == len(rows) == len(list((tmp_path / "fb").iterdir()))
    names = {grading.feedback_name(r.student) for r in rows}
    assert len(names) == len(rows)
    assert grading.feedback_name("alice") == "alice.md"
    assert grading.feedback_name("José") == "José.md"  # readable when nothing had to change
    assert grading.feedback_name("Jose\u0301").startswith("José-")  # NFC + a hash of the exact name


def test_records_are_data_and_replayed_in_the_grader(tmp_path):
    """What the kernel side records is rebuilt from JSON + safetensors; the check runs here."""
    import torch

    from t5edu.classroom.checks import ch02, ch08
    from t5edu.classroom.grading import kernel_side, record, replay
    from t5edu.classroom.solutions import ch02 as S2
    from t5edu.classroom.solutions import ch08 as S8

    def recorded(check, function, name):
        kernel = kernel_side.KernelGrader({"checks_module": check.__module__, "records": str(tmp_path),
                                          "forbidden": {name: list(getattr(check, "forbid", ()))}})
        kernel.check(name, lambda: kernel.pack(function))
        return record.read(tmp_path, name)

    data = recorded(ch08.exercise_4, S8.reorder_beam_cache, "exercise_4")  # in place, returns None
    assert replay.verdict(ch08.exercise_4, data, "8.4") == (
        True, "✅ Exercise 8.4 (Reordering the cache): passed.")
    data = recorded(ch02.exercise_3, S2.heads_to_features, "exercise_3")
    assert replay.verdict(ch02.exercise_3, data, "2.3")[0] is True
    # The answers are data: a forged "passed" flag or a changed answer does not pass.
    structure, tensors = data
    forged = dict(structure, passed=True, complete=True)
    forged["calls"] = [dict(c, returned={"$tensor": "t0"}) for c in structure["calls"]]
    wrong = {k: torch.zeros_like(v) for k, v in tensors.items()}
    assert replay.verdict(ch02.exercise_3, (forged, wrong), "2.3")[0] is False
    empty = {"args": [{"callable": True}], "calls": []}
    assert replay.verdict(ch02.exercise_3, (empty, {}), "2.3")[0] is False
    # A library shortcut is refused, in the kernel's record and from the notebook's text.
    from t5edu.attention import merge_heads

    data = recorded(ch02.exercise_3, lambda x: merge_heads(x), "exercise_3")
    passed, message = replay.verdict(ch02.exercise_3, data, "2.3")
    assert not passed and "t5edu.attention.merge_heads" in message and "your own implementation" in message
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from t5edu.attention import merge_heads as mh\n"
                                          "def helper(x):\n    return mh(x)\n"
                                          "def heads_to_features(x):\n    return helper(x)")]
    assert grading.library_shortcuts(nb, "(heads_to_features)", ch02.exercise_3.forbid) == [
        "t5edu.attention.merge_heads"]
    nb.cells = [nbformat.v4.new_code_cell("def merge_heads(x):\n    return x.transpose(1, 2).flatten(2)\n"
                                          "def heads_to_features(x):\n    return merge_heads(x)")]
    assert grading.library_shortcuts(nb, "(heads_to_features)", ch02.exercise_3.forbid) == []
    assert "t5edu.attention.merge_heads" in ch02.exercise_3.run(merge_heads).message


def test_record_files_are_read_safely(tmp_path):
    from t5edu.classroom.grading import record

    (tmp_path / "x.json").symlink_to("/etc/passwd")
    with pytest.raises(record.RecordError):
        record.read(tmp_path, "x")
    (tmp_path / "y.json").write_text('{"$opaque": 1}')
    assert record.read(tmp_path, "nothing") is None
    with pytest.raises(record.RecordError):
        record.decode({"$code": "import os"}, {})


def test_sandbox_command_hides_what_it_must(tmp_path):
    from t5edu.classroom.grading import sandbox

    needed = sandbox.needed_paths()
    repo = str(ROOT)
    assert repo in needed
    (tmp_path / "g.csv").write_text("x")
    subs = str(ROOT / "tests" / "fixtures")  # a submissions folder inside a needed folder
    argv = sandbox.command(tmp_path, hide=[repo, subs], hide_after=[str(ROOT / "exercises" / "src")],
                           needed=needed, hide_files=[tmp_path / "g.csv"])
    pairs = list(itertools.pairwise(argv))
    assert ("--tmpfs", repo) not in pairs  # the output folder holds t5edu: only its files are covered
    assert ("--tmpfs", subs) in pairs and ("--tmpfs", str(ROOT / "exercises" / "src")) in pairs
    assert ("--ro-bind", "/dev/null") in pairs
    assert argv[argv.index("/dev/null") + 1] == str(tmp_path / "g.csv")
    assert all(("--tmpfs", p) in pairs for p in ("/tmp", "/home", "/root") if Path(p).is_dir())
    for flag in ("--unshare-pid", "--unshare-net", "--die-with-parent", "--new-session", "--as-pid-1"):
        assert flag in argv
    assert argv[-3:] == ["-m", "t5edu.classroom.grading.executor", f"{sandbox.INSIDE}/job.json"]


def test_grading_refuses_without_bubblewrap(tmp_path, monkeypatch, capsys):
    from t5edu.classroom.grading import sandbox

    monkeypatch.setattr(sandbox, "bwrap", lambda: None)
    assert grading.run([tmp_path], tmp_path / "g.csv", settings=grading.Settings()) == ([], 2)
    assert "apt-get install bubblewrap" in capsys.readouterr().err


def test_chapter_detection_and_check_cells():
    nb = stub()
    assert grading.detect_chapter(nb, "whatever.ipynb", "gradefix.checks") == "ch99"
    assert grading.detect_chapter(nbformat.v4.new_notebook(), "alice_ch07_x.ipynb") == "ch07"
    nb.metadata["t5edu"] = {"chapter": "ch12"}
    assert grading.detect_chapter(nb, "ch99.ipynb", "gradefix.checks") == "ch12"
    plan, present = grading.student_cells(stub(), "gradefix.checks")
    assert present == {"exercise_1", "exercise_2", "exercise_3"}
    code = "\n".join(item[2] for item in plan if item[0] == "student")
    assert "exercise_1(" not in code and "from gradefix.checks import ch99" in code
    order = [item[1] if item[0] == "check" else "code" for item in plan]
    assert order == ["code", "code", "exercise_1", "code", "code", "exercise_2", "code", "exercise_3"]
    chapter = grading.read_chapter(SOURCE, "gradefix.checks")
    assert [(e.name, e.args, e.points) for e in chapter.exercises] == [
        ("exercise_1", "(add_one)", 1), ("exercise_2", "(count_words, STOPWORDS)", 2),
        ("exercise_3", "(row_means)", 3)]
    _, calls = grading.check_calls("x = 1; ch99.exercise_1(f)  # ok\n%time y = 2", {"ch99": "ch99"})
    assert [name for _, _, name in calls] == ["exercise_1"]


def test_importing_the_reference_is_spotted_unless_the_source_does_it(tmp_path):
    chapter = grading.read_chapter(SOURCE, "gradefix.checks")
    packages = ("gradefix.solutions", "t5edu.classroom.solutions")
    for code in ("from gradefix.solutions.ch99 import add_one as ref",
                 "from gradefix.solutions import ch99", "import gradefix.solutions.ch99",
                 "x = gradefix.solutions.ch99.add_one", "importlib.import_module('gradefix.solutions.ch99')"):
        nb = insert(solved(), 2, code)
        assert grading.uses_solutions(nb, chapter, packages) == "gradefix.solutions.ch99", code
    assert grading.uses_solutions(solved(), chapter, packages) == ""
    other = insert(solved(), 2, "from gradefix.solutions import ch98")
    assert grading.uses_solutions(other, chapter, packages) == ""
    # An exercise source that tells students to use the reference (outside its solutions) is not flagged.
    given = source()
    insert(given, 2, "from gradefix.solutions.ch99 import add_one as helper")
    nbformat.write(given, tmp_path / "ch99_demo.ipynb")
    told = grading.read_chapter(tmp_path / "ch99_demo.ipynb", "gradefix.checks")
    nb = insert(solved(), 2, "from gradefix.solutions.ch99 import add_one as helper")
    assert grading.uses_solutions(nb, told, packages) == ""


def test_release_leaves_no_solution_text(tmp_path):
    src = tmp_path / "exercises" / "src"
    src.mkdir(parents=True)
    shutil.copy(SOURCE, src / SOURCE.name)
    secrets = solution_lines(SOURCE)
    assert "result_of_adding = x + 1" in secrets and "secret-written-answer" in " ".join(secrets)

    out = tmp_path / "handout"
    assert exercises.release(out, root=tmp_path, no_solutions=True, out=io.StringIO()) == 0
    released = sorted(p for p in out.rglob("*") if p.is_file())
    assert {p.name for p in released} == {"README.md", "ch99_demo.ipynb"}
    leaks = [(p.name, line) for p in released for line in secrets if appears(line, p.read_text())]
    assert leaks == []
    nb = nbformat.read(out / "ch99_demo.ipynb", as_version=4)
    assert nb.metadata["t5edu"]["chapter"] == "ch99" and "jupytext" not in nb.metadata
    assert "ch99_demo.ipynb" in (out / "README.md").read_text()

    # Without --no-solutions the reference notebook is handed out too: the test above can fail.
    with_solutions = tmp_path / "selfstudy"
    exercises.release(with_solutions, root=tmp_path, out=io.StringIO())
    text = "".join(p.read_text() for p in with_solutions.rglob("*") if p.is_file())
    assert all(appears(line, text) for line in secrets)
    private = tmp_path / "private"
    exercises.release(private, root=ROOT, source_dir=src, no_solutions=True, out=io.StringIO())
    assert sorted(p.name for p in private.iterdir()) == ["README.md", "ch99_demo.ipynb"]
    with pytest.raises(exercises.ReleaseError, match="no exercise source for ch42"):
        exercises.release(tmp_path / "x", root=tmp_path, chapters=["ch42"], out=io.StringIO())
    with pytest.raises(exercises.ReleaseError, match="not empty"):  # never mixes with an older hand-out
        exercises.release(with_solutions, root=tmp_path, no_solutions=True, out=io.StringIO())


def appears(line, text):
    """`line` is in `text`, raw or as it is escaped inside notebook JSON."""
    return line in text or json.dumps(line, ensure_ascii=False)[1:-1] in text


def solution_lines(path):
    """Every line between BEGIN/END SOLUTION that the stub does not show anyway (a prompt may quote one)."""
    nb = nbformat.read(path, as_version=4)
    public = nbformat.writes(exercises.student_notebook(nb))
    inside = set()
    for cell in nb.cells:
        within = False
        for line in cell.source.splitlines():
            if exercises.BEGIN.match(line):
                within = True
            elif exercises.END.match(line):
                within = False
            elif within and line.strip() and not appears(line.strip(), public):
                inside.add(line.strip())
    return sorted(inside)


def test_release_of_the_real_exercises_leaves_no_solution_text(tmp_path):
    sources = exercises.sources(ROOT)
    if not sources:
        pytest.skip("no exercise sources yet")
    out = tmp_path / "handout"
    assert exercises.release(out, root=ROOT, no_solutions=True, out=io.StringIO()) == 0
    released = "\n".join(p.read_text() for p in out.rglob("*") if p.is_file())
    leaks = [(src.name, line) for src in sources for line in solution_lines(src)
             if appears(line, released)]
    assert leaks == []


@slow
@needs_bwrap
def test_grade_a_real_chapter(tmp_path):
    """If a real chapter with exercises exists: its reference passes everything, its stub nothing."""
    chapters = grading.read_chapters(grading.SOURCE_DIR)
    if not chapters:
        pytest.skip("no real chapter has exercises yet")
    chapter = chapters[min(chapters)]
    try:
        __import__(f"t5edu.classroom.checks.{chapter.chapter}")
    except ImportError:
        pytest.skip(f"t5edu.classroom.checks.{chapter.chapter} is not written yet")
    subs = tmp_path / "subs"
    subs.mkdir()
    src = nbformat.read(chapter.source, as_version=4)
    nbformat.write(src, subs / "reference.ipynb")
    nbformat.write(exercises.student_notebook(src), subs / "stub.ipynb")
    settings = grading.Settings(timeout=60, total_timeout=300, jobs=2, chapter=chapter.chapter)
    results, status = grading.run([subs], tmp_path / "g.csv", None, settings, stream=io.StringIO())
    assert status == 0
    rows = {(r.student, r.exercise): r for g in results for r in g.rows}
    for e in chapter.exercises:
        ref = rows[("reference", f"{chapter.chapter}.{e.name}")]
        assert ref.passed, ref.message
        st = rows[("stub", f"{chapter.chapter}.{e.name}")]
        assert not st.passed and NOT_DONE in st.message, st.message
    # written answers (kind "explain" in exercises/index.json) are listed for the instructor, scored by no one
    manual = manual_items(grading.SOURCE_DIR.parent / "index.json").get(chapter.chapter, [])
    for item in manual:
        for student in ("reference", "stub"):
            row = rows[(student, f"{chapter.chapter}.{item['id']}")]
            assert row.manual and row.points == 0 and row.max_points == item["points"], row
    csv_rows = {(r["student"], r["exercise"]): r for r in read_rows(tmp_path / "g.csv")}
    totals = {r["student"]: r for r in read_rows(tmp_path / "g_totals.csv")}
    for item in manual:
        row = csv_rows[("reference", f"{chapter.chapter}.{item['id']}")]
        assert row["passed"] == "manual" and row["points"] == ""
        assert float(row["max_points"]) == item["points"]
    auto = sum(e.points for e in chapter.exercises)
    assert float(totals["reference"]["points"]) == auto == float(totals["reference"]["max_points"])
    assert float(totals["reference"]["manual_max_points"]) == sum(item["points"] for item in manual)


def test_students_are_named_after_files_or_folders(tmp_path):
    (tmp_path / "alice_ch99.ipynb").write_text("{}")
    (tmp_path / "bob" / "work").mkdir(parents=True)
    (tmp_path / "bob" / "work" / "ch99_demo.ipynb").write_text("{}")
    (tmp_path / "bob" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "bob" / ".ipynb_checkpoints" / "ch99_demo-checkpoint.ipynb").write_text("{}")
    (tmp_path / "notes.txt").write_text("")
    found = grading.find_submissions([tmp_path, tmp_path / "alice_ch99.ipynb"])
    assert [(s, label) for s, _, label in found] == [
        ("alice_ch99", "alice_ch99.ipynb"), ("bob", "bob/work/ch99_demo.ipynb"),
        ("alice_ch99", "alice_ch99.ipynb")]


def test_cli_entry_and_help():
    from t5edu import cli

    assert cli.COMMANDS["grade"][0] == "t5edu.classroom.grading"
    args = cli.build_parser("grade").parse_args(["grade", "subs", "--out", "g.csv", "--timeout", "3",
                                                "--jobs", "2"])
    assert args.timeout == 3 and args.jobs == 2 and args.out == "g.csv"
    args = cli.build_parser("exercises").parse_args(["exercises", "release", "out", "--chapters", "ch01",
                                                      "--no-solutions"])
    assert args.action == "release" and args.no_solutions and args.chapters == ["ch01"]


if __name__ == "__main__":  # the fixture submissions, for a manual look: python tests/test_grading.py DIR
    print(json.dumps(build_submissions(Path(sys.argv[1])), indent=1))
