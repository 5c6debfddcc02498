"""The documentation site's sources: complete API pages, gallery-ready examples,
user-facing text; the user guide's code blocks run (slow, ``make test-docs``);
a full Sphinx build (slow; CI runs ``make docs``)."""

import ast
import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "sphinxext"))
import mms_docs  # noqa: E402

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_api_page_documents_every_public_name_once():
    page = mms_docs.api_page()
    entries = re.findall(r"^   (\w+)$", page, flags=re.MULTILINE)
    assert len(entries) == len(set(entries)), "a name is documented twice"
    modules = mms_docs.public_modules()
    assert {"multimodal_surv.models", "multimodal_surv.encoders", "multimodal_surv.nn"} <= set(
        modules
    )
    for modname in modules:
        module = importlib.import_module(modname)
        for name in module.__all__:
            assert name in entries, f"{modname}.{name} is missing from the API page"
    top = importlib.import_module("multimodal_surv")
    for name in top.__all__:
        assert f":obj:`multimodal_surv.{name} <" in page


def test_fitted_attribute_names_are_escaped_in_docstrings():
    lines = [
        "embeddings : ndarray of shape (n_samples, n_features_out_), float32",
        "n_features_out_ : int",
        "Width ``n_features_out_``, as n_features_out_ says.",
        ">>> enc.n_features_out_",
        "See `Zhang et al.`_, :attr:`coef_` and __init__.",
    ]
    mms_docs.escape_fitted_names(None, None, None, None, None, lines)
    assert lines == [
        "embeddings : ndarray of shape (n_samples, n_features_out\\_), float32",
        "n_features_out_ : int",
        "Width ``n_features_out_``, as n_features_out\\_ says.",
        ">>> enc.n_features_out_",
        "See `Zhang et al.`_, :attr:`coef_` and __init__.",
    ]


def test_benchmark_pages_cover_every_results_table():
    pages = mms_docs.benchmark_pages()
    tables = {p.stem for p in (ROOT / "benchmarks" / "results").glob("*.md")}
    assert tables and tables | {"index"} == set(pages)
    for stem in tables:
        assert pages[stem].startswith("# ") and f"benchmarks/results/{stem}.md" in pages[stem]
        assert stem in pages["index"]


def test_every_page_reaches_a_table_of_contents():
    """Pages that no toctree lists are appended to the user guide's at build time."""
    from types import SimpleNamespace

    app = SimpleNamespace(config=SimpleNamespace(root_doc="index"))
    source = [(DOCS / "user_guide.md").read_text()]
    mms_docs.add_new_pages(app, "user_guide", source)
    listed = mms_docs._toctree_entries(source[0])
    listed |= mms_docs._toctree_entries((DOCS / "index.md").read_text())
    pages = {p.stem for p in DOCS.glob("*.md")} - {"index", "user_guide"}
    assert pages <= listed, pages - listed
    assert source[0].count("```{toctree}") == 1


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_has_a_gallery_title(script):
    """sphinx-gallery needs a reStructuredText title: first docstring line, underlined."""
    doc = ast.get_docstring(ast.parse(script.read_text()), clean=False) or ""
    lines = doc.splitlines()
    assert len(lines) >= 2 and lines[0].strip(), f"{script.name}: no docstring title"
    title, underline = lines[0].strip(), lines[1].strip()
    assert re.fullmatch(r"=+", underline) and len(underline) >= len(title), (
        f"{script.name}: underline the docstring's first line with '=' "
        f"({len(title)} of them) so the gallery page has a title"
    )


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_without_its_docstring(script):
    """The gallery turns the docstring into the page and runs the code with an
    empty ``__doc__``: ``__doc__.splitlines()[0]`` would fail there."""
    code = script.read_text()
    assert not re.search(r"__doc__\s*(\.|\[)", code), (
        f"{script.name}: use a literal description instead of indexing __doc__ "
        "(empty when the docs gallery runs the example)"
    )


# Words that point at the project's tracker rather than at the user's problem.
_TRACKER = re.compile(
    r"\b(issue|item|acceptance item) \d+\b|acceptance bar|the issue's\b|\bissue's bar",
    flags=re.IGNORECASE,
)


def _user_facing_files():
    yield from sorted(DOCS.glob("*.md"))
    yield ROOT / "README.md"
    yield from EXAMPLES
    yield from sorted((ROOT / "multimodal_surv").rglob("*.py"))


def test_no_tracker_references_in_user_facing_text():
    hits = []
    for path in _user_facing_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _TRACKER.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, "tracker references (move history to CHANGELOG.md):\n" + "\n".join(hits)


@pytest.mark.slow
def test_sphinx_site_builds_without_warnings(tmp_path):
    """The whole site, as ``make docs`` builds it, on a copy of the repository."""
    pytest.importorskip("sphinx_gallery")
    pytest.importorskip("numpydoc")
    pytest.importorskip("myst_parser")
    pytest.importorskip("pydata_sphinx_theme")
    src = tmp_path / "repo"
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "_build", "reference", "auto_examples", "__pycache__", "results"
    )
    for name in ("docs", "examples", "benchmarks", "multimodal_surv"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("README.md", "CHANGELOG.md", "CITATION.cff", "pyproject.toml"):
        shutil.copy(ROOT / name, src / name)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html"]
        + [str(src / "docs"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    for page in (
        "index.html",
        "reference/api.html",
        "auto_examples/index.html",
        "reference/benchmarks/index.html",
        "about/citing.html",
    ):
        assert (out / page).exists(), page


# -- The user guide's code blocks run -------------------------------------------
# Every ```python block of a page runs, the page's blocks in order in one
# process (later blocks build on earlier ones), in an empty folder. A block
# that cannot run here (a cluster address, a user's own files) is preceded by
# an HTML comment, invisible on the site, saying why:
#     <!-- not-run: needs a running Dask cluster -->
_FENCE = re.compile(
    r"(?P<skip><!--\s*not-run:(?P<why>[^>]*)-->\s*\n)?^```python[ \t]*\n(?P<code>.*?)^```",
    flags=re.MULTILINE | re.DOTALL,
)


def _page_script(path):
    """The runnable python blocks of a Markdown page, as one script (or None)."""
    text = path.read_text()
    parts = []
    for match in _FENCE.finditer(text):
        if match["skip"]:
            assert match["why"].strip(), f"{path.name}: say why a block is not run"
            continue
        line = text.count("\n", 0, match.start("code")) + 1
        parts.append(f"# --- {path.name}, line {line}\n{match['code']}")
    return "\n".join(parts) if parts else None


_PAGES = [p for p in sorted(DOCS.glob("*.md")) + [ROOT / "README.md"] if _page_script(p)]


# Slow (each page fits models; about 10-30 s a page): `make test-docs` and CI
# run them, `make test` does not.
@pytest.mark.slow
@pytest.mark.parametrize("page", _PAGES, ids=[p.name for p in _PAGES])
def test_code_blocks_of_the_page_run(page, tmp_path):
    script = tmp_path / f"{page.stem}_blocks.py"
    script.write_text(_page_script(page))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": str(ROOT),  # this checkout's package, whatever is installed
    }
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{page.name}:\n{result.stderr[-3000:]}"
