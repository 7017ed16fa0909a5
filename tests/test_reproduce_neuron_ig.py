"""``neuron-importance reproduce neuron-ig``: the experiment in-process on a tiny CNN.

A small CNN (28x28 input, two conv layers, one dense hidden layer) is trained for a few steps
on a few hundred MNIST images, or on synthetic digit-like images where the MNIST files are
absent, and the experiment runs with a tiny configuration. The checks are on the contract of
``results.json`` (keys, curve lengths, ``k = 0`` drop of 0, self-agreement of 1) and on the
files written, not on the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neuron_importance.cli.main import main
from neuron_importance.experiments.neuron_ig import (
    Settings,
    average_ranks,
    run_experiment,
    select_examples,
    spearman_rows,
    topk_overlap_rows,
)
from neuron_importance.models import train_classifier

# forward-mode AD (Gauss–Legendre conductance) loads torch decompositions via torch.jit.script,
# which torch >= 2.10 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

LAYERS = {"conv": "3", "dense": "6"}
SETTINGS = Settings(
    n_examples=10, n_steps=(2, 4), k_max=5, topk=3, random_orders=2, batch_size=5,
    internal_batch_size=16,
)


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=4, stride=2),  # 28 -> 13
        nn.ReLU(),
        nn.Conv2d(4, 8, kernel_size=4, stride=2),  # 13 -> 5
        nn.ReLU(),  # "3": 8 channels of 5x5
        nn.Flatten(),
        nn.Linear(200, 16),
        nn.ReLU(),  # "6": 16 units
        nn.Linear(16, 10),
    )


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from neuron_importance.cli.demo import find_mnist

    mnist_dir = find_mnist(None)
    if mnist_dir is not None:
        from neuron_importance.data.mnist import load_mnist

        tx, ty = load_mnist("train", data_dir=mnist_dir, limit=300)
        vx, vy = load_mnist("test", data_dir=mnist_dir, limit=100)
        return tx, ty, vx, vy
    # synthetic: one random blob template per class plus noise
    g = torch.Generator().manual_seed(0)
    templates = (torch.rand(10, 1, 28, 28, generator=g) > 0.7).float()
    y = torch.arange(400) % 10
    x = (templates[y] + 0.3 * torch.rand(400, 1, 28, 28, generator=g)).clamp(0, 1)
    return x[:300], y[:300], x[300:], y[300:]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> tuple[dict, Path]:
    tx, ty, vx, vy = _data()
    model = train_classifier(_tiny_cnn(), tx, ty, epochs=2, batch_size=32, lr=3e-3, seed=0,
                             progress=False)
    out = tmp_path_factory.mktemp("neuron-ig")
    res = run_experiment(model, vx, vy, out, layers=LAYERS, settings=SETTINGS,
                         info={"model": "tiny"}, progress=False)
    return res, out


def test_files_written(experiment) -> None:
    res, out = experiment
    for name in ("results.json", "report.md", "ablation_curves.png", "rank_agreement.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "ablation_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["ablation"] == res["ablation"]
    report = (out / "report.md").read_text()
    assert "Layer `conv`" in report and "Layer `dense`" in report


def test_contract_keys(experiment) -> None:
    res, _ = experiment
    for key in ("ablation", "random", "rank_agreement", "topk_overlap", "seconds_per_example",
                "completeness_error", "config", "machine"):
        assert key in res, key
    methods = ["conductance_m2", "conductance_m4", "deeplift_rescale",
               "deeplift_revealcancel", "activation", "grad_x_activation"]
    assert res["methods"] == methods
    assert res["layers"] == ["conv", "dense"]
    assert res["config"]["layers"]["conv"]["level"] == "channel"
    assert res["config"]["layers"]["conv"]["n_neurons"] == 8
    assert res["config"]["layers"]["dense"]["n_neurons"] == 16
    assert res["config"]["n_examples"] == 10
    assert len(res["config"]["examples_per_class"]) == 10  # every class present
    for layer in res["layers"]:
        for m in methods:
            assert res["seconds_per_example"][f"{layer}/{m}"] > 0
        for m in methods[:4]:  # conductance and DeepLIFT: completeness is defined
            err = res["completeness_error"][f"{layer}/{m}"]
            assert set(err) == {"mean_abs", "max_abs", "mean_rel"}
        assert res["completeness_error"][f"{layer}/activation"] is None
        # DeepLIFT sums exactly to the output change at a layer that cuts the network
        assert res["completeness_error"][f"{layer}/deeplift_rescale"]["mean_rel"] < 1e-4
    # the dense layer is followed by a linear layer only: the difference rules are exact there
    assert res["completeness_error"]["dense/conductance_m2"]["mean_rel"] < 1e-4
    assert set(res["completeness_by_rule"]["conv"]) == {"left", "trapezoid", "gausslegendre"}


def test_curve_shapes(experiment) -> None:
    res, _ = experiment
    for layer, n_neurons in (("conv", 8), ("dense", 16)):
        k_max = min(SETTINGS.k_max, n_neurons)
        assert res["k_values"][layer] == list(range(k_max + 1))
        for m in [*res["methods"], "random"]:
            for curves in (res["ablation"], res["ablation_reference"]):
                curve = curves[f"{layer}/{m}"]
                assert len(curve) == k_max + 1
                assert curve[0] == 0.0
                assert all(np.isfinite(curve))
            assert set(res["ablation_auc"][f"{layer}/{m}"]) == {"zero", "reference"}
        for mode in ("zero", "reference"):
            ctrl = res["random"][layer][mode]
            assert ctrl["orders"] == SETTINGS.random_orders
            assert len(ctrl["mean"]) == len(ctrl["std"]) == k_max + 1
            assert ctrl["mean"] == (res["ablation"] if mode == "zero"
                                    else res["ablation_reference"])[f"{layer}/random"]
        flips = res["flips"][f"{layer}/deeplift_rescale"]["zero"]
        assert 0.0 <= flips["flipped_within_K"] <= 1.0


def test_self_agreement_is_one(experiment) -> None:
    res, _ = experiment
    for layer in res["layers"]:
        ra, tk = res["rank_agreement"][layer], res["topk_overlap"][layer]
        n = len(res["methods"])
        assert ra["methods"] == tk["methods"] == res["methods"]
        for i in range(n):
            assert ra["mean"][i][i] == pytest.approx(1.0)
            assert ra["std"][i][i] == pytest.approx(0.0, abs=1e-12)
            assert tk["mean"][i][i] == 1.0
            for j in range(n):
                assert ra["mean"][i][j] == ra["mean"][j][i]
                if ra["mean"][i][j] is not None:
                    assert -1.0 <= ra["mean"][i][j] <= 1.0
        pairs = len(ra["pairs"])
        assert pairs == n * (n - 1) // 2


def test_rank_statistics() -> None:
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [2.5, 0.0, 2.5, 1.0]
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 20))
    b = a.copy()
    b[:, :2] = 0.0  # ties
    assert np.allclose(spearman_rows(a, a), 1.0)
    assert np.allclose(spearman_rows(a, -a), -1.0)
    assert np.isnan(spearman_rows(a, np.ones_like(a))).all()  # constant: undefined
    scipy_stats = pytest.importorskip("scipy.stats")
    for i in range(4):
        assert spearman_rows(a, b)[i] == pytest.approx(scipy_stats.spearmanr(a[i], b[i])[0])
    assert topk_overlap_rows(a, a, 5).tolist() == [1.0] * 4
    assert topk_overlap_rows(a, -a, 5).tolist() == [0.0] * 4


def test_select_examples_balanced() -> None:
    y = torch.arange(100) % 10
    idx = select_examples(y, 20, seed=0)
    assert len(set(idx.tolist())) == 20
    assert torch.bincount(y[idx], minlength=10).tolist() == [2] * 10
    assert torch.equal(idx, select_examples(y, 20, seed=0))


def test_cli_reproduce_without_experiment(capsys) -> None:
    assert main(["reproduce"]) == 2
    assert "neuron-ig" in capsys.readouterr().err
    assert main(["reproduce", "neuron-ig", "--help"]) == 0


def test_cli_rejects_bad_numbers(tmp_path: Path, capsys) -> None:
    code = main(["reproduce", "neuron-ig", "--quick", "--n-examples", "0", "--out",
                 str(tmp_path / "o")])
    assert code == 2
    assert "--n-examples must be positive" in capsys.readouterr().err


def test_cli_quick_digits_fallback(tmp_path: Path, capsys) -> None:
    """The whole command, exit code 0 and files, on the 8x8 digits stand-in (a data folder
    without MNIST), with a fresh weight cache."""
    pytest.importorskip("sklearn")
    empty = tmp_path / "no-data"
    empty.mkdir()
    out = tmp_path / "out"
    code = main(["reproduce", "neuron-ig", "--quick", "--quiet", "--data-dir", str(empty),
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--n-examples",
                 "10"])
    assert code == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["model"] == "digits_cnn"
    assert res["layers"] == ["conv1", "conv2", "dense"]
    assert len(res["ablation"]["dense/deeplift_rescale"]) == 21  # quick: k = 0..20
    assert (out / "report.md").is_file() and (out / "ablation_curves.png").is_file()
