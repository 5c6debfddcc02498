"""On-disk cache of per-volume embeddings.

An entry is keyed by the SHA-256 of the input's *content* (file bytes, every
file of a DICOM folder with its relative name, or an array's bytes, shape and
dtype) together with a fingerprint of everything else that shapes the output
(backbone, its weights, preprocessing, output layout). Editing a file changes
its key, so stale entries are never read.

Entries are written atomically (temporary file in the same folder, then
``os.replace``) and carry a SHA-256 checksum of their payload: a truncated or
corrupted entry is detected on read, reported as a miss and rewritten.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingCache", "content_hash", "fingerprint"]

_MAGIC = b"MSCTEMB1"
_CHUNK = 1 << 20


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)


def content_hash(ref) -> str:
    """SHA-256 of a CT reference's content (file, DICOM folder or array)."""
    h = hashlib.sha256()
    if isinstance(ref, np.ndarray):
        arr = np.ascontiguousarray(ref)
        h.update(f"array|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
        return h.hexdigest()
    path = Path(ref)
    if path.is_dir():
        h.update(b"dir|")
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"|")
            _hash_file(h, f)
            h.update(b"|")
    else:
        h.update(b"file|")
        _hash_file(h, path)
    return h.hexdigest()


def fingerprint(config: dict, state_dict=None) -> str:
    """SHA-256 of a JSON-able configuration and (optionally) model weights."""
    import torch

    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    if state_dict is not None:
        for name in sorted(state_dict):
            t = state_dict[name].detach().cpu().contiguous()
            h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """Folder of checksummed ``.npy`` embedding entries.

    Parameters
    ----------
    directory : str or os.PathLike
        Created if absent.
    namespace : str
        Fingerprint of the encoder configuration and weights; it is part of
        every key, so encoders with different settings never share entries.

    Attributes
    ----------
    n_corrupt_ : int
        Entries found corrupt (and treated as misses) so far.
    """

    def __init__(self, directory, namespace: str):
        self.directory = Path(directory)
        self.namespace = namespace
        self.n_corrupt_ = 0

    def key(self, content: str) -> str:
        return hashlib.sha256(f"{self.namespace}|{content}".encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.emb"

    def get(self, key: str) -> np.ndarray | None:
        """The stored vector, or None when absent or corrupt."""
        path = self._path(key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        head = len(_MAGIC) + 32
        if len(blob) > head and blob[: len(_MAGIC)] == _MAGIC:
            digest, payload = blob[len(_MAGIC) : head], blob[head:]
            if hashlib.sha256(payload).digest() == digest:
                try:
                    return np.load(io.BytesIO(payload), allow_pickle=False)
                except ValueError:
                    pass
        self.n_corrupt_ += 1
        return None

    def put(self, key: str, value: np.ndarray) -> None:
        """Store ``value`` atomically (tmp file + ``os.replace``)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(value), allow_pickle=False)
        payload = buf.getvalue()
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(_MAGIC + hashlib.sha256(payload).digest() + payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
