"""Peak memory of the large-data paths (issue 7, item 4).

Each scenario runs in its own Python process (so peaks never mix) and reports
its baseline RSS (after imports and, where stated, after building the input),
its peak RSS (``ru_maxrss``) and the difference:

* ``ehr_counts``: ``EHRCountEncoder`` fit + transform over a MEDS
  root folder of parquet shards (10 million events by default, 100,000
  subjects, 2,000 codes, 10 shards), streamed in chunks of subjects; target:
  peak < 2 GB.
* ``fusion_fit``: ``LateFusionSurvival`` fit on 100,000 patients x (512 CT +
  768 EHR) float32 (data = 512 MB); target: peak - baseline (taken *before*
  the data exist) < 3x the data size.
* ``ct_encoding``: ``CTEncoder`` over 500 small NIfTI volumes (24^3), RSS
  sampled after every 50 volumes; target: flat (last - first sample small).

    python benchmarks/memory.py                       # full size
    python benchmarks/memory.py --events 200000 --patients 5000 --volumes 60   # smoke
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_table  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- scenarios (child side)
def write_meds(root: Path, n_events: int, n_subjects: int, n_shards: int = 10) -> None:
    """A MEDS root of ``n_shards`` parquet shards, written shard by shard."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "data").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    codes = np.asarray([f"CODE/{k}" for k in range(2000)])
    per_shard = n_subjects // n_shards
    per_subject = n_events // n_subjects
    for s in range(n_shards):
        sid = np.repeat(np.arange(s * per_shard, (s + 1) * per_shard), per_subject)
        t0 = np.datetime64("2010-01-01", "s").astype(np.int64)
        offs = rng.integers(0, 10 * 365 * 86400, sid.size)
        order = np.lexsort((offs, sid))
        time = (t0 + offs[order]).astype("datetime64[s]").astype("datetime64[us]")
        code = codes[np.minimum(rng.zipf(1.3, sid.size), codes.size) - 1]
        val = np.where(rng.random(sid.size) < 0.2, rng.normal(size=sid.size), np.nan)
        table = pa.table(
            {
                "subject_id": pa.array(sid, pa.int64()),
                "time": pa.array(time, pa.timestamp("us")),
                "code": pa.array(code, pa.string()),
                "numeric_value": pa.array(val, pa.float32(), from_pandas=True),
            }
        )
        pq.write_table(table, root / "data" / f"{s}.parquet")


def scenario_ehr_counts(args) -> dict:
    import numpy as np

    from multimodal_surv.encoders import EHRCountEncoder

    root = Path(args.workdir) / "meds"  # written by another process (see main)
    base = rss_mb()
    cohort = pd.DataFrame(
        {
            "subject_id": np.arange(args.subjects, dtype=np.int64),
            "prediction_time": pd.Timestamp("2018-01-01"),
        }
    )
    import time

    from multimodal_surv.datasets._events import CHUNK_EVENTS, EventChunks

    t0 = time.perf_counter()
    enc = EHRCountEncoder(str(root), windows=("365D", "ever"), max_features=128)
    emb = enc.fit(cohort).transform(cohort)
    wall = time.perf_counter() - t0
    n_chunks = len(EventChunks(str(root), cohort["subject_id"]))
    return {
        "size": f"{args.events:,} events, {args.subjects:,} subjects",
        "output": f"{emb.shape[0]:,} x {emb.shape[1]} float64 = {emb.nbytes / 2**20:.0f} MiB; "
        f"streamed in {n_chunks} chunks of <= {CHUNK_EVENTS:,} events; fit + transform "
        f"{wall:.1f} s",
        "baseline_mb": base,
        "peak_mb": peak_mb(),
        "target": "peak < 2048 MiB",
        "ok": peak_mb() < 2048,
    }


def scenario_fusion_fit(args) -> dict:
    import numpy as np
    import torch
    from sksurv.util import Surv

    from multimodal_surv import LateFusionSurvival

    torch.set_num_threads(2)
    base = rss_mb()
    n = args.patients
    rng = np.random.default_rng(0)
    X = np.empty((n, 1280), dtype=np.float32)
    for k in range(0, n, 10_000):  # filled in slices: no float64 temporary of full size
        X[k : k + 10_000] = rng.standard_normal((min(10_000, n - k), 1280), dtype=np.float32)
    risk = X[:, 0] + X[:, 512]
    y = Surv.from_arrays(rng.random(n) < 0.7, rng.exponential(np.exp(-risk)))
    data_mb = X.nbytes / 2**20
    model = LateFusionSurvival(
        modalities={"ct": list(range(512)), "ehr": list(range(512, 1280))},
        max_epochs=args.epochs,
        batch_size=4096,
        random_state=0,
    )
    model.fit(X, y)
    model.predict(X[:1000])
    used = peak_mb() - base
    return {
        "size": f"{n:,} x (512 + 768) float32 = {data_mb:.0f} MiB, {args.epochs} epochs",
        "output": f"peak - baseline = {used / data_mb:.2f} x data",
        "baseline_mb": base,
        "peak_mb": peak_mb(),
        "target": "peak - baseline < 3 x data",
        "ok": used < 3 * data_mb,
    }


def scenario_ct_encoding(args) -> dict:
    import numpy as np

    from multimodal_surv.datasets import write_nifti
    from multimodal_surv.encoders import CTEncoder

    folder = Path(args.workdir) / "ct"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for k in range(args.volumes):
        vol = rng.normal(0, 300, (24, 24, 24)).astype(np.int16)
        paths.append(str(write_nifti(vol, folder / f"{k}.nii.gz", spacing=(1.0, 1.0, 1.0))))
    enc = CTEncoder(
        spacing=None, spatial_size=(24, 24, 24), pretrain_epochs=0, batch_size=8, random_state=0
    ).fit(paths[:2])
    base = rss_mb()
    samples, chunks = [], []
    step = max(args.volumes // 10, 1)
    for k in range(0, args.volumes, step):
        chunks.append(enc.transform(paths[k : k + step]))
        samples.append(rss_mb())
    emb = np.vstack(chunks)
    growth = samples[-1] - samples[0]
    return {
        "size": f"{args.volumes} volumes 24^3, RSS after every {step}",
        "output": "RSS MiB: " + ", ".join(f"{s:.0f}" for s in samples),
        "baseline_mb": base,
        "peak_mb": peak_mb(),
        "target": "flat: last - first sample < 50 MiB",
        "ok": growth < 50 and emb.shape[0] == args.volumes,
    }


def write_meds_child(args) -> dict:
    write_meds(Path(args.workdir) / "meds", args.events, args.subjects)
    return {}


SCENARIOS = {
    "write_meds": write_meds_child,
    "ehr_counts": scenario_ehr_counts,
    "fusion_fit": scenario_fusion_fit,
    "ct_encoding": scenario_ct_encoding,
}


# ---------------------------------------------------------------- driver (parent side)
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--volumes", type=int, default=500)
    parser.add_argument("--only", choices=list(SCENARIOS), action="append")
    parser.add_argument("--child", choices=list(SCENARIOS), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(SCENARIOS[args.child](args)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as work:
        names = args.only or [n for n in SCENARIOS if n != "write_meds"]
        if "ehr_counts" in names:
            names = ["write_meds"] + names
        for name in names:
            cmd = [sys.executable, __file__, "--child", name, "--workdir", work]
            for flag in ("events", "subjects", "patients", "epochs", "volumes"):
                cmd += [f"--{flag}", str(getattr(args, flag))]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                raise SystemExit(f"scenario {name} failed")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            if not res:
                continue
            rows.append(
                {
                    "scenario": name,
                    "size": res["size"],
                    "baseline RSS (MiB)": round(res["baseline_mb"]),
                    "peak RSS (MiB)": round(res["peak_mb"]),
                    "peak - baseline (MiB)": round(res["peak_mb"] - res["baseline_mb"]),
                    "detail": res["output"],
                    "target": res["target"],
                    "met": "yes" if res["ok"] else "NO",
                }
            )
    header = (
        "# Peak memory (benchmarks/memory.py)\n\n"
        "Each scenario in its own process; RSS from /proc/self/status, peak = ru_maxrss."
    )
    write_table("memory", pd.DataFrame(rows), header)


if __name__ == "__main__":
    main()
