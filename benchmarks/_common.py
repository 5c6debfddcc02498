"""Shared helpers of the benchmark scripts (timing, peak memory, table output)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_table(name: str, table: pd.DataFrame, header: str = "") -> str:
    """Print ``table`` as Markdown and write it to ``benchmarks/results/<name>.md``."""
    RESULTS.mkdir(exist_ok=True)
    text = (header + "\n\n" if header else "") + table.to_markdown(index=False) + "\n"
    (RESULTS / f"{name}.md").write_text(text)
    sys.stdout.write(text)
    return text
