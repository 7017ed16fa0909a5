"""LayersTotalConductance: several layers from one sweep equal one TotalConductance per layer.

The oracle is :class:`TotalConductance` called once per layer (itself checked against Captum
and closed forms in test_conductance.py) and the model's own outputs (layer completeness).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from nets import DT, SmallCNN, TwoInputNet, randn
from torch import nn

from neuron_importance import (
    AttributionError,
    CompletenessWarning,
    LayersTotalConductance,
    TotalConductance,
)


def deep_mlp() -> nn.Sequential:
    """Linear → ReLU → Linear → Tanh → Linear → ReLU(inplace) → Linear: three cut layers."""
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 7), nn.Tanh(), nn.Linear(7, 6),
        nn.ReLU(inplace=True), nn.Linear(6, 3),
    ).to(DT)


X = randn(6, 5, seed=11)
B = randn(1, 5, seed=12) * 0.1


@pytest.mark.parametrize("method", ["left", "trapezoid", "gausslegendre"])
@pytest.mark.parametrize("internal_batch_size", [None, 7])
def test_equals_one_total_conductance_per_layer(method: str, internal_batch_size) -> None:
    net = deep_mlp()
    layers = ["1", net[3], "5"]  # names and modules mixed; "5" is followed by nothing in place
    kw = dict(target=[0, 1, 2, 0, 1, 2], n_steps=9, method=method,
              internal_batch_size=internal_batch_size, completeness_tol=None)
    got, deltas = LayersTotalConductance(net, layers).attribute(
        X, B, return_convergence_delta=True, **kw)
    assert len(got) == 3 and len(deltas) == 3
    for layer, g, d in zip(layers, got, deltas):
        want, want_d = TotalConductance(net, layer).attribute(
            X, B, return_convergence_delta=True, **kw)
        assert g.shape == want.shape
        # the same operations on the same points: equal, not merely close
        assert torch.equal(g, want)
        assert torch.equal(d, want_d)


def test_conv_layers_equal_total_conductance_and_are_complete() -> None:
    torch.manual_seed(0)
    net = SmallCNN().to(DT)
    x = randn(5, 2, 6, 6, seed=3)
    layers = ["conv", "pool", "fc"]
    got = LayersTotalConductance(net, layers).attribute(x, 0.0, target=2, n_steps=64,
                                                         completeness_tol=None)
    assert [tuple(g.shape) for g in got] == [(5, 4, 4, 4), (5, 4, 2, 2), (5, 3)]
    with torch.no_grad():
        change = net(x)[:, 2] - net(torch.zeros_like(x))[:, 2]
    for layer, g in zip(layers, got):
        assert torch.equal(g, TotalConductance(net, layer).attribute(
            x, 0.0, target=2, n_steps=64, completeness_tol=None))
    # the output layer's conductance is exactly the change of the target; the hidden layers'
    # sum to it up to the path discretisation (ReLU kinks)
    assert torch.allclose(got[2].sum(1), change, atol=1e-12)
    for g in got[:2]:
        assert torch.allclose(g.flatten(1).sum(1), change, atol=5e-2 * float(change.abs().max()))


def test_frozen_parameters_multiple_inputs_and_extra_args() -> None:
    torch.manual_seed(4)
    net = TwoInputNet(nn.Tanh()).to(DT)
    for p in net.parameters():
        p.requires_grad_(False)
    a, b = randn(4, 5, seed=5), randn(4, 4, seed=6)
    scale = torch.tensor([1.0, 2.0, -1.0, 0.5], dtype=DT).unsqueeze(1)
    kw = dict(target=1, additional_forward_args=(scale,), n_steps=12, completeness_tol=None)
    got = LayersTotalConductance(net, ["act_a", "act_b"]).attribute((a, b), **kw)
    for layer, g in zip(["act_a", "act_b"], got):
        want = TotalConductance(net, layer).attribute((a, b), **kw)
        assert torch.equal(g, want) and g.abs().sum() > 0


def test_completeness_warning_names_the_layer() -> None:
    net = deep_mlp()
    with pytest.warns(CompletenessWarning, match=r"LayersTotalConductance \(layer '3'\)"):
        LayersTotalConductance(net, ["3", "6"]).attribute(
            X * 4, target=1, n_steps=1, method="left", completeness_tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # the output layer is always complete, the hidden one with enough steps
        LayersTotalConductance(net, ["6"]).attribute(X, target=1, n_steps=1,
                                                     completeness_tol=1e-9)


def test_errors_name_the_layer() -> None:
    net = deep_mlp()
    with pytest.raises(AttributionError, match="for one layer use TotalConductance"):
        LayersTotalConductance(net, "1")
    with pytest.raises(AttributionError, match="non-empty list"):
        LayersTotalConductance(net, [])
    with pytest.raises(AttributionError, match="layer '1' is listed twice"):
        LayersTotalConductance(net, ["1", net[1]])
    with pytest.raises(AttributionError, match="'9' is not in the model"):
        LayersTotalConductance(net, ["1", "9"])

    class Skips(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.unused = nn.Linear(5, 3), nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x)

    with pytest.raises(AttributionError, match="'unused' was never reached"):
        LayersTotalConductance(Skips().to(DT), ["a", "unused"]).attribute(X, target=0)
