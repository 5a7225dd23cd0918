"""The website edition of the book (`make html`): it builds with warnings as errors, every link resolves,
nothing loads from the network, and every page works in a real browser (headless Chromium, network off).

Without chromium the browser test is skipped with a loud message, except in CI (CI=true), where it fails:
install it with `apt-get install -y chromium` (.ci/run does).
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "site"))

import site_build  # noqa: E402

OUT = ROOT / "build" / "html"
SHOTS = ROOT / "build" / "site-screenshots"


# ----------------------------------------------------------------------------------------------------------
# The link checker itself (fast)


def test_markdown_links_resolve():
    assert site_build.broken_markdown_links() == []


def test_link_checker_finds_a_broken_link(tmp_path):
    (tmp_path / "chapters").mkdir()
    (tmp_path / "exercises").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "GUIDE.md").write_text("see [it](../README.md)\n")
    (tmp_path / "README.md").write_text(
        "[ok](docs/GUIDE.md) [gone](docs/GONE.md#top) [web](https://example.org) `[code](nope.md)`\n"
        "```\n[fenced](nope.md)\n```\n")
    nb = {"cells": [{"cell_type": "markdown", "source": ["[Chapter 02](02_attention.ipynb) ",
                                                         "[ex](../exercises/)"]}]}
    (tmp_path / "chapters" / "01_x.ipynb").write_text(json.dumps(nb))
    assert site_build.broken_markdown_links(tmp_path) == [
        "README.md: docs/GONE.md#top (no such file or folder)",
        "chapters/01_x.ipynb: 02_attention.ipynb (no such file or folder)",
    ]


def test_html_checker_finds_missing_targets_and_network_loads(tmp_path):
    (tmp_path / "a.html").write_text(
        '<h1 id="top">A</h1><a href="b.html#nowhere">b</a><a href="a.html#top">a</a>'
        '<a href="c.html">c</a><a href="https://example.org">web</a>'
        '<script src="https://cdn.example.org/x.js"></script>')
    (tmp_path / "b.html").write_text('<p id="here">B</p><img src="missing.png">')
    assert site_build.check_html(tmp_path) == [
        "a.html: link to missing anchor b.html#nowhere",
        "a.html: link to missing c.html",
        "a.html: loads https://cdn.example.org/x.js from the network",
        "b.html: loads missing missing.png",
    ]


def test_section_comments_name_where_each_name_is_defined():
    from t5edu_site import sections

    found = sections(ROOT / "t5edu" / "attention.py")
    title, notebook, cell = found["T5Attention"]
    assert notebook == "chapters/02_attention.ipynb" and "T5Attention" in title and cell > 0


def test_links_to_a_folder_point_at_its_readme_or_first_page(tmp_path):
    from t5edu_site import folder_links

    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / "ch02_b.ipynb").write_text("{}")
    (tmp_path / "exercises" / "ch01_a.ipynb").write_text("{}")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.md").write_text("# Docs")
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    text = "[a](../exercises/) [b](../docs#x) [c](02_attention.ipynb) [d](https://example.org/)"
    assert folder_links(text, chapters) == (
        "[a](../exercises/ch01_a.ipynb) [b](../docs/README.md#x) [c](02_attention.ipynb) [d](https://example.org/)")


def test_plain_text_docstrings_render_as_written():
    import io

    from docutils.core import publish_doctree
    from t5edu_site import _as_rst

    doc = ["Calls `f(**kwargs)` with name_ and *args; `<unk>` is written ` ⁇ `.", "",
           "Args:", "    x: a tensor", "    y_: another | one", "- a list item", "  continued"]
    errors = io.StringIO()
    tree = publish_doctree("\n".join(_as_rst(doc)),
                           settings_overrides={"warning_stream": errors, "report_level": 1})
    assert errors.getvalue() == ""
    text = tree.astext()
    for shown in ("f(**kwargs)", "name_ and *args", "<unk>", "⁇", "y_: another | one", "a list item"):
        assert shown in text, (shown, text)


# ----------------------------------------------------------------------------------------------------------
# The build


@pytest.fixture(scope="module")
def built():
    """A fresh build (Sphinx rebuilds only what changed since the last one)."""
    site_build.build(OUT, quiet=True)
    return OUT


@pytest.mark.slow
def test_site_builds_with_every_page(built):
    pages = {p.relative_to(built).as_posix() for p in site_build.html_pages(built)}
    expected = {"index.html", "search.html", "api/index.html"}
    expected |= {f"chapters/{p.stem}.html" for p in site_build.chapters()}
    expected |= {f"exercises/{p.stem}.html" for p in site_build.exercises().values()}
    expected |= {f"docs/{p.stem}.html" for p in (ROOT / "docs").glob("*.md")}
    expected |= {f"api/{name}.html" for name in site_build.library_modules()}
    if (ROOT / "CONTRIBUTING.md").exists():
        expected.add("CONTRIBUTING.html")
    if (ROOT / "exercises" / "README.md").exists():
        expected.add("exercises/README.html")
    assert expected <= pages, sorted(expected - pages)
    assert site_build.check_html(built) == []

    for nb in [*site_build.chapters(), *site_build.exercises().values()]:
        text = (built / nb.parent.name / f"{nb.stem}.html").read_text(encoding="utf-8")
        link = re.search(rf'href="(\.\./_downloads/[0-9a-f]+/{re.escape(nb.name)})"', text)
        assert link, f"{nb.name}: no download link"
        downloaded = built / nb.parent.name / link[1]
        assert downloaded.read_bytes() == nb.read_bytes(), f"{nb.name}: the download is not the notebook"

    # the API reference names the section of the chapter that defined each entry, with a link to it
    api = (built / "api" / "attention.html").read_text(encoding="utf-8")
    defined = r'Defined in</em> <a class="reference internal" href="\.\./chapters/02_attention\.html#[^"]+"'
    assert len(re.findall(defined, api)) >= 3, "no 'Defined in' links to sections of Chapter 02"
    assert "T5Attention module</span></a>" in api
    # MathJax comes from the site itself
    assert (built / "_static" / "mathjax" / "tex-chtml.js").exists()


# ----------------------------------------------------------------------------------------------------------
# In the browser

_TEX_LEFT = r"""(() => {
  const walker = document.createTreeWalker(document.querySelector("main") || document.body,
                                           NodeFilter.SHOW_TEXT);
  const raw = [];
  const tex = /\\\(|\\\[|\$\$|\$[^$\s][^$]*[\\^_{][^$]*\$/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement.closest("pre, code, script, style, textarea, .highlight, .output")) continue;
    if (tex.test(n.textContent)) raw.push(n.textContent.trim().slice(0, 80));
  }
  return raw;
})()"""

_BROKEN_IMAGES = """Array.from(document.images)
  .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"))"""

_MATHJAX_DONE = """(async () => {
  if (!document.querySelector(".math")) return "no math";
  for (let i = 0; i < 100 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
    await new Promise(r => setTimeout(r, 100));
  if (!(window.MathJax && MathJax.startup)) return "MathJax did not load";
  await MathJax.startup.promise;
  return document.querySelectorAll("mjx-container").length > 0 ? "typeset" : "nothing typeset";
})()"""


def _chromium():
    from site_browser import chromium_path

    path = chromium_path()
    if path:
        return path
    message = ("chromium is not installed: the website was not tested in a browser "
               "(apt-get install -y chromium)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    warnings.warn(message, stacklevel=2)
    print(f"\n!!! {message} !!!\n", file=sys.stderr)
    pytest.skip(message)


def _check_image(path):
    from PIL import Image

    assert path.stat().st_size > 20_000, f"{path.name}: {path.stat().st_size} bytes, a blank page?"
    with Image.open(path) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 16, f"{path.name}: {len(colours)} colours, a blank page?"


def _open_page(page, base, rel):
    """Load one page, wait for its math; what went wrong there: math, page errors, images not loaded."""
    page.errors.clear()
    page.goto(base + rel)
    problems = []
    math = page.evaluate(_MATHJAX_DONE, timeout=60)
    if math not in ("typeset", "no math"):
        problems.append(f"{rel}: math {math}")
    problems += [f"{rel}: {e}" for e in page.errors]
    problems += [f"{rel}: image did not load: {src}" for src in page.evaluate(_BROKEN_IMAGES)]
    return problems


@pytest.mark.slow
def test_every_page_in_chromium_with_the_network_off(built):
    from site_browser import browser, serve

    executable = _chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = [p.relative_to(built).as_posix() for p in site_build.html_pages(built)]
    problems = []
    with serve(built) as base, browser(executable) as page:
        for rel in pages:
            problems += _open_page(page, base, rel)
            problems += [f"{rel}: raw TeX left in the text: {t!r}" for t in page.evaluate(_TEX_LEFT)]
            if rel.startswith("chapters/") and not page.evaluate("!!document.querySelector('a.right-next')"):
                problems.append(f"{rel}: no link to the next page")
        assert not problems, "\n".join(problems)

        # the sidebar lists every chapter and, under it, its exercises
        page.goto(base + "index.html")
        sidebar = page.evaluate("Array.from(document.querySelectorAll('.bd-sidebar-primary a'))"
                                ".map(a => a.getAttribute('href'))")
        for nb in [*site_build.chapters(), *site_build.exercises().values()]:
            assert f"{nb.parent.name}/{nb.stem}.html" in sidebar, f"{nb.name} is not in the sidebar"
        page.evaluate("document.querySelectorAll('.bd-sidebar-primary, .bd-sidebar-primary *')"
                      ".forEach(e => e.scrollTop = 0)")
        page.screenshot(SHOTS / "landing.png")

        # full-text search, from the search page's own index
        page.goto(base + "search.html?q=relative+position+bias")
        found = page.wait_for("Array.from(document.querySelectorAll('#search-results li a'))"
                              ".map(a => a.getAttribute('href')).filter(h => h)", timeout=30)
        assert found and any("03_relative_bias" in h for h in found), found
        page.screenshot(SHOTS / "search.png")

        # Chapter 03 (a figure and math), or else the first chapter
        chapters = sorted(p for p in pages if p.startswith("chapters/"))
        chapter = next((p for p in chapters if p.startswith("chapters/03_")), chapters[0])
        page.goto(base + chapter)
        page.evaluate(_MATHJAX_DONE, timeout=60)
        # scroll to the first figure, so the screenshot shows one with the text and math around it
        page.evaluate("(() => { const i = document.querySelector('main img'); if (i) i.scrollIntoView(); "
                      "window.scrollBy(0, -250); })()")
        page.screenshot(SHOTS / "chapter.png")
        exercise = next((p for p in pages if p.startswith("exercises/ch")), None)
        if exercise:
            page.goto(base + exercise)
            page.screenshot(SHOTS / "exercises.png")
        assert not page.errors, page.errors

    for shot in SHOTS.glob("*.png"):
        _check_image(shot)


@pytest.mark.slow
def test_site_opened_from_the_filesystem(built):
    """A reader may open build/html/index.html without a server: pages, math and search still work."""
    from site_browser import browser

    executable = _chromium()
    base = built.resolve().as_uri() + "/"
    pages = ["index.html", "api/index.html",
             *(f"{nb.parent.name}/{nb.stem}.html" for nb in site_build.chapters()[:4])]
    problems = []
    with browser(executable) as page:
        for rel in pages:
            problems += _open_page(page, base, rel)
        page.errors.clear()
        page.goto(base + "search.html?q=relative+position+bias")
        found = page.wait_for("document.querySelectorAll('#search-results li a').length", timeout=30)
        assert found, "search found nothing when the site is opened from the filesystem"
        problems += [f"search.html: {e}" for e in page.errors]
    assert not problems, "\n".join(problems)
