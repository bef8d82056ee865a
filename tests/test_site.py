"""The course website (``python docs/site/build.py``): built once per module into a temporary folder,
then checked as files (every student notebook has a page with its figures; internal links and
anchors resolve; the launch buttons open student-edition notebooks that exist; the command-line page
lists every verb and option of the parser; the API reference has an entry per function the notebooks
call; the landing page's syllabus comes from the notebooks) and, marked ``browser``, in headless
Chromium served from 127.0.0.1 (landing page, a notebook page with its figures loaded, a search for
"Dice", a collapsed model answer that opens on click; screenshots in the test's temporary folder).

Skipped with a reason only where the publishing tool (Sphinx, MyST-NB, sphinx-book-theme: the
``site`` extra, part of ``test``) cannot be imported. Marked ``slow``: the build takes about 45 s on
a quiet 2-core CPU (reading seven notebooks with their figures and importing the library for autodoc);
every check below shares that one build.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import importlib.util
import json
import re
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from conftest import REPO

from lasegtut.cli import build_parser

# Sphinx 9 announces API changes to its extensions (MyST, the theme) as PendingDeprecationWarning.
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
#: The tests that use the built site: one Sphinx build (module fixture), about 45 s on a quiet 2-core CPU.
slow = pytest.mark.slow

STUDENT = REPO / "student"
BUILDER = REPO / "docs" / "site" / "build.py"
COLAB = "https://colab.research.google.com/github/lasegtut/lasegtut/blob/main/"
BINDER = "https://mybinder.org/v2/gh/lasegtut/lasegtut/main"


def _builder():
    spec = importlib.util.spec_from_file_location("lasegtut_site_build", BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _student_notebooks() -> list[Path]:
    return sorted(STUDENT.glob("[0-9][0-9]_*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


class _Page(HTMLParser):
    """Every link (href/src), element id and <img> of one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.images: list[str] = []
        self.details: list[dict] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key):
                self.links.append(a[key])
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        if tag == "details":
            self.details.append(a)

    def handle_data(self, data):
        self.text.append(data)


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    for module in ("sphinx", "myst_nb", "sphinx_book_theme"):
        pytest.importorskip(module, reason=f"{module} cannot be imported: the site's publishing tool is not "
                                           "installed (pip install -e '.[site]')")
    work = tmp_path_factory.mktemp("site")
    out = work / "html"
    warnings = work / "warnings.txt"
    builder = _builder()
    rc = builder.build(out, work / "src", extra_args=["-w", str(warnings)])
    assert rc == 0, f"the site build failed:\n{warnings.read_text()[-3000:]}"
    # Warnings about the site itself (a missing page, a broken reference, an image) fail the test; the
    # formatting of a library docstring is the library's business.
    site_warnings = [w for w in warnings.read_text().splitlines()
                     if ("WARNING" in w or "ERROR" in w) and "docstring of" not in w]
    assert not site_warnings, "\n".join(site_warnings[:20])
    return out


# ----------------------------------------------------------------------------- pages and figures
@slow
def test_every_student_notebook_has_a_page_with_its_figures(site):
    notebooks = _student_notebooks()
    assert len(notebooks) >= 7
    for nb in notebooks:
        page_path = site / "student" / f"{nb.stem}.html"
        assert page_path.is_file(), f"no page for {nb.name}"
        page = _parse(page_path)
        n_png = sum("image/png" in o.get("data", {}) for c in _cells(nb) if c["cell_type"] == "code"
                    for o in c.get("outputs", []))
        figures = [src for src in page.images if "_images/" in src]
        assert len(figures) >= n_png > 0, f"{nb.name}: {n_png} figures in the notebook, {len(figures)} on its page"
        for src in figures:
            f = (page_path.parent / unquote(src)).resolve()
            assert f.is_file() and f.stat().st_size > 1000, f"{page_path.name}: figure {src} missing or empty"
        title = next(line[2:] for line in "".join(_cells(nb)[0]["source"]).splitlines() if line.startswith("# "))
        assert title.strip() in "".join(page.text), f"{page_path.name} does not show the notebook's title"
        assert "../glossary.html" in page.links, f"{page_path.name} does not link the site's glossary"
        assert "IPython.core.display" not in "".join(page.text), f"{page_path.name} shows an output's bare repr"


@slow
def test_model_answers_are_collapsed(site):
    """Each model answer of the student edition is a <details> block on the page, closed."""
    for nb in _student_notebooks():
        n_answers = sum("model-answer" in c.get("metadata", {}).get("tags", []) for c in _cells(nb))
        details = _parse(site / "student" / f"{nb.stem}.html").details
        assert len(details) == n_answers > 0, f"{nb.name}: {n_answers} model answers, {len(details)} <details> blocks"
        assert not any("open" in d for d in details), f"{nb.name}: a model answer is open"


def _pages(site: Path) -> list[Path]:
    """The site's pages (not the theme's Jinja macro files that it copies into _static/)."""
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.relative_to(site).parts)


def _local_target(page: Path, link: str) -> tuple[Path, str] | None:
    url = urlparse(link)
    if url.scheme or url.netloc or link.startswith(("#", "mailto:", "data:", "javascript:")):
        return None
    return (page.parent / unquote(url.path)).resolve(), url.fragment


@slow
def test_internal_links_and_anchors_resolve(site):
    pages = _pages(site)
    assert len(pages) >= 12
    broken = []
    for page in pages:
        for link in _parse(page).links:
            target = _local_target(page, link)
            if target is None:
                if link.startswith("#") and len(link) > 1 and unquote(link[1:]) not in _parse(page).ids:
                    broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
                continue
            path, fragment = target
            if path.is_dir():
                path = path / "index.html"
            if not path.is_file():
                broken.append(f"{page.relative_to(site)}: {link}")
            elif fragment and path.suffix == ".html" and unquote(fragment) not in _parse(path).ids:
                broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    assert not broken, f"{len(broken)} broken links, e.g.:\n" + "\n".join(broken[:20])


@slow
def test_sections_have_anchors_a_teacher_can_link_to(site):
    for nb in _student_notebooks():
        html = (site / "student" / f"{nb.stem}.html").read_text(encoding="utf-8")
        headings = [line for c in _cells(nb) if c["cell_type"] == "markdown"
                    for line in "".join(c["source"]).splitlines() if line.startswith("## ")]
        links = re.findall(r'<h2>.*?<a class="headerlink" href="#([^"]+)"', html)
        assert len(links) >= len(headings) > 3, f"{nb.name}: {len(headings)} sections, {len(links)} anchors"


@slow
def test_launch_links_open_student_notebooks_that_exist(site):
    for page in _pages(site):
        for link in _parse(page).links:
            if link.startswith(COLAB):
                rel = urlparse(link).path.split("/blob/main/", 1)[1]
            elif link.startswith(BINDER):
                rel = parse_qs(urlparse(link).query)["urlpath"][0].split("/tree/", 1)[1]
            else:
                continue
            assert rel.startswith("student"), f"{page.name}: {link} does not open the student edition"
            assert (REPO / rel).exists(), f"{page.name}: {link} opens {rel}, which is not in the repository"
    for nb in _student_notebooks():
        links = _parse(site / "student" / f"{nb.stem}.html").links
        rel = f"student/{nb.name}"
        assert COLAB + rel in links, f"{nb.name}: no Colab launch link"
        assert f"{BINDER}?urlpath=lab/tree/{rel}" in links, f"{nb.name}: no Binder launch link"


# ----------------------------------------------------------------------------- generated pages
def _verbs(parser: argparse.ArgumentParser, prefix: str = "lasegtut"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _verbs(sub, f"{prefix} {name}")


@slow
def test_cli_page_lists_every_verb_and_option(site):
    page = _parse(site / "cli.html")
    text = " ".join("".join(page.text).split())
    verbs = list(_verbs(build_parser()))
    assert len(verbs) >= 10
    for name, sub in verbs:
        assert name.replace(" ", "-") in page.ids, f"the CLI page has no section for {name}"
        for action in sub._actions:
            for option in action.option_strings:
                assert option in text, f"the CLI page does not list {name} {option}"


@slow
def test_api_reference_has_an_entry_per_function_the_notebooks_call(site):
    page = _parse(site / "api.html")
    assert "lasegtut.metrics.dice" in page.ids and "lasegtut.volume.volume_ml" in page.ids
    entries = _builder().api_entries(_student_notebooks())
    names = [f"{module}.{name}" for module, names in entries.items() for name in names]
    assert len(names) >= 30
    missing = [n for n in names if n not in page.ids]
    assert not missing, f"no API entry for {missing}"
    html = (site / "api.html").read_text(encoding="utf-8")
    dice = html[html.index('id="lasegtut.metrics.dice"'):][:3000]
    assert "Dice" in dice, "lasegtut.metrics.dice has no docstring on the API page"


def test_api_names_are_found_in_the_notebooks_code(tmp_path):
    """The three ways a notebook can name a library function are all found; other names are not."""
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "source":
                     "%matplotlib inline\nfrom lasegtut import metrics, volume as vol\nimport numpy as np\n"},
                    {"cell_type": "code", "metadata": {}, "outputs": [], "source":
                     "from lasegtut.shape import shape_metrics\nimport lasegtut.plots\n"
                     "d = metrics.dice(a, b)\nv = vol.volume_ml(m, s)\nshape_metrics(m)\n"
                     "lasegtut.plots.overlay(x)\nnp.mean(d)\n"},
                    {"cell_type": "code", "metadata": {}, "outputs": [], "source": "!lasegtut demo\n"},
                    {"cell_type": "code", "metadata": {}, "outputs": [], "source": "# YOUR CODE HERE\nraise (\n"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    names = _builder().called_names(path)
    assert {"lasegtut.metrics.dice", "lasegtut.volume.volume_ml", "lasegtut.shape.shape_metrics",
            "lasegtut.plots.overlay"} <= names
    assert not any(n.startswith("np") or "mean" in n for n in names)


@slow
def test_landing_page_reads_the_syllabus_from_the_notebooks(site):
    builder = _builder()
    text = " ".join("".join(_parse(site / "index.html").text).split())
    for nb in _student_notebooks():
        intro = builder.notebook_intro(nb)
        assert intro["minutes"] >= 30 and len(intro["sections"]) >= 4, f"{nb.name}: no table of student times"
        assert intro["title"] in text, f"the syllabus does not list {intro['title']}"
        for section, minutes in intro["sections"]:
            assert f"{' '.join(section.split())} ({builder._hours(minutes)})" in text, \
                f"{nb.name}: '{section}' and its time are not in the syllabus"
    for words in ("CC-BY-SA 4.0", "Simpson", "Antonelli", "Binder", "Colab", "How to cite", "Prerequisites"):
        assert words in text, f"the landing page does not say {words!r}"
    assert (site / "search.html").is_file() and "dice" in (site / "searchindex.js").read_text().lower()


def test_readme_and_workflow_build_the_site_with_one_command():
    """The README's site command installs the ``site`` extra and runs the builder; the Pages workflow runs
    that same command (read from the README) and publishes its output folder; ``test`` includes ``site``."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- site-command -->\n```bash\n(.+?)\n```", readme)
    assert block, "the README has no <!-- site-command --> block"
    command = block.group(1)
    assert '.venv/bin/pip install -e ".[site]"' in command and command.endswith("docs/site/build.py")
    assert "https://lasegtut.github.io/lasegtut/" in readme
    workflow = (REPO / ".github" / "workflows" / "site.yml").read_text(encoding="utf-8")
    assert "awk '/<!-- site-command -->/" in workflow and "path: _build/html" in workflow
    assert "actions/upload-pages-artifact" in workflow and "actions/deploy-pages" in workflow
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert '"lasegtut[site]"' in pyproject.split("test = [", 1)[1].split("]\n", 1)[0]


# ----------------------------------------------------------------------------- in a real browser
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def served(site):
    """``site`` on http://127.0.0.1:PORT/ (a thread of http.server), stopped after the module."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request log on stderr
        pass


@slow
@pytest.mark.browser
def test_site_in_a_browser(served, tmp_path):
    from test_browser import CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.set_default_timeout(30_000)
            # Only 127.0.0.1: the badges' images on colab/mybinder are not fetched (no network in tests).
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(served)
                       else route.abort())

            # the landing page and its syllabus
            page.goto(f"{served}/index.html")
            assert "lasegtut" in page.title()
            assert page.locator("table").filter(has_text="student time").count() >= 1
            page.screenshot(path=str(tmp_path / "site_landing.png"))

            # a notebook page: every figure loaded, a collapsed model answer that opens, a launch button
            page.goto(f"{served}/student/06_evaluation.html")
            figures = page.locator("img[src*='_images/']")
            assert figures.count() >= 4
            page.wait_for_function("() => Array.from(document.querySelectorAll(\"img[src*='_images/']\"))"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
            figures.first.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "site_notebook_figure.png"))

            details = page.locator("details").first
            details.scroll_into_view_if_needed()
            assert details.evaluate("d => d.open") is False
            answer = details.locator(":scope > :not(summary)").first
            assert not answer.is_visible(), "the model answer shows before it is opened"
            page.screenshot(path=str(tmp_path / "site_answer_closed.png"))
            details.locator("summary").click()
            page.wait_for_function("(d) => d.open", arg=details.element_handle())
            assert answer.is_visible()
            page.screenshot(path=str(tmp_path / "site_answer_open.png"))

            # the launch menu (the rocket) opens this notebook's student edition
            page.locator(".dropdown-launch-buttons button").first.click()
            colab = page.locator(".dropdown-launch-buttons a[href*='colab.research.google.com']").first
            colab.wait_for(state="visible")
            assert colab.get_attribute("href") == f"{COLAB}student/06_evaluation.ipynb"
            page.screenshot(path=str(tmp_path / "site_launch_buttons.png"))

            # search, with Sphinx's own offline index
            page.goto(f"{served}/search.html?q=Dice")
            hits = page.locator("#search-results ul.search li")
            # Sphinx lists the hits one by one, then says how many it found
            page.wait_for_function("() => /found [1-9]\\d* page/.test("
                                   "(document.querySelector('#search-results') || {}).innerText || '')")
            assert hits.count() >= 3
            assert page.locator("#search-results").filter(has_text="Evaluating the model").count() == 1
            page.screenshot(path=str(tmp_path / "site_search.png"))
        finally:
            browser.close()
    print(f"screenshots in {tmp_path}")
