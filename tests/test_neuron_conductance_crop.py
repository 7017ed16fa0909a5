"""NeuronConductance on receptive-field crops (neurons/_receptive.py) equals the full backward.

The crop path is taken for plain ``nn.Sequential`` conv stacks; wrapping the same model in a
non-Sequential module forces the full-backward path, which is the oracle here (itself tested
against Captum in test_conductance.py).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuron_importance import NeuronConductance
from neuron_importance.neurons._receptive import crop_plan, receptive_box


class Wrapped(nn.Module):
    def __init__(self, net: nn.Sequential) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mnist_like() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 6, 4, stride=2), nn.ReLU(), nn.Conv2d(6, 8, 4, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 5 * 5, 16), nn.ReLU(), nn.Linear(16, 3),
    )


def pooled() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 5, (2, 3), stride=(1, 2)), nn.Tanh(), nn.AvgPool2d(2, stride=1),
        nn.Dropout(0.3), nn.Flatten(), nn.LazyLinear(3),
    )


def conv1d() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(4, 6, 5), nn.ReLU(), nn.MaxPool1d(3, stride=2), nn.Conv1d(6, 7, 3, stride=2),
        nn.ELU(), nn.Flatten(), nn.LazyLinear(2),
    )


def grouped() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, groups=2), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, groups=2),
        nn.Softplus(), nn.MaxPool2d(2), nn.Flatten(), nn.LazyLinear(2),
    )


CASES = [
    (grouped, (3, 2, 13, 13), "4", [(0, 0, 0), (5, 1, 1), (3, 0, 1), (2, 1, 0)]),
    (grouped, (3, 2, 13, 13), "3", [(0, 0, 0), (5, 4, 4), (3, 2, 1)]),
    (mnist_like, (5, 1, 28, 28), "3", [(0, 0, 0), (3, 4, 4), (7, 2, 3), (3, 0, 4), (1, 2, 3)]),
    (mnist_like, (5, 1, 28, 28), "1", [(0, 0, 0), (5, 12, 12), (2, 7, 1)]),
    (pooled, (4, 2, 17, 19), "6", [(0, 0, 0), (4, 1, 1), (2, 4, 0)]),
    (pooled, (4, 2, 17, 19), "3", [(3, 6, 7), (0, 0, 7)]),
    (conv1d, (6, 4, 40), "4", [(0, 0), (6, 7), (3, 3)]),
]


@pytest.mark.parametrize("make, shape, layer, neurons", CASES)
def test_cropped_neuron_conductance_equals_full_backward(make, shape, layer, neurons) -> None:
    torch.manual_seed(0)
    net = make().double()
    x = torch.randn(*shape, dtype=torch.double)
    net(x)  # materialise lazy layers
    with torch.no_grad():  # non-trivial batch-norm statistics
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    net.eval()
    target = torch.arange(shape[0]) % 2
    fast = NeuronConductance(net, layer)
    xs = (x,)
    assert crop_plan(net, layer, None, xs, (), tuple(
        dict(net.named_children())[layer](net[: int(layer)](x)).shape[1:])) is not None
    slow = NeuronConductance(Wrapped(net), f"net.{layer}")
    for method in ("gausslegendre", "trapezoid"):
        a = fast.attribute(x, neurons, target=target, n_steps=6, method=method)
        b = slow.attribute(x, neurons, target=target, n_steps=6, method=method)
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    # chunking by internal_batch_size goes through the same path
    c = fast.attribute(x, neurons, target=target, n_steps=6, internal_batch_size=7)
    d = slow.attribute(x, neurons, target=target, n_steps=6)
    torch.testing.assert_close(c, d, rtol=1e-9, atol=1e-11)


def test_receptive_box_of_two_strided_convs() -> None:
    net = mnist_like()
    plan = crop_plan(net, "3", None, (torch.zeros(1, 1, 28, 28),), (), (8, 5, 5))
    # k4 s2 then k4 s2: output position p reads input rows 4p .. 4p + 9
    assert receptive_box(plan, (0, 0)) == (slice(0, 10), slice(0, 10))
    assert receptive_box(plan, (4, 2)) == (slice(16, 26), slice(8, 18))


def test_unsupported_models_take_the_full_path() -> None:
    x = (torch.zeros(1, 1, 12, 12),)
    padded = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU())
    assert crop_plan(padded, "1", None, x, (), (2, 12, 12)) is None
    train_bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    assert crop_plan(train_bn, "1", None, x, (), (2, 10, 10)) is None  # training mode
    dense = nn.Sequential(nn.Flatten(), nn.Linear(144, 3))
    assert crop_plan(dense, "1", None, x, (), (3,)) is None
    assert crop_plan(Wrapped(padded), "net.1", None, x, (), (2, 12, 12)) is None
