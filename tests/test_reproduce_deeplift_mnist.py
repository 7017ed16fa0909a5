"""``neuron-importance reproduce deeplift-mnist``: the experiment in-process on a tiny CNN.

A small CNN is trained for a few steps on a few hundred MNIST images, or on synthetic
digit-like images where the MNIST files are absent, and the experiment runs on a handful of
test images per class. The checks are on the contract of ``results.json`` and on the erasing
rule (no pixels -> no change, at most 157 pixels, only positive scores), not on the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from neuron_importance.cli.main import main
from neuron_importance.experiments.deeplift_mnist import (
    ALL_METHODS,
    Settings,
    box_stats,
    erase_mask,
    erase_top_pixels,
    ordering_check,
    run_experiment,
)
from neuron_importance.models import train_classifier

CONVERSIONS = ["8->3", "8->6", "9->1", "4->1"]


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=4, stride=2),  # 28 -> 13
        nn.ReLU(),
        nn.Conv2d(4, 8, kernel_size=4, stride=2),  # 13 -> 5
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(200, 16),
        nn.ReLU(),
        nn.Linear(16, 10),
    )


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from neuron_importance.cli.demo import find_mnist

    mnist_dir = find_mnist(None)
    if mnist_dir is not None:
        from neuron_importance.data.mnist import load_mnist

        tx, ty = load_mnist("train", data_dir=mnist_dir, limit=300)
        vx, vy = load_mnist("test", data_dir=mnist_dir, limit=150)
        return tx, ty, vx, vy
    # synthetic: one random blob template per class plus noise (dark background kept at 0)
    g = torch.Generator().manual_seed(0)
    templates = (torch.rand(10, 1, 28, 28, generator=g) > 0.7).float()
    y = torch.arange(450) % 10
    x = (templates[y] * (0.7 + 0.3 * torch.rand(450, 1, 28, 28, generator=g))).clamp(0, 1)
    return x[:300], y[:300], x[300:], y[300:]


def _settings(**kw) -> Settings:
    base = {"n_per_class": 5, "shap_references": 2, "batch_size": 12, "n_examples": 2}
    base.update(kw)
    return Settings(**base)


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    tx, ty, vx, vy = _data()
    model = train_classifier(_tiny_cnn(), tx, ty, epochs=2, batch_size=32, lr=3e-3, seed=0,
                             progress=False)
    return model, tx, vx, vy


@pytest.fixture(scope="module")
def experiment(trained, tmp_path_factory) -> tuple[dict, Path]:
    model, tx, vx, vy = trained
    out = tmp_path_factory.mktemp("deeplift-mnist")
    res = run_experiment(model, vx, vy, out, references=tx, settings=_settings(),
                         info={"model": "tiny", "test_accuracy": 0.5}, progress=False)
    return res, out


def test_files_written(experiment) -> None:
    res, out = experiment
    for name in ("results.json", "report.md", "logodds_boxplot.png", "examples.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert name in res["files"]
    assert (out / "logodds_boxplot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["logodds"] == json.loads(json.dumps(res["logodds"]))
    report = (out / "report.md").read_text()
    assert "8->3" in report and "grad_x_input" in report and "Against the paper" in report


def test_contract_keys(experiment) -> None:
    res, _ = experiment
    for key in ("test_accuracy", "logodds", "ratio_to_grad_x_input", "pixels_erased",
                "completeness", "ordering", "ordering_all_pass", "paper", "examples",
                "timings", "config", "machine", "baseline_logodds"):
        assert key in res, key
    assert res["test_accuracy"] == 0.5
    assert res["conversions"] == CONVERSIONS
    assert res["methods"] == list(ALL_METHODS)
    for m in ALL_METHODS:
        for c in CONVERSIONS:
            s = res["logodds"][m][c]
            assert {"median", "q1", "q3", "whisker_low", "whisker_high", "n"} <= set(s)
            assert s["n"] == 5
            assert s["q1"] <= s["median"] <= s["q3"]
            assert s["whisker_low"] <= s["q1"] and s["q3"] <= s["whisker_high"]
        assert m in res["timings"]["scoring_seconds"]
    for c in CONVERSIONS:
        assert res["ratio_to_grad_x_input"]["grad_x_input"][c] == pytest.approx(1.0)
        assert isinstance(res["ordering"][c]["pass"], bool)
        assert len(res["ordering"][c]["checks"]) == 8
        assert len(res["ordering_paper_table"][c]["checks"]) == 7
    # DeepLIFT sums to delta: its completeness error is at float32 rounding level
    assert res["completeness"]["deeplift_rescale"]["mean_rel"] < 1e-3
    assert res["completeness"]["deeplift_revealcancel"]["mean_rel"] < 1e-3
    assert len(res["examples"]) == 2


def test_at_most_157_pixels_erased(experiment) -> None:
    res, _ = experiment
    for m in ALL_METHODS:
        for c in CONVERSIONS:
            pe = res["pixels_erased"][m][c]
            assert 0 <= pe["min"] <= pe["mean"] <= pe["max"] <= 157
    for ex in res["examples"]:
        assert all(0 <= v <= 157 for v in ex["n_erased"].values())


def test_erasing_nothing_changes_nothing(trained, tmp_path) -> None:
    model, tx, vx, vy = trained
    res = run_experiment(model, vx, vy, tmp_path, references=tx,
                         settings=_settings(max_erase=0, methods=("grad_x_input",
                                                                  "deeplift_rescale")),
                         progress=False)
    for m in res["methods"]:
        for c in CONVERSIONS:
            s = res["logodds"][m][c]
            assert s["median"] == s["q1"] == s["q3"] == 0.0
            assert res["pixels_erased"][m][c]["max"] == 0


def test_erase_mask_rule() -> None:
    g = torch.Generator().manual_seed(1)
    s = torch.randn(6, 784, generator=g, dtype=torch.float64)
    s[0] = -s[0].abs()  # nothing positive: nothing erased
    s[1, :100] = torch.rand(100, generator=g, dtype=torch.float64)  # 100 positive only
    s[1, 100:] = -1.0
    s[2] = 1.0  # all tied: the 158th largest equals all, nothing strictly above it
    mask = erase_mask(s, 157)
    counts = mask.sum(1)
    assert counts[0] == 0 and counts[1] == 100 and counts[2] == 0
    assert bool((counts <= 157).all())
    assert bool((s[mask] > 0).all())  # only positive scores
    for i in (3, 4, 5):  # generic rows: exactly the 157 largest
        top = torch.topk(s[i], 157).indices
        assert counts[i] == 157 and bool(mask[i, top].all())
    assert erase_mask(s, 0).sum() == 0
    assert erase_mask(s, 10_000).sum() == (s > 0).sum()


def test_erase_top_pixels_zero_scores(trained) -> None:
    model, _, vx, _ = trained
    x = vx[:4]
    ch, ne, mask = erase_top_pixels(model, x, torch.zeros_like(x), 8, 3)
    assert torch.equal(ne, torch.zeros(4, dtype=ne.dtype)) and not bool(mask.any())
    assert torch.equal(ch, torch.zeros(4, dtype=ch.dtype))
    # erasing pixels that are already 0 changes nothing either
    s = (x == 0).to(x.dtype)
    ch, _, mask = erase_top_pixels(model, x, s, 8, 3)
    assert torch.allclose(ch, torch.zeros_like(ch), atol=1e-9)


def test_box_stats_and_ordering() -> None:
    s = box_stats([1, 2, 3, 4, 100])
    assert s["median"] == 3 and s["q1"] == 2 and s["q3"] == 4
    assert s["whisker_high"] == 4 and s["whisker_low"] == 1 and s["n"] == 5
    good = {"deeplift_revealcancel": 10, "deeplift_rescale": 9, "grad_x_input": 8, "ig_5": 8,
            "ig_10": 8, "guided_backprop": 6, "abs_grad": 5}
    assert ordering_check(good)["pass"]
    bad = dict(good, abs_grad=7)
    res = ordering_check(bad)
    assert not res["pass"]
    assert [c for c in res["checks"] if not c["pass"]][0]["b"] == "abs_grad"
    assert ordering_check(dict(good, deeplift_rescale=7.9), tol=0.02)["pass"]


def test_cli_missing_data(tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["reproduce", "deeplift-mnist", "--quick", "--data-dir", str(empty),
                 "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "MNIST not found" in err and "--data-dir" in err and "Traceback" not in err
