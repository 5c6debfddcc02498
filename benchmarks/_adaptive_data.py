"""Two-modality embeddings of the library's synthetic cohort, cheap enough for many seeds.

Used by ``benchmarks/adaptive_cost.py`` and the adaptive-fusion acceptance test.

* Outcome, EHR events and the oracle risk parts: ``make_synthetic_cohort``
  (internal site only, minimal CT volumes since they are not read).
* EHR embedding: the library's EHR counts encoder on the cohort's MEDS events,
  fitted on the training rows (bag of codes in the last 30 days / year / ever,
  last lab values).
* CT embedding: simulated, because encoding CT volumes costs minutes per
  cohort. A CT encoder that sees the cohort's CT risk part through noise:
  ``z = ct_part + CT_NOISE * e``, features ``(z, tanh z, z**2 - 1)`` plus
  ``CT_NUISANCE`` independent standard-normal columns, mixed by a random
  orthogonal matrix (every column carries a little signal, as in real
  embeddings). ``CT_NOISE`` was set on tuning seeds 90 and 91 so that CT alone
  at balance 1 reaches about the C of EHR alone at balance 0 (comparable
  modalities).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

CT_NOISE = 0.6
CT_NUISANCE = 13
TUNING_SEEDS = (90, 91)


def simulated_ct_embedding(ct_part, seed, noise=CT_NOISE, nuisance=CT_NUISANCE):
    """CT embedding columns ``ct__x<j>`` that see ``ct_part`` through noise (see module doc)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 16]))
    z = np.asarray(ct_part, dtype=float) + noise * rng.normal(size=len(ct_part))
    signal = np.column_stack([z, np.tanh(z), (z**2 - 1) / np.sqrt(2)])
    raw = np.hstack([signal, rng.normal(size=(len(z), nuisance))])
    mixing = np.linalg.qr(rng.normal(size=(raw.shape[1], raw.shape[1])))[0]
    return pd.DataFrame(raw @ mixing, columns=[f"ct__x{j}" for j in range(raw.shape[1])])


def cohort_embeddings(n_subjects, balance, seed, *, cache_dir=None):
    """``X`` (ct__*, ehr__*), ``y``, boolean ``train`` mask of the internal cohort.

    With ``cache_dir`` the EHR embedding, the CT risk part, ``y`` and ``train``
    are stored (parquet) and reused; the CT embedding is rebuilt from them.
    """
    key = f"adaptive_{n_subjects}_{balance}_{seed}"
    path = None if cache_dir is None else Path(cache_dir) / f"{key}.parquet"
    if path is not None and path.exists():
        table = pd.read_parquet(path)
    else:
        table = encode_table(n_subjects, balance, seed, ct_encoder=False)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            table.to_parquet(path)
    ehr = table.filter(like="ehr__")
    ct = simulated_ct_embedding(table["ct_part"].to_numpy(), seed)
    X = pd.concat([ct, ehr.reset_index(drop=True)], axis=1)
    y = np.empty(len(table), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = table["event"].to_numpy(bool), table["time"].to_numpy(float)
    return X, y, table["train"].to_numpy(bool)


def encode_table(n_subjects, balance, seed, *, ct_encoder):
    """One row per subject: the encoders' columns, ``ct_part``, ``event``, ``time``, ``train``.

    ``ct_encoder``: also encode the CT volumes with the library's
    ``CTEncoder("ssl")`` (``ct__*`` columns); otherwise the volumes are
    minimal (4 x 4 x 4) and not read.
    """
    from multimodal_surv.datasets import make_synthetic_cohort
    from multimodal_surv.encoders import CTEncoder, EHRCountEncoder, make_multimodal_encoder

    shape = {} if ct_encoder else {"volume_shape": (4, 4, 4)}
    with tempfile.TemporaryDirectory() as root:
        data = make_synthetic_cohort(
            root,
            n_subjects=n_subjects,
            balance=balance,
            random_state=seed,
            external_fraction=0.0,
            **shape,
        )
        cohort = data.cohort.reset_index(drop=True)
        train = (cohort["split"] == "train").to_numpy()
        encoders = {"ehr": EHRCountEncoder(data.meds_root)}
        if ct_encoder:
            encoders = {"ct": CTEncoder("ssl", on_error="nan", random_state=seed), **encoders}
        encoder = make_multimodal_encoder(**encoders)
        table = encoder.fit(cohort[train]).transform(cohort).reset_index(drop=True)
        table["ct_part"] = data.oracle_parts["ct_part"].to_numpy()
        event_field, time_field = data.y.dtype.names
        table["event"] = data.y[event_field]
        table["time"] = data.y[time_field]
        table["train"] = train
    return table
