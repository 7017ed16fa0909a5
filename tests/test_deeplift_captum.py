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
from nets import DT, TwoInputNet, randn
from relu_spellings import same_weights, spelling_nets
from torch import nn

from neuron_importance import DeepLift

captum_attr = pytest.importorskip("captum.attr")

pytestmark = [
    pytest.mark.filterwarnings("ignore:Input Tensor .* did not already require gradients"),
    pytest.mark.filterwarnings("ignore:Setting forward, backward hooks"),
]

ATOL = 1e-10


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
    return randn(N, *shape, seed=11)


def _target(kind: str):
    return 2 if kind == "int" else torch.tensor([0, 2, 1, 1, 0])


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("base", ["zero", "random"])
@pytest.mark.parametrize("tgt", ["int", "tensor"])
def test_rescale_matches_captum(net: str, base: str, tgt: str) -> None:
    make, shape = NETS[net]
    model = make()
    x = randn(N, *shape, seed=10)
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


@pytest.mark.parametrize("base", ["zero", "random"])
@pytest.mark.parametrize("tgt", ["int", "tensor"])
def test_tuple_inputs_with_additional_args_match_captum(base: str, tgt: str) -> None:
    torch.manual_seed(4)
    model = TwoInputNet(nn.Sigmoid()).to(DT).eval()
    a, b = randn(N, 5, seed=20), randn(N, 4, seed=21)
    scale = randn(N, 3, seed=22).abs() + 0.5
    if base == "zero":
        bases = (torch.zeros_like(a), torch.zeros_like(b))
    else:
        bases = (randn(N, 5, seed=23), randn(N, 4, seed=24))
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
    x = randn(4, 1, 6, 6, seed=30)
    b = randn(4, 1, 6, 6, seed=31)
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


SPELLINGS = spelling_nets("avg")


def _net(name: str) -> nn.Module:
    return same_weights(SPELLINGS[name], DT)


VARIANTS = ["FunctionalReLU", "TorchReLU", "MethodReLU", "InplaceReLU", "ReusedReLU"]


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel", "genomics_default"])
@pytest.mark.parametrize("name", VARIANTS)
def test_relu_spellings_match_module_per_use(name: str, rule: str) -> None:
    module_net = _net("ModuleReLUs")
    model = _net(name)
    x = randn(N, 2, 4 * 2, 4 * 2, seed=40)
    b = randn(N, 2, 8, 8, seed=41)
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


@pytest.mark.parametrize("name", ["FunctionalReLU", "TorchReLU", "MethodReLU"])
def test_captum_uses_plain_gradient_for_functional_relu(name: str) -> None:
    # Captum only hooks nn.Module nonlinearities: a functional ReLU gets its plain gradient,
    # so Captum's "DeepLift" of this model differs from DeepLIFT and breaks summation.
    model = _net(name)
    x = randn(N, 2, 8, 8, seed=40)
    b = randn(N, 2, 8, 8, seed=41)
    ours = DeepLift(model).attribute(x, b, target=0)
    theirs, d_theirs = captum_attr.DeepLift(model).attribute(
        x, b, target=0, return_convergence_delta=True)
    assert (ours - theirs.detach()).abs().max() > 1e-4
    assert d_theirs.abs().max() > 1e-4


def test_captum_raises_on_reused_relu() -> None:
    model = _net("ReusedReLU")
    x = randn(N, 2, 8, 8, seed=40)
    with pytest.raises(RuntimeError, match="used more than once"):
        captum_attr.DeepLift(model).attribute(x, target=0)


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel", "genomics_default"])
def test_statement_inplace_relu_matches_module_per_use(rule: str) -> None:
    module_net = _net("ModuleReLUs")
    model = _net("StatementInplaceReLU")
    x = randn(N, 2, 8, 8, seed=40)
    b = randn(N, 2, 8, 8, seed=41)
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

    x, b = randn(N, 6, seed=50), randn(N, 6, seed=51)
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
    x, b = randn(N, 6, seed=52), randn(N, 6, seed=53)
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
    x, b = randn(N, 6, seed=54), randn(N, 6, seed=55)
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
    x, b = randn(N, 6, seed=56), randn(N, 6, seed=57)
    dl = DeepLift(model, softmax_mean_subtraction=True)
    parts = dl.attribute(x, b, target=1, split=True)
    total = dl.attribute(x, b, target=1)
    torch.testing.assert_close(parts.positive + parts.negative, total, atol=1e-12, rtol=0)
    torch.testing.assert_close(parts.total, total, atol=1e-12, rtol=0)
