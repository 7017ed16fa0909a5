"""UCI banknote authentication (dataset 267): four wavelet features and a 0/1 class.

Layout expected (see ``shared/data/banknote/README.md`` and
``docs/methods/flexible-activations.md`` §6)::

    <data_dir>/data_banknote_authentication.txt   comma-separated, no header, 1372 rows:
                                                  variance, skewness, curtosis, entropy, class

``data_dir`` may also be the shared data folder that holds ``banknote/``, or the file itself.

**Duplicates.** 24 rows of the file repeat an earlier row exactly (features *and* class), so a
random split can put the same row in the training and the test fold. :func:`load_banknote`
therefore de-duplicates by default: it keeps the **first occurrence** of every distinct row, in
file order (1348 rows: class 0: 762 − d₀, class 1: 610 − d₁), and records how many rows it
dropped and which (0-based file line indices) in :attr:`Banknote.duplicate_rows`. Pass
``deduplicate=False`` for the raw 1372 rows. UCI does not say which class is "genuine", so the
labels are called class 0 / class 1 throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .paths import DATA_ENV_VAR, data_search_locations, default_data_dir

__all__ = [
    "FEATURES",
    "FILE_NAME",
    "SUBDIR",
    "Banknote",
    "BanknoteFormatError",
    "find_banknote_file",
    "load_banknote",
]

SUBDIR = "banknote"
FILE_NAME = "data_banknote_authentication.txt"
#: column names of the four features, in file order
FEATURES = ("variance", "skewness", "curtosis", "entropy")


class BanknoteFormatError(ValueError):
    """The banknote file is malformed (the message names the file and the problem)."""


@dataclass(frozen=True)
class Banknote:
    """The loaded data set.

    Attributes:
        x: ``(N, 4)`` float64 features in :data:`FEATURES` order.
        y: ``(N,)`` int64 labels in {0, 1}.
        path: the file read.
        n_raw: rows in the file (1372 for the UCI file).
        duplicate_rows: 0-based file row indices dropped as exact repeats of an earlier row
            (empty when ``deduplicate=False``).
        feature_names: :data:`FEATURES`.
    """

    x: np.ndarray
    y: np.ndarray
    path: Path
    n_raw: int
    duplicate_rows: tuple[int, ...] = ()
    feature_names: tuple[str, ...] = field(default=FEATURES)

    @property
    def n_duplicates(self) -> int:
        return len(self.duplicate_rows)

    @property
    def class_counts(self) -> dict[int, int]:
        return {int(c): int((self.y == c).sum()) for c in (0, 1)}


def find_banknote_file(data_dir: str | Path | None = None) -> Path:
    """The path of ``data_banknote_authentication.txt``; raises ``FileNotFoundError`` saying
    where it looked and how to point the tool at the file."""
    hint = (f"pass --data-dir /path/to/{SUBDIR} (or the shared data folder holding {SUBDIR}/), "
            f"or set {DATA_ENV_VAR}=/path/to/shared/data")
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        candidates = [d] if d.is_file() else [d / FILE_NAME, d / SUBDIR / FILE_NAME]
    else:
        root = default_data_dir()
        bases = [root] if root is not None else data_search_locations()
        candidates = [b / SUBDIR / FILE_NAME for b in bases]
    for c in candidates:
        if c.is_file():
            return c
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"banknote data not found (looked for {looked}); {hint}")


def load_banknote(data_dir: str | Path | None = None, deduplicate: bool = True) -> Banknote:
    """Read the UCI banknote file; by default drop exact duplicate rows (first occurrence kept).

    Raises:
        FileNotFoundError: no file (see :func:`find_banknote_file`).
        BanknoteFormatError: not 5 numeric comma-separated columns, NaN values, or labels
            other than 0/1.
    """
    path = find_banknote_file(data_dir)
    try:
        raw = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise BanknoteFormatError(f"{path}: not a comma-separated numeric table ({e})") from e
    if raw.shape[0] == 0 or raw.shape[1] != 5:
        raise BanknoteFormatError(f"{path}: expected 5 columns (4 features + class), got "
                                  f"shape {raw.shape}")
    if np.isnan(raw).any():
        raise BanknoteFormatError(f"{path}: contains NaN values")
    if not np.isin(raw[:, 4], (0.0, 1.0)).all():
        raise BanknoteFormatError(f"{path}: the class column must hold 0 or 1")
    n_raw = raw.shape[0]
    dropped: tuple[int, ...] = ()
    if deduplicate:
        _, first = np.unique(raw, axis=0, return_index=True)
        keep = np.sort(first)
        dropped = tuple(int(i) for i in np.setdiff1d(np.arange(n_raw), keep))
        raw = raw[keep]
    return Banknote(x=np.ascontiguousarray(raw[:, :4]), y=raw[:, 4].astype(np.int64), path=path,
                    n_raw=n_raw, duplicate_rows=dropped)
