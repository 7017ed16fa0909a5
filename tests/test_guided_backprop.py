"""GuidedBackprop: Captum parity on module-ReLU nets, every ReLU spelling, tuple inputs, modes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuron_importance import GuidedBackprop
from neuron_importance.attribution.guided_backprop import _GuidedReluMode

captum_attr = pytest.importorskip("captum.attr")

pytestmark = [
    pytest.mark.filterwarnings("ignore:Input Tensor .* did not already require gradients"),
    pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU"),
]

DT = torch.float64
ATOL = 1e-12
N = 5


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=DT, generator=torch.Generator().manual_seed(seed))


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
    x = _randn(N, *shape, seed=10)
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
    x = _randn(N, 4, seed=11)
    got = GuidedBackprop(model).attribute(x, target=1)
    grad = captum_attr.Saliency(model).attribute(x, target=1, abs=False)
    torch.testing.assert_close(got, grad.detach(), atol=ATOL, rtol=0)


# ---------------------------------------------------------------- ReLU spellings


class _Weights(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 4 * 4, 8)
        self.fc2 = nn.Linear(8, 3)


class ModuleReLUs(_Weights):
    def __init__(self) -> None:
        super().__init__()
        self.r1, self.r2, self.r3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.r1(self.conv1(x))
        h = self.pool(self.r2(self.conv2(h)))
        return self.fc2(self.r3(self.fc1(h.flatten(1))))


class FunctionalReLU(_Weights):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return self.fc2(F.relu(self.fc1(h.flatten(1))))


class TorchReLU(_Weights):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        h = F.max_pool2d(torch.relu(self.conv2(h)), 2)
        return self.fc2(torch.relu(self.fc1(h.flatten(1))))


class MethodReLU(_Weights):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x).relu()
        h = F.max_pool2d(self.conv2(h).relu(), 2)
        return self.fc2(self.fc1(h.flatten(1)).relu())


class InplaceReLU(_Weights):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x), inplace=True)
        h = F.max_pool2d(self.conv2(h).relu_(), 2)
        return self.fc2(torch.relu_(self.fc1(h.flatten(1))))


class ReusedReLU(_Weights):
    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv1(x))
        h = self.pool(self.relu(self.conv2(h)))
        return self.fc2(self.relu(self.fc1(h.flatten(1))))


class KwargReLU(_Weights):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(input=self.conv1(x))
        h = F.max_pool2d(F.relu(input=self.conv2(h)), 2)
        return self.fc2(torch.relu(input=self.fc1(h.flatten(1))))


class StatementInplaceReLU(_Weights):
    """In-place ReLUs whose return value is discarded: the model relies on the mutation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x)
        h.relu_()
        h = self.conv2(h)
        F.relu(h, inplace=True)
        h = self.fc1(F.max_pool2d(h, 2).flatten(1))
        torch.relu_(h[:, :4])  # two views of one tensor, each rectified in place
        torch.relu_(h[:, 4:])
        return self.fc2(h)


def _same_weights(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(5)
    ref = ModuleReLUs()
    model = cls()
    model.load_state_dict(ref.state_dict())
    return model.to(DT).eval()


@pytest.mark.parametrize(
    "cls", [FunctionalReLU, TorchReLU, MethodReLU, InplaceReLU, ReusedReLU, KwargReLU,
            StatementInplaceReLU],
    ids=lambda c: c.__name__)
def test_relu_spellings_match_module_version(cls: type[nn.Module]) -> None:
    module_net = _same_weights(ModuleReLUs)
    model = _same_weights(cls)
    x = _randn(N, 2, 8, 8, seed=12)
    target = torch.tensor([0, 1, 2, 0, 1])
    expected = GuidedBackprop(module_net).attribute(x, target=target)
    got = GuidedBackprop(model).attribute(x, target=target)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    # The module version is Captum's guided backprop.
    theirs = captum_attr.GuidedBackprop(module_net).attribute(x, target=target)
    torch.testing.assert_close(expected, theirs.detach(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("cls", [FunctionalReLU, TorchReLU, MethodReLU], ids=lambda c: c.__name__)
def test_captum_misses_functional_relu(cls: type[nn.Module]) -> None:
    # Captum hooks nn.ReLU modules only: with functional ReLUs it returns the plain gradient.
    model = _same_weights(cls)
    x = _randn(N, 2, 8, 8, seed=12)
    theirs = captum_attr.GuidedBackprop(model).attribute(x, target=0)
    grad = captum_attr.Saliency(model).attribute(x, target=0, abs=False)
    torch.testing.assert_close(theirs.detach(), grad.detach(), atol=ATOL, rtol=0)
    ours = GuidedBackprop(model).attribute(x, target=0)
    assert (ours - theirs.detach()).abs().max() > 1e-6


def test_statement_inplace_relu_keeps_the_model_output() -> None:
    # The guided ReLU must mutate in place like the op it replaces: otherwise a model that
    # calls h.relu_() and uses h would run (and be explained) without its ReLU.
    model = _same_weights(StatementInplaceReLU)
    x = _randn(N, 2, 8, 8, seed=12)
    leaves = x.clone().requires_grad_(True)
    with _GuidedReluMode():
        out = model(leaves)
    torch.testing.assert_close(out.detach(), model(x).detach(), atol=ATOL, rtol=0)
    torch.testing.assert_close(
        out.detach(), _same_weights(ModuleReLUs)(x).detach(), atol=ATOL, rtol=0)


def test_inplace_relu_on_the_input_does_not_mutate_caller_tensor() -> None:
    class Net(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(x, inplace=True).sum(1)

    x = _randn(N, 4, seed=20)
    before = x.clone()
    got = GuidedBackprop(Net()).attribute(x)
    torch.testing.assert_close(x, before, atol=0, rtol=0)
    torch.testing.assert_close(got, (x > 0).to(DT), atol=0, rtol=0)


# ---------------------------------------------------------------- tuple inputs


class TwoInputNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fa = nn.Linear(5, 6)
        self.ra = nn.ReLU()
        self.fb = nn.Linear(4, 6)
        self.rb = nn.ReLU()
        self.fc = nn.Linear(12, 3)

    def forward(self, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.ra(self.fa(a)), self.rb(self.fb(b))], dim=1)
        return self.fc(h) * scale


@pytest.mark.parametrize("target", TARGETS, ids=["int", "tensor"])
def test_tuple_inputs_with_additional_args_match_captum(target) -> None:
    torch.manual_seed(4)
    model = TwoInputNet().to(DT).eval()
    a, b = _randn(N, 5, seed=13), _randn(N, 4, seed=14)
    scale = _randn(N, 3, seed=15)
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

    a, b = _randn(N, 3, seed=16), _randn(N, 2, seed=17)
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
    x = _randn(N, 6, seed=18)
    model.eval()
    expected = GuidedBackprop(model).attribute(x, target=1)
    model.train()
    with pytest.warns(UserWarning, match="GuidedBackprop: the model is in training mode"):
        got = GuidedBackprop(model).attribute(x, target=1)
    assert all(m.training for m in model.modules())
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_eval_mode_model_does_not_warn(no_warnings) -> None:
    model = _mlp()
    GuidedBackprop(model).attribute(_randn(N, 6, seed=19), target=0)


def test_torchscript_is_refused():
    import pytest as _pytest

    from neuron_importance import AttributionError as _AE

    scripted = torch.jit.script(nn.Sequential(nn.Linear(3, 2), nn.ReLU()))
    with _pytest.raises(_AE, match="TorchScript"):
        GuidedBackprop(scripted)
