"""``neuron-importance reproduce deeplift-genomics``: PWM scanner, top-hit quirk, loader, and
the experiment in-process on a tiny synthetic data set (checks the results.json contract, not
the numbers)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from torch import nn

from neuron_importance.cli.main import main
from neuron_importance.data.genomics_sim import (
    CLASS_NAMES,
    GenomicsSim,
    GenomicsSimFormatError,
    find_genomics_dir,
    load_genomics_sim,
    load_test_ids,
    parse_embeddings,
    split_genomics_sim,
)
from neuron_importance.experiments.deeplift_genomics import (
    METHODS,
    Settings,
    run_experiment,
    train_genomics_model,
    window_sums,
)
from neuron_importance.genomics.onehot import one_hot_encode
from neuron_importance.genomics.pwm import PWMS, log_odds_matrix, scan, top_hits
from neuron_importance.models.zoo import GlobalAvgPool1d

# ----------------------------------------------------------------------------- PWMs


def test_scan_matches_brute_force():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 30)) for _ in range(3)]
    seqs[1] = seqs[1][:7] + "N" + seqs[1][8:]
    x = one_hot_encode(seqs).numpy()
    m = rng.normal(size=(5, 4))
    got = scan(x, m)
    want = np.zeros((3, 26))
    for n, s in enumerate(seqs):
        for i in range(26):
            for k in range(5):
                if s[i + k] != "N":
                    want[n, i] += m[k, "ACGT".index(s[i + k])]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_pwm_best_hits_and_pseudocount():
    gata = PWMS["GATA"].log_odds()
    assert PWMS["GATA"].width == 10 and PWMS["TAL1"].width == 16
    assert "".join("ACGT"[i] for i in gata.argmax(1)) == "GCAGATAAGG"
    # p' = (1 - eps) p + eps / 4: a zero becomes 0.00025, log-odds vs bg 0.2 or 0.3
    assert gata[3, 0] == pytest.approx(np.log(0.00025 / 0.3))
    best = scan(one_hot_encode("GCAGATAAGG"), gata)[0, 0]
    assert best == pytest.approx(gata.max(1).sum()) and best > 7
    with pytest.raises(ValueError):
        log_odds_matrix(np.ones((3, 5)))


def test_top_hits_quirk_hand_example():
    row = np.zeros(20)
    row[1], row[8], row[18] = 9.0, 5.0, 7.0
    # width 10 -> exclude 5: picking idx 1 sets row[1-5 : 1+5-1] = row[-4:5], an empty slice
    vals, idx = top_hits(row[None], n=3, width=10, quirk=True)
    assert idx.tolist() == [[1, 1, 1]] and vals.tolist() == [[9.0, 9.0, 9.0]]
    vals, idx = top_hits(row[None], n=3, width=10, quirk=False)
    assert idx.tolist() == [[1, 18, 8]]  # [0:5] excluded, then [13:22]
    # idx >= 5: the slice [idx-5 : idx+4] is asymmetric, idx+4 stays available
    row = np.zeros(30)
    row[10], row[6], row[14], row[13] = 9.0, 8.5, 8.0, 8.2
    _, idx = top_hits(row[None], n=2, width=10)
    assert idx.tolist() == [[10, 14]]


def test_window_sums():
    s = np.arange(12, dtype=float).reshape(2, 6)
    got = window_sums(s, np.array([[0, 2], [3, 1]]), 3)
    assert got.tolist() == [[3.0, 9.0], [30.0, 24.0]]


# ----------------------------------------------------------------------------- loader


def _write_sim(directory, rows, test_ids):
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["seqName\tsequence\tembeddings\ttask1\ttask2\ttask3"]
    lines += ["\t".join(r) for r in rows]
    with gzip.open(directory / "sequences.simdata.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    with gzip.open(directory / "test.txt.gz", "wt") as fh:
        fh.write("\n".join(test_ids) + "\n")


def _synthetic_rows(n_per_class=10, length=60, seed=0):
    rng = np.random.default_rng(seed)
    motifs = {"GATA": ("GATA_disc1", "GCAGATAAGG"), "TAL1": ("TAL1_known1", "CTGAACAGATGGTCGG")}
    rows = []
    for cname in CLASS_NAMES:
        labels = {"empty": "000", "gata_only": "010", "tal1_only": "001", "gata_tal1": "111"}
        for i in range(n_per_class):
            seq = list(rng.choice(list("ACGT"), length, p=[0.3, 0.2, 0.2, 0.3]))
            emb = []
            want = {"empty": [], "gata_only": ["GATA"], "tal1_only": ["TAL1"],
                    "gata_tal1": ["GATA", "TAL1"]}[cname]
            for j, short in enumerate(want):
                name, site = motifs[short]
                start = 5 + 28 * j + int(rng.integers(0, 5))
                seq[start : start + len(site)] = list(site)
                emb.append(f"pos-{start}_{name}-{site}")
            rows.append([f"{cname}_{i}", "".join(seq), ",".join(emb),
                         *labels[cname]])
    return rows


def test_loader_on_synthetic_files(tmp_path):
    rows = _synthetic_rows()
    _write_sim(tmp_path / "deeplift-genomics", rows, [r[0] for r in rows[::4]])
    data = load_genomics_sim(tmp_path)  # the parent folder works too
    assert data.onehot.shape == (40, 4, 60) and data.labels.shape == (40, 3)
    assert data.embeddings[35][0].motif == "GATA_disc1"
    assert data.motif_mask("TAL1")[35].sum() == 16
    split = split_genomics_sim(data, load_test_ids(tmp_path), val_fraction=0.2, seed=1)
    assert len(split["test"]) == 10 and len(split["validation"]) == 6
    assert len(set(np.concatenate(list(split.values())).tolist())) == 40


def test_loader_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURON_IMPORTANCE_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        find_genomics_dir()
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        load_genomics_sim(tmp_path)
    (tmp_path / "sequences.simdata.gz").write_bytes(b"\x1f\x8bgarbage")
    with pytest.raises(GenomicsSimFormatError, match="cannot read"):
        load_genomics_sim(tmp_path)
    rows = _synthetic_rows(2)
    rows[1][3] = "1"  # an empty sequence labelled as both
    _write_sim(tmp_path / "bad", rows, [])
    with pytest.raises(GenomicsSimFormatError, match="do not match class"):
        load_genomics_sim(tmp_path / "bad")
    with pytest.raises(GenomicsSimFormatError):
        parse_embeddings("pos-x_GATA-ACGT")
    assert main(["reproduce", "deeplift-genomics", "--quick", "--out", str(tmp_path / "o"),
                 "--data-dir", str(tmp_path / "missing")]) == 2


def test_loader_on_real_files():
    try:
        directory = find_genomics_dir()
    except FileNotFoundError:
        pytest.skip("the DeepLIFT genomics files are not present")
    data = load_genomics_sim(directory)
    assert len(data) == 8000 and data.onehot.shape == (8000, 4, 200)
    assert data.labels.sum(0).tolist() == [2000.0, 4000.0, 4000.0]
    split = split_genomics_sim(data, load_test_ids(directory), seed=0)
    assert [len(split[k]) for k in ("train", "validation", "test")] == [6480, 720, 800]
    counts = np.bincount(data.classes[split["test"]].numpy(), minlength=4)
    assert dict(zip(CLASS_NAMES, counts.tolist())) == {
        "empty": 190, "gata_only": 186, "tal1_only": 188, "gata_tal1": 236}
    n_gata = [sum(m.short == "GATA" for m in e) for e in data.embeddings]
    assert sum(n_gata) == 6747


# ----------------------------------------------------------------------------- experiment


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(4, 6, kernel_size=5), nn.ReLU(), nn.Conv1d(6, 6, kernel_size=5), nn.ReLU(),
        GlobalAvgPool1d(), nn.Linear(6, 6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 3),
    )


def _tiny_data() -> GenomicsSim:
    rows = _synthetic_rows(8, length=60)
    seqs = [r[1] for r in rows]
    return GenomicsSim(
        names=[r[0] for r in rows], sequences=seqs, onehot=one_hot_encode(seqs),
        labels=torch.tensor([[float(v) for v in r[3:]] for r in rows]),
        classes=torch.tensor([CLASS_NAMES.index(r[0].rsplit("_", 1)[0]) for r in rows]),
        embeddings=[parse_embeddings(r[2]) for r in rows],
    )


def test_experiment_contract(tmp_path):
    data = _tiny_data()
    settings = Settings(epochs=2, batch_size=8, n_refs=2, ig_steps=2, top_n=3, score_batch=12)
    model = _tiny_model()
    summary = train_genomics_model(model, data, data, settings, progress=False)
    assert summary["best_epoch"] >= 1
    res = run_experiment(model, data, tmp_path, settings=settings, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["auroc"].keys() == {"both", "GATA", "TAL1"}
    assert set(saved["false_negative_rate"]) == set(METHODS)
    for m in METHODS:
        assert set(saved["false_negative_rate"][m]) == {"GATA", "TAL1"}
        for v in saved["false_negative_rate"][m].values():
            assert v is None or 0.0 <= v <= 1.0
        assert set(saved["auprc"][m]) == {"both", "GATA", "TAL1"}
    assert saved["paper_false_negative_rate"]["grad_x_dinput"]["TAL1"] == pytest.approx(0.1156)
    # DeepLIFT sums to delta; the hypothetical scores on the sequence equal DeepLiftShap's
    assert saved["completeness_max_abs"]["genomics_default"] < 1e-4
    assert saved["hypothetical_check_max_abs"] < 1e-4
    assert (tmp_path / "report.md").read_text().startswith("# DeepLIFT genomics")
    assert (tmp_path / "scatter_TAL1.png").stat().st_size > 0
    assert any(f.startswith("logos/") for f in res["files"])
    for f in res["files"]:
        assert (tmp_path / f).is_file(), f
    hyp = np.load(tmp_path / "hypothetical.npy")
    assert hyp.shape == (32, 3, 4, 60)
    scores = np.load(tmp_path / "scores.npz")
    assert scores["genomics_default"].shape == (32, 3, 60)
