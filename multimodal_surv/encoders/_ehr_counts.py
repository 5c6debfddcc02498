"""Bag-of-codes ("one-hot") EHR features over time windows, fully vectorised.

Events are kept as sorted arrays (:class:`~multimodal_surv.datasets._meds.EventArrays`):
one ``searchsorted`` per window finds, for every cohort row at once, the slice
of its subject's events inside the window; the slices are expanded with
``np.repeat`` and counted with ``np.bincount`` (dense) or a CSR matrix (sparse).
No Python loop runs over rows, subjects or events.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..datasets._events import EventArrays

__all__ = ["CodeCounter", "CountFeaturizer", "parse_windows", "expand_ranges"]


def parse_windows(windows) -> list[tuple[str, int | None]]:
    """``["30D", "365D", "ever"]`` -> ``[("30D", ns), ("365D", ns), ("ever", None)]``."""
    if isinstance(windows, str) or not hasattr(windows, "__iter__"):
        raise TypeError(f"windows must be a list such as ['30D', '365D', 'ever'], got {windows!r}.")
    out = []
    for w in windows:
        if w is None or (isinstance(w, str) and w.lower() == "ever"):
            out.append(("ever", None))
            continue
        try:
            delta = pd.Timedelta(w)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"window {w!r} is not a duration; use pandas offsets such as '30D', '365D', "
                "'12h' or 'ever' (all history)."
            ) from exc
        if delta <= pd.Timedelta(0):
            raise ValueError(f"window {w!r} must be a positive duration.")
        label = w if isinstance(w, str) else f"{int(delta.total_seconds())}s"
        out.append((label, int(delta.value)))
    if not out:
        raise ValueError("windows is empty; give at least one window, e.g. ['ever'].")
    labels = [lab for lab, _ in out]
    if len(set(labels)) != len(labels):
        raise ValueError(f"windows {list(windows)!r} contains duplicates.")
    return out


def expand_ranges(start: np.ndarray, end: np.ndarray):
    """Row ids and event indices of the half-open ranges ``[start[i], end[i])``."""
    lengths = np.maximum(end - start, 0)
    total = int(lengths.sum())
    rows = np.repeat(np.arange(start.size, dtype=np.int64), lengths)
    offsets = np.cumsum(lengths) - lengths
    idx = np.arange(total, dtype=np.int64)
    idx += np.repeat(start - offsets, lengths)
    return rows, idx, lengths


class CodeCounter:
    """Code frequencies and numeric sums of fit histories, merged chunk by chunk.

    Chunks must come in increasing subject order. Numeric sums continue the
    running sum event by event (``np.add.at``), so they are bit-identical to
    one ``np.bincount`` over all events in (subject, time) order.
    """

    def __init__(self):
        self.codes = np.zeros(0, object)
        self.freq = np.zeros(0, np.int64)
        self.sums = np.zeros(0, np.float64)
        self.n_values = np.zeros(0, np.int64)
        self.n_events = 0

    def add(self, arrays: EventArrays, sid: np.ndarray, pt_ns: np.ndarray) -> CodeCounter:
        """Count the events of ``sid`` up to each subject's latest ``pt_ns``."""
        # One pass over each subject's history up to its latest prediction time.
        frame = pd.DataFrame({"s": sid, "t": pt_ns}).groupby("s", sort=True)["t"].max()
        k, end = arrays.locate(frame.index.to_numpy(), frame.to_numpy())
        start = np.where(k >= 0, arrays.starts[np.maximum(k, 0)], 0)
        _, idx, _ = expand_ranges(start, end)
        code_ids = arrays.code_ids[idx]
        vals = arrays.numeric_value[idx]
        has = ~np.isnan(vals)
        codes = np.asarray(arrays.codes, dtype=object)
        if self.codes.size and not np.array_equal(self.codes, codes):
            union = np.union1d(self.codes, codes).astype(object)
            old = np.searchsorted(union, self.codes)
            for name in ("freq", "sums", "n_values"):
                grown = np.zeros(union.size, getattr(self, name).dtype)
                grown[old] = getattr(self, name)
                setattr(self, name, grown)
            self.codes = union
        elif not self.codes.size:
            self.codes = codes
            self.freq = np.zeros(codes.size, np.int64)
            self.sums = np.zeros(codes.size, np.float64)
            self.n_values = np.zeros(codes.size, np.int64)
        pos = np.searchsorted(self.codes, codes) if codes.size else np.zeros(0, np.int64)
        self.freq += np.bincount(pos[code_ids], minlength=self.codes.size)
        g = pos[code_ids[has]]
        np.add.at(self.sums, g, vals[has])
        self.n_values += np.bincount(g, minlength=self.codes.size)
        self.n_events += int(idx.size)
        return self


class CountFeaturizer:
    """Windowed code counts plus the last numeric value per code (plain object).

    Column layout: for each window, one count per vocabulary code followed by
    one ``<unk>`` count (codes outside the vocabulary); then, when
    ``numeric="last"``, the last value of each numeric code in all history up to
    the prediction time (the code's mean over the fit events when never seen).
    """

    def __init__(self, windows, min_count, max_features, numeric):
        self.windows = parse_windows(windows)
        self.min_count = min_count
        self.max_features = max_features
        self.numeric = numeric

    # -- fitting -----------------------------------------------------------
    def fit(self, arrays: EventArrays, sid: np.ndarray, pt_ns: np.ndarray) -> CountFeaturizer:
        """Learn the vocabulary from the events of ``sid`` up to their latest ``pt_ns``."""
        return self.fit_counter(CodeCounter().add(arrays, sid, pt_ns))

    def fit_counter(self, counter: CodeCounter) -> CountFeaturizer:
        """Learn the vocabulary from code counts merged over chunks of subjects."""
        codes, freq = counter.codes, counter.freq
        keep = self.select_codes(freq)
        self.vocabulary_ = codes[keep].astype(object)
        self.code_frequency_ = freq[keep]
        self.n_fit_events_ = counter.n_events
        if self.numeric == "last":
            in_vocab = np.zeros(codes.size, bool)
            in_vocab[keep] = True
            num = np.flatnonzero((counter.n_values > 0) & in_vocab)
            self.numeric_codes_ = codes[num].astype(object)
            self.numeric_fill_ = counter.sums[num] / counter.n_values[num]
        else:
            self.numeric_codes_ = np.zeros(0, object)
            self.numeric_fill_ = np.zeros(0)
        return self

    def select_codes(self, freq: np.ndarray) -> np.ndarray:
        """Indices of codes with ``freq >= min_count``, the ``max_features`` most frequent."""
        keep = np.flatnonzero(freq >= self.min_count)
        if self.max_features is not None and keep.size > self.max_features:
            # Most frequent first; ties by code (codes are sorted, so by index).
            order = np.lexsort((keep, -freq[keep]))
            keep = np.sort(keep[order[: self.max_features]])
        return keep

    @property
    def n_count_features(self) -> int:
        return len(self.windows) * (self.vocabulary_.size + 1)

    def feature_descriptions(self) -> list[str]:
        out = []
        for label, _ in self.windows:
            out += [f"count[{label}] {c}" for c in self.vocabulary_] + [f"count[{label}] <unk>"]
        out += [f"last {c}" for c in self.numeric_codes_]
        return out

    # -- transform ---------------------------------------------------------
    def _maps(self, arrays: EventArrays):
        """Per-event-code column index (``V`` = unknown) and numeric index (-1 = none)."""
        V = self.vocabulary_.size
        pos = np.searchsorted(self.vocabulary_, arrays.codes) if arrays.codes.size else []
        pos = np.minimum(np.asarray(pos, dtype=np.int64), max(V - 1, 0))
        hit = (self.vocabulary_[pos] == arrays.codes) if V else np.zeros(arrays.codes.size, bool)
        tok = np.where(hit, pos, V).astype(np.int64)
        Vn = self.numeric_codes_.size
        if Vn:
            npos = np.minimum(np.searchsorted(self.numeric_codes_, arrays.codes), Vn - 1)
            nhit = self.numeric_codes_[npos] == arrays.codes
            num = np.where(nhit, npos, -1).astype(np.int64)
        else:
            num = np.full(arrays.codes.size, -1, np.int64)
        return tok, num

    def transform(
        self,
        arrays: EventArrays,
        sid: np.ndarray,
        pt_ns: np.ndarray,
        sparse_output: bool,
        out: np.ndarray | None = None,
        out_rows: np.ndarray | None = None,
    ):
        """Return ``(counts, numeric, n_history, n_unknown)``.

        ``counts`` is (n_rows, n_count_features) sparse CSR or dense float64;
        ``numeric`` is dense (n_rows, n_numeric); ``n_history`` counts events up to
        each row's prediction time; ``n_unknown`` the out-of-vocabulary events.
        Dense: both are written into ``out`` (n_count_features + n_numeric
        columns; zeros, C-contiguous; allocated when None), at rows
        ``out_rows`` (default: row ``i`` of ``sid`` at row ``i``), and returned
        as views of it (without ``out_rows``) or None (with it).
        """
        m = sid.size
        V1 = self.vocabulary_.size + 1
        if not sparse_output:
            if out is None:
                out = np.zeros((m, len(self.windows) * V1 + self.numeric_codes_.size))
            flat = out.reshape(-1)  # a view: ``out`` is C-contiguous
            n_col = out.shape[1]
            at = np.arange(m, dtype=np.int64) if out_rows is None else np.asarray(out_rows)
        tok_of_code, num_of_code = self._maps(arrays)
        k, end = arrays.locate(sid, pt_ns)
        first = np.where(k >= 0, arrays.starts[np.maximum(k, 0)], 0)
        blocks = []
        n_unknown = 0
        history = None
        for w, (_label, width) in enumerate(self.windows):
            if width is None:
                start = first
            else:
                # Window (pt - width, pt]: events strictly after pt - width.
                lo = pt_ns - width
                _, start = arrays.locate(sid, lo)
                start = np.maximum(start, first)
            rows, idx, lengths = expand_ranges(start, end)
            cid = arrays.code_ids[idx]
            tok = tok_of_code[cid]
            if width is None:
                n_unknown = int(np.count_nonzero(tok == V1 - 1))
                history = rows, idx, cid  # all history: the numeric values reuse it
            if sparse_output:
                indptr = np.zeros(m + 1, np.int64)
                np.cumsum(lengths, out=indptr[1:])
                block = sp.csr_matrix((np.ones(tok.size, np.float64), tok, indptr), shape=(m, V1))
                block.sum_duplicates()
                blocks.append(block)
            else:
                # Adds only where events are, into the zeroed output: no (rows x codes)
                # temporary per window.
                np.add.at(flat, at[rows] * n_col + (w * V1 + tok), 1.0)
        if sparse_output:
            counts = sp.hstack(blocks, format="csr")
        else:
            counts = out[:, : len(self.windows) * V1]
        n_history = end - first
        Vn = self.numeric_codes_.size
        numeric = np.zeros((m, Vn))
        if Vn:
            if history is None:
                rows, idx, _ = expand_ranges(first, end)
                history = rows, idx, arrays.code_ids[idx]
            rows, idx, cid = history
            j = num_of_code[cid]
            vals = arrays.numeric_value[idx]
            ok = (j >= 0) & ~np.isnan(vals)
            flat = rows[ok] * Vn + j[ok]
            last = np.full(m * Vn, -1, np.int64)
            # Events of a row are in time order, so the largest index is the last value.
            np.maximum.at(last, flat, idx[ok])
            seen = last >= 0
            numeric = np.broadcast_to(self.numeric_fill_, (m, Vn)).ravel().copy()
            numeric[seen] = arrays.numeric_value[last[seen]]
            numeric = numeric.reshape(m, Vn)
        if not sparse_output:
            n_counts = len(self.windows) * V1
            if out_rows is not None:
                out[out_rows, n_counts:] = numeric
                return None, None, n_history, n_unknown
            out[:, n_counts:] = numeric
            numeric = out[:, n_counts:]
        return counts, numeric, n_history, n_unknown
