"""`t5edu exercises release --format nbgrader` writes a course folder nbgrader accepts: nbgrader generates
the assignment from it and autogrades submissions with the same automatic points as `t5edu grade`.
One chapter (ch00, the smallest) keeps the round trip short."""

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from t5edu.classroom import exercises

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "ch00"
SOURCE = ROOT / exercises.SOURCE_DIR / "ch00_text_to_text.ipynb"


def test_release_nbgrader_writes_cell_metadata(tmp_path):
    assert exercises.release_nbgrader(tmp_path / "course", chapters=[CHAPTER], out=io.StringIO()) == 0
    nb = nbformat.read(tmp_path / "course/source" / CHAPTER / SOURCE.name, as_version=4)
    meta = [c.metadata.get("nbgrader") for c in nb.cells]
    index = {e["id"]: e for e in exercises.load_index(ROOT) if e["chapter"] == CHAPTER}
    checks = [m for m in meta if m and m["grade"] and m["locked"]]
    answers = [m for m in meta if m and m["grade"] and m["solution"]]
    solutions = [m for m in meta if m and m["solution"] and not m["grade"]]
    auto = [i for i, e in index.items() if e["kind"] not in exercises.MANUAL_KINDS]
    assert len(checks) == len(auto)
    assert sum(m["points"] for m in checks) == sum(index[i]["points"] for i in auto)
    assert [m["points"] for m in answers] == [e["points"] for e in index.values() if e["kind"] == "explain"]
    assert len(solutions) == len(auto)
    assert all(m["schema_version"] == 3 for m in meta if m)
    assert len({m["grade_id"] for m in meta if m}) == sum(1 for m in meta if m)
    check_sources = [c.source for c in nb.cells if (c.metadata.get("nbgrader") or {}).get("locked")]
    assert all("assert _result.passed" in s for s in check_sources)  # nbgrader scores a test by raising
    assert (tmp_path / "course/nbgrader_config.py").exists()
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "#| export" not in code and "#| default_exp" not in code  # the mirror's lines stay with us


def _nbgrader(args, cwd):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_nbgrader_round_trip_matches_t5edu_grade(tmp_path):
    pytest.importorskip("nbgrader")
    course = tmp_path / "course"
    exercises.release_nbgrader(course, chapters=[CHAPTER], out=io.StringIO())
    done = _nbgrader(["generate_assignment", CHAPTER], course)
    assert done.returncode == 0, done.stdout + done.stderr
    released = course / "release" / CHAPTER / SOURCE.name
    assert "BEGIN SOLUTION" not in released.read_text(encoding="utf-8")
    # the same two students in each tool's own format: the reference solutions, and untouched stubs
    submissions = {"reference": course / "source" / CHAPTER / SOURCE.name, "stub": released}
    t5edu_submissions = {"reference": SOURCE, "stub": ROOT / exercises.STUDENT_DIR / SOURCE.name}
    for student, notebook in submissions.items():
        target = course / "submitted" / student / CHAPTER / SOURCE.name
        target.parent.mkdir(parents=True)
        shutil.copy(notebook, target)
    done = _nbgrader(["autograde", CHAPTER, "--create"], course)
    assert done.returncode == 0, done.stdout + done.stderr

    from nbgrader.api import Gradebook

    nbgrader_points = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for student in submissions:
            submission = gradebook.find_submission_notebook(SOURCE.stem, CHAPTER, student)
            nbgrader_points[student] = sum(g.auto_score or 0 for g in submission.grades
                                           if g.cell.cell_type == "code")
    auto_max = sum(e["points"] for e in exercises.load_index(ROOT)
                   if e["chapter"] == CHAPTER and e["kind"] not in exercises.MANUAL_KINDS)
    assert nbgrader_points == {"reference": auto_max, "stub": 0}

    # t5edu grade on the same two notebooks gives the same automatic points
    grading = tmp_path / "grading"
    for student, notebook in t5edu_submissions.items():
        (grading / student).mkdir(parents=True)
        shutil.copy(notebook, grading / student / SOURCE.name)
    out = tmp_path / "grades.csv"
    done = subprocess.run([sys.executable, "-m", "t5edu", "grade", str(grading), "--out", str(out),
                           "--chapter", CHAPTER], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=600)
    assert out.exists(), done.stdout + done.stderr
    points = {}
    with out.open(encoding="utf-8", newline="") as rows:
        for record in csv.DictReader(rows):
            points[record["student"]] = points.get(record["student"], 0.0) + float(record["points"] or 0)
    assert points == {k: float(v) for k, v in nbgrader_points.items()}, (points, nbgrader_points)
