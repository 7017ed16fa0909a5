"""DeepLIFT rules through the real engine, against numbers worked out by hand.

Each case is small enough to check with pencil and paper; the arithmetic is in comments.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuron_importance import DeepLift

D = torch.float64


def _linear(weight, bias=None):
    w = torch.tensor(weight, dtype=D)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None).double()
    with torch.no_grad():
        lin.weight.copy_(w)
        if bias is not None:
            lin.bias.copy_(torch.tensor(bias, dtype=D))
    return lin


def min_net():
    # o = i1 − ReLU(i1 − i2) = min(i1, i2)
    return nn.Sequential(_linear([[1.0, -1.0], [1.0, 0.0]]), _TwoUnit(),
                         _linear([[-1.0, 1.0]]))


class _TwoUnit(nn.Module):
    """ReLU on the first unit, identity on the second (the i1 pass-through)."""

    def forward(self, h):
        return torch.cat([torch.relu(h[:, :1]), h[:, 1:]], dim=1)


@pytest.mark.parametrize("i1,i2", [(3.0, 1.0), (5.0, 2.0), (1.5, 0.5)])
def test_min_example_reveal_cancel_splits_evenly(i1, i2):
    # Reference (0,0), i1 > i2 > 0. Hidden unit h = i1 − i2 has Δh⁺ = i1, Δh⁻ = −i2.
    # RevealCancel at y = ReLU(h):
    #   Δy⁺ = ½[ReLU(i1) − 0] + ½[ReLU(i1 − i2) − ReLU(−i2)] = ½i1 + ½(i1 − i2)
    #   Δy⁻ = ½[ReLU(−i2) − 0] + ½[ReLU(i1 − i2) − ReLU(i1)] = −½i2
    # o = i1 − y: C_i1 = i1 − Δy⁺ = ½i2, C_i2 = −Δy⁻ = ½i2, i.e. ½·min(i1, i2) each.
    x = torch.tensor([[i1, i2]], dtype=D)
    attr = DeepLift(min_net(), rule="reveal_cancel").attribute(x)
    half_min = 0.5 * min(i1, i2)
    torch.testing.assert_close(attr, torch.tensor([[half_min, half_min]], dtype=D))


def test_min_example_rescale_gives_everything_to_one_input():
    # Rescale with i1 > i2: the ReLU unit has m = Δy/Δx = 1, so o = i1 − (i1 − i2) gives
    # C_i1 = 1·i1 − 1·i1 = 0 and C_i2 = i2.
    x = torch.tensor([[3.0, 1.0]], dtype=D)
    attr = DeepLift(min_net(), rule="rescale").attribute(x)
    torch.testing.assert_close(attr, torch.tensor([[0.0, 1.0]], dtype=D))


def test_relu_with_bias_rescale_credits_only_epsilon():
    # y = ReLU(x − 10), x = 10 + ε, reference 0: Δy = ε, Δx = 10 + ε, m = ε/(10+ε), C = ε.
    eps = 0.25
    net = nn.Sequential(_linear([[1.0]], [-10.0]), nn.ReLU(), _linear([[1.0]]))
    attr = DeepLift(net).attribute(torch.tensor([[10.0 + eps]], dtype=D))
    torch.testing.assert_close(attr, torch.tensor([[eps]], dtype=D))


def test_hand_worked_reveal_cancel_with_split():
    # x = (2, 1), reference (0, 0). Hidden z1 = x1 − x2, z2 = x1 + x2; sigmoid-free: ReLU.
    # z1: Δz1⁺ = 2 (from x1), Δz1⁻ = −1 (from x2); r = 0.
    #   Δy1⁺ = ½[ReLU(2) − 0] + ½[ReLU(1) − ReLU(−1)] = 1 + ½ = 1.5;  m1⁺ = 1.5/2 = 0.75
    #   Δy1⁻ = ½[ReLU(−1) − 0] + ½[ReLU(1) − ReLU(2)] = 0 − ½ = −0.5;  m1⁻ = −0.5/−1 = 0.5
    # z2: Δz2⁺ = 3, Δz2⁻ = 0 → Δy2⁺ = 3 (m = 1), Δy2⁻ = 0.
    # Output o = y1 − y2 (weights 1, −1): Δo⁺ = Δy1⁺·1 = 1.5 (y1's total Δ = 1 > 0 so its
    # term is positive; y2's term −3 is negative): o⁺ gets y1's parts, o⁻ gets y2's parts.
    #   via o⁺ (m_y1 = 1): C_x1 = m1⁺·1·2 = 1.5, C_x2 = m1⁻·(−1)·1 = −0.5  → sums to 1 = Δy1
    #   via o⁻ (m_y2 = −1): C_x1 = −1·1·2 = −2, C_x2 = −1·1·1 = −1           → sums to −3
    net = nn.Sequential(_linear([[1.0, -1.0], [1.0, 1.0]]), nn.ReLU(), _linear([[1.0, -1.0]]))
    x = torch.tensor([[2.0, 1.0]], dtype=D)
    split = DeepLift(net, rule="reveal_cancel").attribute(x, split=True)
    torch.testing.assert_close(split.positive, torch.tensor([[1.5, -0.5]], dtype=D))
    torch.testing.assert_close(split.negative, torch.tensor([[-2.0, -1.0]], dtype=D))
    torch.testing.assert_close(split.total, torch.tensor([[-0.5, -1.5]], dtype=D))


def test_half_rule_when_parts_cancel():
    # x = (1, 1), ref 0: z = x1 − x2 has Δz⁺ = 1, Δz⁻ = −1, Δz = 0.
    # RevealCancel on y = ReLU(z + 0.5) (r = 0.5): Δy⁺ = ½[1.5 − .5] + ½[.5 − 0] = 0.75,
    # Δy⁻ = ½[0 − .5] + ½[.5 − 1.5] = −0.75, so y's Δ = 0 but its parts are ±0.75.
    # The output o = 2·y sees Δy = 0, so the Linear rule uses the ½ case:
    # m_y = ½·W·(m⁺_o + m⁻_o) = ½·2·(1 + 1) = 2 for both of y's parts (0 would drop them).
    # Back through the ReLU: m⁺_z = 2·0.75 = 1.5, m⁻_z = 2·0.75 = 1.5.
    # x1 (Δ=1, w=+1) feeds z⁺: C_x1 = 1.5; x2 (Δ=1, w=−1) feeds z⁻: C_x2 = −1.5. Sum 0 = Δo.
    net = nn.Sequential(_linear([[1.0, -1.0]], [0.5]), nn.ReLU(), _linear([[2.0]]))
    attr = DeepLift(net, rule="reveal_cancel").attribute(torch.tensor([[1.0, 1.0]], dtype=D))
    torch.testing.assert_close(attr, torch.tensor([[1.5, -1.5]], dtype=D))


def test_maxpool_routes_to_reference_argmax_when_output_falls():
    # Window (x) = (1, 3), reference (4, 0): y = 3, y⁰ = 4, Δy = −1 < 0 → route to the
    # reference arg-max (position 0) with Δx = 1 − 4 = −3, m = −1/−3 = 1/3: C = (−1, 0).
    net = nn.Sequential(nn.MaxPool1d(2), nn.Flatten(), _linear([[1.0]]))
    x = torch.tensor([[[1.0, 3.0]]], dtype=D)
    ref = torch.tensor([[[4.0, 0.0]]], dtype=D)
    attr = DeepLift(net).attribute(x, ref)
    torch.testing.assert_close(attr, torch.tensor([[[-1.0, 0.0]]], dtype=D))
    # Rising output: x = (5, 3), ref (4, 0): Δy = 1 → actual arg-max (0), Δx = 1, C = (1, 0).
    attr = DeepLift(net).attribute(torch.tensor([[[5.0, 3.0]]], dtype=D), ref)
    torch.testing.assert_close(attr, torch.tensor([[[1.0, 0.0]]], dtype=D))


def test_genomics_default_picks_rule_by_preceding_layer():
    # Conv → ReLU uses Rescale, Dense → ReLU uses RevealCancel: a net whose only
    # nonlinearity follows a dense layer equals reveal_cancel; after a conv, rescale.
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    conv = nn.Sequential(nn.Conv1d(2, 3, 2), nn.ReLU(), nn.Flatten(), nn.Linear(9, 1)).double()
    x, b = torch.randn(5, 2, 4, dtype=D), torch.randn(5, 2, 4, dtype=D)
    for net, same in ((dense, "reveal_cancel"), (conv, "rescale")):
        got = DeepLift(net, rule="genomics_default").attribute(x, b)
        torch.testing.assert_close(got, DeepLift(net, rule=same).attribute(x, b))


def test_purely_linear_net_equals_gradient_times_delta():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 2)).double()
    x, b = torch.randn(3, 5, dtype=D), torch.randn(3, 5, dtype=D)
    w = (net[1].weight @ net[0].weight)[1]
    for rule in ("rescale", "reveal_cancel", "genomics_default"):
        attr = DeepLift(net, rule=rule).attribute(x, b, target=1)
        torch.testing.assert_close(attr, w * (x - b))


def test_sigmoid_output_attributes_to_logit():
    # σ(x1 + x2) with x = (50, 0): summation to the probability would give 0.5 to x1;
    # attribution to the logit gives 50 (the paper's §3.6 example).
    net = nn.Sequential(_linear([[1.0, 1.0]]), nn.Sigmoid())
    x = torch.tensor([[50.0, 0.0]], dtype=D)
    torch.testing.assert_close(DeepLift(net).attribute(x), torch.tensor([[50.0, 0.0]], dtype=D))
    raw = DeepLift(net, output="raw").attribute(x)
    torch.testing.assert_close(raw.sum(), torch.tensor(0.5, dtype=D))
