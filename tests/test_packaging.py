"""The wheel stands on its own: licence, typing marker, one version, a CLI that runs.

The wheel is built from a copy of the sources, installed with ``--no-deps``
into a fresh virtual environment that sees the current interpreter's
site-packages (for torch, scikit-survival, ...) only *after* its own, and its
``multimodal-surv`` script is run from a folder outside the repository, so
the repository's own package cannot be imported by accident.
"""

import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

import multimodal_surv

ROOT = Path(__file__).resolve().parents[1]


def test_version_written_once():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in meta["project"], "the version belongs in multimodal_surv/__init__.py"
    assert meta["project"]["dynamic"] == ["version"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "multimodal_surv.__version__"
    }
    assert re.fullmatch(r"\d+\.\d+\.\d+", multimodal_surv.__version__)
    cff = (ROOT / "CITATION.cff").read_text()
    assert f"version: {multimodal_surv.__version__}\n" in cff


def test_metadata_has_urls_and_classifiers():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {"Homepage", "Documentation", "Source", "Changelog"} <= set(meta["urls"])
    assert "License :: OSI Approved :: BSD License" not in meta["classifiers"]  # PEP 639
    assert meta["license"] == "BSD-3-Clause"
    assert "Typing :: Typed" in meta["classifiers"]
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")
    assert (ROOT / "multimodal_surv" / "py.typed").exists()
    assert "## Unreleased" in (ROOT / "CHANGELOG.md").read_text()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "multimodal_surv",
        src / "multimodal_surv",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + [str(src), "-w", str(dist)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = dist.glob("multimodal_surv-*.whl")
    return path


def test_wheel_contents(wheel):
    assert wheel.name == f"multimodal_surv-{multimodal_surv.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"multimodal_surv-{multimodal_surv.__version__}.dist-info"
        metadata = zf.read(f"{info}/METADATA").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert f"{info}/licenses/LICENSE" in names
    assert "multimodal_surv/py.typed" in names
    assert "multimodal_surv/encoders/__init__.py" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/")) for n in names)
    assert "License-Expression: BSD-3-Clause" in metadata
    assert "Project-URL: Source, " in metadata
    assert "multimodal-surv = multimodal_surv.cli:main" in entry_points


def test_wheel_installs_and_runs_cli(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    bindir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    python = bindir / "python"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # Dependencies come from this interpreter's site-packages, searched after the
    # fresh venv's own (a .pth line appends; the editable install's finder, a .pth
    # of that folder, is not processed, so it cannot shadow the wheel).
    (purelib / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q"]
        + ["--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {"PATH": str(bindir), "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    # find_spec locates the package without running its __init__ (no torch import).
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; print(u.find_spec('multimodal_surv').origin)",
        ],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    script = bindir / "multimodal-surv"
    version = subprocess.run(
        [str(script), "--version"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert version.returncode == 0, version.stderr[-2000:]
    assert version.stdout.strip() == f"multimodal-surv {multimodal_surv.__version__}"
    helped = subprocess.run(
        [str(script), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert "benchmark" in helped.stdout and "--version" in helped.stdout
