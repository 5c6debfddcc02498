"""A small CLMBR-style autoregressive transformer over MEDS code sequences.

Each event is a token: its code embedding plus a learned projection of its
time features (log days since the previous event and since the subject's
first event). A Hugging Face ``GPT2Model`` (built from a local config, never
downloaded) runs causally over ``[<bos>, e_1, ..., e_n]`` and is pretrained by
next-code prediction (output layer tied to the code embedding), as CLMBR
(Steinberg et al., 2021) does. The representation of a patient at time ``t``
is the hidden state of its last event with ``time <= t``.

Stored on disk as ``config.json`` + ``model.safetensors`` + ``vocabulary.json``
(no pickle).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..datasets._events import EventArrays
from ._ehr_counts import expand_ranges

__all__ = [
    "CodeTimeTransformer",
    "SPECIAL_TOKENS",
    "load_pretrained",
    "save_pretrained",
    "EventSequences",
]

SPECIAL_TOKENS = ("<pad>", "<bos>", "<unk>")
PAD, BOS, UNK = 0, 1, 2
N_TIME_FEATURES = 2
FORMAT = "multimodal_surv.ehr_transformer"
_NS_PER_DAY = 86_400 * 10**9
_MAX_DAYS = 150 * 365.25


class CodeTimeTransformer(nn.Module):
    """Causal transformer over (code, time) event tokens.

    Parameters
    ----------
    vocab_size : int
        Number of tokens, special tokens included.
    hidden_size, n_layers, n_heads : int
        Transformer width, depth and attention heads (``hidden_size`` must be
        divisible by ``n_heads``).
    max_length : int
        Longest token sequence (``<bos>`` included).
    dropout : float
        Dropout inside the transformer during pretraining.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        max_length: int = 128,
        dropout: float = 0.1,
    ):
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        if vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(
                f"vocab_size={vocab_size} leaves no code tokens; it must exceed "
                f"{len(SPECIAL_TOKENS)} (the special tokens)."
            )
        if hidden_size % n_heads:
            raise ValueError(
                f"hidden_size={hidden_size} is not divisible by n_heads={n_heads}; pick "
                "e.g. hidden_size=64 with n_heads=4."
            )
        self.hparams = {
            "vocab_size": int(vocab_size),
            "hidden_size": int(hidden_size),
            "n_layers": int(n_layers),
            "n_heads": int(n_heads),
            "max_length": int(max_length),
            "dropout": float(dropout),
        }
        config = GPT2Config(
            vocab_size=vocab_size,
            n_positions=max_length,
            n_embd=hidden_size,
            n_layer=n_layers,
            n_head=n_heads,
            n_inner=4 * hidden_size,
            resid_pdrop=dropout,
            embd_pdrop=dropout,
            attn_pdrop=dropout,
            bos_token_id=BOS,
            eos_token_id=None,
            pad_token_id=PAD,
        )
        config._attn_implementation = "eager"  # same kernel at train and inference time
        self.backbone = GPT2Model(config)
        self.time_projection = nn.Linear(N_TIME_FEATURES, hidden_size)
        nn.init.normal_(self.time_projection.weight, std=0.02)
        nn.init.zeros_(self.time_projection.bias)

    def forward(self, codes, time_features, attention_mask):
        """Hidden states, shape (batch, length, hidden_size)."""
        embeds = self.backbone.wte(codes) + self.time_projection(time_features)
        out = self.backbone(inputs_embeds=embeds, attention_mask=attention_mask)
        return out.last_hidden_state

    def logits(self, hidden):
        """Next-code logits from hidden states (output layer tied to the code embedding)."""
        return hidden @ self.backbone.wte.weight.T


def time_features(arrays: EventArrays) -> np.ndarray:
    """Per-event ``[log1p(days since previous event), log1p(days since first event)]``.

    Both use only the subject's past. Static (null-time) events get 0.
    """
    t = arrays.time
    if t.size == 0:
        return np.zeros((0, N_TIME_FEATURES), np.float32)
    counts = np.diff(arrays.starts)
    sub = np.repeat(np.arange(arrays.subjects.size), counts)
    t_eff = np.where(t < np.iinfo(np.int64).min // 2, np.nan, t.astype(np.float64))
    prev = np.empty_like(t_eff)
    prev[0] = np.nan
    prev[1:] = t_eff[:-1]
    prev[arrays.starts[:-1][counts > 0]] = np.nan  # first event of each subject
    nonempty = arrays.starts[:-1][counts > 0]
    first_real = np.full(arrays.subjects.size, np.nan)
    first_real[counts > 0] = np.fmin.reduceat(t_eff, nonempty)
    dprev = (t_eff - prev) / _NS_PER_DAY
    dfirst = (t_eff - first_real[sub]) / _NS_PER_DAY
    feats = np.nan_to_num(np.stack([dprev, dfirst], axis=1), nan=0.0)
    return np.log1p(np.clip(feats, 0.0, _MAX_DAYS)).astype(np.float32)


class EventSequences:
    """Token sequences ``[<bos>, events...]`` cut from sorted event arrays.

    Parameters
    ----------
    arrays : EventArrays
    token_of_code : ndarray of int64
        Token of each of ``arrays.codes``.
    """

    def __init__(self, arrays: EventArrays, token_of_code: np.ndarray):
        self.tokens = token_of_code[arrays.code_ids] if arrays.n_events else np.zeros(0, int)
        self.features = time_features(arrays)

    def batch(self, ev_start: np.ndarray, length: np.ndarray, has_bos: np.ndarray):
        """Right-padded batch. Sequence i is ``<bos>`` (when ``has_bos``) followed by
        events ``ev_start[i] : ev_start[i] + length[i] - has_bos[i]``."""
        width = int(length.max())
        pos = np.arange(width)[None, :]
        real = pos < length[:, None]
        idx = ev_start[:, None] + pos - has_bos[:, None].astype(np.int64)
        bos = has_bos[:, None] & (pos == 0)
        ev = real & ~bos
        idx_c = np.where(ev, idx, 0)
        # Without any event (e.g. a chunk of subjects with empty histories) index
        # one dummy row; it is masked out by ``ev`` anyway.
        tokens, features = self.tokens, self.features
        if not tokens.size:
            tokens, features = np.zeros(1, np.int64), np.zeros((1, N_TIME_FEATURES), np.float32)
        codes = np.where(ev, tokens[idx_c], PAD)
        codes[bos] = BOS
        feats = np.where(ev[..., None], features[idx_c], 0)
        return (
            torch.from_numpy(codes.astype(np.int64)),
            torch.from_numpy(feats.astype(np.float32)),
            torch.from_numpy(real.astype(np.int64)),
        )


def training_chunks(first: np.ndarray, end: np.ndarray, max_length: int):
    """Cut each history ``[<bos>] + events[first:end]`` into chunks of ``max_length``.

    Returns ``(ev_start, length, has_bos)`` per chunk; chunks of one token (no
    target) are dropped.
    """
    n_tok = end - first + 1  # with <bos>
    n_chunks = -(-n_tok // max_length)
    subj, j, _ = expand_ranges(np.zeros_like(n_chunks), n_chunks)
    j = j.astype(np.int64)
    tok_start = j * max_length  # position in the <bos>-prefixed sequence
    length = np.minimum(n_tok[subj] - tok_start, max_length)
    has_bos = tok_start == 0
    ev_start = first[subj] + np.maximum(tok_start - 1, 0)
    keep = length >= 2
    return ev_start[keep], length[keep], has_bos[keep]


def inference_windows(first: np.ndarray, end: np.ndarray, max_length: int):
    """``[<bos>] + the last (max_length - 1) events`` of each ``events[first:end]``."""
    n_ev = np.minimum(end - first, max_length - 1)
    return end - n_ev, n_ev + 1, np.ones(first.size, bool)


def save_pretrained(folder, model: CodeTimeTransformer, vocabulary, extra=None) -> None:
    """Write ``config.json``, ``model.safetensors`` and ``vocabulary.json``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT, "format_version": 1, **model.hparams, **(extra or {})}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    vocab = {"special_tokens": list(SPECIAL_TOKENS), "codes": [str(c) for c in vocabulary]}
    (folder / "vocabulary.json").write_text(json.dumps(vocab, indent=1))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": FORMAT})


def _femr_hint(config: dict, folder: Path) -> str | None:
    """Why a FEMR (CLMBR-T / MOTOR) checkpoint cannot be loaded here, or None."""
    text = json.dumps(config).lower()
    femr_like = (
        "femr" in text
        or "clmbr" in text
        or "motor" in text
        or "transformer_config" in config
        or (folder / "dictionary.msgpack").is_file()
    )
    if not femr_like:
        return None
    return (
        "it is a FEMR checkpoint (CLMBR-T / MOTOR: config.json with a transformer_config, "
        "weights, and a dictionary.msgpack tokenizer). Its architecture (RMSNorm, parallel "
        "attention + feed-forward, rotary embeddings over ages in days, local attention) "
        "could be rebuilt, but its inputs cannot be reproduced faithfully without femr: "
        "tokens come from femr's msgpack dictionary (OMOP codes, per-code numeric bins, "
        "text values; hierarchical models also need the Athena ontology), every sequence "
        "starts at a birth event, and time features follow femr's own normalisation - any "
        "deviation gives plausible but wrong embeddings with no error, and the gated "
        "weights cannot be checked here. Compute CLMBR embeddings with femr in its own "
        "environment (it pins meds==0.3.3, xformers, nptyping==2.4.1 ...) and pass them "
        "as 'ehr__' columns, or pretrain a model here with EHRTransformerEncoder "
        "and save_pretrained"
    )


def load_pretrained(folder):
    """Load ``(model, codes, config)`` written by :func:`save_pretrained`.

    Raises
    ------
    ValueError
        The folder does not hold a compatible model: missing files, another
        format (FEMR / CLMBR checkpoints are recognised and explained), or
        weights whose names or shapes do not match the configuration.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    fix = (
        "pass a folder written by EHRTransformerEncoder.save_pretrained (config.json, "
        "model.safetensors, vocabulary.json)"
    )
    if not folder.is_dir():
        raise ValueError(f"weights folder {str(folder)!r} does not exist; {fix}.")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        found = sorted(p.name for p in folder.iterdir())[:10]
        raise ValueError(
            f"weights folder {str(folder)!r} has no config.json (found: {found}); {fix}."
        )
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{cfg_path} is not valid JSON ({exc}); {fix}.") from exc
    if config.get("format") != FORMAT:
        hint = _femr_hint(config, folder)
        why = hint or (
            f"its config.json has format={config.get('format')!r} "
            f"(model_type={config.get('model_type')!r}), not {FORMAT!r}"
        )
        raise ValueError(
            f"weights folder {str(folder)!r} does not hold a compatible model: {why}; {fix}."
        )
    missing = [n for n in ("model.safetensors", "vocabulary.json") if not (folder / n).is_file()]
    if missing:
        raise ValueError(f"weights folder {str(folder)!r} lacks {missing}; {fix}.")
    vocab = json.loads((folder / "vocabulary.json").read_text())
    codes = np.asarray(vocab.get("codes", []), dtype=object)
    if list(vocab.get("special_tokens", [])) != list(SPECIAL_TOKENS):
        raise ValueError(
            f"{folder / 'vocabulary.json'} has special tokens "
            f"{vocab.get('special_tokens')!r}, expected {list(SPECIAL_TOKENS)}; {fix}."
        )
    keys = ("vocab_size", "hidden_size", "n_layers", "n_heads", "max_length", "dropout")
    absent = [k for k in keys if k not in config]
    if absent:
        raise ValueError(f"{cfg_path} lacks {absent}; {fix}.")
    if codes.size > 1 and not np.all(codes[1:] > codes[:-1]):
        raise ValueError(f"{folder / 'vocabulary.json'} codes are not sorted and unique; {fix}.")
    if config["vocab_size"] != codes.size + len(SPECIAL_TOKENS):
        raise ValueError(
            f"{cfg_path} says vocab_size={config['vocab_size']} but vocabulary.json lists "
            f"{codes.size} codes + {len(SPECIAL_TOKENS)} special tokens; {fix}."
        )
    model = CodeTimeTransformer(**{k: config[k] for k in keys})
    try:
        state = load_file(str(folder / "model.safetensors"))
    except (SafetensorError, OSError) as exc:
        raise ValueError(
            f"{folder / 'model.safetensors'} cannot be read as safetensors ({exc}); {fix}."
        ) from exc
    expected = model.state_dict()
    miss = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if miss or unexpected or shapes:
        raise ValueError(
            f"weights in {str(folder)!r} do not match config.json: missing keys "
            f"{miss[:5]}, unexpected keys {unexpected[:5]}, shape mismatches {shapes[:5]}; {fix}."
        )
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, codes, config


def unigram_perplexity(train_tokens: np.ndarray, test_tokens: np.ndarray, vocab_size: int):
    """Perplexity of a unigram model (add-one smoothed) fitted on ``train_tokens``."""
    counts = np.bincount(train_tokens, minlength=vocab_size).astype(np.float64) + 1.0
    counts[[PAD, BOS]] = 0.0
    p = counts / counts.sum()
    return float(math.exp(-np.log(p[test_tokens]).mean()))
