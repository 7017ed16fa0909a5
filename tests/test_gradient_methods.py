"""Saliency and InputXGradient: closed forms, finite differences, Captum parity, errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from nets import DT, SmallCNN, gen
from torch import nn

from neuron_importance import AttributionError, InputXGradient, Saliency

captum_attr = pytest.importorskip("captum.attr")

# Captum's own chatter about setting requires_grad on the inputs we hand it.
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor .* did not already require gradients")



class TwoInput(nn.Module):
    """f(a, b) = Wa·a + Wb·b² (per class); b's gradient is 2·Wb·b."""

    def __init__(self) -> None:
        super().__init__()
        self.wa = nn.Linear(3, 2, bias=True)
        self.wb = nn.Linear(4, 2, bias=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.wa(a) + self.wb(b**2)


def _mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3), nn.Softplus()).to(DT)


# ---------------------------------------------------------------- closed forms


def test_linear_model_gradient_is_weight_row() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(6, 4).to(DT)
    x = torch.randn(5, 6, dtype=DT, generator=gen(0))
    target = [0, 3, 1, 2, 3]
    rows = lin.weight.detach()[target]
    sal = Saliency(lin).attribute(x, target=target, abs=False)
    torch.testing.assert_close(sal, rows, rtol=0, atol=1e-15)
    torch.testing.assert_close(
        Saliency(lin).attribute(x, target=target), rows.abs(), rtol=0, atol=0
    )
    ixg = InputXGradient(lin).attribute(x, target=target)
    torch.testing.assert_close(ixg, x * rows, rtol=0, atol=1e-15)


def test_quadratic_closed_form() -> None:
    w = torch.tensor([0.5, -2.0, 3.0], dtype=DT)

    def f(x: torch.Tensor) -> torch.Tensor:  # plain forward function, as Captum accepts
        return (w * x**2).sum(dim=1, keepdim=True)

    x = torch.randn(4, 3, dtype=DT, generator=gen(2))
    torch.testing.assert_close(Saliency(f).attribute(x, abs=False), 2 * w * x, rtol=0, atol=1e-14)
    torch.testing.assert_close(InputXGradient(f).attribute(x), 2 * w * x**2, rtol=0, atol=1e-14)


def test_finite_differences_on_mlp() -> None:
    net = _mlp()
    x = torch.randn(3, 5, dtype=DT, generator=gen(3))
    target = torch.tensor([2, 0, 1])
    grad = Saliency(net).attribute(x, target=target, abs=False)
    eps = 1e-6
    fd = torch.zeros_like(x)
    with torch.no_grad():
        for j in range(x.shape[1]):
            e = torch.zeros_like(x)
            e[:, j] = eps
            up = net(x + e).gather(1, target.view(-1, 1)).squeeze(1)
            down = net(x - e).gather(1, target.view(-1, 1)).squeeze(1)
            fd[:, j] = (up - down) / (2 * eps)
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- Captum parity


@pytest.mark.parametrize("abs_", [True, False])
def test_saliency_matches_captum_on_cnn(abs_: bool) -> None:
    torch.manual_seed(4)
    net = SmallCNN().to(DT)
    x = torch.randn(3, 2, 6, 6, dtype=DT, generator=gen(4))
    target = [0, 2, 1]
    ours = Saliency(net).attribute(x, target=target, abs=abs_)
    theirs = captum_attr.Saliency(net).attribute(x.clone(), target=target, abs=abs_)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_input_x_gradient_matches_captum_on_cnn() -> None:
    torch.manual_seed(5)
    net = SmallCNN().to(DT)
    x = torch.randn(3, 2, 6, 6, dtype=DT, generator=gen(5))
    ours = InputXGradient(net).attribute(x, target=1)
    theirs = captum_attr.InputXGradient(net).attribute(x.clone(), target=1)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_tuple_inputs_closed_form_and_captum() -> None:
    torch.manual_seed(6)
    net = TwoInput().to(DT)
    a = torch.randn(4, 3, dtype=DT, generator=gen(6))
    b = torch.randn(4, 4, dtype=DT, generator=gen(7))
    target = [1, 0, 0, 1]
    ga, gb = Saliency(net).attribute((a, b), target=target, abs=False)
    wa, wb = net.wa.weight.detach(), net.wb.weight.detach()
    torch.testing.assert_close(ga, wa[target], rtol=0, atol=1e-15)
    torch.testing.assert_close(gb, 2 * wb[target] * b, rtol=0, atol=1e-14)
    ours = InputXGradient(net).attribute((a, b), target=target)
    assert isinstance(ours, tuple) and len(ours) == 2
    theirs = captum_attr.InputXGradient(net).attribute((a.clone(), b.clone()), target=target)
    for o, t in zip(ours, theirs):
        torch.testing.assert_close(o, t, rtol=0, atol=1e-14)
    # a list of inputs is accepted like a tuple
    assert isinstance(Saliency(net).attribute([a, b], target=target), tuple)


def test_unused_input_gets_zero_gradient() -> None:
    lin = nn.Linear(3, 1).to(DT)

    def f(a: torch.Tensor, unused: torch.Tensor) -> torch.Tensor:
        return lin(a)

    a = torch.randn(2, 3, dtype=DT, generator=gen(8))
    u = torch.randn(2, 5, dtype=DT, generator=gen(9))
    ga, gu = Saliency(f).attribute((a, u), abs=False)
    torch.testing.assert_close(gu, torch.zeros_like(u), rtol=0, atol=0)
    torch.testing.assert_close(ga, lin.weight.detach().expand(2, 3), rtol=0, atol=0)


def test_additional_forward_args() -> None:
    w = torch.tensor([1.0, -1.0, 2.0], dtype=DT)

    def f(x: torch.Tensor, scale: torch.Tensor, power: int) -> torch.Tensor:
        return (scale * w * x**power).sum(dim=1, keepdim=True)

    x = torch.randn(4, 3, dtype=DT, generator=gen(10))
    scale = torch.arange(1.0, 5.0, dtype=DT).view(4, 1)
    got = Saliency(f).attribute(x, abs=False, additional_forward_args=(scale, 2))
    torch.testing.assert_close(got, 2 * scale * w * x, rtol=0, atol=1e-14)
    theirs = captum_attr.Saliency(f).attribute(
        x.clone(), abs=False, additional_forward_args=(scale, 2)
    )
    torch.testing.assert_close(got, theirs, rtol=0, atol=1e-14)


# ---------------------------------------------------------------- targets


@pytest.mark.parametrize("target", [None, 0, [0, 0, 0], torch.tensor([0, 0, 0]), torch.tensor(0)])
def test_targets_on_single_output_model(target: object) -> None:
    torch.manual_seed(11)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1)).to(DT)
    x = torch.randn(3, 4, dtype=DT, generator=gen(11))
    ref = Saliency(net).attribute(x, abs=False)
    got = Saliency(net).attribute(x, target=target, abs=False)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    got = InputXGradient(net).attribute(x, target=target)
    torch.testing.assert_close(got, ref * x, rtol=0, atol=0)


def test_target_forms_agree_on_multi_class() -> None:
    net = _mlp()
    x = torch.randn(3, 5, dtype=DT, generator=gen(12))
    a = Saliency(net).attribute(x, target=[2, 2, 2])
    b = Saliency(net).attribute(x, target=2)
    c = Saliency(net).attribute(x, target=torch.tensor([2, 2, 2]))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=0, atol=0)


# ---------------------------------------------------------------- errors and hygiene


def test_target_out_of_range_names_example_and_classes() -> None:
    net = _mlp()
    x = torch.randn(3, 5, dtype=DT, generator=gen(13))
    with pytest.raises(AttributionError, match=r"target 7 for example 1 .*3 classes"):
        Saliency(net).attribute(x, target=[0, 7, 1])
    with pytest.raises(AttributionError, match="pass target"):
        InputXGradient(net).attribute(x)  # 3 outputs, no target


def test_nan_input_rejected() -> None:
    net = _mlp()
    x = torch.randn(3, 5, dtype=DT, generator=gen(14))
    x[2, 1] = float("nan")
    with pytest.raises(AttributionError, match=r"NaN.*example 2"):
        Saliency(net).attribute(x, target=0)
    with pytest.raises(AttributionError, match="NaN"):
        InputXGradient(net).attribute(x, target=0)


def test_wrong_input_shape_mentions_shape() -> None:
    net = _mlp()
    x = torch.randn(3, 6, dtype=DT, generator=gen(15))
    with pytest.raises(AttributionError, match=r"\(3, 6\)"):
        Saliency(net).attribute(x, target=0)


def test_integer_input_rejected() -> None:
    with pytest.raises(AttributionError, match="floating-point"):
        Saliency(_mlp()).attribute(torch.ones(2, 5, dtype=torch.long), target=0)


def test_training_mode_dropout_warns_and_restores() -> None:
    torch.manual_seed(16)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)).to(DT)
    net.train()
    x = torch.randn(4, 5, dtype=DT, generator=gen(16))
    with pytest.warns(UserWarning, match="training mode"):
        got = Saliency(net).attribute(x, target=1, abs=False)
    assert net.training and all(m.training for m in net.modules())
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = Saliency(net).attribute(x, target=1, abs=False)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)  # dropout was off
    net.train()
    with pytest.warns(UserWarning, match="InputXGradient"):
        InputXGradient(net).attribute(x, target=1)
    assert net.training


def test_user_tensors_and_parameters_untouched() -> None:
    net = _mlp()
    x = torch.randn(3, 5, dtype=DT, generator=gen(17)).requires_grad_()
    x_before = x.detach().clone()
    out = Saliency(net).attribute(x, target=0)
    out2 = InputXGradient(net).attribute(x, target=0)
    assert x.grad is None and x.requires_grad
    assert all(p.grad is None for p in net.parameters())
    assert not out.requires_grad and not out2.requires_grad
    torch.testing.assert_close(x.detach(), x_before, rtol=0, atol=0)


def test_works_under_no_grad() -> None:
    net = _mlp()
    x = torch.randn(3, 5, dtype=DT, generator=gen(18))
    ref = Saliency(net).attribute(x, target=0)
    with torch.no_grad():
        got = Saliency(net).attribute(x, target=0)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
