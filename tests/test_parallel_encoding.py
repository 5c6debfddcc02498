"""Encoders with ``n_jobs``: shards of rows give exactly the serial output.

The threading backend keeps this fast; ``tests/test_scaleout.py`` (slow) runs
the same on a Dask cluster.
"""

import numpy as np
from _public_api import ct_volumes, meds_cohort
from joblib import parallel_backend

from multimodal_surv.encoders import CTEncoder, EHRCountEncoder
from multimodal_surv.encoders._parallel import shard_slices


def test_shard_slices_cover_the_rows_in_whole_units():
    for n, jobs, unit in [(10, 2, 4), (7, 3, 1), (1, 4, 2), (9, 8, 2)]:
        slices = shard_slices(n, jobs, unit)
        assert 1 < len(slices) <= jobs or n <= unit
        covered = np.concatenate([np.arange(n)[s] for s in slices])
        np.testing.assert_array_equal(covered, np.arange(n))
        assert all((s.stop - s.start) % unit == 0 for s in slices[:-1])
    assert shard_slices(0, 2) == [] and shard_slices(5, None) == [slice(0, 5)]


def test_ct_encoder_n_jobs_equals_serial():
    X = ct_volumes(n=5)
    enc = CTEncoder(
        spacing=None, spatial_size=(12, 12, 12), pretrain_epochs=0, batch_size=2, random_state=0
    ).fit(X)
    serial = enc.transform(X)
    with parallel_backend("threading"):
        parallel = enc.set_params(n_jobs=2).transform(X)
    np.testing.assert_array_equal(parallel, serial)
    assert enc.n_computed_ == 5 and list(enc.input_report_["status"]) == ["encoded"] * 5


def test_ehr_count_encoder_n_jobs_equals_serial():
    events, cohort = meds_cohort()
    enc = EHRCountEncoder(events=events).fit(cohort)
    serial = enc.transform(cohort)
    with parallel_backend("threading"):
        parallel = enc.set_params(n_jobs=3).transform(cohort.iloc[::-1])
    np.testing.assert_array_equal(parallel, serial[::-1])
    assert enc.n_errors_ == 0
