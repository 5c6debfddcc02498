"""Interrupted CT encoding resumes from the on-disk cache (issue 7, item 3).

A child process encodes 200 small NIfTI volumes with a cache folder and is
killed (SIGKILL, no clean-up) once some entries exist; the rerun reads those
entries, encodes only the rest (counted by ``n_cache_hits_`` /
``n_computed_``) and returns the embeddings of an uninterrupted run. Truncated
and corrupted entries are covered by tests/test_ct_cache.py.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from multimodal_surv.datasets import write_nifti
from multimodal_surv.encoders import CTEncoder

N_VOLUMES = 200

ENCODER = dict(
    spacing=None,
    spatial_size=(16, 16, 16),
    pretrain_epochs=0,
    batch_size=1,  # every volume alone: a resumed run batches exactly as a fresh one
    random_state=0,
)


@pytest.fixture(scope="module")
def volume_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("volumes")
    rng = np.random.default_rng(0)
    return [
        str(write_nifti(rng.normal(0, 300, (16, 16, 16)), folder / f"{k}.nii.gz"))
        for k in range(N_VOLUMES)
    ]


def entries(cache_dir):
    return sorted(cache_dir.rglob("*.emb"))


@pytest.mark.slow
def test_killed_encoding_resumes_and_recomputes_only_the_missing(tmp_path, volume_paths):
    cache_dir = tmp_path / "cache"
    list_file = tmp_path / "paths.txt"
    list_file.write_text("\n".join(volume_paths))
    # The child sleeps after each cache write, so that the kill lands half-way
    # through at a predictable pace.
    script = textwrap.dedent(
        f"""
        import time
        from multimodal_surv.encoders import CTEncoder, _cache

        put = _cache.EmbeddingCache.put
        def slow_put(self, key, value):
            put(self, key, value)
            time.sleep(0.02)
        _cache.EmbeddingCache.put = slow_put

        paths = open({str(list_file)!r}).read().split()
        enc = CTEncoder(cache_dir={str(cache_dir)!r}, **{ENCODER!r}).fit(paths[:2])
        enc.transform(paths)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while len(entries(cache_dir)) < 60:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "child made no progress"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done_before = len(entries(cache_dir))
    assert 60 <= done_before < N_VOLUMES, done_before

    # Same settings and seed as the child: same weights, hence the same cache namespace.
    enc = CTEncoder(cache_dir=cache_dir, **ENCODER).fit(volume_paths[:2])
    resumed = enc.transform(volume_paths)
    assert enc.n_cache_hits_ == done_before
    assert enc.n_computed_ == N_VOLUMES - done_before
    assert len(entries(cache_dir)) == N_VOLUMES
    assert not list(cache_dir.rglob("*.tmp"))  # the kill left no half-written entry behind

    # Identical to an uninterrupted, uncached run.
    fresh = enc.set_params(cache_dir=None).transform(volume_paths)
    assert enc.n_cache_hits_ == 0 and enc.n_computed_ == N_VOLUMES
    np.testing.assert_array_equal(resumed, fresh)

    # A third run reads everything back.
    again = enc.set_params(cache_dir=cache_dir).transform(volume_paths)
    assert enc.n_cache_hits_ == N_VOLUMES and enc.n_computed_ == 0
    np.testing.assert_array_equal(again, fresh)


def test_counters_and_truncated_entry(tmp_path, volume_paths):
    paths = volume_paths[:6]
    enc = CTEncoder(cache_dir=tmp_path / "c", **ENCODER).fit(paths[:2])
    first = enc.transform(paths)
    assert (enc.n_cache_hits_, enc.n_computed_) == (0, 6)
    victim = entries(tmp_path / "c")[0]
    victim.write_bytes(victim.read_bytes()[:40])  # truncated mid-write, e.g. disk full
    second = enc.transform(paths)
    assert (enc.n_cache_hits_, enc.n_computed_) == (5, 1)
    np.testing.assert_allclose(second, first, rtol=1e-5, atol=1e-7)
