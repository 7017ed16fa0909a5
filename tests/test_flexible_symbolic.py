"""Symbolic read-out and partial-dependence response curves of flexible-activation models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neuron_importance.flexible import (
    GPActivation,
    KSTNetwork,
    fit_symbolic,
    partial_dependence,
    per_input_responses,
    plot_responses,
    symbolic_readout,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
X = np.linspace(-3.0, 3.0, 200)


@pytest.mark.parametrize("name, fn", [
    ("sin", lambda x: 1.5 * np.sin(2.0 * x + 0.3) - 0.2),
    ("x^2", lambda x: 0.7 * (x - 0.5) ** 2 + 1.0),
    ("tanh", lambda x: 2.0 * np.tanh(1.3 * x - 0.4)),
    ("x", lambda x: 3.0 * x - 1.0),
    ("exp", lambda x: 0.5 * np.exp(0.8 * x)),
    ("log", lambda x: np.log(x + 3.5)),
])
@pytest.mark.parametrize("use_scipy", [True, False])
def test_recovers_known_functions(name, fn, use_scipy):
    rng = np.random.default_rng(0)
    y = fn(X) + 0.01 * rng.standard_normal(X.size)
    fit = fit_symbolic(X, y, use_scipy=use_scipy)
    assert fit.name == name, (fit.name, fit.alternatives)
    assert fit.r2 > 0.999 if use_scipy else fit.r2 > 0.99
    if use_scipy:
        assert fit.rmse < 0.013
        assert np.abs(fit(X) - fn(X)).max() < 0.02
    # the formula string evaluates to the fitted curve
    env = {"sin": np.sin, "tanh": np.tanh, "exp": np.exp, "log": np.log, "abs": np.abs,
           "sigmoid": lambda u: 1 / (1 + np.exp(-u)), "x": X}
    assert np.allclose(eval(fit.formula(digits=12), env), fit(X), atol=1e-6)
    assert fit.description_length == fit.n_params + fit.complexity


def test_simplest_wins_on_exact_curves_and_translation():
    # an exact line is read as a line (sin with a small frequency fits it as well)
    fit = fit_symbolic(X + 10.0, 2.0 * X - 1.0)
    assert fit.name == "x" and fit.description_length == 3 and fit.r2 > 1 - 1e-12
    const = fit_symbolic(X, np.full_like(X, 2.5))
    assert const.name == "const" and const.r2 == 1.0 and math.isclose(const.d, 2.5)
    # parameters are reported in the units of x (not of the standardised x)
    shifted = fit_symbolic(X + 100.0, np.sin(X))
    assert shifted.name == "sin"
    assert np.abs(shifted(X + 100.0) - np.sin(X)).max() < 1e-5
    # restricting the library
    restricted = fit_symbolic(X, np.sin(X), candidates=("x", "x^3"))
    assert set(restricted.alternatives) == {"x", "x^3"} and restricted.r2 < 0.99


def test_fit_symbolic_errors():
    with pytest.raises(ValueError, match="same length"):
        fit_symbolic(X, X[:-1])
    with pytest.raises(ValueError, match="finite"):
        fit_symbolic(X, np.where(X > 0, np.nan, X))
    with pytest.raises(ValueError, match="constant"):
        fit_symbolic(np.ones(10), np.arange(10.0))
    with pytest.raises(ValueError, match="unknown"):
        fit_symbolic(X, X, candidates=("x", "gamma"))


def test_readout_on_kst_network():
    m = KSTNetwork(3, n_outputs=2, width=4, generator=torch.Generator().manual_seed(0))
    ro = symbolic_readout(m, n_points=60)
    assert len(ro) == m.n_functions == 3 * 4 + 2 * 4
    inner = [e for e in ro if e["layer"] == "inner"]
    outer = [e for e in ro if e["layer"] == "outer"]
    assert len(inner) == 12 and len(outer) == 8
    assert {(e["hidden"], e["input"]) for e in inner} == {(q, p) for q in range(4)
                                                          for p in range(3)}
    assert {(e["output"], e["hidden"]) for e in outer} == {(o, q) for o in range(2)
                                                           for q in range(4)}
    # initialised as linear ramps (the RBF interpolant wiggles slightly): read out as lines
    assert all(e["name"] == "x" and e["r2"] > 0.99 for e in ro)
    assert ro.total_description_length == sum(e["description_length"] for e in ro) == 3 * 20
    json.dumps(list(ro))  # machine-readable


def test_readout_on_bank_with_bent_curves():
    bank = GPActivation(2, n_control=12, x_range=(-3, 3), init=lambda c: torch.stack(
        [torch.sin(1.5 * c), c ** 2]))
    ro = symbolic_readout(bank)
    assert [e["name"] for e in ro] == ["sin", "x^2"]
    assert all(e["r2"] > 0.99 for e in ro)
    with pytest.raises(TypeError):
        symbolic_readout(nn.Linear(2, 2))


# ---------------------------------------------------------------------- responses
class Additive(nn.Module):
    def forward(self, x):
        return (torch.sin(x[:, 0]) + x[:, 1] ** 2 - 0.5 * x[:, 2]).unsqueeze(1) + 3.0


COMPONENTS = [np.sin, np.square, lambda v: -0.5 * v]


def test_partial_dependence_recovers_additive_components():
    torch.manual_seed(0)
    xb = torch.randn(64, 3, dtype=torch.float64)
    for j, comp in enumerate(COMPONENTS):
        grid, pd = partial_dependence(Additive(), xb, j, n_points=30)
        assert grid.shape == pd.shape == (30,)
        assert math.isclose(grid[0], float(xb[:, j].min())) and \
            math.isclose(grid[-1], float(xb[:, j].max()))
        diff = pd - comp(grid)
        assert np.ptp(diff) < 1e-10  # equal up to a constant
    g = np.array([-1.0, 0.0, 2.0])
    _, pd = partial_dependence(Additive(), xb.numpy(), 1, grid=g)
    assert np.allclose(pd - pd[1], g ** 2)


def test_per_input_responses_and_plot(tmp_path: Path):
    m = KSTNetwork(3, n_outputs=2, width=4)
    xb = torch.randn(20, 3)
    m.train()
    res = per_input_responses(m, xb, feature_names=["a", "b", "c"], n_points=11)
    assert list(res) == ["a", "b", "c"] and m.training  # mode restored
    assert res["a"][0].shape == (11,) and res["a"][1].shape == (11, 2)
    single = per_input_responses(m, xb, n_points=5, target=1)
    assert list(single) == ["x0", "x1", "x2"] and single["x2"][1].shape == (5,)
    p = plot_responses(res, tmp_path / "sub" / "pd.png", x_background=xb)
    assert p.exists() and p.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError):
        per_input_responses(m, xb, feature_names=["a"])
    with pytest.raises(ValueError):
        partial_dependence(m, xb, 3)


def test_kst_response_matches_additive_readout():
    """A trained KST network on an additive target: its PD curves follow the components."""
    torch.manual_seed(0)
    x = torch.rand(400, 2, dtype=torch.float64) * 4 - 2
    y = torch.sin(x[:, 0]) + x[:, 1] ** 2
    m = KSTNetwork(2, width=5, generator=torch.Generator().manual_seed(0)).double()
    m.fit_normalisation(x)
    opt = torch.optim.Adam(m.parameters(), lr=0.03)
    for _ in range(300):
        opt.zero_grad()
        (m(x).squeeze(1) - y).pow(2).mean().backward()
        opt.step()
    for j, comp in enumerate((np.sin, np.square)):
        g, pd = partial_dependence(m, x, j, n_points=25)
        d = pd - comp(g)
        assert np.abs(d - d.mean()).max() < 0.15
