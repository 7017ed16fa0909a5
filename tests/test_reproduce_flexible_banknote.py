"""``neuron-importance reproduce flexible-banknote``: the banknote loader (de-duplication,
shapes, format errors) and the experiment in a tiny configuration (checks the results.json
contract, not the numbers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from neuron_importance.cli.main import main
from neuron_importance.cli.reproduce import EXPERIMENTS
from neuron_importance.data.banknote import (
    FEATURES,
    FILE_NAME,
    BanknoteFormatError,
    find_banknote_file,
    load_banknote,
)
from neuron_importance.experiments.flexible_banknote import (
    Settings,
    additive_check,
    choose_topology,
    feature_response,
    mlp_hidden_for,
    mlp_parameters,
    run_experiment,
)


def _real_data():
    try:
        return find_banknote_file()
    except FileNotFoundError:
        pytest.skip("banknote data not found (shared data folder absent)")


# ----------------------------------------------------------------------------- loader


def test_loader_real_file_dedup():
    path = _real_data()
    d = load_banknote(path.parent)
    assert d.n_raw == 1372 and d.n_duplicates == 24
    assert d.x.shape == (1348, 4) and d.y.shape == (1348,) and d.x.dtype == np.float64
    assert d.feature_names == FEATURES
    assert len(np.unique(np.column_stack([d.x, d.y]), axis=0)) == 1348
    assert sum(d.class_counts.values()) == 1348
    raw = load_banknote(path, deduplicate=False)
    assert raw.x.shape == (1372, 4) and raw.n_duplicates == 0
    assert raw.class_counts == {0: 762, 1: 610}
    # every dropped row repeats an earlier kept row
    kept = {tuple(r) for r in np.column_stack([d.x, d.y])}
    full = np.column_stack([raw.x, raw.y])
    assert all(tuple(full[i]) in kept for i in d.duplicate_rows)


def test_loader_small_file(tmp_path):
    folder = tmp_path / "banknote"
    folder.mkdir()
    rows = ["1.5,2,3,-1,0", "0.1,-2,3,1,1", "1.5,2,3,-1,0", "-1,0,0,0,1"]
    (folder / FILE_NAME).write_text("\n".join(rows) + "\n")
    d = load_banknote(tmp_path)  # the shared-data-folder form
    assert d.n_raw == 4 and d.duplicate_rows == (2,)
    np.testing.assert_array_equal(d.y, [0, 1, 1])
    np.testing.assert_allclose(d.x[1], [0.1, -2, 3, 1])


@pytest.mark.parametrize("text", ["1,2,3,4\n", "1,2,3,4,2\n", "1,nan,3,4,0\n", "a,b,c,d,e\n"])
def test_loader_format_errors(tmp_path, text):
    (tmp_path / FILE_NAME).write_text(text)
    with pytest.raises(BanknoteFormatError, match=FILE_NAME):
        load_banknote(tmp_path)


def test_loader_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        load_banknote(tmp_path)


def test_cli_registered_and_missing_data(tmp_path, capsys):
    assert "flexible-banknote" in EXPERIMENTS
    code = main(["reproduce", "flexible-banknote", "--quick", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "banknote data not found" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- helpers


def test_feature_response_linear_model():
    lin = nn.Linear(3, 1).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[2.0, -1.0, 0.0]]))
        lin.bias.zero_()
    x = np.random.default_rng(0).normal(size=(50, 3))
    grid, resp = feature_response(lin, x, n_points=11)
    assert grid.shape == resp.shape == (3, 11)
    np.testing.assert_allclose(grid[:, 0], x.min(0))
    np.testing.assert_allclose(np.ptp(resp, axis=1), [2 * np.ptp(x[:, 0]), np.ptp(x[:, 1]), 0],
                               atol=1e-12)


def test_mlp_sizing_and_choice():
    h = mlp_hidden_for(53, 4, 2)
    assert abs(mlp_parameters(h, 4, 2) - 53) <= 3
    cv = {"kst_H1_m3": {"n_params": 18, "mean": 0.99},
          "kst_H2_m4": {"n_params": 45, "mean": 0.996},
          "kst_H9_m6": {"n_params": 273, "mean": 1.0}}
    tops = [(1, 3), (2, 4), (9, 6)]
    assert choose_topology(cv, tops)["name"] == "kst_H2_m4"
    none = choose_topology(cv, tops, goal=1.01)
    assert none["name"] == "kst_H9_m6" and not none["goal_met"]


# ----------------------------------------------------------------------------- experiment


def test_experiment_tiny(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4)) * [3.0, 6.0, 4.0, 2.0]
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(np.int64)
    settings = Settings(seeds=(0,), n_folds=2, topologies=((1, 3), (2, 3)), steps=30,
                        other_datasets=("wine",), other_topology=(1, 3), other_seeds=(0,),
                        sweep_widths=(1, 2), sweep_controls=(3,), sweep_folds=2)
    res = run_experiment(x, y, tmp_path, settings, feature_names=FEATURES,
                         data_info={"n_raw": 80, "n_duplicates": 0}, log=lambda _m: None)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["topology"] == res["topology"]
    cv = saved["cv_accuracy"]
    for model in ("kst", "kst_H1_m3", "kst_H2_m3", "mlp", "logistic_regression", "svm_rbf"):
        assert set(cv[model]) >= {"mean", "std"}
        assert 0.0 <= cv[model]["mean"] <= 1.0 and cv[model]["std"] >= 0.0
    top = saved["topology"]
    assert {"width", "n_control", "n_inputs", "n_params", "goal_met"} <= set(top)
    assert cv["kst"]["mean"] == cv[top["name"]]["mean"]
    imp = saved["feature_importance"]
    assert set(imp["ranking_deeplift"]) == set(FEATURES)
    assert saved["other_datasets"]["wine"]["n_classes"] == 3
    assert {"kst", "logistic_regression", "svm_rbf"} <= set(
        saved["other_datasets"]["wine"]["cv_accuracy"])
    for f in saved["files"]:
        assert (tmp_path / f).is_file()
    assert sum(f.endswith(".png") for f in saved["files"]) >= 2
    assert "Chosen topology" in (tmp_path / "report.md").read_text()
    sweep = saved["complexity_sweep"]
    assert [r["topology"] for r in sweep] == ["H1_m3", "H2_m3"]
    for r in sweep:
        assert {"accuracy_mean", "accuracy_std", "n_params", "n_functions",
                "description_length", "readout_mean_r2"} <= set(r)
    assert "complexity_tradeoff.png" in saved["files"]
    add = saved["additive_check"]
    assert set(add["per_feature"]) == set(FEATURES)
    for v in add["per_feature"].values():
        assert -1.0 <= v["pearson"] <= 1.0 and -1.0 <= v["spearman"] <= 1.0
    assert 0.0 <= add["cv_accuracy"]["mean"] <= 1.0 and -1.0 <= add["mean_pearson"] <= 1.0
    report = (tmp_path / "report.md").read_text()
    assert "Complexity vs expressive power" in report and "Additive-model check" in report


def test_additive_check_recovers_additive_truth():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] - 0.5 * x[:, 1] ** 2 + rng.logistic(size=400) > 0).astype(np.int64)
    grid = np.stack([np.linspace(x[:, p].min(), x[:, p].max(), 41) for p in range(2)])
    truth = np.stack([2 * grid[0], -grid[1] ** 2])  # the true per-feature shapes
    res = additive_check(x, y, grid, truth, ["a", "b"], n_folds=3)
    assert res["per_feature"]["a"]["pearson"] > 0.85
    assert res["per_feature"]["b"]["pearson"] > 0.9
    assert res["cv_accuracy"]["mean"] > 0.6
