"""The book's machinery: mirror, notebook/script pairing, student notebooks, check helpers, env files."""

import io
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from t5edu.authoring import book, mirror
from t5edu.classroom import exercises
from t5edu.classroom.checks._core import exercise, expect_close, expect_equal, fail
from t5edu.extras import MODULE_EXTRAS

try:
    import tomllib  # Python >= 3.11
except ModuleNotFoundError:  # Python 3.10: the same parser, as tomli or inside pip
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    for kind, src in cells:
        cell = nbformat.v4.new_code_cell(src) if kind == "code" else nbformat.v4.new_markdown_cell(src)
        nb.cells.append(cell)
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def tiny_book(tmp_path):
    (tmp_path / "t5edu").mkdir()
    _notebook(tmp_path / "chapters/01_demo.ipynb", [
        ("code", "#| default_exp demo"),
        ("markdown", "## 1.1 Doubling"),
        ("code", "#| export\ndef double(x):\n    return 2 * x"),
        ("code", "assert double(2) == 4"),
        ("markdown", "## 1.2 Constants"),
        ("code", "#| export other\nLIMIT = 3\n_private = 1\nLOW, HIGH = 0, 9"),
    ])
    assert mirror.write(tmp_path, out=io.StringIO()) == 0
    return tmp_path


def test_mirror_writes_header_provenance_and_all(tiny_book):
    text = (tiny_book / "t5edu/demo.py").read_text()
    assert text.startswith(mirror.GENERATED_MARK + " chapters/01_demo.ipynb.")
    assert "# §1.1 Doubling — chapters/01_demo.ipynb, cell 2" in text
    assert "__all__ = [\n    'double',\n]" in text  # one name per line
    assert "assert double" not in text  # unexported cells stay in the book
    other = (tiny_book / "t5edu/other.py").read_text()
    assert "__all__ = [\n    'HIGH',\n    'LIMIT',\n    'LOW',\n]" in other and "§1.2 Constants" in other


def test_mirror_check_fails_when_exported_cell_edited_without_remirroring(tiny_book):
    out = io.StringIO()
    assert mirror.check(tiny_book, out=out) == 0
    nb_path = tiny_book / "chapters/01_demo.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["cells"][2]["source"] = "#| export\ndef double(x):\n    return x + x"
    nb_path.write_text(json.dumps(nb))
    out = io.StringIO()
    assert mirror.check(tiny_book, out=out) == 1
    assert "+    return x + x" in out.getvalue() and "-    return 2 * x" in out.getvalue()


def test_mirror_check_fails_on_hand_edit_duplicates_and_orphans(tiny_book):
    gen = tiny_book / "t5edu/demo.py"
    gen.write_text(gen.read_text().replace("2 * x", "3 * x"))
    assert mirror.check(tiny_book, out=io.StringIO()) == 1
    mirror.write(tiny_book, out=io.StringIO())
    _notebook(tiny_book / "chapters/02_again.ipynb", [("code", "#| default_exp again"),
                                                       ("code", "#| export\ndef double(x):\n    return x")])
    out = io.StringIO()
    assert mirror.check(tiny_book, out=out) == 1
    assert "`double` is exported twice" in out.getvalue()
    (tiny_book / "chapters/02_again.ipynb").unlink()
    (tiny_book / "t5edu/again.py").write_text(mirror.GENERATED_MARK + " chapters/02_again.ipynb.\n")
    out = io.StringIO()
    assert mirror.check(tiny_book, out=out) == 1
    assert "no notebook exports to it" in out.getvalue()


def test_real_book_is_mirrored_and_an_edit_to_a_real_chapter_is_caught(tmp_path):
    assert mirror.check(ROOT, out=io.StringIO()) == 0
    for name in ("chapters", "exercises", "t5edu"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    modules = mirror.collect(tmp_path)
    if not modules:
        pytest.skip("no chapter exports code yet")
    name, module = min(modules.items())
    notebook, index = module.chunks[0][0], module.chunks[0][1]
    nb = json.loads((tmp_path / notebook).read_text())
    src = "".join(nb["cells"][index]["source"])
    nb["cells"][index]["source"] = src + "\nEDITED_WITHOUT_MIRROR = True\n"
    (tmp_path / notebook).write_text(json.dumps(nb))
    out = io.StringIO()
    assert mirror.check(tmp_path, out=out) == 1
    assert "EDITED_WITHOUT_MIRROR" in out.getvalue()


def test_pairing_check_catches_a_stale_script(tmp_path):
    (tmp_path / "chapters").mkdir()
    for suffix in (".ipynb", ".py"):
        shutil.copy(ROOT / "chapters" / f"00_text_to_text{suffix}", tmp_path / "chapters")
    assert book.check_pairs(tmp_path, out=io.StringIO()) == 0
    py = tmp_path / "chapters/00_text_to_text.py"
    py.write_text(py.read_text().replace("Every task is text to text", "Every task is a task"))
    out = io.StringIO()
    assert book.check_pairs(tmp_path, out=out) == 1
    assert "differ" in out.getvalue()
    py.unlink()
    assert book.check_pairs(tmp_path, out=io.StringIO()) == 1


MAX_CELL_LINES = 60  # CONTRIBUTING.md: no code cell over 60 lines; a long class grows over several cells


def long_code_cells(notebooks, limit=MAX_CELL_LINES):
    """(notebook name, cell index, lines) of every code cell of `notebooks` longer than `limit` lines."""
    found = []
    for path in notebooks:
        for index, cell in enumerate(json.loads(Path(path).read_text())["cells"]):
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            if cell["cell_type"] == "code" and len(source.splitlines()) > limit:
                found.append((Path(path).name, index, len(source.splitlines())))
    return found


def test_no_chapter_code_cell_is_over_60_lines():
    notebooks = sorted((ROOT / "chapters").glob("*.ipynb"))
    assert notebooks
    assert long_code_cells(notebooks) == [], "split these cells (a sentence of prose before each part)"


def test_the_cell_length_check_catches_a_61_line_cell(tmp_path):
    sixty = "\n".join(f"x{i} = {i}" for i in range(60))
    path = tmp_path / "chapters/01_demo.ipynb"
    _notebook(path, [("code", sixty + "\n"), ("markdown", "prose\n" * 80), ("code", sixty + "\nx60 = 60")])
    assert long_code_cells([path]) == [("01_demo.ipynb", 2, 61)]  # 60 lines pass, markdown is not counted
    assert long_code_cells([path], limit=61) == []


def test_strip_solutions_keeps_indentation_and_rejects_broken_markers():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n\nf"
    assert exercises.strip_solutions(src) == f"def f(x):\n    {exercises.STUB}\n\nf"
    with pytest.raises(exercises.MarkerError, match="never closed"):
        exercises.strip_solutions("### BEGIN SOLUTION\nx = 1")
    with pytest.raises(exercises.MarkerError, match="without a BEGIN"):
        exercises.strip_solutions("x = 1\n### END SOLUTION")


def test_student_notebooks_are_generated_and_drift_checked(tmp_path):
    src = tmp_path / "exercises/src/ch01_demo.ipynb"
    _notebook(src, [("code", "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION"),
                    ("code", "print(f(1))")])
    nb = nbformat.read(src, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="2\n")]
    nbformat.write(nb, src)
    assert exercises.generate(tmp_path, out=io.StringIO()) == 0
    student = nbformat.read(tmp_path / "exercises/ch01_demo.ipynb", as_version=4)
    assert "return x + 1" not in student.cells[0].source
    assert "NotImplementedError" in student.cells[0].source
    assert student.cells[1].outputs == []
    assert (tmp_path / "exercises/ch01_demo.py").exists()
    assert exercises.check(tmp_path, out=io.StringIO()) == 0
    nb.cells[0].source = nb.cells[0].source.replace("x + 1", "x + 2")  # solutions never reach students
    nbformat.write(nb, src)
    assert exercises.check(tmp_path, out=io.StringIO()) == 0
    nb.cells[1].source = "print(f(2))"
    nbformat.write(nb, src)
    assert exercises.check(tmp_path, out=io.StringIO()) == 1


def test_real_student_notebooks_contain_no_solutions_and_no_directives():
    import nbformat

    for path in sorted((ROOT / "exercises").glob("*.ipynb")):
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text, path
        # `#| export` and `#| default_exp` build the solutions module; students never see them
        code = [c.source for c in nbformat.reads(text, as_version=4).cells if c.cell_type == "code"]
        assert not [line for s in code for line in s.splitlines() if line.startswith("#|")], path


@exercise("0.1", "Add one")
def _check_add_one(fn):
    expect_equal(fn(1), 2, what="add_one(1)")
    expect_close(fn(0.5), 1.5, what="add_one(0.5)")


def test_check_passes_fails_and_explains():
    assert _check_add_one.run(lambda x: x + 1).passed
    wrong = _check_add_one.run(lambda x: x + 2)
    assert not wrong.passed and "expected: 2" in wrong.message and "got:      3" in wrong.message

    def stub(x):
        raise NotImplementedError

    assert "not done yet" in _check_add_one.run(stub).message

    def broken(x):
        return x["oops"]

    msg = _check_add_one.run(broken).message
    assert "your code raised TypeError" in msg and 'return x["oops"]' in msg


def test_checks_are_not_fooled_by_objects_that_equal_everything():
    import torch

    class Always:
        def __eq__(self, other):
            return True

    class Sneaky(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func in (torch.equal, torch.allclose):
                return True
            return super().__torch_function__(func, types, args, kwargs or {})

    assert not _check_add_one.run(lambda x: Always()).passed
    assert not _check_add_one.run(lambda x: [Always()] if x == 1 else x + 1).passed
    with pytest.raises(Exception, match="differs"):
        expect_close(torch.zeros(3).as_subclass(Sneaky), torch.ones(3), what="t")
    with pytest.raises(Exception, match="is wrong"):
        expect_equal(torch.zeros(3).as_subclass(Sneaky), torch.ones(3), what="t")
    with pytest.raises(Exception, match="expected a int, got a float"):
        expect_equal(2.0, 2, what="n")


def test_check_prints_one_line(capsys):
    _check_add_one(lambda x: x + 1)
    assert capsys.readouterr().out == "✅ Exercise 0.1 (Add one): passed.\n"
    with pytest.raises(Exception, match="custom"):
        fail("custom")


CONDA_ALIASES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def _names(requirements):
    names = {re.split(r"[<>=!~ \[;]", r.strip(), maxsplit=1)[0].lower().replace("_", "-")
             for r in requirements}
    return {CONDA_ALIASES.get(n, n) for n in names}


def _extra(project, name):
    """The requirements of one extra, with `t5edu[a,b]` (an extra naming others) expanded."""
    found = []
    for requirement in project["optional-dependencies"][name]:
        nested = re.fullmatch(r"t5edu\[([\w,\s-]+)\]", requirement.strip())
        if nested:
            for other in nested.group(1).split(","):
                found += _extra(project, other.strip())
        else:
            found.append(requirement)
    return found


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_extra_module_belongs_to_its_extra():
    project = _project()
    core = _names(project["dependencies"])
    for module, extra in MODULE_EXTRAS.items():
        name = module.replace("_", "-")
        assert name in _names(_extra(project, extra)), f"{name} is not in the extra [{extra}]"
        assert name not in core, f"{name} is in the core: no extra needed"


def test_environment_yml_matches_pyproject():
    project = _project()
    wanted = _names(project["dependencies"] + _extra(project, "dev"))
    conda, pip = set(), set()
    in_pip = False
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("dependencies:"):].splitlines():
        item = re.match(r"^(\s*)- (.+)$", line)
        if line.strip().startswith("- pip:"):
            in_pip = True
            continue
        if item:
            (pip if in_pip and len(item.group(1)) > 2 else conda).add(item.group(2).strip())
    conda_names = _names(conda) - {"python", "pip"}
    pip_names = _names(p for p in pip if not p.startswith("-e"))
    assert conda_names | pip_names == wanted, (
        f"only in pyproject: {sorted(wanted - conda_names - pip_names)}; "
        f"only in environment.yml: {sorted((conda_names | pip_names) - wanted)}")
    assert any(p.startswith("-e") for p in pip), "environment.yml must install the package itself"
