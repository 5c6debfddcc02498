"""The documentation site's sources: complete API pages, gallery-ready examples,
user-facing text, and a full Sphinx build (slow; CI runs ``make docs``)."""

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


def test_benchmark_pages_cover_every_results_table():
    pages = mms_docs.benchmark_pages()
    tables = {p.stem for p in (ROOT / "benchmarks" / "results").glob("*.md")}
    assert tables and tables | {"index"} == set(pages)
    for stem in tables:
        assert pages[stem].startswith("# ") and f"benchmarks/results/{stem}.md" in pages[stem]
        assert stem in pages["index"]


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
