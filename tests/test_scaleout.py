"""Scale-out through joblib on a Dask cluster (issue 7, item 5).

A ``dask.distributed.LocalCluster`` (2 worker processes, loopback only) is
started by the test; ``GridSearchCV(n_jobs=-1)`` over a fusion estimator and
CT / EHR encoding with ``n_jobs=-1`` run under
``joblib.parallel_backend("dask")`` and must give exactly the results of the
local (serial) backend.
"""

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, KFold
from sksurv.util import Surv

from multimodal_surv import LateFusionSurvival
from multimodal_surv.encoders import CTEncoder, EHRCountEncoder

distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] not installed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_grid_search_on_dask_equals_local(client):
    rng = np.random.default_rng(0)
    n = 240
    X = pd.DataFrame(
        rng.normal(size=(n, 8)),
        columns=[f"ct__x{j}" for j in range(4)] + [f"ehr__x{j}" for j in range(4)],
    )
    risk = X["ct__x0"] + X["ehr__x0"]
    y = Surv.from_arrays(rng.random(n) < 0.7, rng.exponential(np.exp(-risk)))
    grid = {"lr": [3e-3, 1e-2], "dropout": [0.0, 0.2]}
    est = LateFusionSurvival(max_epochs=5, validation_fraction=None, random_state=0)

    def search(n_jobs):
        return GridSearchCV(est, grid, cv=KFold(3), n_jobs=n_jobs).fit(X, y)

    local = search(None)
    with joblib.parallel_backend("dask"), distributed.get_task_stream(client) as stream:
        remote = search(-1)
    np.testing.assert_array_equal(
        local.cv_results_["mean_test_score"], remote.cv_results_["mean_test_score"]
    )
    assert local.best_params_ == remote.best_params_
    np.testing.assert_array_equal(local.predict(X), remote.predict(X))
    # the fits really ran as tasks on the cluster's worker processes
    assert len({task["worker"] for task in stream.data}) == 2


def test_ct_and_ehr_encoding_on_dask_equals_local(client, tmp_path):
    from multimodal_surv.datasets import write_nifti

    rng = np.random.default_rng(1)
    paths = [
        str(write_nifti(rng.normal(0, 300, (16, 16, 16)), tmp_path / f"{k}.nii.gz"))
        for k in range(12)
    ]
    ct = CTEncoder(
        spacing=None, spatial_size=(16, 16, 16), pretrain_epochs=0, batch_size=2, random_state=0
    ).fit(paths[:2])
    local_ct = ct.transform(paths)
    with joblib.parallel_backend("dask"):
        remote_ct = ct.set_params(n_jobs=-1).transform(paths)
    # Same rows, same weights; the workers run torch on 1 thread each, and a
    # float32 convolution summed in another order may differ by one ulp.
    np.testing.assert_allclose(local_ct, remote_ct, rtol=1e-6, atol=1e-8)
    assert ct.n_computed_ == len(paths)

    n = 4000
    events = pd.DataFrame(
        {
            "subject_id": rng.integers(0, 300, n),
            "time": pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 2000, n), "D"),
            "code": rng.choice([f"DX/{k}" for k in range(40)], n),
            "numeric_value": np.where(rng.random(n) < 0.3, rng.normal(size=n), np.nan),
        }
    )
    cohort = pd.DataFrame(
        {"subject_id": np.arange(300)[::-1].copy(), "prediction_time": pd.Timestamp("2019-01-01")}
    )
    ehr = EHRCountEncoder(events, windows=("365D", "ever"), tfidf=True).fit(cohort)
    local_ehr = ehr.transform(cohort)
    with joblib.parallel_backend("dask"):
        remote_ehr = ehr.set_params(n_jobs=-1).transform(cohort)
    np.testing.assert_array_equal(local_ehr, remote_ehr)
    assert ehr.n_empty_ == EHRCountEncoder(events, windows=("ever",)).fit(cohort).n_empty_
