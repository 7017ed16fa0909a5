"""The engine against the independent NumPy DeepLIFT (tests/oracles), number for number."""

import numpy as np
import pytest
import torch
from oracles import deeplift_numpy as oracle
from torch import nn

from neuron_importance import DeepLift

RULES = ["rescale", "reveal_cancel", "genomics_default"]


def _bn(c, dim):
    bn = nn.BatchNorm1d(c) if dim == 1 else nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.weight[0] = -abs(bn.weight[0]) - 0.1  # a negative scale swaps the ± parts
        bn.bias.normal_()
    return bn


def dense_net():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 7), nn.Sigmoid(),
                         nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3)), (6,)


def conv1d_net():
    return nn.Sequential(
        nn.Conv1d(4, 5, 3), _bn(5, 1), nn.ReLU(), nn.MaxPool1d(3, stride=2),
        nn.Conv1d(5, 6, 3, padding=1), nn.Softplus(), nn.AvgPool1d(2), nn.Flatten(),
        nn.Linear(6 * 3, 7), nn.LeakyReLU(0.1), nn.Linear(7, 3),
    ), (4, 16)


def conv2d_net():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3), _bn(4, 2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 3, 2),
        nn.Tanh(), nn.Flatten(), nn.Linear(3 * 3 * 3, 6), nn.ReLU(), nn.Linear(6, 4),
    ), (2, 10, 10)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("make", [dense_net, conv1d_net, conv2d_net])
def test_engine_matches_numpy_oracle(make, rule):
    torch.manual_seed(1)
    net, shape = make()
    net = net.double().eval()
    x = torch.randn(3, *shape, dtype=torch.float64)
    ref = 0.5 * torch.randn(3, *shape, dtype=torch.float64)
    x[:, ..., 0] = ref[:, ..., 0]  # some features with Δx = 0 exercise the ½ rule
    layers = oracle.from_torch(net)
    target = 1
    dl = DeepLift(net, rule=rule)
    split = dl.attribute(x, ref, target=target, split=True)
    total = dl.attribute(x, ref, target=target)
    mult = dl.multipliers(x, ref, target=target)
    for i in range(x.shape[0]):
        exp = oracle.deeplift(layers, x[i].numpy(), ref[i].numpy(), target, rule)
        np.testing.assert_allclose(total[i].numpy(), exp["contribs"], rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(split.positive[i].numpy(), exp["contribs_pos"], rtol=1e-9,
                                   atol=1e-11)
        np.testing.assert_allclose(split.negative[i].numpy(), exp["contribs_neg"], rtol=1e-9,
                                   atol=1e-11)
        nz = (x[i] != ref[i]).numpy()
        np.testing.assert_allclose(mult[i].numpy()[nz], exp["multipliers"][nz], rtol=1e-9,
                                   atol=1e-11)


@pytest.mark.parametrize("rule", ["rescale", "genomics_default"])
def test_near_zero_differences_use_the_derivative_at_the_reference(rule):
    """|Δx| < 1e-7 at a nonlinearity: Rescale takes f′(x⁰), in the engine as in the oracle."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Softplus(), nn.Flatten(), nn.Linear(12, 4),
                        nn.Tanh(), nn.Linear(4, 2)).double().eval()
    ref = torch.randn(2, 2, 6, dtype=torch.float64)
    x = ref + 1e-9 * torch.randn(2, 2, 6, dtype=torch.float64)
    x[1] = ref[1] + torch.randn(2, 6, dtype=torch.float64)  # one ordinary example too
    dl = DeepLift(net, rule=rule)
    mult = dl.multipliers(x, ref, target=0)
    layers = oracle.from_torch(net)
    for i in range(2):
        exp = oracle.deeplift(layers, x[i].numpy(), ref[i].numpy(), 0, rule)
        # Differences of 1e-9 cancel catastrophically in f(x⁰+Δ) − f(x⁰) (RevealCancel after the
        # dense layer in genomics_default); torch and NumPy round differently there.
        np.testing.assert_allclose(mult[i].numpy(), exp["multipliers"], rtol=1e-5, atol=1e-12)
