"""Fingerprints that tie a result store to the model and the data it was computed from.

* **Model**: sha256 over the model's class name and its ``state_dict()`` in name order (each
  entry contributes its name, dtype, shape and raw bytes). Two models with the same
  architecture and weights hash alike wherever the file came from; retraining, a different
  weight file or a different architecture changes the hash.
* **Files**: the full sha256 of the file's bytes when it is at most :data:`FULL_HASH_LIMIT`
  bytes; above that, a *sampled* hash of its size and :data:`SAMPLE_BLOCKS` blocks of
  :data:`SAMPLE_BLOCK` bytes spread evenly from the first to the last byte (first and last
  block included). Sampling keeps reopening a 100 GB store instant; it catches a different
  file, a truncated or extended one and most edits, but not an edit that touches none of the
  sampled blocks. The modification time is never used, so a copied file keeps its hash.
* **Folders of images**: the sorted file names and sizes, plus the contents of every file
  when they total at most :data:`FULL_HASH_LIMIT` bytes, else of 64 files spread over them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: files up to this size are hashed in full
FULL_HASH_LIMIT = 256 * 2**20
SAMPLE_BLOCKS = 64
SAMPLE_BLOCK = 2**20


def model_hash(model: nn.Module) -> str:
    """sha256 of the model's class name and state dict (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    h.update(f"{type(model).__module__}.{type(model).__qualname__}\n".encode())
    state = model.state_dict()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        # via numpy where possible; bfloat16 and friends have no numpy dtype, view them as bytes
        # raw bytes (bfloat16 and friends have no numpy dtype, so view as bytes first)
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


def file_hash(path: str | os.PathLike) -> str:
    """``sha256:<hex>`` of the whole file, or ``sha256-sampled:<hex>`` for a large one."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
            return "sha256:" + h.hexdigest()
        h.update(f"size={size}\n".encode())
        last = size - SAMPLE_BLOCK
        for k in range(SAMPLE_BLOCKS):
            fh.seek(last * k // (SAMPLE_BLOCKS - 1))
            h.update(fh.read(SAMPLE_BLOCK))
    return "sha256-sampled:" + h.hexdigest()


def folder_hash(paths: Sequence[Path]) -> str:
    """Hash of a list of files (a folder of images), in the given order.

    Every file's name and size, plus the contents of every file when they total at most
    :data:`FULL_HASH_LIMIT` bytes, else of :data:`SAMPLE_BLOCKS` files spread over the list
    (first and last included; ``sha256-sampled:``).
    """
    sizes = [p.stat().st_size for p in paths]
    full = sum(sizes) <= FULL_HASH_LIMIT
    h = hashlib.sha256()
    for p, size in zip(paths, sizes):
        h.update(f"{p.name}\0{size}\n".encode())
    n = len(paths)
    chosen = range(n) if full else sorted({(n - 1) * k // (SAMPLE_BLOCKS - 1)
                                           for k in range(SAMPLE_BLOCKS)})
    for i in chosen:
        h.update(file_hash(paths[i]).encode())
    return ("sha256:" if full else "sha256-sampled:") + h.hexdigest()


def array_hash(arr: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and C-order bytes."""
    a = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{a.dtype.str}|{a.shape}\n".encode())
    h.update(a.tobytes())
    return "sha256:" + h.hexdigest()
