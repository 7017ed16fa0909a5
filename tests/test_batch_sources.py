"""Data sources of dataset-scale attribution: every format reads what the one-shot readers read."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from neuron_importance.batch.methods import shuffled_references
from neuron_importance.batch.sources import (
    UNIFORM_N,
    ArraySource,
    FastaSource,
    ImageFolderSource,
    open_source,
)
from neuron_importance.cli.explain import load_inputs
from neuron_importance.genomics.onehot import one_hot_encode


def _random_dna(rng: np.random.Generator, n: int, length: int) -> list[str]:
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]


def _write_fasta(path: Path, seqs: list[str], wrap: int = 7) -> Path:
    with open(path, "w") as fh:
        fh.write("; a comment line\n")
        for i, s in enumerate(seqs):
            fh.write(f">seq{i} some description\n")
            for j in range(0, len(s), wrap):  # multi-line records
                fh.write(s[j : j + wrap] + "\n")
            fh.write("\n")
    return path


def test_npy_is_memory_mapped_and_read_by_rows(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((37, 3, 5)).astype(np.float64)
    np.save(tmp_path / "x.npy", x)
    src = open_source(tmp_path / "x.npy")
    assert isinstance(src, ArraySource) and isinstance(src._arr, np.memmap)
    assert (src.n, src.example_shape, src.kind) == (37, (3, 5), "array")
    np.testing.assert_array_equal(src.read(10, 20).numpy(), x[10:20].astype(np.float32))
    assert src.read(10, 20).dtype == torch.float32
    assert open_source(tmp_path / "x.npy", limit=5).n == 5


def test_npz_member_is_memory_mapped_at_its_offset(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random((11, 4)).astype(np.float32), rng.random((9, 2, 2)).astype(np.float32)
    np.savez(tmp_path / "d.npz", first=a, second=b)
    src = open_source(tmp_path / "d.npz", key="second")
    assert isinstance(src._arr, np.memmap) and src.example_shape == (2, 2)
    np.testing.assert_array_equal(src.read(0, 9).numpy(), b)
    np.testing.assert_array_equal(open_source(tmp_path / "d.npz").read(3, 8).numpy(), a[3:8])
    with pytest.raises(ValueError, match=r"has no array 'third'; it holds first, second"):
        open_source(tmp_path / "d.npz", key="third")


def test_compressed_npz_is_refused_with_the_fix(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "c.npz", x=np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"compressed.*np.savez \(uncompressed \.npz\)"):
        open_source(tmp_path / "c.npz")


def test_fasta_streamed_equals_one_hot_of_the_whole_file(tmp_path: Path) -> None:
    seqs = _random_dna(np.random.default_rng(2), 23, 30)
    seqs[5] = seqs[5][:4] + "nN" + seqs[5][6:].lower()  # N and soft-masked lower case
    path = _write_fasta(tmp_path / "s.fa", seqs)
    src = open_source(path)
    assert isinstance(src, FastaSource) and (src.n, src.example_shape) == (23, (4, 30))
    whole = one_hot_encode(seqs)
    batches = torch.cat([src.read(s, min(23, s + 4)) for s in range(0, 23, 4)])
    assert torch.equal(batches, whole)
    assert torch.equal(open_source(path, limit=6).read(0, 6), whole[:6])
    # n_mode="uniform": the two N columns become 0.25 in every channel, nothing else changes
    uni = open_source(path, n_mode="uniform").read(5, 6)[0]
    assert torch.equal(uni[:, 4:6], torch.full((4, 2), UNIFORM_N))
    assert torch.equal(uni[:, :4], whole[5, :, :4]) and torch.equal(uni[:, 6:], whole[5, :, 6:])


def test_fasta_bad_character_names_file_record_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.fa"
    path.write_text(">ok\nACGTACGT\n>chr2 second\nACGT\nAC?T\n")
    with pytest.raises(ValueError) as info:
        open_source(path)
    msg = str(info.value)
    assert str(path) in msg and "'chr2 second'" in msg
    assert "line 5, column 3" in msg and "'?'" in msg


def test_fasta_unequal_lengths_and_gzip_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "uneven.fa"
    path.write_text(">a\nACGTACGT\n>b\nACGTAC\n")
    with pytest.raises(ValueError, match=r"record 'b' \(line 3\) has length 6 but record 'a'"):
        open_source(path)
    gz = tmp_path / "s.fa.gz"
    gz.write_bytes(gzip.compress(b">a\nACGT\n"))
    with pytest.raises(ValueError, match="gzip-compressed.*gunzip"):
        open_source(gz)


def test_image_folder_batches_equal_explain_reader(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    src = open_source(folder)
    assert isinstance(src, ImageFolderSource) and src.example_shape == (1, 6, 5)
    expected = load_inputs(folder).x
    assert torch.equal(torch.cat([src.read(0, 3), src.read(3, 7)]), expected)


def test_dataset_source_takes_the_first_element_of_each_item(tmp_path: Path) -> None:
    x = torch.randn(10, 3)
    ds = torch.utils.data.TensorDataset(x, torch.arange(10))
    src = open_source(ds)
    assert (src.n, src.example_shape) == (10, (3,))
    assert torch.equal(src.read(2, 7), x[2:7])
    assert src.fingerprint.startswith("sha256-sampled:")
    assert open_source(ds, data_hash="mine").fingerprint == "mine"


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="don't know how to read"):
        open_source(tmp_path / "t.csv")
    with pytest.raises(FileNotFoundError):
        open_source(tmp_path / "missing.npy")


def test_shuffled_references_do_not_depend_on_the_batch() -> None:
    """Example j's references come from seed (seed, j): any batch split gives the same ones."""
    x = one_hot_encode(_random_dna(np.random.default_rng(4), 6, 25))
    whole = shuffled_references(x, 3, start=0, seed=7)
    assert whole.shape == (6, 3, 4, 25)
    assert torch.equal(shuffled_references(x[2:5], 3, start=2, seed=7), whole[2:5])
    assert not torch.equal(shuffled_references(x, 3, start=0, seed=8), whole)
    # a dinucleotide shuffle keeps every sequence's base composition
    assert torch.equal(whole.sum(dim=3), x.sum(dim=2).unsqueeze(1).expand(6, 3, 4))
