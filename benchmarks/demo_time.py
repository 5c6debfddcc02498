"""Wall and CPU time of the demo benchmark and of nested cross-validation on 300 subjects.

Runs, one after the other, in a fresh temporary folder each:

* ``python -m multimodal_surv benchmark --out <tmp>`` (what ``make demo`` runs,
  3600 synthetic subjects), and
* ``python -m multimodal_surv benchmark --cv 5 --n-subjects 300 --out <tmp>``
  (nested 5-fold cross-validation, the protocol for cohorts of a few hundred
  patients),

and reports each one's wall time, CPU time (user + sys of the process and
its workers, less sensitive to other load on the machine than the wall
time), the load average before it, and the progress lines' stage times.
``make demo`` adds the install: about 70 s on 2 cores with a warm pip cache
(virtual environment 6 s, torch 21 s, the package and its dependencies 43 s).
Usage: ``python benchmarks/demo_time.py [--skip-demo] [--skip-cv] [--n-jobs N] [--keep DIR]``
(``--keep`` leaves each run's outputs and console log in ``DIR/demo`` and ``DIR/cv``).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import pandas as pd
from _common import write_table

COMMANDS = {
    "demo (3600 subjects)": ["benchmark"],
    "--cv 5 (300 subjects)": ["benchmark", "--cv", "5", "--n-subjects", "300"],
}


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stages(log):
    """Seconds at each progress line ``[multimodal-surv   123s] message``."""
    marks = re.findall(r"\[multimodal-surv\s+(\d+)s\] ([^\n]+)", log)
    return "; ".join(f"{int(s)} s {m.split(' (')[0].split(':')[0]}" for s, m in marks)


def run(name, args, n_jobs, keep=None):
    with tempfile.TemporaryDirectory() as tmp:
        out = (
            f"{tmp}/out" if keep is None else os.path.join(keep, "demo" if "demo" in name else "cv")
        )
        cmd = [sys.executable, "-m", "multimodal_surv", *args, "--out", out]
        cmd += ["--n-jobs", str(n_jobs)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        load = os.getloadavg()[0]
        cpu0, t0 = _children_cpu(), time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
        if keep is not None:
            with open(os.path.join(out, "console.log"), "w") as fh:
                fh.write(done.stdout + done.stderr)
    if done.returncode:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"{name}: exit {done.returncode}")
    return {
        "run": name,
        "command": "python -m multimodal_surv " + " ".join(args),
        "wall (min)": round(wall / 60, 2),
        "CPU user+sys (min)": round(cpu / 60, 2),
        "load before": round(load, 1),
        "stages (wall s at start)": _stages(done.stderr),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-cv", action="store_true")
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--keep", help="keep each run's outputs and console log under this folder")
    args = parser.parse_args(argv)
    rows = [
        run(name, cmd, args.n_jobs, args.keep)
        for name, cmd in COMMANDS.items()
        if not (args.skip_demo and "demo" in name) and not (args.skip_cv and "cv" in name)
    ]
    header = (
        f"# Demo and nested-CV time\n\n{os.cpu_count()} CPUs, --n-jobs {args.n_jobs}; "
        "wall and CPU minutes of the benchmark alone (make demo adds the install)."
    )
    write_table("demo_time", pd.DataFrame(rows), header)


if __name__ == "__main__":
    main()
