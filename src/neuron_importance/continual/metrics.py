"""Continual-learning metrics from the accuracy matrix.

``R[i][j]`` is the test accuracy on the j-th task *of the training order* after training the
i-th (0-based here; the formulas below are the 1-based ones of
``../shared/docs/methods/continual-learning.md`` §5)::

    ACC  = (1/T) Σ_i R_{T,i}                                   (Lopez-Paz & Ranzato 2017)
    BWT  = 1/(T−1) Σ_{i<T} (R_{T,i} − R_{i,i})                 (negative = forgetting)
    FWT  = 1/(T−1) Σ_{i≥2} (R_{i−1,i} − b̄_i)                   (b̄: accuracy at initialisation)
    f_j  = max_{l<T} R_{l,j} − R_{T,j};  F = 1/(T−1) Σ_{j<T} f_j (Chaudhry et al. 2018)
    I_k  = R*_k − R_{k,k}                                      (intransigence vs a reference)

:func:`learned_and_final` regroups the diagonal and the last row by task identity, so runs
over different task orders can be averaged per task: how well each task is learned (R_{i,i})
and how much of it is left at the end (R_{T,i}).

BWT and FWT are averaged over T−1 entries, not T as in the official GEM code (which scales them
by (T−1)/T). Forgetting takes the maximum over the history, unlike Avalanche's
``forgetting_metrics`` (accuracy right after training minus final accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["average_accuracy", "backward_transfer", "forgetting", "forward_transfer",
           "intransigence", "learned_and_final", "summarise"]


def _matrix(r: Sequence[Sequence[float]]) -> np.ndarray:
    m = np.asarray(r, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"the accuracy matrix must be square T x T with T >= 1, got {m.shape}")
    return m


def average_accuracy(r: Sequence[Sequence[float]]) -> float:
    m = _matrix(r)
    return float(m[-1].mean())


def backward_transfer(r: Sequence[Sequence[float]]) -> float:
    m = _matrix(r)
    t = m.shape[0]
    if t < 2:
        return 0.0
    return float(np.mean([m[-1, i] - m[i, i] for i in range(t - 1)]))


def forward_transfer(r: Sequence[Sequence[float]], b: Sequence[float]) -> float:
    m = _matrix(r)
    t = m.shape[0]
    if len(b) != t:
        raise ValueError(f"need one initial accuracy per task ({t}), got {len(b)}")
    if t < 2:
        return 0.0
    return float(np.mean([m[i - 1, i] - b[i] for i in range(1, t)]))


def forgetting(r: Sequence[Sequence[float]]) -> float:
    m = _matrix(r)
    t = m.shape[0]
    if t < 2:
        return 0.0
    return float(np.mean([m[:-1, j].max() - m[-1, j] for j in range(t - 1)]))


def intransigence(r: Sequence[Sequence[float]], reference: Sequence[float]) -> list[float]:
    m = _matrix(r)
    if len(reference) != m.shape[0]:
        raise ValueError(f"need one reference accuracy per task ({m.shape[0]}), got "
                         f"{len(reference)}")
    return [float(reference[k] - m[k, k]) for k in range(m.shape[0])]


def learned_and_final(r: Sequence[Sequence[float]],
                      order: Sequence[int]) -> dict[int, tuple[float, float]]:
    """Per task identity ``order[i]``: (R_{i,i}, R_{T,i}), its accuracy right after it was
    trained and at the end of the sequence; their difference is the task's own forgetting
    (Avalanche's definition, which ignores peaks before the end of its own training)."""
    m = _matrix(r)
    ids = [int(t) for t in order]
    if len(ids) != m.shape[0] or len(set(ids)) != len(ids):
        raise ValueError(f"order must name each of the matrix's {m.shape[0]} tasks once, "
                         f"got {list(order)}")
    return {t: (float(m[i, i]), float(m[-1, i])) for i, t in enumerate(ids)}


def summarise(r: Sequence[Sequence[float]], b: Sequence[float] | None = None) -> dict:
    """ACC, BWT, forgetting (and FWT when the initial accuracies ``b`` are given)."""
    out = {"acc": average_accuracy(r), "bwt": backward_transfer(r), "forgetting": forgetting(r)}
    if b is not None:
        out["fwt"] = forward_transfer(r, b)
    return out
