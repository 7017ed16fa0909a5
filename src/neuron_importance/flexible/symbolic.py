"""Symbolic read-out: fit each learned 1-D function with a small library of closed forms.

Every candidate has the form ``y ≈ a·g(b·x + c) + d`` for one primitive ``g``. The outer
pair ``(a, d)`` enters linearly, so for fixed inner parameters ``(b, c)`` it is solved exactly
by linear least squares (variable projection); only the inner parameters are searched: first
on a small grid (in standardised ``x`` units), then the best few grid points are refined by
``scipy.optimize.least_squares`` when SciPy is importable (otherwise the best grid point is
refined by a small derivative-free compass search).
Inner parameters that are redundant for a primitive are fixed, so that every candidate has
only identifiable parameters:

==========  =========================  ========  ==========  ===================
name        form                        params k  complexity  description length
==========  =========================  ========  ==========  ===================
const       d                           1         0           1
x           a·x + d                     2         1           3
x^2         a·(x + c)² + d              3         2           5
x^3         a·(x + c)³ + d              3         3           6
exp         a·exp(b·x) + d              3         2           5
log         a·log(±x + c) + d           3         2           5
abs         a·|x + c| + d               3         3           6
sin         a·sin(b·x + c) + d          4         2           6
tanh        a·tanh(b·x + c) + d         4         3           7
sigmoid     a·σ(b·x + c) + d            4         3           7
==========  =========================  ========  ==========  ===================

(``log`` is fitted on the shifted domain ``±x + c > 0`` over the sampled points: ``c`` is
parameterised as ``−min(±x) + e^t``; the sign is a discrete restart.) The complexity weights
follow pykan's symbolic library (``x`` 1, ``x²`` 2, ``x³`` 3, ``exp``/``log``/``sin`` 2,
``tanh``/``abs``/``sigmoid`` 3). The **description length** of a fit is ``k + complexity``:
the number of fitted real parameters plus the complexity weight of its primitive; the read-out
of a model sums it over all learned functions (the complexity axis of the seed paper's
complexity-vs-expressiveness trade-off).

**Selection.** Among the candidates the one with the smallest information criterion is
returned, by default the BIC ``n·log(RSS/n) + k·log(n)`` (``criterion="aic"``: ``… + 2k``),
ties (criterion values within 1e-6, e.g. ``tanh`` and ``sigmoid``, which span the same
function class) broken by the smaller description length, then the library order. The RSS is floored at ``n·(1e-6·std(y))²`` (at least ``n·(1e-12·max|y|)²``) so
that candidates which fit to rounding error tie and the simplest wins (a linear curve is read as
``x``, not as a sine with a tiny frequency). The fit error is reported as ``R²`` (1 for a
constant curve fitted exactly) and the RMSE, in the units of ``y``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

try:  # SciPy is optional: without it the grid search result is kept
    from scipy.optimize import least_squares as _least_squares
except ImportError:  # pragma: no cover - scipy is installed in the dev environment
    _least_squares = None

__all__ = [
    "CANDIDATES",
    "DEFAULT_CANDIDATES",
    "SymbolicFit",
    "SymbolicReadout",
    "fit_symbolic",
    "symbolic_readout",
]

_EXP_CLIP = 50.0
_RSS_FLOOR_REL = 1e-6
_N_REFINE = 3
_IC_TIE = 1e-6


def _sigmoid(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * u))


@dataclass(frozen=True)
class _Candidate:
    name: str
    g: Callable[[np.ndarray], np.ndarray] | None  # None: the constant
    complexity: int
    # which inner parameters are free: "none" (b=1, c=0), "c" (b=1), "b" (c=0), "bc", "log"
    free: str
    template: str  # format with a, b, c, d, x

    @property
    def n_params(self) -> int:
        return {"const": 1}.get(self.name, 2 + {"none": 0, "c": 1, "b": 1, "log": 1,
                                                "bc": 2}[self.free])


CANDIDATES: dict[str, _Candidate] = {
    c.name: c for c in (
        _Candidate("const", None, 0, "none", "{d}"),
        _Candidate("x", lambda u: u, 1, "none", "{a}*{x} + {d}"),
        _Candidate("x^2", lambda u: u ** 2, 2, "c", "{a}*({x} + {c})**2 + {d}"),
        _Candidate("x^3", lambda u: u ** 3, 3, "c", "{a}*({x} + {c})**3 + {d}"),
        _Candidate("exp", lambda u: np.exp(np.clip(u, -_EXP_CLIP, _EXP_CLIP)), 2, "b",
                   "{a}*exp({b}*{x} + {c}) + {d}"),
        _Candidate("log", np.log, 2, "log", "{a}*log({b}*{x} + {c}) + {d}"),
        _Candidate("abs", np.abs, 3, "c", "{a}*abs({x} + {c}) + {d}"),
        _Candidate("sin", np.sin, 2, "bc", "{a}*sin({b}*{x} + {c}) + {d}"),
        _Candidate("tanh", np.tanh, 3, "bc", "{a}*tanh({b}*{x} + {c}) + {d}"),
        _Candidate("sigmoid", _sigmoid, 3, "bc", "{a}*sigmoid({b}*{x} + {c}) + {d}"),
    )
}
DEFAULT_CANDIDATES: tuple[str, ...] = tuple(CANDIDATES)


@dataclass
class SymbolicFit:
    """The selected closed form ``a·g(b·x + c) + d`` for one curve (parameters in ``x`` units).

    Attributes:
        name: the primitive (a key of :data:`CANDIDATES`).
        a, b, c, d: the parameters (fixed ones hold their fixed value: ``b = 1``, ``c = 0``).
        r2, rmse: fit error on the sampled points.
        n_params: number of fitted parameters ``k``.
        complexity: complexity weight of the primitive.
        description_length: ``n_params + complexity``.
        criterion: value of the information criterion used for the selection.
        method: ``"least_squares"`` (grid + SciPy refinement), ``"grid+compass"`` (grid +
            a derivative-free compass search, without SciPy) or ``"closed form"``.
        alternatives: ``{name: (r2, criterion)}`` of every candidate tried.
    """

    name: str
    a: float
    b: float
    c: float
    d: float
    r2: float
    rmse: float
    n_params: int
    complexity: int
    description_length: int
    criterion: float
    method: str
    alternatives: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __call__(self, x) -> np.ndarray:
        """Evaluate the formula at ``x`` (array-like)."""
        x = np.asarray(x, dtype=float)
        cand = CANDIDATES[self.name]
        if cand.g is None:
            return np.full_like(x, self.d)
        with np.errstate(all="ignore"):
            return self.a * cand.g(self.b * x + self.c) + self.d

    def formula(self, var: str = "x", digits: int = 4) -> str:
        """The formula as a string, e.g. ``"1.002*sin(0.998*x + 0.001) - 0.003"``."""
        f = lambda v: f"{v:.{digits}g}"  # noqa: E731
        s = CANDIDATES[self.name].template.format(a=f(self.a), b=f(self.b), c=f(self.c),
                                                  d=f(self.d), x=var)
        return s.replace(" + 0)", ")").replace("+ -", "- ")


def _design_fit(u: np.ndarray | None, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Least-squares ``(a, d)`` of ``y ≈ a·u + d`` and the residual (``u=None``: constant)."""
    if u is None:
        d = float(y.mean())
        return 0.0, d, y - d
    if not np.all(np.isfinite(u)):
        return 0.0, float(y.mean()), np.full_like(y, 1e150)
    um = u.mean()
    uc = u - um
    den = float(uc @ uc)
    a = float(uc @ (y - y.mean())) / den if den > 1e-300 else 0.0
    d = float(y.mean() - a * um)
    return a, d, y - (a * u + d)


def _inner(cand: _Candidate, theta: np.ndarray, xs: np.ndarray, sign: float) -> tuple[float, float]:
    """``(b, c)`` of the standardised variable ``xs`` from the free parameters ``theta``."""
    if cand.free == "none":
        return 1.0, 0.0
    if cand.free == "c":
        return 1.0, float(theta[0])
    if cand.free == "b":
        return float(theta[0]), 0.0
    if cand.free == "log":
        return sign, float(-np.min(sign * xs) + np.exp(np.clip(theta[0], -30, 30)))
    return float(theta[0]), float(theta[1])


def _grid(cand: _Candidate) -> list[np.ndarray]:
    bs = [-4.0, -2.0, -1.0, -0.5, -0.25, 0.25, 0.5, 1.0, 2.0, 4.0]
    cs = list(np.linspace(-3.0, 3.0, 9))
    if cand.free == "none":
        return [np.zeros(0)]
    if cand.free == "c":
        return [np.array([c]) for c in np.linspace(-4.0, 4.0, 17)]
    if cand.free == "b":
        return [np.array([b]) for b in bs]
    if cand.free == "log":
        return [np.array([t]) for t in np.linspace(-6.0, 4.0, 11)]
    return [np.array([b, c]) for b in bs + [-8.0, 8.0] for c in cs]


def _compass(f: Callable[[np.ndarray], float], t0: np.ndarray, step: float = 0.25,
             tol: float = 1e-7, max_iter: int = 400) -> tuple[float, np.ndarray]:
    """Derivative-free compass search (the refinement used when SciPy is absent)."""
    t, best = t0.astype(float).copy(), f(t0)
    for _ in range(max_iter):
        if step < tol:
            break
        improved = False
        for i in range(t.size):
            for sgn in (1.0, -1.0):
                trial = t.copy()
                trial[i] += sgn * step
                v = f(trial)
                if math.isfinite(v) and v < best:
                    t, best, improved = trial, v, True
        if not improved:
            step *= 0.5
    return best, t


def _fit_candidate(cand: _Candidate, xs: np.ndarray, y: np.ndarray, use_scipy: bool):
    """Best ``(rss, a, b_std, c_std, d, method)`` of one candidate on standardised ``xs``."""
    if cand.g is None:
        a, d, r = _design_fit(None, y)
        return float(r @ r), 0.0, 1.0, 0.0, d, "closed form"
    signs = (1.0, -1.0) if cand.free == "log" else (1.0,)
    best = None
    method = "least_squares" if use_scipy else "grid+compass"
    for sign in signs:
        def resid(theta, sign=sign):
            b, c = _inner(cand, theta, xs, sign)
            with np.errstate(all="ignore"):
                u = cand.g(b * xs + c)
            return _design_fit(u, y)[2]

        starts = sorted(((float(np.sum(resid(t) ** 2)), i, t) for i, t in
                         enumerate(_grid(cand))), key=lambda s: (s[0], s[1]))
        trials = [(rss, t) for rss, _, t in starts[:1]]
        if not use_scipy and cand.free != "none":  # no SciPy: a compass search from the best
            trials.append(_compass(lambda t: float(np.sum(resid(t) ** 2)), starts[0][2]))
        if use_scipy and cand.free != "none":
            for _, _, t0 in starts[:_N_REFINE]:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        sol = _least_squares(resid, t0, method="lm" if y.size > t0.size
                                             else "trf", max_nfev=200 * (t0.size + 1))
                    r = resid(sol.x)
                    rss = float(r @ r)
                    if math.isfinite(rss):
                        trials.append((rss, sol.x))
                except (ValueError, FloatingPointError, np.linalg.LinAlgError):
                    continue
        rss, theta = min(trials, key=lambda s: s[0])
        if best is None or rss < best[0]:
            b, c = _inner(cand, theta, xs, sign)
            with np.errstate(all="ignore"):
                a, d, _ = _design_fit(cand.g(b * xs + c), y)
            best = (rss, a, b, c, d)
    return (*best, method)


def _to_x_units(name: str, a: float, bs: float, cs: float, d: float, mu: float, sd: float):
    """Parameters of the standardised fit ``a·g(bs·(x − mu)/sd + cs) + d`` in ``x`` units.

    The general form is ``a·g(b·x + c) + d`` with ``b = bs/sd`` and ``c = cs − bs·mu/sd``; it
    is then rewritten to the candidate's template (``b = 1`` for the powers and ``abs``, which
    are homogeneous; ``c = 0`` for ``x`` and ``exp``; ``b = ±1`` for ``log``).
    """
    b, c = bs / sd, cs - bs * mu / sd
    if name == "const":
        return 0.0, 1.0, 0.0, d
    if name == "x":
        return a * b, 1.0, 0.0, d + a * c
    power = {"x^2": 2, "x^3": 3, "abs": 1}.get(name)
    if power is not None:  # b = 1/sd > 0: g(b·x + c) = b^p·g(x + c/b)
        return a * b ** power, 1.0, c / b, d
    if name == "exp":
        try:
            return a * math.exp(c), b, 0.0, d
        except OverflowError:
            return a, b, c, d
    if name == "log":  # a·log(b·x + c) = a·log|b| + a·log(±x + c/|b|)
        return a, math.copysign(1.0, b), c / abs(b), d + a * math.log(abs(b))
    if b < 0 and name in ("sin", "tanh"):  # odd: a·g(b·x + c) = −a·g(−b·x − c)
        return -a, -b, -c, d
    if b < 0 and name == "sigmoid":  # σ(−u) = 1 − σ(u)
        return -a, -b, -c, d + a
    return a, b, c, d


def fit_symbolic(
    fn_values_x,
    fn_values_y,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    criterion: str = "bic",
    use_scipy: bool | None = None,
) -> SymbolicFit:
    """Fit the sampled curve ``(x, y)`` with every candidate and return the best one.

    Args:
        fn_values_x, fn_values_y: the sample points (1-D array-likes or tensors, same length,
            at least 5 finite points; ``x`` not constant).
        candidates: names from :data:`CANDIDATES` (default all of them).
        criterion: ``"bic"`` (default) or ``"aic"`` (see the module doc).
        use_scipy: refine the grid search with ``scipy.optimize.least_squares`` (default: when
            SciPy is importable).

    Raises:
        ValueError: bad shapes, non-finite values, constant ``x``, unknown candidate names.
    """
    x = np.asarray(torch.as_tensor(fn_values_x).detach().cpu().double().numpy()
                   if isinstance(fn_values_x, torch.Tensor) else fn_values_x, dtype=float).ravel()
    y = np.asarray(torch.as_tensor(fn_values_y).detach().cpu().double().numpy()
                   if isinstance(fn_values_y, torch.Tensor) else fn_values_y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 5:
        raise ValueError(f"need at least 5 sample points, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite (no NaN or inf)")
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown or not candidates:
        raise ValueError(f"unknown candidates {unknown}; choose from {list(CANDIDATES)}")
    if criterion not in ("bic", "aic"):
        raise ValueError(f"criterion must be 'bic' or 'aic', got {criterion!r}")
    if use_scipy is None:
        use_scipy = _least_squares is not None
    elif use_scipy and _least_squares is None:
        raise ValueError("use_scipy=True but scipy is not installed")
    mu, sd = float(x.mean()), float(x.std())
    if not sd > 0:
        raise ValueError("x must not be constant")
    xs = (x - mu) / sd
    n = x.size
    y_sd = float(y.std())
    floor = n * max((_RSS_FLOOR_REL * y_sd) ** 2, (1e-12 * float(np.abs(y).max())) ** 2, 1e-300)
    tss = float(np.sum((y - y.mean()) ** 2))
    results = []
    for name in dict.fromkeys(candidates):
        cand = CANDIDATES[name]
        rss, a, bs, cs, d, method = _fit_candidate(cand, xs, y, use_scipy)
        k = 1 if cand.g is None else cand.n_params
        pen = k * math.log(n) if criterion == "bic" else 2.0 * k
        ic = n * math.log(max(rss, floor) / n) + pen
        a, b, c, d = _to_x_units(name, a, bs, cs, d, mu, sd)
        r2 = 1.0 - rss / tss if tss > floor else (1.0 if rss <= floor else 0.0)
        results.append((ic, k + cand.complexity, name, SymbolicFit(
            name=name, a=a, b=b, c=c, d=d, r2=float(r2), rmse=math.sqrt(rss / n),
            n_params=k, complexity=cand.complexity, description_length=k + cand.complexity,
            criterion=ic, method=method)))
    results.sort(key=lambda r: (r[0], r[1]))
    # numerical ties (e.g. tanh and sigmoid, the same function class): the smaller description
    # length, then the library order
    order = {nm: i for i, nm in enumerate(CANDIDATES)}
    tied = [r for r in results if r[0] <= results[0][0] + _IC_TIE]
    best = min(tied, key=lambda r: (r[1], order[r[2]]))[3]
    best.alternatives = {r[2]: (r[3].r2, r[0]) for r in results}
    return best


# ---------------------------------------------------------------------------- read-out
class SymbolicReadout(list):
    """A ``list`` of per-function dicts (see :func:`symbolic_readout`) with totals."""

    @property
    def total_description_length(self) -> int:
        """Sum of the description lengths of all learned functions."""
        return int(sum(e["description_length"] for e in self))

    @property
    def mean_r2(self) -> float:
        return float(np.mean([e["r2"] for e in self])) if self else float("nan")


def _bank_entries(bank, layer: str, ids: Callable[[int], dict], var: Callable[[int], str],
                  n_points: int, candidates, criterion) -> list[dict]:
    c = bank.control_points.detach()
    xs = torch.linspace(float(c[0]), float(c[-1]), n_points, dtype=bank.values.dtype,
                        device=bank.values.device)
    was_training = bank.training
    bank.eval()
    try:
        ys = bank.evaluate(xs).cpu().double().numpy()
    finally:
        bank.train(was_training)
    xn = xs.cpu().double().numpy()
    out = []
    for e in range(bank.n_edges):
        fit = fit_symbolic(xn, ys[:, e], candidates=candidates, criterion=criterion)
        out.append({"layer": layer, "edge": e, **ids(e), "name": fit.name,
                    "formula": fit.formula(var(e)), "params": {"a": fit.a, "b": fit.b,
                                                                 "c": fit.c, "d": fit.d},
                    "r2": fit.r2, "rmse": fit.rmse, "n_params": fit.n_params,
                    "complexity": fit.complexity,
                    "description_length": fit.description_length})
    return out


def symbolic_readout(
    model_or_layer: nn.Module,
    n_points: int = 200,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    criterion: str = "bic",
) -> SymbolicReadout:
    """Fit every learned function of a GP-activation bank or a KST network symbolically.

    Each function is sampled at ``n_points`` points spanning its control range and passed to
    :func:`fit_symbolic`. Returns a :class:`SymbolicReadout` (a list, one dict per function,
    plus ``.total_description_length``). Each dict holds ``layer`` (``"bank"``, ``"inner"`` or
    ``"outer"``), ``edge`` (column of the bank), the edge ids (KST inner: ``hidden`` ``q`` and
    ``input`` ``p``; outer: ``output`` ``o`` and ``hidden`` ``q``), ``name``, ``formula``,
    ``params``, ``r2``, ``rmse``, ``n_params``, ``complexity`` and ``description_length``.
    In formulas, ``xn{p}`` is the *normalised* input ``p`` (as the inner functions see it,
    ``(x − shift)/scale``), ``z{q}`` the hidden sum ``q`` and ``x`` a bank's input.
    """
    from .gp_activation import GPActivation
    from .kst import KSTNetwork

    if int(n_points) != n_points or n_points < 5:
        raise ValueError(f"n_points must be an integer ≥ 5, got {n_points!r}")
    if isinstance(model_or_layer, KSTNetwork):
        m = model_or_layer
        n, h = m.n_inputs, m.width
        entries = _bank_entries(m.inner, "inner", lambda e: {"hidden": e // n, "input": e % n},
                                lambda e: f"xn{e % n}", n_points, candidates, criterion)
        entries += _bank_entries(m.outer, "outer", lambda e: {"output": e // h, "hidden": e % h},
                                 lambda e: f"z{e % h}", n_points, candidates, criterion)
    elif isinstance(model_or_layer, GPActivation):
        entries = _bank_entries(model_or_layer, "bank", lambda e: {}, lambda e: "x", n_points,
                                candidates, criterion)
    else:
        raise TypeError("symbolic_readout expects a GPActivation or a KSTNetwork, got "
                        f"{type(model_or_layer).__name__}")
    return SymbolicReadout(entries)
