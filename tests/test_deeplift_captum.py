"""DeepLift (Rescale) against ``captum.attr.DeepLift``, and the cases where Captum is wrong.

Captum 0.9 is a trustworthy oracle only on *module-per-use* networks attributed to logits
(docs/methods/deeplift.md §5–§7): it hooks ``nn.Module`` nonlinearities, so functional ops
(``F.relu``, ``torch.relu``, ``x.relu()``) silently get plain gradients and a reused module
raises; it routes ReLU→MaxPool wrongly with a non-zero reference (captum#1104); and it
mean-subtracts softmax multipliers across the batch (captum#1367). The parity tests use
nets where Captum is right; the others check that we are right where it is not.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuron_importance import DeepLift

captum_attr = pytest.importorskip("captum.attr")

pytestmark = [
    pytest.mark.filterwarnings("ignore:Input Tensor .* did not already require gradients"),
    pytest.mark.filterwarnings("ignore:Setting forward, backward hooks"),
]

DT = torch.float64
ATOL = 1e-10


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=DT, generator=_gen(seed))


# ---------------------------------------------------------------- module-per-use nets


def _mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Linear(6, 10), nn.ReLU(),
        nn.Linear(10, 8), nn.Sigmoid(),
        nn.Linear(8, 8), nn.Tanh(),
        nn.Linear(8, 3),
    ).to(DT).eval()


def _cnn() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 5), nn.Tanh(),
        nn.Linear(5, 3),
    ).to(DT).eval()


def _conv1d() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv1d(4, 6, 5), nn.ReLU(),
        nn.Conv1d(6, 4, 3), nn.Sigmoid(),
        nn.Flatten(),
        nn.Linear(4 * 12, 3),
    ).to(DT).eval()


NETS = {
    "mlp": (_mlp, (6,)),
    "cnn": (_cnn, (2, 8, 8)),
    "conv1d": (_conv1d, (4, 18)),
}
N = 5


def _baseline(kind: str, shape: tuple[int, ...]) -> torch.Tensor:
    if kind == "zero":
        return torch.zeros(N, *shape, dtype=DT)
    return _randn(N, *shape, seed=11)


def _target(kind: str):
    return 2 if kind == "int" else torch.tensor([0, 2, 1, 1, 0])


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("base", ["zero", "random"])
@pytest.mark.parametrize("tgt", ["int", "tensor"])
def test_rescale_matches_captum(net: str, base: str, tgt: str) -> None:
    make, shape = NETS[net]
    model = make()
    x = _randn(N, *shape, seed=10)
    b = _baseline(base, shape)
    target = _target(tgt)
    ours, d_ours = DeepLift(model, rule="rescale").attribute(
        x, b, target=target, return_convergence_delta=True)
    theirs, d_theirs = captum_attr.DeepLift(model).attribute(
        x, b, target=target, return_convergence_delta=True)
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, theirs.detach(), atol=ATOL, rtol=0)
    torch.testing.assert_close(d_ours, d_theirs.detach(), atol=ATOL, rtol=0)
    assert d_ours.abs().max() < ATOL
    # Non-trivial: the attributions are not all zero.
    assert ours.abs().sum() > 1e-3


class TwoInputNet(nn.Module):
    """f(a, b; scale) = W·[ReLU(A a), σ(B b)] ⊙ scale — two inputs and an extra tensor arg."""

    def __init__(self) -> None:
        super().__init__()
        self.fa = nn.Linear(5, 6)
        self.relu = nn.ReLU()
        self.fb = nn.Linear(4, 6)
        self.sig = nn.Sigmoid()
        self.fc = nn.Linear(12, 3)

    def forward(self, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.relu(self.fa(a)), self.sig(self.fb(b))], dim=1)
        return self.fc(h) * scale


@pytest.mark.parametrize("base", ["zero", "random"])
@pytest.mark.parametrize("tgt", ["int", "tensor"])
def test_tuple_inputs_with_additional_args_match_captum(base: str, tgt: str) -> None:
    torch.manual_seed(4)
    model = TwoInputNet().to(DT).eval()
    a, b = _randn(N, 5, seed=20), _randn(N, 4, seed=21)
    scale = _randn(N, 3, seed=22).abs() + 0.5
    if base == "zero":
        bases = (torch.zeros_like(a), torch.zeros_like(b))
    else:
        bases = (_randn(N, 5, seed=23), _randn(N, 4, seed=24))
    target = _target(tgt)
    ours, d_ours = DeepLift(model).attribute(
        (a, b), bases, target=target, additional_forward_args=(scale,),
        return_convergence_delta=True)
    theirs, d_theirs = captum_attr.DeepLift(model).attribute(
        (a, b), bases, target=target, additional_forward_args=(scale,),
        return_convergence_delta=True)
    assert isinstance(ours, tuple) and len(ours) == 2
    for o, t in zip(ours, theirs):
        torch.testing.assert_close(o, t.detach(), atol=ATOL, rtol=0)
    torch.testing.assert_close(d_ours, d_theirs.detach(), atol=ATOL, rtol=0)
    # Summation-to-delta over both inputs, against a direct evaluation.
    with torch.no_grad():
        idx = target if isinstance(target, torch.Tensor) else torch.full((N,), target)
        fx = model(a, b, scale).gather(1, idx.view(-1, 1)).squeeze(1)
        fr = model(*bases, scale).gather(1, idx.view(-1, 1)).squeeze(1)
    total = ours[0].sum(1) + ours[1].sum(1)
    torch.testing.assert_close(total, fx - fr, atol=ATOL, rtol=0)


# ---------------------------------------------------------------- (a) ReLU → MaxPool


def _relu_maxpool_net() -> nn.Module:
    torch.manual_seed(0)
    # Overlapping windows (k=3, s=1): arg-max positions of input and reference differ often.
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(3, stride=1),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 2),
    ).to(DT).eval()


def test_relu_maxpool_nonzero_reference_sums_to_delta_where_captum_does_not() -> None:
    model = _relu_maxpool_net()
    x = _randn(4, 1, 6, 6, seed=30)
    b = _randn(4, 1, 6, 6, seed=31)
    ours, d_ours = DeepLift(model).attribute(x, b, target=1, return_convergence_delta=True)
    _, d_theirs = captum_attr.DeepLift(model).attribute(
        x, b, target=1, return_convergence_delta=True)
    with torch.no_grad():
        expected = model(x)[:, 1] - model(b)[:, 1]
    err_ours = (ours.sum((1, 2, 3)) - expected).abs().max().item()
    err_captum = d_theirs.detach().abs().max().item()
    print(f"ReLU->MaxPool2d(3,1), random reference: summation-to-delta error "
          f"ours {err_ours:.3g}, captum {err_captum:.3g}")
    assert err_ours < 1e-10
    assert d_ours.abs().max().item() < 1e-10
    assert err_captum > 1e-4  # captum#1104


# ---------------------------------------------------------------- (b) functional / reused ReLU


class _Weights(nn.Module):
    """The layers of a small CNN, shared by every ReLU spelling below."""

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
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.r1(self.conv1(x))
        h = self.pool(self.r2(self.conv2(h)))
        return self.fc2(self.r3(self.fc1(h.flatten(1))))


class FunctionalReLU(_Weights):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        h = F.avg_pool2d(F.relu(self.conv2(h)), 2)
        return self.fc2(F.relu(self.fc1(h.flatten(1))))


class TorchReLU(_Weights):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        h = F.avg_pool2d(torch.relu(self.conv2(h)), 2)
        return self.fc2(torch.relu(self.fc1(h.flatten(1))))


class MethodReLU(_Weights):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x).relu()
        h = F.avg_pool2d(self.conv2(h).relu(), 2)
        return self.fc2(self.fc1(h.flatten(1)).relu())


class InplaceReLU(_Weights):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x), inplace=True)
        h = F.avg_pool2d(self.conv2(h).relu_(), 2)
        return self.fc2(torch.relu_(self.fc1(h.flatten(1))))


class ReusedReLU(_Weights):
    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv1(x))
        h = self.pool(self.relu(self.conv2(h)))
        return self.fc2(self.relu(self.fc1(h.flatten(1))))


def _same_weights(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(5)
    ref = ModuleReLUs()
    model = cls()
    model.load_state_dict(ref.state_dict())
    return model.to(DT).eval()


VARIANTS = [FunctionalReLU, TorchReLU, MethodReLU, InplaceReLU, ReusedReLU]


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel", "genomics_default"])
@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_relu_spellings_match_module_per_use(cls: type[nn.Module], rule: str) -> None:
    module_net = _same_weights(ModuleReLUs)
    model = _same_weights(cls)
    x = _randn(N, 2, 4 * 2, 4 * 2, seed=40)
    b = _randn(N, 2, 8, 8, seed=41)
    target = torch.tensor([0, 1, 2, 0, 1])
    expected = DeepLift(module_net, rule=rule).attribute(x, b, target=target)
    got, delta = DeepLift(model, rule=rule).attribute(
        x, b, target=target, return_convergence_delta=True)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    assert delta.abs().max() < 1e-10
    # And the module-per-use net is what Captum computes.
    if rule == "rescale":
        theirs = captum_attr.DeepLift(module_net).attribute(x, b, target=target)
        torch.testing.assert_close(expected, theirs.detach(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("cls", [FunctionalReLU, TorchReLU, MethodReLU], ids=lambda c: c.__name__)
def test_captum_uses_plain_gradient_for_functional_relu(cls: type[nn.Module]) -> None:
    # Captum only hooks nn.Module nonlinearities: a functional ReLU gets its plain gradient,
    # so Captum's "DeepLift" of this model differs from DeepLIFT and breaks summation.
    model = _same_weights(cls)
    x = _randn(N, 2, 8, 8, seed=40)
    b = _randn(N, 2, 8, 8, seed=41)
    ours = DeepLift(model).attribute(x, b, target=0)
    theirs, d_theirs = captum_attr.DeepLift(model).attribute(
        x, b, target=0, return_convergence_delta=True)
    assert (ours - theirs.detach()).abs().max() > 1e-4
    assert d_theirs.abs().max() > 1e-4


def test_captum_raises_on_reused_relu() -> None:
    model = _same_weights(ReusedReLU)
    x = _randn(N, 2, 8, 8, seed=40)
    with pytest.raises(RuntimeError, match="used more than once"):
        captum_attr.DeepLift(model).attribute(x, target=0)


class StatementInplaceReLU(_Weights):
    """In-place ReLUs whose return value is discarded: the model relies on the mutation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x)
        h.relu_()
        h = self.conv2(h)
        F.relu(h, inplace=True)
        h = self.fc1(F.avg_pool2d(h, 2).flatten(1))
        torch.relu_(h)
        return self.fc2(h)


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel", "genomics_default"])
def test_statement_inplace_relu_matches_module_per_use(rule: str) -> None:
    module_net = _same_weights(ModuleReLUs)
    model = _same_weights(StatementInplaceReLU)
    x = _randn(N, 2, 8, 8, seed=40)
    b = _randn(N, 2, 8, 8, seed=41)
    with torch.no_grad():  # the two models are the same function
        torch.testing.assert_close(model(x), module_net(x), atol=1e-12, rtol=0)
        expected_delta = model(x)[:, 0] - model(b)[:, 0]
    got = DeepLift(model, rule=rule).attribute(x, b, target=0)
    torch.testing.assert_close(got.sum((1, 2, 3)), expected_delta, atol=1e-10, rtol=0)
    expected = DeepLift(module_net, rule=rule).attribute(x, b, target=0)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


# ---------------------------------------------------------------- (c) softmax outputs


def _softmax_pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(6)
    body = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 7), nn.Tanh(),
                         nn.Linear(7, 4)).to(DT).eval()
    return body, nn.Sequential(body, nn.Softmax(dim=1)).eval()


class _MeanCentred(nn.Module):
    """Outputs ``z − mean_j z_j``: what mean-subtracted softmax attribution explains."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.body(x)
        return z - z.mean(dim=1, keepdim=True)


SOFTMAX_TARGETS = [3, torch.tensor([0, 3, 1, 2, 2])]


@pytest.mark.parametrize("target", SOFTMAX_TARGETS, ids=["int", "tensor"])
@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_output_attributes_to_logits(target, fn: str) -> None:
    body, _ = _softmax_pair()

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return getattr(F, fn)(self.body(x), dim=1)

    x, b = _randn(N, 6, seed=50), _randn(N, 6, seed=51)
    got, delta = DeepLift(Net()).attribute(x, b, target=target, return_convergence_delta=True)
    expected = DeepLift(body).attribute(x, b, target=target)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    assert delta.abs().max() < 1e-10
    # The logit attributions are Captum's on the softmax-free body (Captum on the softmax
    # model would mean-subtract multipliers across the batch, captum#1367).
    theirs = captum_attr.DeepLift(body).attribute(x, b, target=target)
    torch.testing.assert_close(got, theirs.detach(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
@pytest.mark.parametrize("target", SOFTMAX_TARGETS, ids=["int", "tensor"])
def test_softmax_mean_subtraction_explains_centred_logit(target, rule: str) -> None:
    body, model = _softmax_pair()
    x, b = _randn(N, 6, seed=52), _randn(N, 6, seed=53)
    got, delta = DeepLift(model, rule=rule, softmax_mean_subtraction=True).attribute(
        x, b, target=target, return_convergence_delta=True)
    expected = DeepLift(_MeanCentred(body), rule=rule).attribute(x, b, target=target)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    assert delta.abs().max() < 1e-10
    # Equivalently C'_c = C_c − (1/n) Σ_j C_j (the paper's adjustment).
    plain = DeepLift(model, rule=rule)
    per_class = torch.stack([plain.attribute(x, b, target=j) for j in range(4)])
    idx = target if isinstance(target, torch.Tensor) else torch.full((N,), target)
    c_t = per_class[idx, torch.arange(N)]
    torch.testing.assert_close(got, c_t - per_class.mean(0), atol=1e-12, rtol=0)


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
def test_softmax_mean_subtraction_leaves_class_differences_unchanged(rule: str) -> None:
    _, model = _softmax_pair()
    x, b = _randn(N, 6, seed=54), _randn(N, 6, seed=55)
    c, c2 = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([3, 3, 0, 1, 2])
    centred = DeepLift(model, rule=rule, softmax_mean_subtraction=True)
    plain = DeepLift(model, rule=rule)
    diff_centred = centred.attribute(x, b, target=c) - centred.attribute(x, b, target=c2)
    diff_plain = plain.attribute(x, b, target=c) - plain.attribute(x, b, target=c2)
    torch.testing.assert_close(diff_centred, diff_plain, atol=1e-12, rtol=0)
    # ... while the single-class attributions do differ.
    assert (centred.attribute(x, b, target=c) - plain.attribute(x, b, target=c)).abs().max() > 1e-3


def test_softmax_mean_subtraction_split_parts_sum_to_total() -> None:
    _, model = _softmax_pair()
    x, b = _randn(N, 6, seed=56), _randn(N, 6, seed=57)
    dl = DeepLift(model, softmax_mean_subtraction=True)
    parts = dl.attribute(x, b, target=1, split=True)
    total = dl.attribute(x, b, target=1)
    torch.testing.assert_close(parts.positive + parts.negative, total, atol=1e-12, rtol=0)
    torch.testing.assert_close(parts.total, total, atol=1e-12, rtol=0)
