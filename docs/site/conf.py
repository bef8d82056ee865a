"""Sphinx configuration of the course website (built by ``python docs/site/build.py``, which assembles
the source tree in ``_build/site-src`` and passes this folder as Sphinx's configuration directory).

Offline by design: Sphinx, MyST-NB and sphinx-book-theme ship their templates, styles, fonts and
search in the wheels; no notebook is run (the pages show the student edition's saved outputs); no
extension that fetches anything (no intersphinx, no math, which would load MathJax from a CDN).
"""
from __future__ import annotations

import lasegtut

project = "lasegtut"
author = "the lasegtut maintainers"
copyright = "2026, the lasegtut maintainers (code: MIT; data, figures of it and weights: CC-BY-SA 4.0)"
release = version = lasegtut.__version__

# napoleon: the library's docstrings are Google style (Args:, Returns:, Raises:)
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
napoleon_numpy_docstring = False
# a notebook cell with a `!shell` line is not Python to Pygments; it is shown as it is
suppress_warnings = ["misc.highlighting_failure"]

# Notebooks: the saved outputs of the student edition, never re-executed here (nbval runs the notebooks).
nb_execution_mode = "off"
nb_merge_streams = True
# The notebooks hold no math; dollar math stays off so that no page loads MathJax from the network.
myst_enable_extensions = ["colon_fence", "deflist"]
# Every heading down to ### gets a stable anchor (GitHub-style slug) a teacher can link to.
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_inherit_docstrings = False  # a LightningModule hook we override keeps its own (or no) docstring
autodoc_default_options = {"exclude-members": "__init__, __new__"}

html_theme = "sphinx_book_theme"
html_title = "lasegtut: the left-atrium course"
html_baseurl = "https://lasegtut.github.io/lasegtut/"
html_static_path = ["_static"]
html_css_files = ["course.css"]  # the collapsed model answers, styled as such
html_copy_source = False  # the notebooks are in the repository; the pages need not carry a second copy
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {
    "repository_url": "https://github.com/lasegtut/lasegtut",
    "repository_branch": "main",
    # the launch buttons open <path_to_docs><page>.ipynb: student/NN_name.ipynb, the student edition
    "path_to_docs": "",
    "use_repository_button": True,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "launch_buttons": {
        "binderhub_url": "https://mybinder.org",
        "colab_url": "https://colab.research.google.com",
        "notebook_interface": "jupyterlab",
    },
    "show_toc_level": 2,
    "home_page_in_toc": True,
}
exclude_patterns: list[str] = []
