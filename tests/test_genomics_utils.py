"""Genomics utilities: one-hot, FASTA, dinucleotide shuffle, hypothetical contributions."""

from __future__ import annotations

import gzip
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neuron_importance.genomics.hypothetical import (
    hypothetical_contributions,
    mean_normalise_first_conv,
    project_onto_sequence,
)
from neuron_importance.genomics.onehot import decode_one_hot, one_hot_encode, read_fasta
from neuron_importance.genomics.shuffle import dinuc_shuffle, dinuc_shuffle_references


def _random_seq(rng: np.random.Generator, length: int, alphabet: str = "ACGT") -> str:
    return "".join(rng.choice(list(alphabet), size=length))


def _dinucs(seq: str) -> Counter:
    return Counter(seq[i : i + 2] for i in range(len(seq) - 1))


# ---------------------------------------------------------------- one-hot


def test_one_hot_layout_and_round_trip() -> None:
    x = one_hot_encode(["ACGTN", "acgtn"])
    assert x.shape == (2, 4, 5) and x.dtype == torch.float32
    expected = torch.tensor(
        [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]], dtype=torch.float32
    )
    assert torch.equal(x[0], expected) and torch.equal(x[1], expected)
    assert torch.equal(x[0, :, 4], torch.zeros(4))  # N is an all-zero column
    rng = np.random.default_rng(0)
    seqs = [_random_seq(rng, 50, "ACGTN") for _ in range(5)]
    onehot = one_hot_encode(seqs)
    assert [decode_one_hot(s) for s in onehot] == seqs
    assert one_hot_encode("GATTACA").shape == (1, 4, 7)


def test_one_hot_errors_name_sequence_position_character() -> None:
    with pytest.raises(ValueError, match=r"sequence 1: invalid character 'X' at position 2"):
        one_hot_encode(["ACGT", "ACXT"])
    with pytest.raises(ValueError, match=r"position 3"):
        one_hot_encode("ACG-")
    with pytest.raises(ValueError, match=r"sequence 2 has length 3 but sequence 0 has length 4"):
        one_hot_encode(["ACGT", "TTTT", "ACG"])
    with pytest.raises(ValueError, match="not one-hot"):
        decode_one_hot(torch.full((4, 3), 0.25))


def test_read_fasta(tmp_path: Path) -> None:
    text = ">seq1 first record\nACGT\nacgt\n\n>seq2\nNNNN\n>empty\n"
    path = tmp_path / "x.fa"
    path.write_text(text)
    expected = [("seq1 first record", "ACGTacgt"), ("seq2", "NNNN"), ("empty", "")]
    assert read_fasta(path) == expected
    gz = tmp_path / "x.fa.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert read_fasta(gz) == expected
    bad = tmp_path / "bad.txt"
    bad.write_text("seqName\tsequence\nx\tACGT\n")
    with pytest.raises(ValueError, match="not a FASTA file.*line 1"):
        read_fasta(bad)
    binary = tmp_path / "bin.fa"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ValueError, match="not a FASTA file"):
        read_fasta(binary)


# ---------------------------------------------------------------- dinucleotide shuffle


@settings(max_examples=60, deadline=None)
@given(seq=st.text(alphabet="ACGT", min_size=1, max_size=120), seed=st.integers(0, 2**32 - 1))
def test_dinuc_shuffle_preserves_counts_string(seq: str, seed: int) -> None:
    for shuffled in dinuc_shuffle(seq, num_shuffles=3, rng=seed):
        assert len(shuffled) == len(seq)
        assert shuffled[0] == seq[0] and shuffled[-1] == seq[-1]
        assert _dinucs(shuffled) == _dinucs(seq)


@settings(max_examples=40, deadline=None)
@given(seq=st.text(alphabet="ACGTN", min_size=1, max_size=80), seed=st.integers(0, 2**32 - 1))
def test_dinuc_shuffle_preserves_counts_onehot(seq: str, seed: int) -> None:
    out = dinuc_shuffle(one_hot_encode(seq)[0], num_shuffles=2, rng=seed)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4, len(seq))
    for row in out:
        shuffled = decode_one_hot(row)
        assert shuffled[0] == seq[0]
        assert _dinucs(shuffled) == _dinucs(seq)


def test_dinuc_shuffle_reproducible_and_random() -> None:
    seq = _random_seq(np.random.default_rng(3), 200)
    a = dinuc_shuffle(seq, num_shuffles=5, rng=7)
    assert a == dinuc_shuffle(seq, num_shuffles=5, rng=7)
    assert a == dinuc_shuffle(seq, num_shuffles=5, rng=np.random.default_rng(7))
    assert a != dinuc_shuffle(seq, num_shuffles=5, rng=8)
    assert all(s != seq for s in a)  # a 200-mer essentially never shuffles to itself
    assert len(set(a)) == 5


def test_dinuc_shuffle_references_shape_and_counts() -> None:
    rng = np.random.default_rng(5)
    seqs = [_random_seq(rng, 40) for _ in range(3)]
    x = one_hot_encode(seqs)
    refs = dinuc_shuffle_references(x, num_shuffles=4, seed=11)
    assert refs.shape == (3, 4, 4, 40) and refs.dtype == x.dtype
    assert torch.equal(refs, dinuc_shuffle_references(x, num_shuffles=4, seed=11))
    for n, seq in enumerate(seqs):
        for k in range(4):
            shuffled = decode_one_hot(refs[n, k])
            assert shuffled[0] == seq[0] and _dinucs(shuffled) == _dinucs(seq)


# ---------------------------------------------------------------- hypothetical contributions


def test_hypothetical_single_reference_matches_direct_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    x = one_hot_encode(["ACGTTGCA", "GGGTACCA"])
    r = one_hot_encode(["TTGCAACG", "ACGTACGT"])  # a different sequence as reference
    m = torch.randn(2, 4, 8, generator=gen, dtype=torch.float64)
    hyp = hypothetical_contributions(m.unsqueeze(1), r.unsqueeze(1).double())
    assert hyp.shape == (2, 4, 8)
    for n in range(2):
        for j in range(8):
            observed = int(x[n, :, j].argmax())
            actual = sum(float(m[n, b, j] * (x[n, b, j] - r[n, b, j])) for b in range(4))
            assert hyp[n, observed, j].item() == pytest.approx(actual, abs=1e-12)
            for b in range(4):  # every hypothetical base, straight from the definition
                e_b = [1.0 if bb == b else 0.0 for bb in range(4)]
                direct = sum(float(m[n, bb, j]) * (e_b[bb] - float(r[n, bb, j])) for bb in range(4))
                assert hyp[n, b, j].item() == pytest.approx(direct, abs=1e-12)


def test_hypothetical_multi_reference_and_projection() -> None:
    gen = torch.Generator().manual_seed(1)
    x = one_hot_encode(["ACGTNACGTA", "TTTTGGGGCC"]).double()
    refs = dinuc_shuffle_references(x, num_shuffles=3, seed=0)
    m = torch.randn(2, 3, 4, 10, generator=gen, dtype=torch.float64)
    hyp = hypothetical_contributions(m, refs)
    # Mean over references of each reference's actual contributions m_r (x - r).
    contribs = (m * (x.unsqueeze(1) - refs)).mean(dim=1)
    on_sequence = project_onto_sequence(hyp, x, hypothetical=True)
    summed = project_onto_sequence(contribs, x)
    observed = x.sum(dim=1) > 0
    torch.testing.assert_close(on_sequence[observed], summed[observed])
    assert torch.all(on_sequence[~observed] == 0)  # N column: no observed base
    # A single broadcast background reference.
    bg = torch.tensor([0.3, 0.2, 0.2, 0.3], dtype=torch.float64).view(4, 1).expand(4, 10)
    hyp_bg = hypothetical_contributions(m[:, :1], bg)
    torch.testing.assert_close(hyp_bg, m[:, 0] - (m[:, 0] * bg).sum(dim=1, keepdim=True))
    with pytest.raises(ValueError, match="broadcast"):
        hypothetical_contributions(m, torch.zeros(4, 9))


# ---------------------------------------------------------------- mean-normalising the first conv


def test_mean_normalise_first_conv_keeps_one_hot_outputs() -> None:
    torch.manual_seed(0)
    conv = nn.Conv1d(4, 6, kernel_size=5).double()
    before = conv.weight.detach().clone()
    new = mean_normalise_first_conv(conv)
    assert new is not conv and torch.equal(conv.weight, before)  # original untouched
    torch.testing.assert_close(new.weight.sum(dim=1), torch.zeros(6, 5, dtype=torch.float64))
    rng = np.random.default_rng(0)
    x = one_hot_encode([_random_seq(rng, 30) for _ in range(4)]).double()
    torch.testing.assert_close(new(x), conv(x))
    # The documented caveat: an all-zero (N) column does change the output.
    x_n = one_hot_encode(["N" * 30]).double()
    assert not torch.allclose(new(x_n), conv(x_n))

    no_bias = nn.Conv1d(4, 3, kernel_size=3, bias=False).double()
    nb = mean_normalise_first_conv(no_bias)
    assert nb.bias is not None
    torch.testing.assert_close(nb(x), no_bias(x))

    with pytest.warns(UserWarning, match="padding"):
        mean_normalise_first_conv(nn.Conv1d(4, 2, kernel_size=3, padding=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean_normalise_first_conv(nn.Conv1d(4, 2, kernel_size=3))
