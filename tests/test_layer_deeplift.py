"""LayerDeepLift: DeepLIFT scores of hidden neurons, through the same engine as the inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuron_importance import AttributionError, DeepLift, LayerDeepLift

RULES = ["rescale", "reveal_cancel", "genomics_default"]
D = torch.float64


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 2), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 8), nn.ReLU(), nn.Linear(8, 3),
    ).to(D).eval()


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("layer", ["0", "1", "3", "4", "6", "7"])
def test_layer_contributions_sum_to_delta(rule, layer):
    net = _cnn()
    x, b = torch.randn(5, 1, 8, 8, dtype=D), torch.randn(5, 1, 8, 8, dtype=D)
    attr, delta = LayerDeepLift(net, layer, rule=rule).attribute(
        x, b, target=2, return_convergence_delta=True)
    with torch.no_grad():
        shape = net[: int(layer) + 1](x).shape
        true = net(x)[:, 2] - net(b)[:, 2]
    assert attr.shape == shape
    torch.testing.assert_close(attr.flatten(1).sum(1), true, rtol=0, atol=1e-10)
    assert delta.abs().max() < 1e-10


@pytest.mark.parametrize("layer", [1, 4, 7])
def test_rescale_equals_deeplift_of_the_rest_of_the_network(layer):
    """Under Rescale, the layer's scores are DeepLIFT of the sub-network above the layer,
    with the layer's reference activation as baseline (the chain rule for multipliers)."""
    net = _cnn()
    x, b = torch.randn(4, 1, 8, 8, dtype=D), torch.randn(4, 1, 8, 8, dtype=D)
    with torch.no_grad():
        head, tail = net[: layer + 1], net[layer + 1:]
        y, y0 = head(x), head(b)
    got = LayerDeepLift(net, net[layer]).attribute(x, b, target=1)
    expected = DeepLift(tail).attribute(y, y0, target=1)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", RULES)
def test_split_parts_sum_to_total(rule):
    net = _cnn()
    x = torch.randn(3, 1, 8, 8, dtype=D)
    ld = LayerDeepLift(net, "6", rule=rule)
    parts = ld.attribute(x, target=0, split=True)
    torch.testing.assert_close(parts.total, ld.attribute(x, target=0), rtol=1e-10, atol=1e-12)


def test_inplace_op_after_the_layer_does_not_change_its_scores():
    torch.manual_seed(1)
    conv, lin = nn.Conv1d(2, 3, 3).to(D), nn.Linear(3 * 4, 2).to(D)
    bn = nn.BatchNorm1d(3).to(D).eval()

    def make(inplace):
        return nn.Sequential(conv, bn, nn.ReLU(inplace=inplace), nn.Flatten(), lin).eval()

    x = torch.randn(4, 2, 6, dtype=D)
    a = LayerDeepLift(make(True), "1").attribute(x, target=0)
    b = LayerDeepLift(make(False), "1").attribute(x, target=0)
    torch.testing.assert_close(a, b)


def test_layer_errors_name_the_layer():
    net = _cnn()
    x = torch.randn(2, 1, 8, 8, dtype=D)
    with pytest.raises(AttributionError, match="'features.3' is not in the model"):
        LayerDeepLift(net, "features.3")
    with pytest.raises(AttributionError, match="not a module of this model"):
        LayerDeepLift(net, nn.ReLU())

    class Reuse(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, v):
            return self.lin(torch.relu(self.lin(v)))[:, :1]

    with pytest.raises(AttributionError, match="ran 2 times"):
        LayerDeepLift(Reuse().to(D), "lin").attribute(torch.randn(2, 3, dtype=D))

    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 1)
            self.unused = nn.Linear(3, 1)

        def forward(self, v):
            return self.lin(v)

    with pytest.raises(AttributionError, match="never reached"):
        LayerDeepLift(Skip().to(D), "unused").attribute(torch.randn(2, 3, dtype=D))
    with pytest.raises(AttributionError, match="out of range"):
        LayerDeepLift(net, "6").attribute(x, target=7)
