"""Sphinx configuration of the book's website. Build with `make html` (site/site_build.py), not sphinx-build
directly: it lays out the source tree this configuration expects."""

import hashlib
import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # t5edu_site, the site's own extension

project = "t5edu — T5, built from scratch"
author = "the t5edu authors"
html_title = "T5, built from scratch"

extensions = [
    "myst_nb",  # notebooks and markdown, rendered from the committed outputs
    "sphinx.ext.autodoc",  # the API reference, from the docstrings
    "sphinx.ext.autosectionlabel",  # a label per section, so the API reference can link to it
    "sphinx_copybutton",
    "t5edu_site",
]

t5edu_site_digest = hashlib.sha256((Path(__file__).parent / "t5edu_site.py").read_bytes()).hexdigest()

root_doc = "index"
# The source tree holds the whole repository (as links); only these are pages.
include_patterns = [
    "index.md",
    "chapters/[0-9][0-9]_*.ipynb",
    "exercises/ch[0-9][0-9]_*.ipynb",
    "exercises/README.md",
    "docs/*.md",
    "CONTRIBUTING.md",
    "api/*.rst",
]
exclude_patterns = ["exercises/src/**", "**/.ipynb_checkpoints/**"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# Notebooks: committed outputs, never executed here.
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # no widget JavaScript from a CDN: progress bars show their text instead
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_merge_streams = True

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "smartquotes"]
myst_heading_anchors = 4  # [text](#a-heading) and [text](page.md#a-heading) links resolve
myst_fence_as_directive = ["mermaid"]  # README's diagram: a pre-rendered picture (t5edu_site)
myst_links_external_new_tab = False

autosectionlabel_prefix_document = True
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
default_role = "literal"
# Two sections with one title in one chapter (e.g. "Check") are fine: labels are only a convenience.
suppress_warnings = ["autosectionlabel.*"]

html_theme = "sphinx_book_theme"
# MathJax 3 from the PyPI package sphinx-mathjax-offline (its files only, not its extension, which does
# not declare itself parallel-safe), copied into _static/mathjax: math renders with the network off.
_mathjax = importlib.util.find_spec("sphinx-mathjax-offline")
if _mathjax is None:
    raise RuntimeError('sphinx-mathjax-offline is not installed: pip install -e ".[site]"')
html_static_path = ["_static", str(Path(_mathjax.origin).parent / "static")]
mathjax_path = "mathjax/tex-chtml.js"
html_css_files = ["t5edu.css"]
html_favicon = "_static/favicon.svg"  # also keeps the browser from asking for a missing /favicon.ico
html_context = {"default_mode": "light"}  # a first visit has no stored mode (the theme logs an error)
html_sourcelink_suffix = ""
# search results without summaries: a summary is fetched from the result's page, which a browser refuses
# for a site opened from the filesystem (file://); titles still link to the pages
html_show_search_summary = False
html_last_updated_fmt = None
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": True,
}
copybutton_exclude = ".linenos, .gp, .go"
