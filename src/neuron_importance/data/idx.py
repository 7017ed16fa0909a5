"""Reader (and a small writer) for the IDX format used by MNIST and Fashion-MNIST.

Format (LeCun, Cortes & Burges, http://yann.lecun.com/exdb/mnist/): a big-endian header

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    then d big-endian uint32 sizes, then prod(sizes) elements, big-endian, row-major.

Files may be gzip-compressed; that is detected from the gzip magic bytes (``1f 8b``), not from
the file name, so a renamed file still reads.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

# Element type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IDXFormatError(ValueError):
    """The file is not a well-formed IDX file (bad magic, unknown type, wrong size)."""


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head == _GZIP_MAGIC:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _read_exactly(fh: BinaryIO, n: int, path: Path, what: str) -> bytes:
    try:
        data = fh.read(n)
    except (EOFError, OSError, zlib.error) as err:
        # gzip raises EOFError for a truncated stream and BadGzipFile (an OSError) for junk.
        raise IDXFormatError(
            f"{path}: corrupt compressed data while reading {what}: {err}"
        ) from err
    if len(data) != n:
        raise IDXFormatError(
            f"{path}: file is too short: expected {n} bytes of {what}, got {len(data)} "
            "(truncated download?)"
        )
    return data


def read_idx_header(path: str | Path) -> tuple[np.dtype, tuple[int, ...]]:
    """Return ``(dtype, shape)`` from the header of an IDX file without reading the data."""
    path = Path(path)
    with _open(path) as fh:
        return _parse_header(fh, path)


def _parse_header(fh: BinaryIO, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    magic = _read_exactly(fh, 4, path, "the magic number")
    if magic[0] != 0 or magic[1] != 0:
        raise IDXFormatError(
            f"{path}: not an IDX file: the magic number must start with two zero bytes, "
            f"got {magic.hex(' ')}"
        )
    type_code, ndim = magic[2], magic[3]
    if type_code not in IDX_DTYPES:
        raise IDXFormatError(
            f"{path}: unknown IDX element type 0x{type_code:02X} (known: "
            + ", ".join(f"0x{c:02X}={d.name}" for c, d in IDX_DTYPES.items())
            + ")"
        )
    if ndim == 0:
        raise IDXFormatError(f"{path}: IDX header declares 0 dimensions")
    dims = struct.unpack(f">{ndim}I", _read_exactly(fh, 4 * ndim, path, "the dimension sizes"))
    return IDX_DTYPES[type_code], tuple(int(d) for d in dims)


def read_idx(path: str | Path, limit: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a native-endian numpy array.

    Args:
        path: the file.
        limit: read only the first ``limit`` entries along the first dimension (cheap: the rest
            of the file is not decompressed). ``None`` reads everything and also checks that no
            bytes follow the data.

    Raises:
        IDXFormatError: bad magic number, unknown element type, or a data section that is
            shorter (or, without ``limit``, longer) than the header's sizes say.
    """
    path = Path(path)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    with _open(path) as fh:
        dtype, shape = _parse_header(fh, path)
        if limit is not None:
            shape = (min(limit, shape[0]),) + shape[1:]
        nbytes = math.prod(shape) * dtype.itemsize
        data = _read_exactly(fh, nbytes, path, f"data for shape {shape}")
        if limit is None:
            try:
                extra = fh.read(1)
            except (EOFError, OSError, zlib.error) as err:
                raise IDXFormatError(
                    f"{path}: corrupt compressed data after the array: {err}"
                ) from err
            if extra:
                raise IDXFormatError(
                    f"{path}: file is longer than its header says ({shape}, {dtype.name}); "
                    "trailing bytes found"
                )
    # frombuffer is read-only and big-endian; astype to the native dtype makes a writable copy.
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzip it when ``compress`` (default: name ends in .gz)."""
    path = Path(path)
    arr = np.asarray(array)
    codes = {d.newbyteorder("=").str[1:]: c for c, d in IDX_DTYPES.items()}
    key = arr.dtype.newbyteorder("=").str[1:]
    if key not in codes:
        raise ValueError(f"IDX cannot store dtype {arr.dtype}")
    if arr.ndim == 0 or arr.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {arr.ndim}")
    code = codes[key]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        # mtime=0 keeps the output byte-identical across runs.
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)
    return path
