"""``complexity_sweep`` / ``plot_tradeoff`` on a small synthetic task."""

from __future__ import annotations

import numpy as np
import pytest

from neuron_importance.flexible import complexity_sweep, plot_tradeoff
from neuron_importance.flexible.sweep import train_network

KEYS = {"topology", "width", "n_control", "accuracy_mean", "accuracy_std", "accuracy_min",
        "n_evals", "n_params", "n_functions", "description_length", "readout_mean_r2",
        "readout_names", "seconds"}


def _train(x, y, h, m, seed):
    return train_network(x, y, h, m, seed, steps=40)


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    y = (x[:, 0] + np.sin(2 * x[:, 1]) > 0).astype(np.int64)
    return complexity_sweep(x, y, (1, 2), (3, 4), n_folds=2, train_fn=_train, n_points=40)


def test_rows_keys_and_ranges(rows):
    assert [r["topology"] for r in rows] == ["H1_m3", "H1_m4", "H2_m3", "H2_m4"]
    for r in rows:
        assert set(r) == KEYS
        assert 0.0 <= r["accuracy_min"] <= r["accuracy_mean"] <= 1.0 and r["accuracy_std"] >= 0
        assert r["n_evals"] == 2 and r["description_length"] > 0
        assert r["n_functions"] == 3 * r["width"] + r["width"]
        assert len(r["readout_names"]) == r["n_functions"]


def test_more_parameters_never_fewer_functions(rows):
    by_params = sorted(rows, key=lambda r: r["n_params"])
    for a, b in zip(by_params, by_params[1:]):
        assert a["n_params"] < b["n_params"]
        assert a["n_functions"] <= b["n_functions"]
    # dominance in (width, n_control) -> dominance in params and functions
    for a in rows:
        for b in rows:
            if a["width"] <= b["width"] and a["n_control"] <= b["n_control"]:
                assert a["n_params"] <= b["n_params"] and a["n_functions"] <= b["n_functions"]


def test_train_test_split_and_plot(tmp_path, rows):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 2))
    y = (x[:, 0] > 0).astype(np.int64)
    out = complexity_sweep(x, y, (1,), (3,), test_size=0.25, seeds=(0, 1), train_fn=_train,
                           n_points=20)
    assert len(out) == 1 and out[0]["n_evals"] == 2
    path = plot_tradeoff(rows, tmp_path / "t.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_bad_arguments():
    x = np.zeros((10, 2))
    y = np.zeros(10, dtype=np.int64)
    with pytest.raises(ValueError):
        complexity_sweep(x, y, (0,), (3,))
    with pytest.raises(ValueError):
        complexity_sweep(x, y, (1,), (1,))
    with pytest.raises(ValueError):
        complexity_sweep(x, y, (), (3,))
    with pytest.raises(ValueError):
        plot_tradeoff([], "x.png")
