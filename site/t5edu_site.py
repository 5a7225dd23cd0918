"""Sphinx extension for the book's website (loaded by site/conf.py).

- Chapter and exercise pages get a "Download this notebook" link; each chapter's exercises page sits
  under the chapter in the table of contents.
- The API reference names, for every documented function and class, the chapter section whose exported
  cell defines it (parsed from the `# §2.5 Title — chapters/02_attention.ipynb, cell 14` comments that
  `t5edu mirror` writes above each cell), with a link to that section.
- Docstrings are plain text with markdown-style `code`, not reStructuredText: they are escaped so that a
  `**kwargs` or a `name_` renders as written instead of breaking the build.
- A ```mermaid block renders as the pre-rendered SVG in site/_static/diagrams/ (made by
  site/site_diagrams.py), so that the site needs no diagram JavaScript and no network.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import urllib.parse
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx import addnodes
from sphinx.util import logging

logger = logging.getLogger(__name__)
SITE = Path(__file__).resolve().parent
DIAGRAMS = SITE / "_static" / "diagrams"
_SECTION = re.compile(r"^# §(?P<title>.+?) — (?P<notebook>chapters/[^,\s]+\.ipynb), cell (?P<cell>\d+)\s*$")


# ----------------------------------------------------------------------------------------------------------
# Where the library's names were defined


def sections(path):
    """{top-level name: (section title, chapter notebook, cell)} from a generated module's comments."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    marks = {i + 1: m for i, line in enumerate(lines) if (m := _SECTION.match(line))}
    out = {}
    for node in ast.parse("\n".join(lines)).body:
        names = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            first = node.lineno
        if not names:
            continue
        above = [n for n in marks if n < first]
        if above:
            m = marks[max(above)]
            title = m["title"].strip()  # as the heading is written (the section label keeps its backticks)
            for name in names:
                out[name] = (title, m["notebook"], int(m["cell"]))
    return out


def module_chapter(path):
    """The chapter notebook a generated module comes from, or None for a hand-written one."""
    found = {nb for _, nb, _ in sections(path).values()}
    for line in Path(path).read_text(encoding="utf-8").splitlines()[:10]:
        if m := _SECTION.match(line):
            found.add(m["notebook"])
    return sorted(found)[0] if found else None


_section_cache: dict[str, dict] = {}


def _defined_in(modname, name):
    if modname not in _section_cache:
        import importlib

        _section_cache[modname] = sections(importlib.import_module(modname).__file__)
    return _section_cache[modname].get(name)


def section_ref(name, rawtext, text, lineno, inliner, options=None, content=None):
    """:t5edu-section:`chapters/02_attention|2.5%20The%20%60T5Attention%60%20module` (the heading,
    URL-quoted) links to that section of the chapter (its autosectionlabel label), or to the chapter
    itself when no heading has that title."""
    doc, _, quoted = text.partition("|")
    title = urllib.parse.unquote(quoted)
    label = nodes.fully_normalize_name(f"{doc}:{title}")
    title = re.sub(r"[`*]", "", title)
    number = re.match(r"chapters/(\d+)", doc)
    shown = f"Chapter {number[1]}, §{title}" if number and not title.startswith("Chapter") else title
    node = addnodes.pending_xref(rawtext, refdomain="std", reftype="ref", reftarget=label, refexplicit=True,
                                 refwarn=True)
    node["t5edu_doc"] = doc
    node += nodes.inline(shown, shown, classes=["xref", "std", "std-ref"])
    return [node], []


def fallback_to_chapter(app, env, node, contnode):
    """A section label that does not resolve (a heading renamed since the last mirror) links to the
    chapter page instead: the chapter still defines the name."""
    doc = node.get("t5edu_doc")
    if not doc or doc not in env.all_docs:
        return None
    ref = nodes.reference("", "", internal=True,
                          refuri=app.builder.get_relative_uri(node["refdoc"], doc))
    ref += contnode
    return ref


_INLINE_CODE = re.compile(r"(``.+?``|`[^`]+`)")


def _escape_rst(line):
    """One docstring line as reStructuredText that shows exactly the text: `x` and ``x`` become literals,
    everything else is escaped."""
    parts = []
    for i, piece in enumerate(_INLINE_CODE.split(line)):
        if i % 2:
            inner = piece.strip("`").strip().replace("\\", "\\\\").replace("`", "\\`")
            parts.append(f":literal:`{inner}`" if inner else "")
        elif piece:
            parts.append(re.sub(r"([\\*_|`\[\]<>])", r"\\\1", piece))
    return "\\ ".join(parts)


def _as_rst(lines):
    """Plain-text docstring lines as reStructuredText: a paragraph whose lines all start at the same
    column stays a paragraph; one with indented lines or list items keeps its line breaks (a line block)."""
    out, para = [], []

    def flush():
        if not para:
            return
        indents = {len(x) - len(x.lstrip()) for x in para}
        listy = any(re.match(r"\s*([-*+]|\d+[.)])\s", x) for x in para)
        if len(indents) == 1 and not listy:
            out.append(_escape_rst(" ".join(x.strip() for x in para)))
        else:
            base = min(indents)
            for x in para:
                pad = "\u00a0" * 2 * (len(x) - len(x.lstrip()) - base)
                out.append("| " + pad + _escape_rst(x.strip()))
        out.append("")
        para.clear()

    for line in lines:
        if line.strip():
            para.append(line.rstrip())
        else:
            flush()
    flush()
    return out


def docstring_as_text(app, what, name, obj, options, lines):
    """Turn a plain-text docstring into safe reStructuredText, then append where the chapter defined the
    object."""
    lines[:] = _as_rst(lines)
    parts = name.split(".")
    if what in ("function", "class", "data", "exception") and len(parts) == 3:
        found = _defined_in(".".join(parts[:2]), parts[2])
        if found:
            title, notebook, _cell = found
            doc = notebook.removesuffix(".ipynb")
            lines += ["", f"*Defined in* :t5edu-section:`{doc}|{urllib.parse.quote(title)}`."]


# ----------------------------------------------------------------------------------------------------------
# Notebook pages


def _link_cell(text, cell_id):
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": text}


_MD_LINK = re.compile(r"(\]\(\s*<?)([^)\s>#]+)((?:#[^)\s>]*)?>?(?:\s+[^)]*)?\))")


def _folder_page(folder):
    """The page that stands for a folder: its README.md or index.md, else its first notebook."""
    for name in ("README.md", "index.md"):
        if (folder / name).is_file():
            return name
    pages = sorted(folder.glob("*.ipynb")) or sorted(folder.glob("*.md"))
    return pages[0].name if pages else None


def folder_links(text, base):
    """Markdown links to a folder (`[exercises](../exercises/)`, as GitHub shows them) point at the page
    that stands for the folder; `base` is the folder the links are relative to."""

    def fix(m):
        target = m[2]
        folder = (base / target) if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) else None
        if folder is None or not folder.is_dir():
            return m[0]
        page = _folder_page(folder)
        return f"{m[1]}{target.rstrip('/')}/{page}{m[3]}" if page else m[0]

    return _MD_LINK.sub(fix, text)


def markdown_folder_links(app, docname, source):
    source[0] = folder_links(source[0], Path(app.env.doc2path(docname)).parent)


def included_folder_links(app, relative_path, parent_docname, content):
    content[0] = folder_links(content[0], Path(app.env.doc2path(parent_docname)).parent)


def notebook_pages(app, docname, source):
    """Add a download link to chapter and exercise pages, and put each chapter's exercises under it."""
    m = re.fullmatch(r"(chapters|exercises)/(?:ch)?(\d\d)_[^/]+", docname)
    if not m or not source or not source[0].lstrip().startswith("{"):
        return
    nb = json.loads(source[0])
    file = docname.split("/")[-1] + ".ipynb"
    extra = [f"{{download}}`Download this notebook <{file}>` — run it with `jupyter lab` (see the "
             "[front page](/index.md) for setup)."]
    exercise = None
    if m[1] == "chapters":
        exercise = next(iter(sorted((Path(app.srcdir) / "exercises").glob(f"ch{m[2]}_*.ipynb"))), None)
        if exercise:
            extra.append(f"Exercises for this chapter: [{exercise.stem}](../exercises/{exercise.name}).")
    else:
        chapter = next(iter(sorted((Path(app.srcdir) / "chapters").glob(f"{m[2]}_*.ipynb"))), None)
        if chapter:
            extra.append(f"These exercises go with [Chapter {m[2]}](../chapters/{chapter.name}).")
    cells = nb["cells"]
    at = next((i + 1 for i, c in enumerate(cells) if c["cell_type"] == "markdown"), 0)
    cells.insert(at, _link_cell("```{note}\n" + "\n\n".join(extra) + "\n```", "t5edu-site-links"))
    if exercise:
        toc = f"```{{toctree}}\n:hidden:\n\n/exercises/{exercise.stem}\n```"
        cells.append(_link_cell(toc, "t5edu-site-toc"))
    source[0] = json.dumps(nb)


# ----------------------------------------------------------------------------------------------------------
# Diagrams


def diagram_name(code):
    """The file name of a diagram's pre-rendered SVG: a hash of its mermaid source."""
    return hashlib.sha256(code.strip().encode("utf-8")).hexdigest()[:16] + ".svg"


class Mermaid(Directive):
    """```mermaid``` → the pre-rendered picture of that exact source."""

    has_content = True
    optional_arguments = 1
    final_argument_whitespace = True

    def run(self):
        code = "\n".join(self.content)
        name = diagram_name(code)
        if not (DIAGRAMS / name).exists():
            logger.warning(f"no picture of this mermaid diagram (site/_static/diagrams/{name}): it is new or "
                           "changed; run `make site-diagrams` (needs npm and chromium) and commit the SVG",
                           location=(self.state.document["source"], self.lineno))
            return [nodes.literal_block(code, code)]
        alt = "Diagram: " + " ".join(re.findall(r'\["([^"]+)"\]', code)[:6]).replace("<br/>", " ")
        figure = nodes.figure(classes=["t5edu-diagram"])
        figure += nodes.image(uri=f"/_static/diagrams/{name}", alt=alt[:300])
        return [figure]


def setup(app):
    # a change to this file changes what pages contain: conf.py sets this to its hash, and a changed value
    # makes Sphinx read every page again
    app.add_config_value("t5edu_site_digest", "", "env")
    app.add_role("t5edu-section", section_ref)
    app.connect("autodoc-process-docstring", docstring_as_text)
    app.connect("missing-reference", fallback_to_chapter)
    app.connect("source-read", notebook_pages)
    app.connect("source-read", markdown_folder_links)
    app.connect("include-read", included_folder_links)
    app.add_directive("mermaid", Mermaid)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
