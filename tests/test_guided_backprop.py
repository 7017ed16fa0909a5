"""GuidedBackprop: Captum parity on module-ReLU nets, every ReLU spelling, tuple inputs, modes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from nets import DT, TwoInputNet, randn
from relu_spellings import same_weights, spelling_nets
from torch import nn

from neuron_importance import GuidedBackprop
from neuron_importance.attribution.guided_backprop import _GuidedReluMode

captum_attr = pytest.importorskip("captum.attr")

pytestmark = [
    pytest.mark.filterwarnings("ignore:Input Tensor .* did not already require gradients"),
    pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU"),
]

ATOL = 1e-12
N = 5


def _mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Linear(6, 10), nn.ReLU(),
        nn.Linear(10, 8), nn.Tanh(),
        nn.Linear(8, 8), nn.ReLU(),
        nn.Linear(8, 3),
    ).to(DT).eval()


def _cnn() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3), nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 5), nn.ReLU(),
        nn.Linear(5, 3),
    ).to(DT).eval()


NETS = {"mlp": (_mlp, (6,)), "cnn": (_cnn, (2, 8, 8))}
TARGETS = [2, torch.tensor([0, 2, 1, 1, 0])]


@pytest.mark.parametrize("target", TARGETS, ids=["int", "tensor"])
@pytest.mark.parametrize("net", sorted(NETS))
def test_matches_captum_on_module_relu_nets(net: str, target) -> None:
    make, shape = NETS[net]
    model = make()
    x = randn(N, *shape, seed=10)
    ours = GuidedBackprop(model).attribute(x, target=target)
    theirs = captum_attr.GuidedBackprop(model).attribute(x, target=target)
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, theirs.detach(), atol=ATOL, rtol=0)
    # Guided backprop is not the plain gradient on these nets.
    grad = captum_attr.Saliency(model).attribute(x, target=target, abs=False)
    assert (ours - grad.detach()).abs().max() > 1e-6


def test_guided_relu_clips_negative_signals() -> None:
    # f(x) = −ReLU(x) + 0.5·x: the gradient −1[x>0] + 0.5 is cut to 0.5 by guided backprop,
    # which passes only positive signals back through the ReLU.
    class Net(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (-torch.relu(x) + 0.5 * x).sum(1)

    x = torch.tensor([[-1.0, 0.0, 2.0]], dtype=DT)
    got = GuidedBackprop(Net()).attribute(x)
    torch.testing.assert_close(got, torch.full_like(x, 0.5), atol=0, rtol=0)


def test_model_without_relu_is_the_gradient() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).to(DT).eval()
    x = randn(N, 4, seed=11)
    got = GuidedBackprop(model).attribute(x, target=1)
    grad = captum_attr.Saliency(model).attribute(x, target=1, abs=False)
    torch.testing.assert_close(got, grad.detach(), atol=ATOL, rtol=0)


# ---------------------------------------------------------------- ReLU spellings


SPELLINGS = spelling_nets("max", inplace_views=True)


def _net(name: str) -> nn.Module:
    return same_weights(SPELLINGS[name], DT)


@pytest.mark.parametrize(
    "name", ["FunctionalReLU", "TorchReLU", "MethodReLU", "InplaceReLU", "ReusedReLU",
             "KwargReLU", "StatementInplaceReLU"])
def test_relu_spellings_match_module_version(name: str) -> None:
    module_net = _net("ModuleReLUs")
    model = _net(name)
    x = randn(N, 2, 8, 8, seed=12)
    target = torch.tensor([0, 1, 2, 0, 1])
    expected = GuidedBackprop(module_net).attribute(x, target=target)
    got = GuidedBackprop(model).attribute(x, target=target)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    # The module version is Captum's guided backprop.
    theirs = captum_attr.GuidedBackprop(module_net).attribute(x, target=target)
    torch.testing.assert_close(expected, theirs.detach(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["FunctionalReLU", "TorchReLU", "MethodReLU"])
def test_captum_misses_functional_relu(name: str) -> None:
    # Captum hooks nn.ReLU modules only: with functional ReLUs it returns the plain gradient.
    model = _net(name)
    x = randn(N, 2, 8, 8, seed=12)
    theirs = captum_attr.GuidedBackprop(model).attribute(x, target=0)
    grad = captum_attr.Saliency(model).attribute(x, target=0, abs=False)
    torch.testing.assert_close(theirs.detach(), grad.detach(), atol=ATOL, rtol=0)
    ours = GuidedBackprop(model).attribute(x, target=0)
    assert (ours - theirs.detach()).abs().max() > 1e-6


def test_statement_inplace_relu_keeps_the_model_output() -> None:
    # The guided ReLU must mutate in place like the op it replaces: otherwise a model that
    # calls h.relu_() and uses h would run (and be explained) without its ReLU.
    model = _net("StatementInplaceReLU")
    x = randn(N, 2, 8, 8, seed=12)
    leaves = x.clone().requires_grad_(True)
    with _GuidedReluMode():
        out = model(leaves)
    torch.testing.assert_close(out.detach(), model(x).detach(), atol=ATOL, rtol=0)
    torch.testing.assert_close(
        out.detach(), _net("ModuleReLUs")(x).detach(), atol=ATOL, rtol=0)


def test_inplace_relu_on_the_input_does_not_mutate_caller_tensor() -> None:
    class Net(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(x, inplace=True).sum(1)

    x = randn(N, 4, seed=20)
    before = x.clone()
    got = GuidedBackprop(Net()).attribute(x)
    torch.testing.assert_close(x, before, atol=0, rtol=0)
    torch.testing.assert_close(got, (x > 0).to(DT), atol=0, rtol=0)


# ---------------------------------------------------------------- tuple inputs


@pytest.mark.parametrize("target", TARGETS, ids=["int", "tensor"])
def test_tuple_inputs_with_additional_args_match_captum(target) -> None:
    torch.manual_seed(4)
    model = TwoInputNet(nn.ReLU()).to(DT).eval()
    a, b = randn(N, 5, seed=13), randn(N, 4, seed=14)
    scale = randn(N, 3, seed=15)
    ours = GuidedBackprop(model).attribute((a, b), target=target, additional_forward_args=scale)
    theirs = captum_attr.GuidedBackprop(model).attribute(
        (a, b), target=target, additional_forward_args=scale)
    assert isinstance(ours, tuple) and len(ours) == 2
    for o, t, x in zip(ours, theirs, (a, b)):
        assert o.shape == x.shape
        torch.testing.assert_close(o, t.detach(), atol=ATOL, rtol=0)


def test_input_unused_by_output_gets_zeros() -> None:
    class Net(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.relu(a).sum(1)

    a, b = randn(N, 3, seed=16), randn(N, 2, seed=17)
    ga, gb = GuidedBackprop(Net()).attribute((a, b))
    torch.testing.assert_close(ga, (a > 0).to(DT), atol=0, rtol=0)
    torch.testing.assert_close(gb, torch.zeros_like(b), atol=0, rtol=0)


# ---------------------------------------------------------------- training mode


def test_training_mode_warns_and_restores() -> None:
    torch.manual_seed(6)
    model = nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)
    ).to(DT)
    # Non-trivial running statistics, so that train- and eval-mode batch norm differ.
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    x = randn(N, 6, seed=18)
    model.eval()
    expected = GuidedBackprop(model).attribute(x, target=1)
    model.train()
    with pytest.warns(UserWarning, match="GuidedBackprop: the model is in training mode"):
        got = GuidedBackprop(model).attribute(x, target=1)
    assert all(m.training for m in model.modules())
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_eval_mode_model_does_not_warn(no_warnings) -> None:
    model = _mlp()
    GuidedBackprop(model).attribute(randn(N, 6, seed=19), target=0)


def test_torchscript_is_refused():
    import pytest as _pytest

    from neuron_importance import AttributionError as _AE

    scripted = torch.jit.script(nn.Sequential(nn.Linear(3, 2), nn.ReLU()))
    with _pytest.raises(_AE, match="TorchScript"):
        GuidedBackprop(scripted)
