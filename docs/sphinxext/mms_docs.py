"""Sphinx helpers for the multimodal_surv site.

When the configuration is read, this extension writes the pages that follow the code, so
that a new public name, a new benchmark table or a new example appears on the
site without editing the site:

- ``reference/api.rst``: one section per public module (``multimodal_surv`` and
  every subpackage or module without a leading underscore that has
  ``__all__``), an autosummary table of its ``__all__``; each object is
  documented once, in the deepest public module that exports it.
- ``reference/benchmarks/*.md``: one page per ``benchmarks/results/*.md``.

Any other page written in ``docs/`` is added to the table of contents of
``user_guide.md``, after the pages it lists. The extension also maps
the repository-relative links that read well on a code host
(``../examples/x.py``, ``../benchmarks/results/x.md``) onto the site's pages.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
PACKAGE = "multimodal_surv"
GENERATED = DOCS / "reference"


def gallery_argv(gallery_conf, script_vars):
    """Command-line arguments of every gallery example: the small, fast size."""
    return ["--quick"]


# Sections of the API page in this order; other public modules follow.
ORDER = ["models", "encoders", "datasets", "metrics", "exceptions", "nn", "benchmark", "cli"]


def public_modules() -> list[str]:
    """Dotted names of the package's public modules that declare ``__all__``."""
    package = importlib.import_module(PACKAGE)
    names = []
    for info in pkgutil.walk_packages(package.__path__, PACKAGE + "."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        if hasattr(importlib.import_module(info.name), "__all__"):
            names.append(info.name)
    rank = {f"{PACKAGE}.{name}": k for k, name in enumerate(ORDER)}
    return [PACKAGE] + sorted(names, key=lambda m: (rank.get(m, len(ORDER) - 2.5), m))


def _homes(modules: list[str]) -> dict[int, str]:
    """id(object) -> its documented home: of the public modules exporting it, the
    one it is defined in (or a parent of it), else the deepest."""
    exporters: dict[int, list[str]] = {}
    objects = {}
    for modname in modules:
        module = importlib.import_module(modname)
        for name in module.__all__:
            obj = getattr(module, name)
            objects[id(obj)] = obj
            exporters.setdefault(id(obj), []).append(modname)

    def score(obj, modname):
        defined = getattr(obj, "__module__", None) or ""
        return (defined == modname or defined.startswith(modname + "."), modname.count("."))

    return {key: max(mods, key=lambda m: score(objects[key], m)) for key, mods in exporters.items()}


def _write(path: Path, text: str) -> None:
    """Write only when the text changed (keeps Sphinx's incremental build)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _first_line(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _autosummary(modname: str, names: list[str]) -> list[str]:
    return [
        f".. currentmodule:: {modname}",
        "",
        ".. autosummary::",
        "   :toctree: generated",
        "   :nosignatures:",
        "",
        *[f"   {n}" for n in names],
        "",
    ]


def api_page() -> str:
    """The reStructuredText of the API reference page."""
    modules = public_modules()
    homes = _homes(modules)
    top = importlib.import_module(PACKAGE)
    lines = [
        "API reference",
        "=============",
        "",
        f".. module:: {PACKAGE}",
        "",
        "Every public name of the package, generated from its numpydoc docstring.",
        "Each object is documented once, in the module it is public from; the",
        f"names below are also importable from ``{PACKAGE}`` itself.",
        "",
    ]
    own_top = []
    for name in top.__all__:
        home = homes[id(getattr(top, name))]
        if home == PACKAGE:
            own_top.append(name)
        else:
            lines.append(f"- :obj:`{PACKAGE}.{name} <{home}.{name}>`")
    lines.append("")
    if own_top:
        lines += _autosummary(PACKAGE, own_top)
    for modname in modules[1:]:
        module = importlib.import_module(modname)
        own = [n for n in module.__all__ if homes[id(getattr(module, n))] == modname]
        if not own:
            continue
        title = f":mod:`{modname}`"
        summary = _first_line(module)
        lines += [title, "-" * len(title), ""]
        if summary:
            lines += [summary, ""]
        lines += [f".. module:: {modname}", ""] + _autosummary(modname, own)
    return "\n".join(lines) + "\n"


def benchmark_pages() -> dict[str, str]:
    pages = {}
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.md")):
        text = path.read_text()
        body = text.lstrip()
        match = re.match(r"# (.+)\n", body)
        if match:
            title, body = match.group(1).strip(), body[match.end() :]
        else:
            title = path.stem.replace("_", " ").capitalize()
        script = ROOT / "benchmarks" / f"{path.stem}.py"
        source = f"``python benchmarks/{script.name}``" if script.exists() else "a benchmark script"
        pages[path.stem] = (
            f"# {title}\n\nWritten by {source} to ``benchmarks/results/{path.name}``.\n\n{body}"
        )
    index = [
        "# Benchmark results",
        "",
        "The latest tables written by the scripts in ``benchmarks/``. Each script",
        "compares against a peer (scikit-survival, pycox, a naive implementation)",
        "in one run on one machine; the machine and sizes are stated with each table.",
        "",
        "```{toctree}",
        ":maxdepth: 1",
        "",
        *sorted(pages),
        "```",
        "",
    ]
    pages["index"] = "\n".join(index)
    return pages


def generate(app, config) -> None:
    page = api_page()
    _write(GENERATED / "api.rst", page)
    # Stubs of names that are no longer public would be orphan pages (and fail
    # to import): remove them, autosummary writes the current ones.
    current, module = set(), None
    for line in page.splitlines():
        if line.startswith(".. currentmodule:: "):
            module = line.split()[-1]
        elif re.fullmatch(r"   \w+", line) and module:
            current.add(f"{module}.{line.strip()}")
    for stub in (GENERATED / "generated").glob("*.rst"):
        if stub.stem not in current:
            stub.unlink()
    bench = GENERATED / "benchmarks"
    pages = benchmark_pages()
    for stale in bench.glob("*.md"):
        if stale.stem not in pages:
            stale.unlink()
    for stem, text in pages.items():
        _write(bench / f"{stem}.md", text)


_LINKS = [
    # (pattern, replacement): repository-relative links -> pages of the site
    (re.compile(r"\]\((?:\.\./)*examples/(\w+)\.py\)"), r"](/auto_examples/\1.rst)"),
    (
        re.compile(r"\]\((?:\.\./)*benchmarks/results/(\w+)\.md\)"),
        r"](/reference/benchmarks/\1.md)",
    ),
]


def rewrite_links(app, docname, source) -> None:
    if not app.env.doc2path(docname).suffix == ".md":
        return
    text = source[0]
    for pattern, repl in _LINKS:
        text = pattern.sub(repl, text)
    source[0] = text


GUIDE = "user_guide"  # the page whose toctree collects the user-guide pages


def _toctree_entries(text: str) -> set[str]:
    entries = set()
    for block in re.findall(r"```\{toctree\}(.*?)```", text, flags=re.DOTALL):
        entries |= set(re.findall(r"^([\w/.-]+)$", block, flags=re.MULTILINE))
    return entries


def add_new_pages(app, docname, source) -> None:
    """Append the top-level pages that no toctree lists to the user guide's."""
    if docname != GUIDE:
        return
    text = source[0]
    listed = _toctree_entries(text) | _toctree_entries((DOCS / "index.md").read_text())
    pages = sorted(
        p.stem
        for suffix in ("*.md", "*.rst")
        for p in DOCS.glob(suffix)
        if p.stem not in listed | {GUIDE, app.config.root_doc}
    )
    start = text.index("```{toctree}")
    end = text.index("\n```", start)
    source[0] = text[:end] + "".join(f"\n{p}" for p in pages) + text[end:]


_HEADER = re.compile(r"^\s*[*\w]+(\s*,\s*[*\w]+)*\s*:(\s|$)")  # "name : type" lines
_TRAILING_UNDERSCORE = re.compile(r"(?<![\w`*\\])([A-Za-z]\w*)_(?![\w`])")


def escape_fitted_names(app, what, name, obj, options, lines) -> None:
    """Escape ``name_`` words outside literals, which reST reads as link targets.

    scikit-learn style docstrings mention fitted attributes (``n_features_out_``)
    in running text; unescaped, docutils reports an unknown target. Headers of
    numpydoc sections ("name : type": the type is escaped), doctest lines and
    ````literals```` are left as they are.
    """
    for k, line in enumerate(lines):
        if line.lstrip().startswith((">>>", "...")):
            continue
        head, text = "", line
        if _HEADER.match(line):  # keep the names, escape the type
            head, sep, text = line.partition(":")
            head += sep
        parts = text.split("``")
        for j in range(0, len(parts), 2):  # even parts are outside ``literals``
            parts[j] = _TRAILING_UNDERSCORE.sub(r"\1\\_", parts[j])
        lines[k] = head + "``".join(parts)


def skip_routing_methods(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_*_request`` methods."""
    if re.fullmatch(r"set_\w+_request", name):
        return True
    return None


def setup(app):
    # before Sphinx lists the source files, so the generated pages are found
    app.connect("config-inited", generate)
    app.connect("source-read", add_new_pages)
    # before numpydoc (priority 500) rewrites the docstring into reST
    app.connect("autodoc-process-docstring", escape_fitted_names, priority=400)
    app.connect("autodoc-skip-member", skip_routing_methods)
    app.connect("source-read", rewrite_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
