"""Integrated Gradients and the quadrature rules: Captum parity, closed forms, axioms, errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nets import DT, SmallCNN, gen, randn
from torch import nn

import neuron_importance.attribution.integrated_gradients as ig_module
from neuron_importance import AttributionError, CompletenessWarning, IntegratedGradients
from neuron_importance.attribution.quadrature import METHODS, quadrature

captum_attr = pytest.importorskip("captum.attr")
from captum.attr._utils.approximation_methods import approximation_parameters  # noqa: E402


class TupleMLP(nn.Module):
    """Two inputs plus extra arguments: a per-example scale tensor and a Python float."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 6)
        self.b = nn.Linear(4, 6)
        self.out = nn.Linear(6, 2)

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, scale: torch.Tensor, shift: float
    ) -> torch.Tensor:
        h = torch.tanh(self.a(x1) * scale + self.b(x2) + shift)
        return self.out(h)


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN().to(DT)


def _tuple_mlp() -> nn.Module:
    torch.manual_seed(1)
    return TupleMLP().to(DT)


@pytest.fixture
def captum_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make our weights Captum's, to compare the rest of the pipeline to 1e-10.

    Captum 0.9 multiplies the gradients by ``torch.tensor(step_sizes).float()`` (weights
    rounded to float32) and uses ``1/n`` instead of ``1/(n-1)`` for the trapezoid rule;
    everything else (the points, the path, the summation) is compared as is.
    """
    original = ig_module.quadrature

    def captum_like(method: str, n_steps: int) -> tuple[list[float], list[float]]:
        alphas, weights = original(method, n_steps)
        if method == "riemann_trapezoid":
            weights = [1 / n_steps] * n_steps
            weights[0] /= 2
            weights[-1] /= 2
        return alphas, torch.tensor(weights).float().double().tolist()

    monkeypatch.setattr(ig_module, "quadrature", captum_like)


# ---------------------------------------------------------------- quadrature


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_quadrature_matches_captum(method: str, n: int) -> None:
    alphas, weights = quadrature(method, n)
    step_sizes, alphas_fn = approximation_parameters(method)
    assert alphas == alphas_fn(n)  # bit-for-bit the same points
    if method == "riemann_trapezoid":  # ours: 1/(n-1); Captum: 1/n
        scaled = [w * (n - 1) / n for w in weights]
        assert scaled == pytest.approx(step_sizes(n), rel=1e-15, abs=0)
    else:
        assert weights == step_sizes(n)
    assert sum(weights) == pytest.approx(1.0, abs=1e-14)
    assert len(alphas) == len(weights) == n


def test_quadrature_default_is_gauss_legendre() -> None:
    assert quadrature() == quadrature("gausslegendre", 50)


def test_quadrature_single_point_rules() -> None:
    assert quadrature("riemann_left", 1) == ([0.0], [1.0])
    assert quadrature("riemann_right", 1) == ([1.0], [1.0])
    assert quadrature("riemann_middle", 1) == ([0.5], [1.0])
    assert quadrature("gausslegendre", 1) == ([0.5], [1.0])


def test_quadrature_errors() -> None:
    with pytest.raises(ValueError, match=r"'simpson'.*gausslegendre.*riemann_trapezoid"):
        quadrature("simpson", 10)
    with pytest.raises(ValueError, match="n_steps >= 1"):
        quadrature("gausslegendre", 0)
    with pytest.raises(ValueError, match="n_steps >= 2"):
        quadrature("riemann_trapezoid", 1)
    with pytest.raises(ValueError, match="integer"):
        quadrature("riemann_left", 2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", METHODS)
def test_quadrature_integrates_polynomials(method: str) -> None:
    """Every rule integrates constants exactly; GL with n points to degree 2n-1."""
    alphas, weights = quadrature(method, 4)
    assert sum(w for w in weights) == pytest.approx(1.0, abs=1e-15)
    if method in ("gausslegendre", "riemann_middle", "riemann_trapezoid"):
        # linear integrands are exact (up to the float32 points of the Riemann rules)
        assert sum(w * a for a, w in zip(alphas, weights)) == pytest.approx(0.5, abs=1e-7)
    if method == "gausslegendre":
        for degree in range(8):
            got = sum(w * a**degree for a, w in zip(alphas, weights))
            assert got == pytest.approx(1 / (degree + 1), abs=1e-14)


# ---------------------------------------------------------------- Captum parity


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n_steps", [5, 16])
def test_cnn_matches_captum(method: str, n_steps: int, captum_weights: None) -> None:
    net = _cnn()
    x = randn(3, 2, 6, 6, seed=2)
    base = randn(3, 2, 6, 6, seed=3) * 0.1
    target = [0, 2, 1]
    ours, delta = IntegratedGradients(net).attribute(
        x,
        base,
        target=target,
        n_steps=n_steps,
        method=method,
        return_convergence_delta=True,
        completeness_tol=None,
    )
    theirs, their_delta = captum_attr.IntegratedGradients(net).attribute(
        x, base, target=target, n_steps=n_steps, method=method, return_convergence_delta=True
    )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)
    torch.testing.assert_close(delta, their_delta, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("multiply_by_inputs", [True, False])
def test_tuple_mlp_with_extra_args_matches_captum(
    method: str, multiply_by_inputs: bool, captum_weights: None
) -> None:
    net = _tuple_mlp()
    x1, x2 = randn(4, 3, seed=4), randn(4, 4, seed=5)
    scale = randn(4, 1, seed=6).abs() + 0.5
    extra = (scale, 0.25)
    baselines = (0.5, randn(1, 4, seed=7))
    kwargs = dict(
        target=torch.tensor([1, 0, 1, 1]), additional_forward_args=extra, n_steps=12, method=method
    )
    ours = IntegratedGradients(net, multiply_by_inputs).attribute(
        (x1, x2), baselines, completeness_tol=None, **kwargs
    )
    theirs = captum_attr.IntegratedGradients(net, multiply_by_inputs).attribute(
        (x1, x2), baselines, **kwargs
    )
    assert isinstance(ours, tuple) and len(ours) == 2
    for o, t in zip(ours, theirs):
        torch.testing.assert_close(o, t, rtol=0, atol=1e-10)


def test_default_settings_match_captum_to_float32_weight_precision() -> None:
    """Unpatched: only Captum's float32 rounding of the weights separates the two."""
    net = _cnn()
    x = randn(2, 2, 6, 6, seed=8)
    ours = IntegratedGradients(net).attribute(x, target=1, completeness_tol=None)
    theirs = captum_attr.IntegratedGradients(net).attribute(x, target=1)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-9)


def test_float32_matches_captum() -> None:
    """In float32 Captum's weight cast is a no-op, so the two agree to float32 rounding."""
    torch.manual_seed(0)
    net = SmallCNN()
    x = torch.randn(2, 2, 6, 6, generator=gen(9))
    ours = IntegratedGradients(net).attribute(x, target=2, n_steps=20, completeness_tol=None)
    theirs = captum_attr.IntegratedGradients(net).attribute(x, target=2, n_steps=20)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- closed forms / completeness


@pytest.mark.parametrize("method", METHODS)
def test_linear_model_exact_under_every_rule(method: str) -> None:
    torch.manual_seed(10)
    lin = nn.Linear(5, 3).to(DT)
    x, base = randn(4, 5, seed=10), randn(4, 5, seed=11)
    attr, delta = IntegratedGradients(lin).attribute(
        x, base, target=2, n_steps=3, method=method, return_convergence_delta=True
    )
    torch.testing.assert_close(attr, lin.weight.detach()[2] * (x - base), rtol=0, atol=1e-14)
    assert delta.abs().max() < 1e-14


@pytest.mark.parametrize(
    ("method", "n_steps"),
    [("gausslegendre", 1), ("gausslegendre", 5), ("riemann_middle", 3), ("riemann_trapezoid", 2)],
)
def test_quadratic_model_analytic(method: str, n_steps: int) -> None:
    """f(x) = Σ w x²: the integrand is linear in α, so IG_i = w_i (x_i² − x′_i²) exactly."""
    w = torch.tensor([1.5, -0.5, 2.0, 0.25], dtype=DT)

    def f(x: torch.Tensor) -> torch.Tensor:
        return (w * x**2).sum(dim=1)

    x, base = randn(3, 4, seed=12), randn(3, 4, seed=13)
    attr, delta = IntegratedGradients(f).attribute(
        x, base, n_steps=n_steps, method=method, return_convergence_delta=True
    )
    # Riemann points are float32 (Captum's), hence the looser bound for them
    tol = 1e-14 if method == "gausslegendre" else 1e-6
    torch.testing.assert_close(attr, w * (x**2 - base**2), rtol=0, atol=tol)
    assert delta.abs().max() < tol


def test_cubic_model_needs_two_gauss_legendre_points() -> None:
    """f(x) = Σ w x³: quadratic integrand, exact with 2 GL points, not with 1."""
    w = torch.tensor([1.0, -2.0, 0.5], dtype=DT)

    def f(x: torch.Tensor) -> torch.Tensor:
        return (w * x**3).sum(dim=1, keepdim=True)

    x = randn(2, 3, seed=14) + 1.0
    exact = w * x**3
    two = IntegratedGradients(f).attribute(x, n_steps=2, completeness_tol=None)
    one = IntegratedGradients(f).attribute(x, n_steps=1, completeness_tol=None)
    torch.testing.assert_close(two, exact, rtol=0, atol=1e-13)
    assert (one - exact).abs().max() > 1e-3


def test_saturating_model_warns_and_returns_delta() -> None:
    """tanh(5·Σx) saturates: 2 GL points miss most of the change, 200 do not."""

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(5 * x.sum(dim=1))

    x = torch.tensor([[0.05, 0.05], [1.0, 1.0], [0.3, 0.1]], dtype=DT)
    with pytest.warns(CompletenessWarning, match="worst example 1"):
        attr, delta = IntegratedGradients(f).attribute(x, n_steps=2, return_convergence_delta=True)
    assert delta.shape == (3,)
    change = f(x) - f(torch.zeros_like(x))
    torch.testing.assert_close(delta, attr.sum(dim=1) - change, rtol=0, atol=1e-14)
    assert delta.abs()[1] > 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, fine = IntegratedGradients(f).attribute(x, n_steps=200, return_convergence_delta=True)
        IntegratedGradients(f).attribute(x, n_steps=2, completeness_tol=None)  # no warning
    assert fine.abs().max() < 1e-10


def test_delta_matches_captum_formula_without_multiplying() -> None:
    """multiply_by_inputs=False returns averaged gradients; delta is still IG's residual."""
    torch.manual_seed(15)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).to(DT)
    x = randn(2, 3, seed=15)
    local, delta = IntegratedGradients(net, multiply_by_inputs=False).attribute(
        x, return_convergence_delta=True
    )
    glob, delta_g = IntegratedGradients(net).attribute(x, return_convergence_delta=True)
    torch.testing.assert_close(local * x, glob, rtol=0, atol=1e-15)
    torch.testing.assert_close(delta, delta_g, rtol=0, atol=0)


# ---------------------------------------------------------------- chunking


class RowCounter(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows: list[int] = []

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        self.rows.append(args[0].shape[0])
        return self.inner(*args)


@pytest.mark.parametrize("internal_batch_size", [1, 2, 3, 4, 7, 9, 10_000])
def test_internal_batch_size_same_result_and_bounded(internal_batch_size: int) -> None:
    net = RowCounter(_tuple_mlp())
    x1, x2 = randn(3, 3, seed=16), randn(3, 4, seed=17)
    extra = (randn(3, 1, seed=18), -0.1)
    kwargs = dict(
        target=[0, 1, 1],
        additional_forward_args=extra,
        n_steps=7,
        method="riemann_trapezoid",
        return_convergence_delta=True,
    )
    ref, ref_delta = IntegratedGradients(net).attribute((x1, x2), **kwargs)
    net.rows.clear()
    got, delta = IntegratedGradients(net).attribute(
        (x1, x2), internal_batch_size=internal_batch_size, **kwargs
    )
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-13)
    torch.testing.assert_close(delta, ref_delta, rtol=0, atol=1e-13)
    assert max(net.rows) <= internal_batch_size
    assert sum(net.rows) == 3 * 7 + 2 * 3  # every path point once, plus f(x) and f(x′)


def test_internal_batch_size_matches_captum(captum_weights: None) -> None:
    net = _cnn()
    x = randn(2, 2, 6, 6, seed=19)
    ours = IntegratedGradients(net).attribute(
        x, target=0, n_steps=9, internal_batch_size=4, completeness_tol=None
    )
    theirs = captum_attr.IntegratedGradients(net).attribute(
        x, target=0, n_steps=9, internal_batch_size=4
    )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_internal_batch_size_validated(bad: object) -> None:
    with pytest.raises(AttributionError, match="internal_batch_size"):
        IntegratedGradients(_cnn()).attribute(
            randn(2, 2, 6, 6, seed=0),
            target=0,
            internal_batch_size=bad,  # type: ignore[arg-type]
        )


# ---------------------------------------------------------------- baselines


def test_baseline_forms(captum_weights: None) -> None:
    net = _cnn()
    x = randn(3, 2, 6, 6, seed=20)
    ig = IntegratedGradients(net)
    kw = dict(target=1, n_steps=6, completeness_tol=None)

    scalar = ig.attribute(x, 0.3, **kw)
    full = ig.attribute(x, torch.full_like(x, 0.3), **kw)
    torch.testing.assert_close(scalar, full, rtol=0, atol=1e-14)

    one = randn(1, 2, 6, 6, seed=21)
    broadcast = ig.attribute(x, one, **kw)
    expanded = ig.attribute(x, one.expand_as(x).clone(), **kw)
    torch.testing.assert_close(broadcast, expanded, rtol=0, atol=1e-14)
    channel = torch.tensor([0.2, -0.4], dtype=DT).view(1, 2, 1, 1)  # per-channel baseline
    torch.testing.assert_close(
        ig.attribute(x, channel, **kw),
        ig.attribute(x, channel.expand_as(x).clone(), **kw),
        rtol=0,
        atol=1e-14,
    )

    per_example = randn(3, 2, 6, 6, seed=22)
    cig = captum_attr.IntegratedGradients(net)
    for b, got in ((0.3, scalar), (one, broadcast)):
        torch.testing.assert_close(
            got, cig.attribute(x, b, target=1, n_steps=6), rtol=0, atol=1e-10
        )
    torch.testing.assert_close(
        ig.attribute(x, per_example, **kw),
        cig.attribute(x, per_example, target=1, n_steps=6),
        rtol=0,
        atol=1e-10,
    )
    zero = ig.attribute(x, None, **kw)
    torch.testing.assert_close(zero, ig.attribute(x, 0, **kw), rtol=0, atol=0)


def test_baseline_that_does_not_broadcast() -> None:
    x = randn(3, 2, 6, 6, seed=23)
    with pytest.raises(AttributionError, match=r"\(2, 2, 6, 6\).*\(3, 2, 6, 6\)"):
        IntegratedGradients(_cnn()).attribute(x, randn(2, 2, 6, 6, seed=0), target=0)
    with pytest.raises(AttributionError, match="2 baselines for 1 inputs"):
        IntegratedGradients(_cnn()).attribute(x, (0.0, 0.0), target=0)


# ---------------------------------------------------------------- axioms


def test_linearity() -> None:
    torch.manual_seed(24)
    f1 = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).to(DT)
    f2 = nn.Sequential(nn.Linear(4, 5), nn.Softplus(), nn.Linear(5, 2)).to(DT)
    a, b = 0.7, -2.5

    def g(x: torch.Tensor) -> torch.Tensor:
        return a * f1(x) + b * f2(x)

    x, base = randn(3, 4, seed=24), randn(3, 4, seed=25)
    kw = dict(baselines=base, target=[0, 1, 0], n_steps=10, completeness_tol=None)
    lhs = IntegratedGradients(g).attribute(x, **kw)
    rhs = a * IntegratedGradients(f1).attribute(x, **kw) + b * IntegratedGradients(f2).attribute(
        x, **kw
    )
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-13)


@settings(max_examples=25, deadline=None)
@given(
    a=st.floats(-3, 3, allow_nan=False),
    b=st.floats(-3, 3, allow_nan=False),
    method=st.sampled_from(METHODS),
)
def test_linearity_property(a: float, b: float, method: str) -> None:
    def f1(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x).sum(dim=1)

    def f2(x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0] * x[:, 1]) ** 2

    def g(x: torch.Tensor) -> torch.Tensor:
        return a * f1(x) + b * f2(x)

    x = randn(2, 3, seed=26)
    kw = dict(n_steps=4, method=method, completeness_tol=None)
    lhs = IntegratedGradients(g).attribute(x, **kw)
    rhs = a * IntegratedGradients(f1).attribute(x, **kw) + b * IntegratedGradients(f2).attribute(
        x, **kw
    )
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-12)


def test_symmetry() -> None:
    """f symmetric in (x0, x1), x0 = x1 and x′0 = x′1 ⇒ IG_0 = IG_1."""

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x[:, 0] * x[:, 1] + 0.5 * (x[:, 0] + x[:, 1]) ** 2) + torch.sin(x[:, 2])

    x = torch.tensor([[0.8, 0.8, -1.0], [-1.3, -1.3, 0.4]], dtype=DT)
    base = torch.tensor([[0.1, 0.1, 0.0]], dtype=DT)
    for method in METHODS:
        attr = IntegratedGradients(f).attribute(
            x, base, n_steps=8, method=method, completeness_tol=None
        )
        torch.testing.assert_close(attr[:, 0], attr[:, 1], rtol=0, atol=1e-15)


def test_dummy_input_gets_zero() -> None:
    lin = nn.Linear(3, 1).to(DT)

    def f(x: torch.Tensor, unused: torch.Tensor) -> torch.Tensor:
        return lin(x)

    x, u = randn(2, 3, seed=27), randn(2, 2, seed=28)
    ax, au = IntegratedGradients(f).attribute((x, u), n_steps=3)
    assert torch.equal(au, torch.zeros_like(u))


# ---------------------------------------------------------------- errors and hygiene


def test_errors() -> None:
    net = _cnn()
    x = randn(3, 2, 6, 6, seed=29)
    ig = IntegratedGradients(net)
    with pytest.raises(ValueError, match="valid methods"):
        ig.attribute(x, target=0, method="riemann")
    with pytest.raises(ValueError, match="n_steps"):
        ig.attribute(x, target=0, n_steps=0)
    with pytest.raises(AttributionError, match=r"target 3 for example 0 .*3 classes"):
        ig.attribute(x, target=3)
    with pytest.raises(AttributionError, match=r"\(3, 2, 5, 5\)"):
        ig.attribute(randn(3, 2, 5, 5, seed=0), target=0)
    bad = x.clone()
    bad[1, 0, 0, 0] = float("inf")
    with pytest.raises(AttributionError, match=r"inf.*example 1"):
        ig.attribute(bad, target=0)


def test_training_mode_dropout_warns_and_restores() -> None:
    torch.manual_seed(30)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 1)).to(DT)
    net.train()
    x = randn(3, 4, seed=30)
    with pytest.warns(UserWarning, match="IntegratedGradients: .*training mode"):
        got = IntegratedGradients(net).attribute(x, n_steps=5)
    assert net.training
    net.eval()
    torch.testing.assert_close(
        got, IntegratedGradients(net).attribute(x, n_steps=5), rtol=0, atol=0
    )


def test_user_tensors_untouched_and_works_under_no_grad() -> None:
    net = _cnn()
    x = randn(2, 2, 6, 6, seed=31).requires_grad_()
    with torch.no_grad():
        attr = IntegratedGradients(net).attribute(x, target=0, n_steps=4, completeness_tol=None)
    assert x.grad is None and all(p.grad is None for p in net.parameters())
    assert not attr.requires_grad
    ref = IntegratedGradients(net).attribute(x, target=0, n_steps=4, completeness_tol=None)
    torch.testing.assert_close(attr, ref, rtol=0, atol=0)
