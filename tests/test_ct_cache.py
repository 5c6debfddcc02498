"""On-disk embedding cache of CTEncoder: speed, identity, corruption, invalidation."""

import time

import numpy as np
import pytest

from multimodal_surv.datasets import write_nifti
from multimodal_surv.encoders import CTEncoder
from multimodal_surv.encoders._cache import EmbeddingCache


def phantom(seed, shape=(64, 64, 48)):
    rng = np.random.default_rng(seed)
    ax = [np.linspace(-1, 1, s) for s in shape]
    X, Y, Z = np.meshgrid(*ax, indexing="ij")
    vol = np.where(X**2 + Y**2 + Z**2 < 0.8, 40.0, -1000.0)
    vol += rng.normal(0, 30, shape)
    return vol


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    return [
        str(write_nifti(phantom(i), folder / f"{i}.nii.gz", spacing=(1, 1, 2))) for i in range(6)
    ]


def make_encoder(cache_dir, spatial_size=(48, 48, 48)):
    return CTEncoder(
        spacing=(2.0, 2.0, 2.0),
        spatial_size=spatial_size,
        pretrain_epochs=0,
        random_state=0,
        cache_dir=cache_dir,
    )


def entries(cache_dir):
    return sorted(p for p in cache_dir.rglob("*.emb"))


def test_second_transform_is_50x_faster_and_identical(tmp_path, paths):
    # A backbone input large enough that the timing ratio is not lost in noise.
    enc = make_encoder(tmp_path / "cache", spatial_size=(96, 96, 96)).fit(paths[:2])
    t0 = time.perf_counter()
    first = enc.transform(paths)
    t_first = time.perf_counter() - t0
    t_second = np.inf
    for _ in range(3):  # best of 3: cache reads are short and easily disturbed
        t0 = time.perf_counter()
        second = enc.transform(paths)
        t_second = min(t_second, time.perf_counter() - t0)
    np.testing.assert_array_equal(first, second)
    assert len(entries(tmp_path / "cache")) == len(paths)
    assert t_first / t_second >= 50, (t_first, t_second)
    # no temporary files are left behind by the atomic writes
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    # the cached values are what an uncached encoder computes
    uncached = make_encoder(None, spatial_size=(96, 96, 96)).fit(paths[:2]).transform(paths)
    np.testing.assert_allclose(uncached, first, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_entry_is_detected_and_recomputed(tmp_path, paths, damage):
    cache_dir = tmp_path / "cache"
    enc = make_encoder(cache_dir).fit(paths[:2])
    ref = enc.transform(paths[:2])
    victim = entries(cache_dir)[0]
    blob = bytearray(victim.read_bytes())
    if damage == "truncate":
        victim.write_bytes(bytes(blob[: len(blob) // 2]))
    else:
        blob[-5] ^= 0xFF  # one payload byte changed, length intact
        victim.write_bytes(bytes(blob))
    cache = EmbeddingCache(cache_dir, enc.cache_namespace_)
    assert cache.get(victim.stem) is None and cache.n_corrupt_ == 1
    again = enc.transform(paths[:2])
    # recomputed alone rather than in a batch of two: equal up to float32 round-off
    np.testing.assert_allclose(again, ref, rtol=1e-5, atol=1e-8)
    # the entry was rewritten and now reads back intact
    fresh = EmbeddingCache(cache_dir, enc.cache_namespace_)
    assert fresh.get(victim.stem) is not None and fresh.n_corrupt_ == 0


def test_editing_a_file_invalidates_its_entry(tmp_path):
    path = tmp_path / "v.nii.gz"
    write_nifti(phantom(0), path, spacing=(1, 1, 2))
    enc = make_encoder(tmp_path / "cache").fit([str(path), str(path)])
    before = enc.transform([str(path)])
    write_nifti(phantom(1), path, spacing=(1, 1, 2))  # same name, new content
    after = enc.transform([str(path)])
    assert np.abs(after - before).max() > 1e-4
    uncached = make_encoder(None).fit([str(path)] * 2).transform([str(path)])
    np.testing.assert_allclose(after, uncached, rtol=1e-5, atol=1e-8)
    assert len(entries(tmp_path / "cache")) == 2


def test_settings_are_part_of_the_key(tmp_path, paths):
    a = make_encoder(tmp_path / "cache").fit(paths[:2])
    b = make_encoder(tmp_path / "cache").set_params(hu_window=(-500, 500)).fit(paths[:2])
    assert a.cache_namespace_ != b.cache_namespace_
    ea, eb = a.transform(paths[:1]), b.transform(paths[:1])
    assert np.abs(ea - eb).max() > 1e-4
    assert len(entries(tmp_path / "cache")) == 2
