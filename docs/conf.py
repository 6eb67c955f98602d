"""Sphinx configuration of the skembed documentation."""

import os

import skembed

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

project = "skembed"
author = "skembed developers"
copyright = "2026, skembed developers"
release = version = skembed.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
autodoc_default_options = {
    "members": True,
    "inherited-members": False,
    # scikit-learn's metadata-routing methods, documented by scikit-learn itself.
    "exclude-members": "set_fit_request,set_score_request,set_predict_request,"
                       "set_transform_request",
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
}

intersphinx_mapping = {}  # no network while building: links to other projects are plain text

templates_path = []
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "**/*.zip"]
html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_title = "skembed"
