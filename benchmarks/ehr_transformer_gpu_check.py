"""EHRTransformerEncoder on a CUDA device: pretraining, encoding, save / load across devices.

Checks that ``device="cuda"`` and ``device="auto"`` pretrain and encode on the
GPU, that a model saved from the GPU and loaded on the CPU gives the same
embeddings (to float32 round-off), and times pretraining on both devices.
Needs a CUDA device; prints a table and writes
``benchmarks/results/ehr_transformer_gpu.md`` (or ``--out``).

Usage::

    python benchmarks/ehr_transformer_gpu_check.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from multimodal_surv.encoders import EHRTransformerEncoder


def rule_corpus(n_subjects, seed, n_codes=30, n_events=60):
    """Codes follow a temporal rule: next = (7 * previous + 3) mod n_codes w.p. 0.8."""
    rng = np.random.default_rng(seed)
    codes = np.empty((n_subjects, n_events), int)
    codes[:, 0] = rng.integers(0, n_codes, n_subjects)
    for j in range(1, n_events):
        follow = rng.random(n_subjects) < 0.8
        codes[:, j] = np.where(
            follow, (7 * codes[:, j - 1] + 3) % n_codes, rng.integers(0, n_codes, n_subjects)
        )
    days = np.cumsum(rng.exponential(20, (n_subjects, n_events)).round().astype(int), axis=1)
    return pd.DataFrame(
        {
            "subject_id": np.repeat(np.arange(n_subjects), n_events),
            "time": pd.Timestamp("2018-01-01") + pd.to_timedelta(days.ravel(), "D"),
            "code": [f"R/{c:02d}" for c in codes.ravel()],
            "numeric_value": np.nan,
        }
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=2000)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "ehr_transformer_gpu.md")
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; this check needs one")
    events = rule_corpus(args.n_subjects, 0)
    cohort = events.groupby("subject_id").time.max().rename("prediction_time").reset_index()
    params = dict(pretrain_epochs=3, random_state=0, hidden_size=64, pretrain_batch_size=64)
    rows = []
    fitted = {}
    for device in ("cpu", "cuda", "auto"):
        t = time.perf_counter()
        enc = EHRTransformerEncoder(events, device=device, **params).fit(cohort)
        t_fit = time.perf_counter() - t
        t = time.perf_counter()
        z = enc.transform(cohort)
        t_tr = time.perf_counter() - t
        where = str(next(enc.model_.parameters()).device)
        fitted[device] = (enc, z)
        rows.append((device, str(enc.device_), where, t_fit, t_tr, enc.pretrain_loss_))
        assert np.isfinite(z).all(), device
    assert fitted["auto"][0].device_.type == "cuda", "device='auto' did not pick CUDA"
    gpu, z_gpu = fitted["cuda"]
    with tempfile.TemporaryDirectory() as folder:
        gpu.save_pretrained(folder)
        on_cpu = EHRTransformerEncoder.from_pretrained(folder, events=events, device="cpu")
        z_cpu = on_cpu.transform(cohort)
    gap = float(np.abs(z_cpu - z_gpu).max())
    ppl = gpu.next_code_perplexity(rule_corpus(300, 1))
    lines = [
        "# EHRTransformerEncoder on CUDA",
        "",
        f"{len(events):,} events, {len(cohort):,} subjects; {params}; torch {torch.__version__}, "
        f"{torch.cuda.get_device_name(0)}.",
        "",
        "| device | device_ | model on | fit s | transform s | pretraining loss per epoch |",
        "|---|---|---|---:|---:|---|",
    ]
    for device, dev, where, t_fit, t_tr, loss in rows:
        losses = ", ".join(f"{v:.3f}" for v in loss)
        lines.append(f"| {device} | {dev} | {where} | {t_fit:.2f} | {t_tr:.2f} | {losses} |")
    lines += [
        "",
        f"Saved from the GPU, loaded on the CPU: max |embedding difference| = {gap:.2e}. "
        f"Held-out next-code perplexity of the GPU model: {ppl:.2f} (30 codes; a unigram "
        "model scores about 30).",
        "",
    ]
    table = "\n".join(lines)
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)
    if gap > 1e-3:
        raise SystemExit(f"GPU and CPU embeddings of the same weights differ by {gap}")


if __name__ == "__main__":
    main()
