"""Data sources read a slice of examples at a time, so memory never grows with the data set.

Every source has ``n`` examples of one shape ``example_shape`` and returns float32 batches
``read(start, stop) -> Tensor`` of shape ``(stop - start, *example_shape)``:

* ``.npy``: memory-mapped (``np.load(mmap_mode="r")``); only the rows asked for are read, and
  the pages of rows already read are handed back to the OS so the resident size stays flat.
* ``.npz``: the member (``key``, default the first) must be *stored* (``np.savez``), which
  is then memory-mapped at its offset inside the zip file exactly like a ``.npy``. Members of
  ``np.savez_compressed`` files cannot be memory-mapped (reading row ``i`` means inflating
  everything before it) and are refused with a message saying how to convert them.
* a folder of images (PNG, JPEG, ...; sorted by name): decoded one batch at a time, pixels
  scaled to [0, 1]. ``image_mode="auto"`` decides from the first image (1 channel if it is
  grey, else RGB); pass ``"L"`` or ``"RGB"`` to fix it.
* FASTA (``.fa``/``.fasta``/``.fna``/``.fas``, not gzipped): one pass over the file records
  the byte offset of each record and validates every character (A, C, G, T, N in either
  case); batches are then read by seeking to their first record and one-hot encoded on the
  fly as ``(N, 4, L)``. All records must have the same length. ``N`` is an all-zero column by
  default (``n_mode="zero"``: it contributes nothing to a first-layer convolution, as in
  :func:`neuron_importance.genomics.onehot.one_hot_encode`) or ``0.25`` in each channel with
  ``n_mode="uniform"`` (the expected one-hot column under a uniform base distribution). The
  index costs 8 bytes per record.
* any ``torch.utils.data.Dataset`` (API only): ``dataset[i]`` is a tensor/array, or a tuple
  or list whose first element is the input (labels are ignored).
* an in-memory ``numpy`` array or ``torch`` tensor (API only).
"""

from __future__ import annotations

import mmap
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..cli.explain import FASTA_SUFFIXES, IMAGE_SUFFIXES, _load_images, is_onehot_dna
from . import hashing

__all__ = [
    "ArraySource",
    "DatasetSource",
    "FastaSource",
    "ImageFolderSource",
    "Source",
    "open_source",
]

N_MODES = ("zero", "uniform")
#: value of each channel at an ``N`` with ``n_mode="uniform"``
UNIFORM_N = 0.25
_VALID_BASES = b"ACGTNacgtn"
#: bytes before a batch's rows whose mapped pages are dropped too (see ArraySource._release)
_RELEASE_BACK = 1 << 20
#: rows looked at to decide whether an array holds one-hot DNA
_DNA_SNIFF_ROWS = 64


@dataclass
class Source:
    """A sequence of ``n`` examples of shape ``example_shape`` (see the module docstring)."""

    n: int
    example_shape: tuple[int, ...]
    kind: str  # "dna", "image" or "array"
    info: dict[str, Any] = field(default_factory=dict)  # recorded in the manifest
    fingerprint: str = ""  # data hash (see hashing)

    def read(self, start: int, stop: int) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release file handles (sources are also usable without calling it)."""


# ----------------------------------------------------------------------------- arrays


class ArraySource(Source):
    """Rows of an array (memory-mapped file, in-memory array or tensor)."""

    def __init__(
        self, arr: Any, what: str, info: dict[str, Any], fingerprint: str, limit: int | None
    ) -> None:
        if isinstance(arr, Tensor):
            arr = arr.detach().cpu().numpy()
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
        ):
            raise ValueError(f"{what} holds {arr.dtype} values, not numbers")
        if arr.ndim == 0:
            raise ValueError(f"{what} is a scalar; inputs must be batch-first arrays")
        n = arr.shape[0] if limit is None else min(arr.shape[0], limit)
        if n == 0:
            raise ValueError(f"{what} holds no examples")
        sample = torch.from_numpy(np.array(arr[: min(n, _DNA_SNIFF_ROWS)], dtype=np.float32))
        kind = "dna" if is_onehot_dna(sample) else ("image" if arr.ndim == 4 else "array")
        super().__init__(n, tuple(int(d) for d in arr.shape[1:]), kind, info, fingerprint)
        self._arr = arr
        self._what = what

    def read(self, start: int, stop: int) -> Tensor:
        rows = np.array(self._arr[start:stop], dtype=np.float32)  # a copy, detached from the map
        self._release(start, stop)
        return torch.from_numpy(rows)

    def _release(self, start: int, stop: int) -> None:
        """Drop the mapped pages of rows ``[start, stop)`` from this process's resident set.

        They stay in the OS page cache, so re-reading them is cheap; without this the resident
        size of a process streaming a memory-mapped file grows to the size of the file.
        """
        arr = self._arr
        mm = getattr(arr, "_mmap", None)
        if mm is None or not hasattr(mm, "madvise") or not arr.flags.c_contiguous:
            return
        row = arr.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64))
        # np.memmap maps from the offset rounded down to the allocation granularity
        base = arr.offset % mmap.ALLOCATIONGRANULARITY
        # The kernel maps pages around a faulting one ("fault-around", 64 KiB by default),
        # including pages *before* it that an earlier call already dropped; reach back far
        # enough to drop those again.
        lo = max(0, base + start * row - _RELEASE_BACK)
        hi = base + stop * row
        lo -= lo % mmap.PAGESIZE
        try:
            mm.madvise(mmap.MADV_DONTNEED, lo, max(0, min(hi, len(mm)) - lo))
        except (OSError, ValueError, AttributeError):
            pass  # best effort: only the resident size is at stake, never the data


def _open_npy(path: Path, key: str | None, limit: int | None) -> ArraySource:
    if key is not None:
        raise ValueError("--key applies to .npz files only")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    info = {"source": "npy", "path": str(path.resolve())}
    return ArraySource(arr, str(path), info, hashing.file_hash(path), limit)


def _open_npz(path: Path, key: str | None, limit: int | None) -> ArraySource:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    with zf:
        members = [n for n in zf.namelist() if n.endswith(".npy")]
        names = [n[: -len(".npy")] for n in members]
        if not names:
            raise ValueError(f"{path} holds no arrays")
        if key is None:
            key = names[0]
        elif key not in names:
            raise ValueError(f"{path} has no array {key!r}; it holds {', '.join(names)}")
        member = zf.getinfo(key + ".npy")
    if member.compress_type != zipfile.ZIP_STORED:
        raise ValueError(
            f"array {key!r} of {path} is compressed (np.savez_compressed); compressed members "
            "cannot be memory-mapped, so reading them would load the whole array. Save it "
            "with np.save (.npy) or np.savez (uncompressed .npz)"
        )
    with open(path, "rb") as fh:
        # The member's data follows its local file header, whose extra field may differ from
        # the central directory's copy (zip64), so read the local header's lengths.
        fh.seek(member.header_offset)
        local = fh.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise ValueError(f"cannot read array {key!r} of {path}: bad zip local header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        fh.seek(member.header_offset + 30 + name_len + extra_len)
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        except ValueError as err:
            raise ValueError(f"cannot read array {key!r} of {path}: {err}") from None
        offset = fh.tell()
    if dtype.hasobject:
        raise ValueError(f"array {key!r} of {path} holds Python objects, not numbers")
    arr = np.memmap(
        path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
    )
    info = {"source": "npz", "path": str(path.resolve()), "key": key}
    return ArraySource(arr, f"array {key!r} of {path}", info, hashing.file_hash(path), limit)


# ----------------------------------------------------------------------------- images


class ImageFolderSource(Source):
    """The images of a folder, sorted by file name, decoded one batch at a time."""

    def __init__(self, folder: Path, image_mode: str, limit: int | None) -> None:
        if image_mode not in ("auto", "L", "RGB"):
            raise ValueError(f"image_mode must be auto, L or RGB, got {image_mode!r}")
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise ValueError(
                f"{folder} is a folder without images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        files = files[:limit]
        first = _load_images(files[:1], "RGB")
        if image_mode == "auto":
            grey = bool((first[:, 0] == first[:, 1]).all() and (first[:, 1] == first[:, 2]).all())
            image_mode = "L" if grey else "RGB"
        shape = _load_images(files[:1], image_mode).shape[1:]
        info = {"source": "images", "path": str(folder.resolve()), "image_mode": image_mode}
        super().__init__(len(files), tuple(shape), "image", info, hashing.folder_hash(files))
        self._files = files
        self._mode = image_mode

    def read(self, start: int, stop: int) -> Tensor:
        files = self._files[start:stop]
        x = _load_images(files, self._mode)
        if tuple(x.shape[1:]) != self.example_shape:
            h, w = self.example_shape[1:]
            raise ValueError(
                f"{files[0].parent}: the images {files[0].name} .. {files[-1].name} are "
                f"{x.shape[3]}x{x.shape[2]} but the first image is {w}x{h}; resize them to one "
                "size"
            )
        return x


# ----------------------------------------------------------------------------- FASTA


def is_fasta(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in FASTA_SUFFIXES


class FastaSource(Source):
    """One-hot ``(N, 4, L)`` DNA from a FASTA file, indexed once and read by seeking."""

    def __init__(self, path: Path, n_mode: str, limit: int | None) -> None:
        if n_mode not in N_MODES:
            raise ValueError(f"n_mode must be one of {', '.join(N_MODES)}, got {n_mode!r}")
        with open(path, "rb") as fh:
            if fh.read(2) == b"\x1f\x8b":
                raise ValueError(
                    f"{path} is gzip-compressed; a compressed file cannot be read from the "
                    "middle, so decompress it first (gunzip -k)"
                )
        offsets, length = self._index(path, limit)
        info = {"source": "fasta", "path": str(path.resolve()), "n_mode": n_mode}
        super().__init__(len(offsets), (4, length), "dna", info, hashing.file_hash(path))
        self._path = path
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._end = self._record_end(path, limit, self._offsets)
        self._n_mode = n_mode

    @staticmethod
    def _index(path: Path, limit: int | None) -> tuple[list[int], int]:
        """Byte offsets of the records' ``>`` lines and the common sequence length.

        Checks every sequence character and the lengths while streaming, so errors name the
        record, the line and the column.
        """
        offsets: list[int] = []
        length: int | None = None
        first_name = ""
        name = ""
        name_line = 0
        cur = 0
        pos = 0

        def finish() -> None:
            nonlocal length, first_name
            if cur == 0:
                raise ValueError(f"{path}: record {name!r} (line {name_line}) has no sequence")
            if length is None:
                length, first_name = cur, name
            elif cur != length:
                raise ValueError(
                    f"{path}: record {name!r} (line {name_line}) has length {cur} but record "
                    f"{first_name!r} has length {length}; all sequences must have the same "
                    "length (pad with N)"
                )

        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                start = pos
                pos += len(raw)
                line = raw.strip()
                if not line or line.startswith(b";"):
                    continue
                if line.startswith(b">"):
                    if offsets:
                        finish()
                    if limit is not None and len(offsets) >= limit:
                        return offsets, int(length or 0)
                    offsets.append(start)
                    name = line[1:].strip().decode("utf-8", errors="replace")
                    name_line, cur = lineno, 0
                    continue
                if not offsets:
                    raise ValueError(
                        f"{path} is not a FASTA file: line {lineno} "
                        f"({line[:40].decode('utf-8', errors='replace')!r}) comes before any "
                        "'>' header line"
                    )
                if b" " in line or b"\t" in line:
                    line = b"".join(line.split())
                bad = line.translate(None, _VALID_BASES)
                if bad:
                    col = next(i for i, b in enumerate(line) if b not in _VALID_BASES)
                    ch = raw.strip()[col : col + 1].decode("utf-8", errors="replace")
                    raise ValueError(
                        f"{path}: record {name!r}, line {lineno}, column {col + 1}: invalid "
                        f"character {ch!r} (allowed: A, C, G, T, N in either case; N is "
                        "read as an unknown base)"
                    )
                cur += len(line)
        if not offsets:
            raise ValueError(f"{path} is not a FASTA file: it has no '>' header lines")
        finish()
        return offsets, int(length or 0)

    @staticmethod
    def _record_end(path: Path, limit: int | None, offsets: np.ndarray) -> int:
        """Where the last indexed record's bytes end (the next record's start, or EOF)."""
        size = path.stat().st_size
        if limit is None:
            return size
        with open(path, "rb") as fh:
            fh.seek(int(offsets[-1]))
            fh.readline()
            pos = fh.tell()
            for raw in fh:
                if raw.startswith(b">"):
                    return pos
                pos += len(raw)
        return size

    def read(self, start: int, stop: int) -> Tensor:
        from ..genomics.onehot import one_hot_encode

        lo = int(self._offsets[start])
        hi = int(self._offsets[stop]) if stop < self.n else self._end
        with open(self._path, "rb") as fh:
            fh.seek(lo)
            blob = fh.read(hi - lo)
        seqs: list[list[bytes]] = []
        for line in blob.splitlines():
            line = line.strip()
            if not line or line.startswith(b";"):
                continue
            if line.startswith(b">"):
                seqs.append([])
            else:
                seqs[-1].append(b"".join(line.split()))
        x = one_hot_encode([b"".join(parts).decode("ascii") for parts in seqs])
        if self._n_mode == "uniform":
            x = fill_unknown_bases(x)
        return x


def fill_unknown_bases(x: Tensor) -> Tensor:
    """Set the all-zero (``N``) columns of one-hot ``(N, 4, L)`` DNA to 0.25 in every channel."""
    unknown = (x == 0).all(dim=1, keepdim=True)
    return torch.where(unknown, torch.full_like(x, UNIFORM_N), x)


# ----------------------------------------------------------------------------- datasets


class DatasetSource(Source):
    """Items of a map-style ``torch.utils.data.Dataset`` (or any object with len and [])."""

    def __init__(self, dataset: Any, fingerprint: str | None, limit: int | None) -> None:
        try:
            n = len(dataset)
        except TypeError:
            raise ValueError(
                f"the dataset ({type(dataset).__name__}) has no len(); attribute_dataset needs "
                "a map-style Dataset (iterable datasets cannot be split into chunks)"
            ) from None
        n = n if limit is None else min(n, limit)
        if n == 0:
            raise ValueError("the dataset holds no examples")
        self._dataset = dataset
        first = self._item(0)
        sample = torch.stack([self._item(i) for i in range(min(n, _DNA_SNIFF_ROWS))])
        kind = "dna" if is_onehot_dna(sample) else ("image" if first.dim() == 3 else "array")
        info = {"source": "dataset", "type": f"{type(dataset).__module__}.{type(dataset).__name__}"}
        if fingerprint is None:
            fingerprint = self._sampled_hash(n)
        super().__init__(n, tuple(first.shape), kind, info, fingerprint)

    def _item(self, i: int) -> Tensor:
        item = self._dataset[i]
        if isinstance(item, (tuple, list)):
            if not item:
                raise ValueError(f"dataset item {i} is empty")
            item = item[0]
        if isinstance(item, np.ndarray):
            item = torch.from_numpy(np.ascontiguousarray(item))
        if not isinstance(item, Tensor):
            raise ValueError(
                f"dataset item {i} is a {type(item).__name__}; expected a tensor or array (or a "
                "tuple whose first element is one)"
            )
        return item.detach().to(device="cpu", dtype=torch.float32)

    def _sampled_hash(self, n: int) -> str:
        # A data set may be too large (or too slow) to read twice; hash its length and up to
        # 64 items spread over it. Pass data_hash= to use your own identifier instead.
        import hashlib

        h = hashlib.sha256(f"n={n}\n".encode())
        for i in sorted({(n - 1) * k // 63 for k in range(64)}):
            h.update(self._item(i).numpy().tobytes())
        return "sha256-sampled:" + h.hexdigest()

    def read(self, start: int, stop: int) -> Tensor:
        items = [self._item(i) for i in range(start, stop)]
        for i, t in zip(range(start, stop), items):
            if tuple(t.shape) != self.example_shape:
                raise ValueError(
                    f"dataset item {i} has shape {tuple(t.shape)} but item 0 has "
                    f"{self.example_shape}; every item must have the same shape"
                )
        return torch.stack(items)


# ----------------------------------------------------------------------------- dispatch


def open_source(
    data: Any,
    key: str | None = None,
    image_mode: str = "auto",
    n_mode: str = "zero",
    limit: int | None = None,
    data_hash: str | None = None,
) -> Source:
    """Open ``data`` (a path, a Dataset, an array or a tensor) as a :class:`Source`."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    if isinstance(data, (np.ndarray, Tensor)):
        arr = data.detach().cpu().numpy() if isinstance(data, Tensor) else data
        info = {"source": "array"}
        return ArraySource(arr, "the array", info, data_hash or hashing.array_hash(arr), limit)
    if not isinstance(data, (str, os.PathLike)):
        if hasattr(data, "__getitem__"):
            return DatasetSource(data, data_hash, limit)
        raise ValueError(
            f"data must be a path, a Dataset, an array or a tensor, got {type(data).__name__}"
        )
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"data not found: {path}")
    if path.is_dir():
        src: Source = ImageFolderSource(path, image_mode, limit)
    elif is_fasta(path):
        src = FastaSource(path, n_mode, limit)
    elif path.suffix.lower() == ".npy":
        src = _open_npy(path, key, limit)
    elif path.suffix.lower() == ".npz":
        src = _open_npz(path, key, limit)
    else:
        raise ValueError(
            f"don't know how to read {path} as a data set: use .npy, .npz, a folder of images "
            f"or FASTA ({', '.join(sorted(FASTA_SUFFIXES))}); other data through the Python "
            "API (neuron_importance.batch.attribute_dataset with a Dataset)"
        )
    if data_hash is not None:
        src.fingerprint = data_hash
    if key is not None and not isinstance(src, ArraySource):
        raise ValueError("--key applies to .npz files only")
    if n_mode != "zero" and not isinstance(src, FastaSource):
        raise ValueError("the N mode (--n-mode) applies to FASTA inputs only")
    return src
