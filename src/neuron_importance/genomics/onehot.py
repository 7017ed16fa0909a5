"""One-hot encoding of DNA for ``Conv1d`` models, and a small FASTA reader.

Layout: channels first, ``(N, 4, L)`` with channel order A, C, G, T, which is what
``nn.Conv1d`` expects (the DeepLIFT reference code uses ``(N, L, 4)``). ``N`` (unknown base) is
an all-zero column: it contributes nothing to a first-layer convolution on its own, and its
difference from a non-zero reference is still attributed (see ``docs/methods/deeplift.md`` §8).
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

#: Channel order of every one-hot tensor in this package.
BASES = "ACGT"

# Byte -> channel (0..3), 4 for N (all-zero column), -1 for anything else. Upper and lower case
# are both accepted because soft-masked genomes use lower case for repeats.
_LOOKUP = np.full(256, -1, dtype=np.int64)
for _i, _b in enumerate(BASES):
    _LOOKUP[ord(_b)] = _i
    _LOOKUP[ord(_b.lower())] = _i
_LOOKUP[ord("N")] = _LOOKUP[ord("n")] = 4
# Identity plus an all-zero row for N; indexing it with the codes gives (L, 4).
_EYE_N = np.vstack([np.eye(4, dtype=np.float32), np.zeros((1, 4), dtype=np.float32)])


def _codes(seq: str, index: int) -> np.ndarray:
    if not isinstance(seq, str):
        raise TypeError(f"sequence {index} is a {type(seq).__name__}, not a str")
    if not seq.isascii():
        pos = next(i for i, ch in enumerate(seq) if not ch.isascii())
        raise ValueError(
            f"sequence {index}: invalid character {seq[pos]!r} at position {pos} "
            f"(allowed: A, C, G, T, N in either case)"
        )
    codes = _LOOKUP[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]
    bad = np.flatnonzero(codes < 0)
    if bad.size:
        pos = int(bad[0])
        raise ValueError(
            f"sequence {index}: invalid character {seq[pos]!r} at position {pos} "
            f"(allowed: A, C, G, T, N in either case)"
        )
    return codes


def one_hot_encode(seqs: Sequence[str] | str) -> Tensor:
    """One-hot encode DNA sequences as float32 ``(N, 4, L)``, channels A, C, G, T.

    ``x[n, b, j] = 1`` if base ``b`` is at position ``j`` of sequence ``n``; ``N``/``n`` gives an
    all-zero column; lower case is accepted. A single string gives ``N = 1``.

    Raises:
        ValueError: an empty list, sequences of unequal length (naming the first offender),
            or a character other than ACGTN (naming the sequence index, position, character).
    """
    if isinstance(seqs, str):
        seqs = [seqs]
    seqs = list(seqs)
    if not seqs:
        raise ValueError("one_hot_encode got no sequences")
    codes = [_codes(s, i) for i, s in enumerate(seqs)]
    length = len(codes[0])
    for i, c in enumerate(codes):
        if len(c) != length:
            raise ValueError(
                f"sequence {i} has length {len(c)} but sequence 0 has length {length}; all "
                "sequences must have the same length (pad with N to batch them)"
            )
    stacked = np.stack(codes)  # (N, L)
    onehot = _EYE_N[stacked]  # (N, L, 4)
    return torch.from_numpy(np.ascontiguousarray(onehot.transpose(0, 2, 1)))


def decode_one_hot(onehot: Tensor) -> str:
    """Inverse of :func:`one_hot_encode` for one sequence ``(4, L)``; all-zero columns give N.

    Raises:
        ValueError: the wrong shape, or a column that is neither one-hot nor all zero (e.g. a
            probability reference), naming the first such position.
    """
    if onehot.dim() != 2 or onehot.shape[0] != 4:
        raise ValueError(
            f"decode_one_hot expects one sequence of shape (4, L), got {tuple(onehot.shape)}"
        )
    arr = onehot.detach().cpu().numpy()
    is_binary = (arr == 0) | (arr == 1)
    col_sum = arr.sum(axis=0)
    bad = np.flatnonzero(~is_binary.all(axis=0) | (col_sum > 1))
    if bad.size:
        j = int(bad[0])
        raise ValueError(
            f"column {j} is not one-hot: {arr[:, j].tolist()} (expected a single 1 or all zeros)"
        )
    idx = np.where(col_sum == 0, 4, arr.argmax(axis=0))
    return "".join(np.array(list(BASES + "N"))[idx])


def read_fasta(path: str | Path) -> list[tuple[str, str]]:
    """Read a FASTA file (optionally gzipped) as ``[(header, sequence), ...]``.

    The header is the text after ``>`` with surrounding whitespace removed; sequence lines are
    concatenated with whitespace removed (records may span many lines). Blank lines and ``;``
    comment lines are skipped. Characters are not validated here (:func:`one_hot_encode` does).

    Raises:
        ValueError: the file is binary, empty, or has sequence text before the first ``>``.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a FASTA file (not text: {err})") from None
    records: list[tuple[str, list[str]]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            records.append((line[1:].strip(), []))
        elif not records:
            raise ValueError(
                f"{path} is not a FASTA file: line {lineno} ({line[:40]!r}) comes before any "
                "'>' header line"
            )
        else:
            records[-1][1].append("".join(line.split()))
    if not records:
        raise ValueError(f"{path} is not a FASTA file: it has no '>' header lines")
    return [(name, "".join(parts)) for name, parts in records]
