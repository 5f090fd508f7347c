"""Scores of training examples: loss, hybrid, random; normalisation, Spearman, AUROC; score files.

All functions take and return numpy arrays [N] (float64). Conventions:
- `percentile_rank`: average rank / N, in (0, 1]; ties share their mean rank.
- `hybrid`: the mean of the percentile ranks of its inputs (the paper site's TracIn + metadata
  hybrid; not in the released code).
- `min_max` matches the released code: (s - min) / (max - min + 1e-10).
- Score files `runs/scores/<name>.npz` hold one array per score, `token` [N] and a JSON string
  `metadata`; they are written atomically. A file that cannot be read (truncated, not an .npz,
  pickled objects) raises `ScoreFileError`, one line naming the file.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import scipy.stats

from gf_jax import atomic
from gf_jax.data.schema import DataError
from valuation import grads
from valuation.grads import DEFAULT_CHUNK, Data, LossFn, Params

METADATA_KEY = "_metadata"


class ScoreFileError(DataError):
    """A score file that cannot be used; the message is one line starting with the file's path."""


def loss_scores(
    loss_fn: LossFn,
    params: Params,
    train: Data,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    dropout_key: jax.Array | None = None,
    mesh: Any = None,
) -> np.ndarray:
    """Per-example training loss at `params` (the final reference checkpoint), float64 [N].

    High = hard; the released "loss SPL" baseline min-max normalises it and feeds the sampler.
    """
    return grads.per_example_losses(
        loss_fn, params, train, chunk_size=chunk_size, dropout_key=dropout_key, mesh=mesh
    )


def random_scores(n: int, seed: int = 0) -> np.ndarray:
    """Uniform [0, 1) scores: the control every method is compared with."""
    return np.random.default_rng([seed, 0x7A4D]).random(n)


def min_max(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, np.float64)
    return (s - s.min()) / (s.max() - s.min() + 1e-10)


def percentile_rank(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, np.float64)
    return scipy.stats.rankdata(s, method="average") / len(s)


def rank_normalise(s: np.ndarray) -> np.ndarray:
    """Ranks mapped to [0, 1] (lowest 0, highest 1; ties share their mean rank)."""
    s = np.asarray(s, np.float64)
    if len(s) < 2:
        return np.zeros(len(s))
    return (scipy.stats.rankdata(s, method="average") - 1.0) / (len(s) - 1.0)


def hybrid(*score_arrays: np.ndarray) -> np.ndarray:
    """Mean of the percentile ranks of the given scores (e.g. `hybrid(tracin, metadata)`)."""
    if not score_arrays:
        raise ValueError("hybrid needs at least one score")
    return np.mean([percentile_rank(s) for s in score_arrays], axis=0)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(scipy.stats.spearmanr(a, b).statistic)


def spearman_matrix(named: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """(names, the symmetric matrix of Spearman rho between every pair of scores, one row and
    column per name)."""
    names = list(named)
    rho = np.eye(len(names))
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            rho[i, j] = rho[j, i] = spearman(named[a], named[names[j]])
    return names, rho


def auroc(scores: np.ndarray, labels: np.ndarray, *, low_is_positive: bool = True) -> float:
    """Area under the ROC curve of detecting `labels` (True) from `scores`.

    With `low_is_positive` (default) a LOW score predicts the label, as for TracIn flagging
    harmful (corrupted) examples. Ties count one half (Mann-Whitney U).
    """
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = scipy.stats.rankdata(-s if low_is_positive else s, method="average")
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


# ----------------------------------------------------------------------------- score files


def save_scores(
    path: str | os.PathLike,
    named: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any],
    tokens: Sequence[str] | np.ndarray | None = None,
) -> Path:
    """Writes scores (name -> [N]) with `metadata` (JSON-serialisable) to an .npz, atomically."""
    lengths = {k: len(v) for k, v in named.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"scores have different lengths: {lengths}")
    reserved = {"token", METADATA_KEY} & set(named)
    if reserved:
        raise ValueError(f"score names {sorted(reserved)} are reserved")
    arrays = {k: np.asarray(v, np.float64) for k, v in named.items()}
    if tokens is not None:
        arrays["token"] = np.asarray(tokens, dtype=str)
    arrays[METADATA_KEY] = np.asarray(json.dumps(dict(metadata), sort_keys=True, default=_json))

    def write(f: Any) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        f.write(buf.getvalue())

    return atomic.write_bytes(path, write)


def load_scores(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(name -> scores, metadata) of a file written by `save_scores` (tokens under `token`).

    A missing file raises FileNotFoundError; any other unreadable file `ScoreFileError`.
    """
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with z:
            named = {k: z[k] for k in z.files if k != METADATA_KEY}
            metadata = json.loads(str(z[METADATA_KEY])) if METADATA_KEY in z.files else {}
    except FileNotFoundError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        # Truncated or partial copies surface as BadZipFile/EOFError; pickles as ValueError.
        reason = " ".join(str(e).split()) or type(e).__name__
        if "pickle" in reason or "Object arrays" in reason:
            reason = "it holds pickled objects, which are refused"
        raise ScoreFileError(f"{path}: unreadable score file ({reason})") from None
    if not isinstance(metadata, dict):
        raise ScoreFileError(f"{path}: unreadable score file (its metadata is not a JSON object)")
    return named, metadata


def _json(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)
