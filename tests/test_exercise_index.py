"""exercises/index.json is the map of the course: it must stay in step with the exercise notebooks (every
check cell is indexed, every indexed exercise has its check or its written-answer cell), and the generated
exercises/README.md must stay in step with the index."""

import importlib
import re
from pathlib import Path

import nbformat
import pytest

from t5edu.classroom import exercises
from t5edu.classroom.grading.notebooks import read_chapters

ROOT = Path(__file__).resolve().parents[1]
INDEX = exercises.load_index(ROOT)
HEADING = re.compile(r"^#+\s*Exercise\s+(\d+\.\d+)\b", re.MULTILINE)
LINK = re.compile(r"\]\((\.\./chapters/[^)]+\.ipynb)\)")


def checked_exercises():
    """{id: (chapter, points)} of every check cell in the exercise sources, ids from the checks themselves."""
    found = {}
    for chapter in read_chapters(ROOT / exercises.SOURCE_DIR).values():
        module = importlib.import_module(f"t5edu.classroom.checks.{chapter.chapter}")
        for ex in chapter.exercises:
            found[getattr(module, ex.name).number] = (chapter.chapter, ex.points)
    return found


def test_index_fields_are_complete_and_sane():
    ids = [e["id"] for e in INDEX]
    assert len(ids) == len(set(ids)), "an exercise id is listed twice"
    for e in INDEX:
        assert set(e) >= {"chapter", "id", "title", "kind", "points", "difficulty", "minutes", "notebook",
                          "sections"}, e
        assert re.fullmatch(r"ch\d\d", e["chapter"]), e
        assert e["id"].split(".")[0] == str(int(e["chapter"][2:])), e
        assert e["kind"] in exercises.KINDS, e
        assert e["difficulty"] in (1, 2, 3), e
        assert e["points"] > 0 and e["minutes"] > 0 and e["title"].strip(), e
        assert e["sections"] and all(isinstance(s, str) and s for s in e["sections"]), e
        assert Path(e["notebook"]).name.startswith(e["chapter"] + "_"), e
        assert (ROOT / e["notebook"]).exists(), e["notebook"]
        assert (ROOT / exercises.SOURCE_DIR / Path(e["notebook"]).name).exists(), e["notebook"]


def test_every_check_cell_is_indexed_and_every_checked_exercise_has_its_check():
    checked = checked_exercises()
    auto = {e["id"]: e for e in INDEX if e["kind"] not in exercises.MANUAL_KINDS}
    assert sorted(set(checked) - set(auto)) == [], "check cells missing from exercises/index.json"
    assert sorted(set(auto) - set(checked)) == [], "indexed exercises without a check cell"
    for number, (chapter, points) in checked.items():
        assert auto[number]["chapter"] == chapter, number
        # the grader reads points from the check cell (`# POINTS: N`, default 1): the index must agree
        assert auto[number]["points"] == points, (number, auto[number]["points"], points)


def test_every_written_answer_has_its_answer_cell():
    for e in INDEX:
        if e["kind"] not in exercises.MANUAL_KINDS:
            continue
        nb = nbformat.read(ROOT / exercises.SOURCE_DIR / Path(e["notebook"]).name, as_version=4)
        cells = nb.cells
        start = next((i for i, c in enumerate(cells)
                      if c.cell_type == "markdown" and e["id"] in HEADING.findall(c.source)), None)
        assert start is not None, f"{e['id']}: no '## Exercise {e['id']}' heading in {e['notebook']}"
        answer = None
        for cell in cells[start + 1:]:
            if cell.cell_type == "markdown" and HEADING.search(cell.source):
                break
            if cell.cell_type == "markdown" and exercises.has_solution(cell.source):
                answer = cell
                break
        assert answer is not None, f"{e['id']}: no answer cell (### BEGIN SOLUTION) after its heading"
        student = exercises.student_notebook(nbformat.v4.new_notebook(cells=[answer]))
        assert student.cells[0].source.strip().endswith("*Your answer here.*"), e["id"]
        assert "rubric" in answer.source.lower(), f"{e['id']}: the model answer needs a rubric for graders"


@pytest.mark.parametrize("notebook", sorted({e["notebook"] for e in INDEX}))
def test_each_student_notebook_links_back_to_its_chapter(notebook):
    nb = nbformat.read(ROOT / notebook, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    links = LINK.findall(first.source)
    assert links, f"{notebook}: the first cell should link to its chapter (../chapters/NN_topic.ipynb)"
    target = (ROOT / notebook).parent / links[0]
    assert target.resolve() == (ROOT / exercises.chapter_notebook(notebook)).resolve() and target.exists()
    chapter = nbformat.read(target, as_version=4)
    headings = {line[3:].strip() for c in chapter.cells if c.cell_type == "markdown"
                for line in c.source.splitlines() if line.startswith("## ")}
    title = chapter.cells[0].source.splitlines()[0].removeprefix("# ").strip()
    assert f"[{title}](" in first.source, f"{notebook}: link text should be the chapter's title {title!r}"
    for e in INDEX:
        if e["notebook"] == notebook:
            for section in e["sections"]:
                assert section in first.source, (notebook, section)
                assert section in headings, f"{e['id']}: the chapter has no section {section!r}"


def test_readme_is_generated_from_the_index_and_its_links_resolve():
    readme = (ROOT / exercises.README).read_text(encoding="utf-8")
    assert readme == exercises.readme_text(INDEX), "run `t5edu exercises generate` after editing the index"
    for e in INDEX:
        assert f"| {e['id']} | {e['title']} | {e['kind']} |" in readme
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (ROOT / "exercises" / target).exists(), target


def test_readme_text_counts_chapters_and_minutes():
    index = [dict(chapter="ch01", id="1.1", title="A", kind="predict", points=2, difficulty=2, minutes=30,
                  notebook="exercises/ch01_x.ipynb", sections=["1.1 One"]),
             dict(chapter="ch01", id="1.2", title="B", kind="explain", points=1, difficulty=1, minutes=30,
                  notebook="exercises/ch01_x.ipynb", sections=["1.2 Two"])]
    text = exercises.readme_text(index)
    assert "2 exercises, about 60 minutes, 3 points." in text
    assert "| 1.1 | A | predict | ★★ | 30 | 2 | 1.1 One |" in text
    assert "(../chapters/01_x.ipynb)" in text
