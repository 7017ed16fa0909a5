"""Data loaders: the IDX reader against hand-written bytes, MNIST, and the digits fallback."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from neuron_importance.data.digits import load_digits_dataset
from neuron_importance.data.idx import IDXFormatError, read_idx, read_idx_header, write_idx
from neuron_importance.data.mnist import ChecksumError, load_mnist
from neuron_importance.data.paths import DATA_ENV_VAR, default_data_dir


def _idx_bytes(arr: np.ndarray, type_code: int, be_dtype: str) -> bytes:
    # Written with struct, independently of the module under test.
    header = struct.pack(">BBBB", 0, 0, type_code, arr.ndim)
    header += struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(be_dtype).tobytes()


# ---------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_uint8_images(tmp_path: Path, compress: bool) -> None:
    arr = np.arange(5 * 3 * 4, dtype=np.uint8).reshape(5, 3, 4)
    raw = _idx_bytes(arr, 0x08, ">u1")
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (5, 3, 4)
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable
    dtype, shape = read_idx_header(path)
    assert shape == (5, 3, 4) and dtype.itemsize == 1
    np.testing.assert_array_equal(read_idx(path, limit=2), arr[:2])
    np.testing.assert_array_equal(read_idx(path, limit=99), arr)


@pytest.mark.parametrize(("code", "be"), [(0x0C, ">i4"), (0x0D, ">f4"), (0x0B, ">i2")])
def test_read_idx_big_endian_types(tmp_path: Path, code: int, be: str) -> None:
    arr = np.array([[1, -2, 300], [70000 if be != ">i2" else 7000, 5, -6]], dtype=be)
    path = tmp_path / "t.idx"
    path.write_bytes(_idx_bytes(arr, code, be))
    out = read_idx(path)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr.astype(out.dtype))


def test_write_idx_round_trip(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 255, size=(7, 2), dtype=np.uint8)
    path = write_idx(tmp_path / "r.idx.gz", arr)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(path), arr)
    raw = tmp_path / "r.idx"
    write_idx(raw, arr)
    assert raw.read_bytes() == _idx_bytes(arr, 0x08, ">u1")


def test_read_idx_errors(tmp_path: Path) -> None:
    arr = np.zeros((4, 3), dtype=np.uint8)
    good = _idx_bytes(arr, 0x08, ">u1")

    bad_magic = tmp_path / "magic.idx"
    bad_magic.write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(IDXFormatError, match="magic"):
        read_idx(bad_magic)

    bad_type = tmp_path / "type.idx"
    bad_type.write_bytes(b"\x00\x00\x42" + good[3:])
    with pytest.raises(IDXFormatError, match="0x42"):
        read_idx(bad_type)

    short = tmp_path / "short.idx"
    short.write_bytes(good[:-3])
    with pytest.raises(IDXFormatError, match="too short"):
        read_idx(short)

    long = tmp_path / "long.idx"
    long.write_bytes(good + b"\x00")
    with pytest.raises(IDXFormatError, match="longer"):
        read_idx(long)

    truncated_gz = tmp_path / "trunc.idx.gz"
    truncated_gz.write_bytes(gzip.compress(good)[:-12])  # cut into the deflate stream/trailer
    with pytest.raises(IDXFormatError):
        read_idx(truncated_gz)

    tiny = tmp_path / "tiny.idx"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(IDXFormatError, match="too short"):
        read_idx(tiny)


# ---------------------------------------------------------------- MNIST loader on fake files


def _fake_mnist(directory: Path, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0] = 255
    images[1] = 0
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    (directory / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(_idx_bytes(images, 0x08, ">u1"))
    )
    (directory / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(_idx_bytes(labels, 0x08, ">u1"))
    )
    return images, labels


def test_load_mnist_fake_files(tmp_path: Path) -> None:
    images, labels = _fake_mnist(tmp_path / "mnist")
    # These files carry the canonical names but not the canonical bytes: the checksum catches it.
    with pytest.raises(ChecksumError, match="sha256"):
        load_mnist("test", data_dir=tmp_path / "mnist")
    x, y = load_mnist("test", data_dir=tmp_path / "mnist", verify_checksum=False)
    assert x.shape == (6, 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    torch.testing.assert_close(x[:, 0], torch.from_numpy(images).float() / 255)
    assert torch.equal(y, torch.from_numpy(labels).long())
    assert float(x[0].min()) == 1.0 and float(x[1].max()) == 0.0
    x3, y3 = load_mnist("test", data_dir=tmp_path / "mnist", limit=3, verify_checksum=False)
    assert x3.shape[0] == 3 and torch.equal(x3, x[:3]) and torch.equal(y3, y[:3])


def test_load_mnist_mismatched_counts(tmp_path: Path) -> None:
    _fake_mnist(tmp_path, n=4)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(_idx_bytes(np.zeros(3, np.uint8), 0x08, ">u1"))
    )
    with pytest.raises(IDXFormatError, match="4 images but"):
        load_mnist("test", data_dir=tmp_path, verify_checksum=False)


def test_load_mnist_missing_dir_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "nowhere"))
    assert default_data_dir() == tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_mnist()
    message = str(info.value)
    assert DATA_ENV_VAR in message and str(tmp_path / "nowhere" / "mnist") in message
    with pytest.raises(FileNotFoundError, match="data_dir"):
        load_mnist(data_dir=tmp_path / "also-missing")
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation", data_dir=tmp_path)


def test_default_data_dir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    assert default_data_dir() == tmp_path


# ---------------------------------------------------------------- the real MNIST, when present


def _shared(sub: str) -> Path:
    root = default_data_dir()
    if root is None or not (root / sub / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"shared {sub} data not found (set {DATA_ENV_VAR})")
    return root / sub


def test_real_mnist_test_split() -> None:
    _shared("mnist")
    x, y = load_mnist("test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert y.dtype == torch.int64 and int(y.min()) == 0 and int(y.max()) == 9
    counts = torch.bincount(y, minlength=10)
    # docs/methods/deeplift.md §9: 974 eights, 1009 nines, 982 fours in the test set.
    assert (int(counts[8]), int(counts[9]), int(counts[4])) == (974, 1009, 982)
    assert y[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test labels
    x7, y7 = load_mnist("test", limit=7)
    assert torch.equal(x7, x[:7]) and torch.equal(y7, y[:7])


def test_real_mnist_train_label_counts() -> None:
    directory = _shared("mnist")
    labels = read_idx(directory / "train-labels-idx1-ubyte.gz")
    expected = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # data README
    assert np.bincount(labels, minlength=10).tolist() == expected


def test_real_fashion_mnist() -> None:
    _shared("fashion-mnist")
    x, y = load_mnist("test", limit=50, fashion=True)
    assert x.shape == (50, 1, 28, 28) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert int(y.max()) <= 9


# ---------------------------------------------------------------- digits fallback


def test_digits_fallback() -> None:
    pytest.importorskip("sklearn")
    x_tr, y_tr, x_te, y_te = load_digits_dataset()
    assert x_tr.shape == (1437, 1, 8, 8) and x_te.shape == (360, 1, 8, 8)
    assert y_tr.shape == (1437,) and y_te.shape == (360,)
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.int64
    assert float(x_tr.min()) == 0.0 and float(x_tr.max()) == 1.0
    # Stratified: every class has 35-37 test images (about 20 % of ~180).
    counts = torch.bincount(y_te, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37
    again = load_digits_dataset()
    assert all(torch.equal(a, b) for a, b in zip((x_tr, y_tr, x_te, y_te), again))
    other = load_digits_dataset(seed=1)
    assert not torch.equal(other[3], y_te)
