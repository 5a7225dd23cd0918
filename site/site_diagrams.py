"""Pre-render the book's mermaid diagrams to SVG: `python site/site_diagrams.py [--all]`
(`make site-diagrams`).

The website shows each ```mermaid block of the README and the notebooks as a picture,
site/_static/diagrams/<hash of its source>.svg, so that the site needs no diagram JavaScript and no
network. Run this after changing a diagram and commit the new SVG; `make html` fails while one is
missing. It needs npm (it installs the `mermaid` package into build/mermaid-npm) and chromium.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from site_browser import browser, serve
from site_build import ROOT, markdown_sources
from t5edu_site import DIAGRAMS, diagram_name

MERMAID_VERSION = "11"
WORK = ROOT / "build" / "mermaid-npm"
_BLOCK = re.compile(r"^```mermaid[^\n]*\n(.*?)^```", re.M | re.S)
PAGE = """<!doctype html><meta charset="utf-8"><body>
<script src="node_modules/mermaid/dist/mermaid.min.js"></script>
<script>mermaid.initialize({startOnLoad: false, securityLevel: "strict", theme: "neutral", htmlLabels: false,
  flowchart: {htmlLabels: false, useMaxWidth: false}});
// mermaid returns HTML markup; an <img> needs XML
async function renderSvg(id, code) {
  const {svg} = await mermaid.render(id, code);
  const doc = new DOMParser().parseFromString(svg, "text/html");
  return new XMLSerializer().serializeToString(doc.querySelector("svg"));
}</script></body>"""


def diagrams():
    """{file name: mermaid source} for every diagram in the site's markdown."""
    return {diagram_name(code): code for text in markdown_sources().values() for code in _BLOCK.findall(text)}


def main():
    wanted = diagrams()
    redo = "--all" in sys.argv[1:]
    missing = {name: code for name, code in wanted.items() if redo or not (DIAGRAMS / name).exists()}
    if not missing:
        print(f"site_diagrams: all {len(wanted)} diagrams are up to date")
        return
    WORK.mkdir(parents=True, exist_ok=True)
    if not (WORK / "node_modules" / "mermaid" / "dist" / "mermaid.min.js").exists():
        npm = ["npm", "install", "--no-audit", "--no-fund", "--silent", f"mermaid@{MERMAID_VERSION}"]
        subprocess.run(npm, cwd=WORK, check=True)
    (WORK / "render.html").write_text(PAGE, encoding="utf-8")
    DIAGRAMS.mkdir(parents=True, exist_ok=True)
    with serve(WORK) as base, browser() as page:
        page.goto(base + "render.html")
        for name, code in missing.items():
            svg = page.evaluate(f"renderSvg('d{name[:8]}', {json.dumps(code.strip())})")
            if not svg or not svg.startswith("<svg"):
                raise SystemExit(f"site_diagrams: mermaid did not render {name}: {page.errors}")
            (DIAGRAMS / name).write_text(svg + "\n", encoding="utf-8")
            print(f"site_diagrams: wrote {(DIAGRAMS / name).relative_to(ROOT)}")
    stale = [p for p in DIAGRAMS.glob("*.svg") if p.name not in wanted]
    for p in stale:
        p.unlink()
        print(f"site_diagrams: removed {p.relative_to(ROOT)} (no diagram has that source any more)")


if __name__ == "__main__":
    main()
