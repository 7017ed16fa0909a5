"""Total and neuron conductance: Captum parity, convergence orders, paper cases, oracles, errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from nets import DT, SmallCNN, TwoInputNet, randn
from torch import nn

from neuron_importance import (
    AttributionError,
    CompletenessWarning,
    NeuronConductance,
    TotalConductance,
)
from neuron_importance.neurons.conductance import neuron_conductance_rule

captum_attr = pytest.importorskip("captum.attr")

METHODS = ("left", "trapezoid", "gausslegendre")


def smooth_mlp() -> nn.Sequential:
    """Linear(5→8) → Tanh → Linear(8→6) → Softplus → Linear(6→3): analytic along any path."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.Softplus(), nn.Linear(6, 3)
    ).to(DT)


def cnn() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN().to(DT)


def tc(model, layer, x, base=None, **kw):
    kw.setdefault("completeness_tol", None)
    return TotalConductance(model, layer).attribute(x, base, **kw)


def delta_of(model, layer, x, base, method, m, target=1) -> float:
    _, d = tc(
        model,
        layer,
        x,
        base,
        target=target,
        n_steps=m,
        method=method,
        return_convergence_delta=True,
    )
    return float(d.abs().max())


def captum_delta(model, layer, x, base, method, m, target=1) -> float:
    lc = captum_attr.LayerConductance(model, layer)
    _, d = lc.attribute(
        x, base, target=target, n_steps=m, method=method, return_convergence_delta=True
    )
    return float(d.abs().max())


X5 = randn(4, 5, seed=1)
B5 = randn(1, 5, seed=2) * 0.1


# ---------------------------------------------------------------- Captum LayerConductance


@pytest.mark.parametrize("layer", ["conv", "pool", "fc"])
@pytest.mark.parametrize("n_steps", [1, 7, 16])
def test_left_rule_is_captum_layer_conductance(layer: str, n_steps: int) -> None:
    net = cnn()
    x = randn(3, 2, 6, 6, seed=3)
    base = randn(3, 2, 6, 6, seed=4) * 0.1
    target = [0, 2, 1]
    ours, delta = tc(
        net,
        layer,
        x,
        base,
        target=target,
        n_steps=n_steps,
        method="left",
        return_convergence_delta=True,
    )
    lc = captum_attr.LayerConductance(net, getattr(net, layer))
    theirs, their_delta = lc.attribute(
        x,
        base,
        target=target,
        n_steps=n_steps,
        method="riemann_trapezoid",
        return_convergence_delta=True,
    )
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(delta, their_delta.detach(), rtol=1e-10, atol=1e-12)


def test_left_rule_matches_captum_on_smooth_net_and_module_layer() -> None:
    net = smooth_mlp()
    ours = tc(net, net[2], X5, B5, target=2, n_steps=10, method="left")
    theirs = captum_attr.LayerConductance(net, net[2]).attribute(
        X5, B5, target=2, n_steps=10, method="riemann_trapezoid"
    )
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-12, atol=1e-14)


def test_in_place_activation_after_layer() -> None:
    """A downstream ReLU(inplace=True) must not touch the captured layer output."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(inplace=True), nn.Linear(7, 2)).to(DT)
    for method in METHODS:
        got = tc(net, "0", X5, target=0, n_steps=8, method=method)
        assert torch.isfinite(got).all()
    ours = tc(net, "0", X5, target=0, n_steps=8, method="left")
    theirs = captum_attr.LayerConductance(net, net[0]).attribute(
        X5, target=0, n_steps=8, method="riemann_trapezoid"
    )
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- convergence


@pytest.mark.parametrize("layer", ["0", "1", "2"])
def test_completeness_orders_on_smooth_net(layer: str) -> None:
    net = smooth_mlp()
    steps = [8, 16, 32, 64]
    left = [delta_of(net, layer, X5, B5, "left", m) for m in steps]
    trap = [delta_of(net, layer, X5, B5, "trapezoid", m) for m in steps]
    for a, b in zip(left, left[1:]):
        assert 1.7 < a / b < 2.3  # first order
    for a, b in zip(trap, trap[1:]):
        assert 3.5 < a / b < 4.5  # second order
    # Gauss–Legendre on exact path derivatives: faster than any power of 1/m
    gl = [delta_of(net, layer, X5, B5, "gausslegendre", m) for m in (4, 8, 16)]
    assert gl[1] < 1e-3 * gl[0] and gl[2] < 1e-12
    assert gl[1] < trap[-1] / 1000  # 8 nodes beat 64 trapezoid steps
    # at equal steps, ours beats Captum's (riemann_trapezoid = our left; default GL misses
    # the end points)
    for m, t in zip(steps, trap):
        if m > 32:
            break
        captum_rt = captum_delta(net, net[int(layer)], X5, B5, "riemann_trapezoid", m)
        captum_gl = captum_delta(net, net[int(layer)], X5, B5, "gausslegendre", m)
        assert t < captum_rt / 10 and t < captum_gl / 10


def test_exact_when_output_is_affine_in_the_layer() -> None:
    """Last hidden layer: G is constant along the path, so the difference rules telescope
    exactly at any m (Gauss–Legendre integrates G·dY/dα, exact only in the limit)."""
    net = smooth_mlp()
    for method in ("left", "trapezoid"):
        assert delta_of(net, "3", X5, B5, method, 2) < 1e-13
    assert delta_of(net, "3", X5, B5, "gausslegendre", 16) < 1e-12


def test_per_neuron_convergence_and_common_limit() -> None:
    """Every neuron (not only the sum) converges, at the rule's order, to one limit."""
    net = smooth_mlp()
    ref = tc(net, "2", X5, B5, target=1, n_steps=40, method="gausslegendre")
    err = {}
    for method in ("left", "trapezoid"):
        err[method] = [
            float((tc(net, "2", X5, B5, target=1, n_steps=m, method=method) - ref).abs().max())
            for m in (16, 32, 64)
        ]
    assert all(1.7 < a / b < 2.3 for a, b in zip(err["left"], err["left"][1:]))
    assert all(3.5 < a / b < 4.5 for a, b in zip(err["trapezoid"], err["trapezoid"][1:]))
    fine = tc(net, "2", X5, B5, target=1, n_steps=2000, method="trapezoid")
    torch.testing.assert_close(fine, ref, rtol=0, atol=1e-8)


def test_gausslegendre_limit_on_layer_that_is_not_a_cut() -> None:
    """Skip connection around the layer: forward-mode tangents flow downstream too."""

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(5, 6)
            self.b = nn.Linear(6, 6)
            self.c = nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.a(x))
            return self.c(nn.functional.softplus(self.b(h)) + h)

    torch.manual_seed(5)
    net = Residual().to(DT)
    gl = tc(net, "b", X5, B5, target=0, n_steps=16, method="gausslegendre")
    fine = tc(net, "b", X5, B5, target=0, n_steps=2000, method="trapezoid")
    torch.testing.assert_close(gl, fine, rtol=0, atol=1e-8)
    with pytest.warns(CompletenessWarning):  # the skip carries part of F(x) - F(x')
        TotalConductance(net, "b").attribute(X5, B5, target=0, n_steps=16)


class _TanhNoJvp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: ANN001
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


def test_gausslegendre_without_forward_mode_falls_back_to_double_backward() -> None:
    class Net(nn.Module):
        def __init__(self, custom: bool) -> None:
            super().__init__()
            self.a = nn.Linear(5, 7)
            self.b = nn.Linear(7, 4)
            self.c = nn.Linear(4, 2)
            self.custom = custom

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = _TanhNoJvp.apply(self.a(x)) if self.custom else torch.tanh(self.a(x))
            return self.c(torch.tanh(self.b(h)))

    torch.manual_seed(1)
    custom = Net(True).to(DT)
    torch.manual_seed(1)
    native = Net(False).to(DT)
    import torch.autograd.forward_ad as fwAD

    with pytest.raises(NotImplementedError), fwAD.dual_level():  # the fallback is exercised
        custom(fwAD.make_dual(X5, torch.ones_like(X5)))
    for ibs in (None, 5):
        got = tc(
            custom,
            "b",
            X5,
            B5,
            target=1,
            n_steps=12,
            method="gausslegendre",
            internal_batch_size=ibs,
        )
        want = tc(native, "b", X5, B5, target=1, n_steps=12, method="gausslegendre")
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_linear_model_exact_under_every_rule() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3)).to(DT)
    for method in METHODS:
        _, d = tc(
            net, "0", X5, B5, target=2, n_steps=1, method=method, return_convergence_delta=True
        )
        assert float(d.abs().max()) < 1e-13


def test_completeness_warning_and_delta() -> None:
    net = smooth_mlp()
    x = X5 * 4
    with pytest.warns(CompletenessWarning, match=r"TotalConductance.*worst example \d"):
        _, d = TotalConductance(net, "2").attribute(
            x,
            target=1,
            n_steps=1,
            method="left",
            return_convergence_delta=True,
            completeness_tol=1e-6,
        )
    assert d.shape == (4,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TotalConductance(net, "2").attribute(x, target=1, n_steps=50)


# ---------------------------------------------------------------- paper cases and oracles


class _Chain(nn.Module):
    """x → y = w·x (module ``y``) → z = head(y)."""

    def __init__(self, w: float, head) -> None:  # noqa: ANN001
        super().__init__()
        self.y = nn.Linear(1, 1, bias=False).to(DT)
        with torch.no_grad():
            self.y.weight.fill_(w)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.y(x))


@pytest.mark.parametrize("method", METHODS)
def test_paper_saturation(method: str) -> None:
    """y = 2x, z = min(y, 1), x = 1, x' = 0: gradient×activation 0, conductance 1."""
    net = _Chain(2.0, lambda y: torch.clamp(y, max=1.0))
    x = torch.ones(1, 1, dtype=DT)
    m = 400
    got = tc(net, "y", x, n_steps=m, method=method)
    assert abs(float(got) - 1.0) < 3 / m
    y = net.y(x).detach().requires_grad_()
    (g,) = torch.autograd.grad(net.head(y).sum(), y)
    assert float((y * g).detach()) == 0.0  # gradient × activation misses the neuron entirely


@pytest.mark.parametrize("method", METHODS)
def test_paper_overshoot(method: str) -> None:
    """y = x, z = max(y − 1, 0), x = 1 + ε: output and conductance ε, grad×activation 1 + ε."""
    eps = 0.05
    net = _Chain(1.0, lambda y: torch.relu(y - 1))
    x = torch.full((1, 1), 1 + eps, dtype=DT)
    m = 400
    got = tc(net, "y", x, n_steps=m, method=method)
    assert abs(float(got) - eps) < 3 * (1 + eps) / m
    y = net.y(x).detach().requires_grad_()
    (g,) = torch.autograd.grad(net.head(y).sum(), y)
    assert float((y * g).detach()) == pytest.approx(1 + eps)


@pytest.mark.parametrize("method", METHODS)
def test_paper_sign_and_scale(method: str) -> None:
    """y = x, z = y: conductance is the output change, with its sign (internal influence 1)."""
    net = _Chain(1.0, nn.Identity())
    x = torch.tensor([[-2.0], [3.0]], dtype=DT)
    base = torch.tensor([[0.5], [1.0]], dtype=DT)
    got = tc(net, "y", x, base, n_steps=3, method=method)
    torch.testing.assert_close(got, torch.tensor([[-2.5], [2.0]], dtype=DT))


def test_first_linear_layer_equals_straight_line_hidden_ig() -> None:
    """y(x(α)) is affine in α, so left-rule TC is hidden-space IG (left rule, same grid)."""
    net = smooth_mlp()
    m = 16  # k/16 is exact in float32, so the grids agree bit for bit
    got = tc(net, "0", X5, B5, target=1, n_steps=m, method="left")
    with torch.no_grad():
        y1, y0 = net[0](X5), net[0](B5.expand_as(X5))
    acc = torch.zeros_like(y1)
    for k in range(m):
        h = (y0 + (k / m) * (y1 - y0)).requires_grad_()
        (g,) = torch.autograd.grad(net[1:](h)[:, 1].sum(), h)
        acc += g / m
    torch.testing.assert_close(got, acc * (y1 - y0), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- chunking


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ibs", [1, 3, 5, 9, 17])
def test_internal_batch_size_does_not_change_results(method: str, ibs: int) -> None:
    net = smooth_mlp()
    full, d_full = tc(
        net,
        "2",
        X5,
        B5,
        target=[0, 1, 2, 1],
        n_steps=9,
        method=method,
        return_convergence_delta=True,
    )
    got, d_got = tc(
        net,
        "2",
        X5,
        B5,
        target=[0, 1, 2, 1],
        n_steps=9,
        method=method,
        internal_batch_size=ibs,
        return_convergence_delta=True,
    )
    torch.testing.assert_close(got, full, rtol=0, atol=1e-12)
    torch.testing.assert_close(d_got, d_full, rtol=0, atol=1e-12)
    nc = NeuronConductance(net, "2")
    a = nc.attribute(X5, [1, 4], B5, target=1, n_steps=9, method=method)
    b = nc.attribute(X5, [1, 4], B5, target=1, n_steps=9, method=method, internal_batch_size=ibs)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_internal_batch_size_bounds_rows_per_pass() -> None:
    net = smooth_mlp()
    seen: list[int] = []
    handle = net[0].register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].shape[0]))
    try:
        tc(net, "2", X5, B5, target=1, n_steps=10, method="trapezoid", internal_batch_size=9)
        NeuronConductance(net, "2").attribute(
            X5, 3, B5, target=1, n_steps=10, internal_batch_size=3
        )
    finally:
        handle.remove()
    assert max(seen) <= 9


# ---------------------------------------------------------------- neuron conductance


@pytest.mark.parametrize("ibs", [None, 7])
def test_neuron_conductance_sums_to_total_conductance_gausslegendre(ibs) -> None:  # noqa: ANN001
    net = cnn()
    x = randn(3, 2, 6, 6, seed=5)
    base = randn(1, 2, 6, 6, seed=6) * 0.1
    neurons = [(0, 0, 0), (1, 2, 3), (3, 3, 1), 17, -1]
    total = tc(net, "conv", x, base, target=[2, 0, 1], n_steps=12, method="gausslegendre")
    per_input = NeuronConductance(net, "conv").attribute(
        x, neurons, base, target=[2, 0, 1], n_steps=12, internal_batch_size=ibs
    )
    assert per_input.shape == (5, 3, 2, 6, 6)
    flat = total.reshape(3, -1)
    for j, sel in enumerate([0, 1 * 16 + 2 * 4 + 3, 3 * 16 + 3 * 4 + 1, 17, 63]):
        torch.testing.assert_close(
            per_input[j].reshape(3, -1).sum(1), flat[:, sel], rtol=1e-10, atol=1e-13
        )


def test_neuron_conductance_sum_gap_for_difference_rules() -> None:
    """left/trapezoid: derivative split vs difference total, gap O(1/m) and O(1/m²)."""
    net = smooth_mlp()
    nc = NeuronConductance(net, "2")
    gaps: dict[str, list[float]] = {"left": [], "trapezoid": []}
    for method, series in gaps.items():
        for m in (16, 32, 64):
            total = tc(net, "2", X5, B5, target=1, n_steps=m, method=method)
            split = nc.attribute(X5, slice(None), B5, target=1, n_steps=m, method=method)
            series.append(float((split.sum(-1).T - total).abs().max()))
    assert all(1.7 < a / b < 2.3 for a, b in zip(gaps["left"], gaps["left"][1:]))
    assert all(3.4 < a / b < 4.6 for a, b in zip(gaps["trapezoid"], gaps["trapezoid"][1:]))
    assert gaps["trapezoid"][-1] < 1e-5


def test_neuron_conductance_rule_points() -> None:
    assert neuron_conductance_rule("left", 4) == ([0.0, 0.25, 0.5, 0.75], [0.25] * 4)
    assert neuron_conductance_rule("trapezoid", 2) == ([0.0, 0.5, 1.0], [0.25, 0.5, 0.25])


@pytest.mark.parametrize(
    ("ours", "m", "theirs", "n", "scale"),
    [
        ("gausslegendre", 10, "gausslegendre", 10, 1.0),
        ("trapezoid", 10, "riemann_trapezoid", 11, 11 / 10),  # Captum's weights sum to m/(m+1)
        ("left", 16, "riemann_left", 16, 1.0),
    ],
)
def test_neuron_conductance_matches_captum(
    ours: str, m: int, theirs: str, n: int, scale: float
) -> None:
    net = cnn()
    x = randn(3, 2, 6, 6, seed=7)
    base = randn(3, 2, 6, 6, seed=8) * 0.1
    ncs = NeuronConductance(net, "conv")
    cap = captum_attr.NeuronConductance(net, net.conv)
    for neuron in [(0, 1, 1), (2, 3, 0), (3, 0, 2)]:
        got = ncs.attribute(x, neuron, base, target=[1, 0, 2], n_steps=m, method=ours)
        want = cap.attribute(x, neuron, base, target=[1, 0, 2], n_steps=n, method=theirs)
        # Captum rounds the quadrature weights to float32
        torch.testing.assert_close(got, want.detach() * scale, rtol=1e-6, atol=1e-9)


def test_batched_neurons_equal_single_neuron_calls() -> None:
    net = cnn()
    x = randn(2, 2, 6, 6, seed=9)
    nc = NeuronConductance(net, "pool")  # per-example shape (4, 2, 2)
    many = nc.attribute(x, slice(3, 11, 2), target=1, n_steps=6)
    assert many.shape == (4, 2, 2, 6, 6)
    for j, flat in enumerate(range(3, 11, 2)):
        single = nc.attribute(x, flat, target=1, n_steps=6)
        assert single.shape == x.shape
        torch.testing.assert_close(many[j], single, rtol=0, atol=1e-14)
    as_tuple = nc.attribute(x, (1, 0, 1), target=1, n_steps=6)
    torch.testing.assert_close(as_tuple, nc.attribute(x, 5, target=1, n_steps=6))
    one = nc.attribute(x, [(1, 0, 1)], target=1, n_steps=6)
    assert one.shape == (1, 2, 2, 6, 6)


def test_dead_neuron_gets_zero() -> None:
    """Insensitivity: a neuron F does not depend on gets zero (and its VJPs are skipped)."""
    net = smooth_mlp()
    with torch.no_grad():
        net[4].weight[:, 2] = 0.0
    got = NeuronConductance(net, "3").attribute(X5, [2, 3], B5, target=0, n_steps=5)
    assert float(got[0].abs().max()) == 0.0
    assert float(got[1].abs().max()) > 0.0


# ---------------------------------------------------------------- tuple inputs, extra args


def test_tuple_inputs_and_additional_forward_args() -> None:
    torch.manual_seed(4)
    net = TwoInputNet(nn.Tanh()).to(DT)
    a, b = randn(3, 5, seed=10), randn(3, 4, seed=11)
    scale = randn(3, 1, seed=12).abs() + 0.5
    base = (randn(1, 5, seed=13) * 0.1, 0.2)
    ours = tc(
        net,
        "act_b",
        (a, b),
        base,
        target=[0, 2, 1],
        additional_forward_args=scale,
        n_steps=9,
        method="left",
    )
    theirs = captum_attr.LayerConductance(net, net.act_b).attribute(
        (a, b),
        base,
        target=[0, 2, 1],
        additional_forward_args=scale,
        n_steps=9,
        method="riemann_trapezoid",
    )
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-12, atol=1e-14)

    total = tc(
        net,
        "fb",
        (a, b),
        base,
        target=[0, 2, 1],
        additional_forward_args=(scale,),
        n_steps=10,
        method="gausslegendre",
    )
    split = NeuronConductance(net, "fb").attribute(
        (a, b), [0, 5], base, target=[0, 2, 1], additional_forward_args=(scale,), n_steps=10
    )
    assert isinstance(split, tuple) and split[0].shape == (2, 3, 5) and split[1].shape == (2, 3, 4)
    assert float(split[0].abs().max()) == 0.0  # fb does not see input a
    sums = split[0].sum(-1) + split[1].sum(-1)
    torch.testing.assert_close(sums.T, total[:, [0, 5]], rtol=1e-10, atol=1e-13)
    # Captum's NeuronConductance fails when an input does not reach the neuron (it asks
    # autograd for unused gradients), so compare on the output layer, which sees both inputs
    got = NeuronConductance(net, "fc").attribute(
        (a, b), 2, base, target=[0, 2, 2], additional_forward_args=(scale,), n_steps=10
    )
    want = captum_attr.NeuronConductance(net, net.fc).attribute(
        (a, b),
        2,
        base,
        target=[0, 2, 2],
        additional_forward_args=(scale,),
        n_steps=10,
        method="gausslegendre",
    )
    assert float(got[0][1:].abs().min()) > 0.0
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w.detach(), rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- errors


class _Tuple(nn.Module):
    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tanh(h), h * 2


class _Odd(nn.Module):
    """Has a never-called module, a module called twice and a tuple-returning module."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 5)
        self.twice = nn.Tanh()
        self.unused = nn.Linear(5, 5)
        self.pair = _Tuple()
        self.out = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.twice(self.twice(self.lin(x)))
        t, d = self.pair(h)
        return self.out(t + d)


def test_layer_errors() -> None:
    torch.manual_seed(6)
    net = _Odd().to(DT)
    with pytest.raises(AttributionError, match="'nope' is not in the model"):
        TotalConductance(net, "nope")
    with pytest.raises(AttributionError, match="not a module of this model"):
        NeuronConductance(net, nn.Linear(5, 5))
    with pytest.raises(AttributionError, match="'unused' was never reached"):
        TotalConductance(net, "unused").attribute(X5, target=0)
    with pytest.raises(AttributionError, match="'twice' ran 2 times"):
        TotalConductance(net, net.twice).attribute(X5, target=0)
    with pytest.raises(
        AttributionError, match="'pair' returns a tuple of 2 items.*layer_output_index"
    ):
        NeuronConductance(net, "pair").attribute(X5, 0, target=0)
    with pytest.raises(AttributionError, match="layer_output_index 2 does not select"):
        TotalConductance(net, "pair", layer_output_index=2).attribute(X5, target=0)


def test_tuple_output_layer_with_index() -> None:
    torch.manual_seed(6)
    net = _Odd().to(DT)
    for index in (0, 1):
        got, d = TotalConductance(net, "pair", layer_output_index=index).attribute(
            X5,
            target=1,
            n_steps=16,
            method="gausslegendre",
            return_convergence_delta=True,
            completeness_tol=None,
        )
        assert got.shape == (4, 5)
        assert float(d.abs().max()) > 1e-3  # neither element alone is a cut
        split = NeuronConductance(net, "pair", layer_output_index=index).attribute(
            X5, [0, 3], target=1, n_steps=16
        )
        torch.testing.assert_close(split.sum(-1).T, got[:, [0, 3]], rtol=1e-10, atol=1e-13)
    both = sum(
        TotalConductance(net, "pair", layer_output_index=i)
        .attribute(X5, target=1, n_steps=16, method="gausslegendre", completeness_tol=None)
        .sum(1)
        for i in (0, 1)
    )
    out = net(X5)[:, 1] - net(torch.zeros_like(X5))[:, 1]
    torch.testing.assert_close(both, out.detach(), rtol=1e-9, atol=1e-12)


def test_neuron_selector_errors() -> None:
    net = cnn()
    x = randn(2, 2, 6, 6, seed=14)
    nc = NeuronConductance(net, "conv")  # per-example (4, 4, 4)
    shape = r"'conv', whose per-example output has shape \(4, 4, 4\) \(64 neurons\)"
    with pytest.raises(AttributionError, match="index 64 is out of range for layer " + shape):
        nc.attribute(x, 64, target=0)
    with pytest.raises(AttributionError, match=r"index \(0, 4, 0\) is out of range for layer"):
        nc.attribute(x, (0, 4, 0), target=0)
    with pytest.raises(AttributionError, match=r"\(0, 1\) must be a tuple of 3 ints"):
        nc.attribute(x, [(0, 1)], target=0)
    with pytest.raises(AttributionError, match="selects no neuron"):
        nc.attribute(x, slice(70, 80), target=0)
    with pytest.raises(AttributionError, match="selects no neuron"):
        nc.attribute(x, [], target=0)
    with pytest.raises(AttributionError, match="must be an int"):
        nc.attribute(x, 1.5, target=0)
    with pytest.raises(AttributionError, match="must be an int"):
        nc.attribute(x, True, target=0)


def test_argument_errors() -> None:
    net = smooth_mlp()
    with pytest.raises(AttributionError, match="riemann_trapezoid.*method='left'"):
        TotalConductance(net, "2").attribute(X5, target=0, method="riemann_trapezoid")
    with pytest.raises(AttributionError, match="n_steps must be a positive integer"):
        TotalConductance(net, "2").attribute(X5, target=0, n_steps=0)
    with pytest.raises(AttributionError, match="internal_batch_size"):
        NeuronConductance(net, "2").attribute(X5, 0, target=0, internal_batch_size=0)
    with pytest.raises(AttributionError, match="target"):
        TotalConductance(net, "2").attribute(X5)


def test_training_mode_model_is_run_in_eval_mode() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 2)).to(DT)
    net.train()
    with pytest.warns(UserWarning, match="training mode"):
        got = tc(net, "0", X5, target=0, n_steps=8)
    assert net.training
    net.eval()
    torch.testing.assert_close(got, tc(net, "0", X5, target=0, n_steps=8))
