"""Build the course website into ``_build/html``: ``python docs/site/build.py``.

Sphinx with MyST-NB and sphinx-book-theme, offline (nothing is fetched at build time) and without
running a notebook: the pages show the outputs saved in ``student/`` (MyST-NB's
``nb_execution_mode = "off"``; running the notebooks is nbval's job).

The source tree Sphinx reads is assembled at build time in ``_build/site-src`` (never committed):

- ``index.md``: ``docs/site/index.md`` with the syllabus table put in at ``<!-- syllabus -->``, read
  from each student notebook's own title and its table of student times (no second copy);
- ``student/NN_*.ipynb``: the student edition as committed (model answers collapsed in ``<details>``),
  with the notebooks' glossary link pointed at the site's glossary page;
- ``glossary.md``, ``teaching.md`` (``docs/``) and ``model-card.md`` (``lasegtut/weights/MODEL_CARD.md``);
- ``cli.md``: every ``lasegtut`` verb and option, written from :func:`lasegtut.cli.build_parser`;
- ``api.rst``: autodoc entries for every ``lasegtut`` function and class the notebooks call, found by
  parsing the notebooks' code (``from lasegtut import metrics`` ... ``metrics.dice(...)``).

The configuration (``conf.py``) stays in ``docs/site`` (Sphinx's ``-c``).
"""
from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STUDENT = REPO / "student"
TEACHER = REPO / "notebooks"
#: Pages copied as they are: source in the repository -> name in the site.
PAGES = {"docs/glossary.md": "glossary.md", "docs/teaching.md": "teaching.md",
         "docs/protocol.md": "protocol.md", "docs/cluster.md": "cluster.md",
         "lasegtut/weights/MODEL_CARD.md": "model-card.md"}
#: The notebooks link the glossary on GitHub (they are opened on Colab and Binder); the site links its own page.
GLOSSARY_URL = "https://github.com/lasegtut/lasegtut/blob/main/docs/glossary.md"
SYLLABUS_MARK = "<!-- syllabus -->"


class SiteError(Exception):
    """Something the site cannot be built without (one line for the user, exit status 2)."""


# ----------------------------------------------------------------------------- notebooks
def _source(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def student_notebooks(folder: Path = STUDENT) -> list[Path]:
    """The course notebooks of the student edition, in course order (``01_*.ipynb`` ...)."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def notebook_intro(path: Path) -> dict:
    """A notebook's title and its table of student times, read from its first markdown cells.

    Returns ``{"title": "01 · The heart ...", "sections": [(section, minutes), ...], "minutes": total}``;
    a time may be written ``15 min`` or ``1 h`` (or ``1 h 30 min``)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    md = [_source(c) for c in cells if c["cell_type"] == "markdown"]
    title = next((line[2:].strip() for m in md[:2] for line in m.splitlines() if line.startswith("# ")), path.stem)
    head = next((m for m in md[:3] if "student time" in m), "")
    sections = []
    for line in head.splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) != 2 or not line.lstrip().startswith("|"):
            continue
        h = re.search(r"(\d+)\s*h", cols[1])
        m = re.search(r"(\d+)\s*min", cols[1])
        if h or m:
            sections.append((cols[0], 60 * int(h.group(1) if h else 0) + int(m.group(1) if m else 0)))
    return {"title": title, "sections": sections, "minutes": sum(t for _, t in sections)}


def _hours(minutes: int) -> str:
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def syllabus(notebooks: list[Path]) -> str:
    """The landing page's syllabus: one row per notebook with its sections and student times."""
    rows = ["| notebook | sections (student time, the notebook's own estimate) | student time |", "|---|---|---|"]
    total = 0
    for nb in notebooks:
        intro = notebook_intro(nb)
        total += intro["minutes"]
        parts = "; ".join(f"{s.replace('|', '/')} ({_hours(t)})" for s, t in intro["sections"])
        rows.append(f"| [{intro['title']}](student/{nb.name}) | {parts} | {_hours(intro['minutes'])} |")
    rows.append(f"| **all {len(notebooks)} notebooks** | | **{_hours(total)}** |")
    return "\n".join(rows) + "\n"


#: What a page shows instead of the bare repr of an HTML output (an animation) that the student edition drops.
LIVE_ONLY = ("*(Output that plays only in a running notebook, such as an animation: launch this notebook "
             "on Binder or Colab, rocket button above, to see it.)*")


def copy_notebook(src: Path, dst: Path) -> None:
    """Copy a student notebook, pointing its glossary link at the site's glossary page. The student edition
    keeps no HTML or JavaScript outputs (only their text repr, ``<IPython.core.display.HTML object>``);
    the page says what is missing instead of showing that repr."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown" and GLOSSARY_URL in _source(cell):
            cell["source"] = _source(cell).replace(GLOSSARY_URL, "../glossary.md")
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text = "".join(data.get("text/plain", ""))
            if set(data) == {"text/plain"} and re.fullmatch(r"<IPython\.core\.display\.(HTML|Javascript) object>",
                                                            text.strip()):
                out["data"] = {"text/markdown": LIVE_ONLY}
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")


# ----------------------------------------------------------------------------- command line page
def _md(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ").strip()


def _parser_verbs(parser: argparse.ArgumentParser, prefix: str = "lasegtut") -> list[tuple[str, argparse.ArgumentParser, str]]:
    """Every sub-command under ``parser`` as (``"lasegtut assignments build"``, its parser, its help), depth first."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                out.append((f"{prefix} {name}", sub, helps.get(name) or sub.description or ""))
                out.extend(_parser_verbs(sub, f"{prefix} {name}"))
    return out


def _options_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | meaning | default |", "|---|---|---|"]
    n = 0
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if a.option_strings:
            name = ", ".join(a.option_strings)
            if a.nargs != 0:
                meta = a.metavar or ("{" + ",".join(map(str, a.choices)) + "}" if a.choices else a.dest.upper())
                name += f" {meta}" + (" ..." if a.nargs in ("+", "*") else "")
        else:
            name = a.metavar or a.dest.upper()
            if a.nargs in ("+", "*"):
                name += " ..."
        default = "" if a.default in (None, False, argparse.SUPPRESS) or a.nargs == 0 else f"`{a.default}`"
        required = " (required)" if a.required and a.option_strings else ""
        rows.append(f"| `{_md(name)}` | {_md(a.help)}{required} | {default} |")
        n += 1
    return rows if n else []


def cli_page(parser: argparse.ArgumentParser | None = None) -> str:
    """The command-line page in MyST markdown: one section per verb with its usage and options."""
    if parser is None:
        from lasegtut.cli import build_parser
        parser = build_parser()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps usage lines to the terminal; the page is fixed width
    try:
        verbs = _parser_verbs(parser)
        lines = ["# The command line", "",
                 "*Generated from the `lasegtut` parser (`lasegtut.cli.build_parser()`) when the site is built, "
                 "so it cannot drift from the program; `lasegtut COMMAND --help` prints the same.*", "",
                 parser.description or "", "",
                 "Bad input gives one line on stderr and exit status 2, never a traceback; an existing output "
                 "is only replaced with `--force` (see the README).", "",
                 "| command | what it does |", "|---|---|"]
        lines += [f"| {{ref}}`{name} <{name.replace(' ', '-')}>` | {_md(help)} |" for name, _, help in verbs]
        lines += ["", "```text", parser.format_usage().strip(), "```", ""]
        lines += _options_table(parser)
        for name, sub, help in verbs:
            depth = name.count(" ") + 1  # "lasegtut predict" -> ##, "lasegtut assignments build" -> ###
            lines += ["", f"({name.replace(' ', '-')})=", f"{'#' * depth} `{name}`", "", _md(sub.description or help), "",
                      "```text", sub.format_usage().strip(), "```", ""]
            lines += _options_table(sub)
        return "\n".join(lines) + "\n"
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


# ----------------------------------------------------------------------------- API reference page
def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _code_cells(path: Path) -> list[str]:
    """A notebook's code cells, with IPython's ``%magic`` and ``!shell`` lines blanked out."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in _source(c).splitlines())
            for c in cells if c["cell_type"] == "code"]


def called_names(path: Path) -> set[str]:
    """Dotted ``lasegtut`` names a notebook's code uses: ``lasegtut.metrics.dice`` for
    ``from lasegtut import metrics`` + ``metrics.dice(...)``, ``from lasegtut.metrics import dice`` + ``dice(...)``
    or ``import lasegtut.metrics`` + ``lasegtut.metrics.dice(...)``."""
    trees = []
    for code in _code_cells(path):
        try:
            trees.append(ast.parse(code))
        except SyntaxError:  # an exercise left for the student, a cell of shell commands
            continue
    aliases: dict[str, str] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "lasegtut":
                        aliases[a.asname or "lasegtut"] = a.name if a.asname else "lasegtut"
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] == "lasegtut":
                for a in node.names:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    found = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Attribute, ast.Name)) and isinstance(getattr(node, "ctx", None), ast.Load):
                dotted = _dotted(node)
                if dotted:
                    head, _, rest = dotted.partition(".")
                    if head in aliases:
                        found.add(aliases[head] + ("." + rest if rest else ""))
    return found


def _resolve(dotted: str):
    """The object a dotted name refers to, or None (the longest importable module, then attributes)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def api_entries(notebooks: list[Path]) -> dict[str, dict[str, set[str]]]:
    """``{module: {qualified name: {notebook stems that call it}}}`` for every lasegtut function or class
    the notebooks call, under the module that defines it (a re-exported name is listed once, at home)."""
    entries: dict[str, dict[str, set[str]]] = {}
    for nb in notebooks:
        for dotted in called_names(nb):
            obj = _resolve(dotted)
            if inspect.ismethod(obj):
                obj = obj.__func__
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            module = getattr(obj, "__module__", "") or ""
            if module.split(".")[0] != "lasegtut":
                continue
            qual = obj.__qualname__.split(".")[0]  # a method: its class
            entries.setdefault(module, {}).setdefault(qual, set()).add(nb.stem)
    return entries


def api_page(entries: dict[str, dict[str, set[str]]]) -> str:
    """The API reference in reStructuredText: one section per module, one autodoc entry per function or class."""
    lines = ["API reference", "=============", "",
             "The ``lasegtut`` functions and classes that the notebooks call, from their docstrings. The list is "
             "found when the site is built, by reading the notebooks' code; the rest of the package is documented "
             "in its source.", ""]
    for module in sorted(entries):
        mod = importlib.import_module(module)
        lines += [f"``{module}``", "-" * (len(module) + 4), "", f".. automodule:: {module}", "   :no-members:", ""]
        for qual in sorted(entries[module]):
            obj = getattr(mod, qual)
            kind = "autoclass" if inspect.isclass(obj) else "autofunction"
            lines += [f".. {kind}:: {module}.{qual}"]
            if kind == "autoclass":
                lines += ["   :members:"]
            users = ", ".join(f":doc:`{s[:2]} <student/{s}>`" for s in sorted(entries[module][qual]))
            lines += ["", f"   *Used in notebook{'s' if ',' in users else ''}* {users}.", ""]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- assemble and build
def assemble(src: Path) -> list[Path]:
    """Write the site's source tree into ``src`` (replaced); returns the student notebooks used."""
    if src.exists():
        shutil.rmtree(src)
    (src / "student").mkdir(parents=True)
    notebooks = student_notebooks()
    if not notebooks:
        raise SiteError(f"no student notebooks in {STUDENT}")
    index = (HERE / "index.md").read_text(encoding="utf-8")
    if SYLLABUS_MARK not in index:
        raise SiteError(f"{HERE / 'index.md'} has no {SYLLABUS_MARK} line")
    (src / "index.md").write_text(index.replace(SYLLABUS_MARK, syllabus(notebooks)), encoding="utf-8")
    for nb in notebooks:
        copy_notebook(nb, src / "student" / nb.name)
    for rel, name in PAGES.items():
        shutil.copyfile(REPO / rel, src / name)
    (src / "cli.md").write_text(cli_page(), encoding="utf-8")
    teacher = [TEACHER / nb.name for nb in notebooks if (TEACHER / nb.name).exists()]
    (src / "api.rst").write_text(api_page(api_entries(notebooks + teacher)), encoding="utf-8")
    return notebooks


def build(out: Path, src: Path, *, quiet: bool = True, extra_args: list[str] | None = None) -> int:
    """Assemble the sources in ``src`` and run Sphinx into ``out``; returns Sphinx's exit status.
    ``extra_args`` go to ``sphinx-build`` (e.g. ``["-w", "warnings.txt"]``)."""
    try:
        from sphinx.cmd.build import build_main
        import myst_nb, sphinx_book_theme  # noqa: F401  (conf.py's extension and theme)
    except ImportError as e:
        raise SiteError(f"{e.name} is not installed: pip install -e '.[site]'") from None

    assemble(src)
    args = ["-b", "html", "-c", str(HERE), "-d", str(src.parent / (src.name + "-doctrees")), "-E", "-j", "1"]
    if quiet:
        args.append("-q")
    return build_main([*args, *(extra_args or []), str(src), str(out)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python docs/site/build.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "_build" / "html"), help="output folder (default: _build/html)")
    p.add_argument("--src", default=str(REPO / "_build" / "site-src"),
                   help="where the source tree is assembled (default: _build/site-src)")
    p.add_argument("--verbose", action="store_true", help="Sphinx's progress messages too")
    args = p.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")  # autodoc imports lasegtut.plots
    t0 = time.perf_counter()
    try:
        rc = build(Path(args.out), Path(args.src), quiet=not args.verbose)
    except SiteError as e:
        print(f"site: error: {e}", file=sys.stderr)
        return 2
    if rc == 0:
        out = Path(args.out)
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        print(f"site: built {out} in {time.perf_counter() - t0:.0f} s ({size / 1e6:.1f} MB); "
              f"open {out / 'index.html'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
