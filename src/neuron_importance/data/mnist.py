"""MNIST and Fashion-MNIST from the original IDX files.

Layout expected (see ``shared/data/mnist/README.md``)::

    <data_dir>/train-images-idx3-ubyte.gz   60000 x 28 x 28 uint8
    <data_dir>/train-labels-idx1-ubyte.gz   60000 uint8
    <data_dir>/t10k-images-idx3-ubyte.gz    10000 x 28 x 28 uint8
    <data_dir>/t10k-labels-idx1-ubyte.gz    10000 uint8

Uncompressed files (same names without ``.gz``) are accepted too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .idx import IDXFormatError, read_idx, read_idx_header
from .paths import DATA_ENV_VAR, data_search_locations, default_data_dir

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: sha256 of the gzip files in shared/data/mnist (from its README). Fashion-MNIST's README
#: gives no checksums, so those files are checked structurally only.
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    "train-labels-idx1-ubyte.gz": "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
    "t10k-images-idx3-ubyte.gz": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    "t10k-labels-idx1-ubyte.gz": "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

# (resolved path, size, mtime_ns) -> sha256 hex: each file is hashed at most once per process.
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


class ChecksumError(ValueError):
    """A data file's sha256 differs from the one its README records."""


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def _verify(path: Path) -> None:
    expected = MNIST_SHA256.get(path.name)
    if expected is None:
        return
    actual = _sha256(path)
    if actual != expected:
        raise ChecksumError(
            f"{path}: sha256 {actual} does not match the expected {expected} recorded in "
            "shared/data/mnist/README.md. The file is damaged or is a different copy; if it is a "
            "legitimately re-compressed MNIST, pass verify_checksum=False (its structure and "
            "sizes are still checked)."
        )


def _find(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{directory} has neither {stem}.gz nor {stem}")


def _resolve_dir(data_dir: str | Path | None, sub: str) -> Path:
    if data_dir is not None:
        directory = Path(data_dir).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(
                f"{sub} data directory {directory} does not exist (passed as data_dir)"
            )
        return directory
    root = default_data_dir()
    if root is None or not (root / sub).is_dir():
        looked = [str(p / sub) for p in data_search_locations()]
        raise FileNotFoundError(
            f"could not find the {sub} data; looked in: {', '.join(looked)}. Set the environment "
            f"variable {DATA_ENV_VAR} to the folder that contains '{sub}/' (e.g. "
            f"{DATA_ENV_VAR}=/path/to/shared/data), or pass data_dir= to the folder with the "
            "IDX files."
        )
    return root / sub


def load_mnist(
    split: str = "test",
    data_dir: str | Path | None = None,
    limit: int | None = None,
    fashion: bool = False,
    *,
    verify_checksum: bool = True,
) -> tuple[Tensor, Tensor]:
    """Load MNIST (or Fashion-MNIST) as ``(images, labels)``.

    Args:
        split: ``"train"`` (60000 examples) or ``"test"`` (10000, the ``t10k`` files).
        data_dir: the folder holding the IDX files; defaults to ``default_data_dir()/"mnist"``
            (``"fashion-mnist"`` when ``fashion``).
        limit: keep only the first ``limit`` examples (only those bytes are decompressed).
        fashion: load Fashion-MNIST instead of MNIST (class names in ``FASHION_MNIST_CLASSES``).
        verify_checksum: check MNIST ``.gz`` files against the README's sha256 (hashed once per
            file per process).

    Returns:
        images: float32 ``(N, 1, 28, 28)``, pixel / 255 so values lie in ``[0, 1]``;
        labels: int64 ``(N,)`` in ``0..9``.

    Raises:
        FileNotFoundError: the folder or a file is missing (the message says where it looked).
        IDXFormatError: a file is malformed; ChecksumError: a hash mismatch.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    directory = _resolve_dir(data_dir, "fashion-mnist" if fashion else "mnist")
    image_path, label_path = (_find(directory, stem) for stem in _FILES[split])
    if verify_checksum and not fashion:
        _verify(image_path)
        _verify(label_path)

    # Check the headers against each other before decompressing any pixels.
    _, image_shape = read_idx_header(image_path)
    _, label_shape = read_idx_header(label_path)
    if len(image_shape) != 3 or len(label_shape) != 1:
        raise IDXFormatError(
            f"expected images of 3 dimensions and labels of 1, got {image_shape} in "
            f"{image_path} and {label_shape} in {label_path}"
        )
    if image_shape[0] != label_shape[0]:
        raise IDXFormatError(
            f"{image_path} has {image_shape[0]} images but {label_path} has {label_shape[0]} labels"
        )

    images = read_idx(image_path, limit=limit)
    labels = read_idx(label_path, limit=limit)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise IDXFormatError(
            f"expected uint8 pixels and labels, got {images.dtype} and {labels.dtype}"
        )
    if labels.size and int(labels.max()) > 9:
        raise IDXFormatError(f"{label_path}: label {int(labels.max())} is outside 0..9")

    x = torch.from_numpy(images).unsqueeze(1).to(torch.float32).div_(255.0)
    y = torch.from_numpy(labels).to(torch.int64)
    return x, y
