"""Independent NumPy reference implementation of DeepLIFT (test oracle).

Shrikumar, Greenside & Kundaje, "Learning Important Features Through Propagating
Activation Differences", ICML 2017; spec: ``docs/methods/deeplift.md`` §1-§7.

This module shares no code with ``neuron_importance``: it works on an explicit list of
layer objects, in float64, for ONE example without a batch axis (use
:func:`deeplift_batch` to loop over a batch).  Clarity beats speed: every linear
layer is turned into an explicit dense matrix (built by applying the layer to the
unit basis vectors), convolutions and pools are explicit loops.  Only
:func:`from_torch` touches PyTorch, to read the parameters of an ``nn.Sequential``.

Shapes (no batch axis): Dense takes ``(in,)``; Conv1d / pools-1d take ``(C, L)``;
Conv2d / pools-2d take ``(C, H, W)``; Flatten is C-order (like ``torch.flatten(x, 1)``).

Every neuron carries ``(Δ⁺, Δ⁻)`` with ``Δ⁺ + Δ⁻ = Δ``; the backward pass carries
``(m⁺, m⁻)``.  Layer kinds:

* ``"mixing"``    Dense, Conv1d, Conv2d (linear rule with P/N split on the total Δx)
* ``"stream"``    Flatten, AvgPool1d/2d, GlobalAvgPool1d (non-negative linear map,
                  applied to each stream)
* ``"diag"``      BatchNormEval (per-channel signed scale; streams swap where s < 0)
* ``"nonlinear"`` ReLU, Sigmoid, Tanh, Softplus, LeakyReLU (Rescale / RevealCancel)
* ``"maxpool"``   MaxPool1d/2d (crossmax routing, exact summation-to-delta)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

NEAR_ZERO = 1e-7  # the reference code's NEAR_ZERO_THRESHOLD
RULES = ("rescale", "reveal_cancel", "genomics_default")

__all__ = [
    "NEAR_ZERO",
    "RULES",
    "AvgPool1d",
    "AvgPool2d",
    "BatchNormEval",
    "Conv1d",
    "Conv2d",
    "Dense",
    "Flatten",
    "GlobalAvgPool1d",
    "LeakyReLU",
    "MaxPool1d",
    "MaxPool2d",
    "ReLU",
    "Sigmoid",
    "Softplus",
    "Tanh",
    "deeplift",
    "deeplift_batch",
    "forward",
    "from_torch",
    "resolve_rules",
    "torch_global_avg_pool1d",
]


# --------------------------------------------------------------------------- helpers


def _f64(a) -> np.ndarray:
    return np.array(a, dtype=np.float64, copy=True)


def _ntuple(v, nd: int) -> tuple[int, ...]:
    if isinstance(v, (int, np.integer)):
        return (int(v),) * nd
    t = tuple(int(e) for e in v)
    if len(t) != nd:
        raise ValueError(f"expected {nd} values, got {v!r}")
    return t


def _pad_pairs(padding, nd: int, kernel: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Padding as ((lo, hi), ...) per spatial dim; accepts int, per-dim ints,
    per-dim (lo, hi) pairs, "valid", or "same" (stride 1; torch puts the extra
    element on the high side)."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            return tuple(((k - 1) // 2, (k - 1) - (k - 1) // 2) for k in kernel)
        raise ValueError(f"unknown padding {padding!r}")
    if isinstance(padding, (int, np.integer)):
        return ((int(padding), int(padding)),) * nd
    out = []
    for p in padding:
        if isinstance(p, (int, np.integer)):
            out.append((int(p), int(p)))
        else:
            lo, hi = p
            out.append((int(lo), int(hi)))
    if len(out) != nd:
        raise ValueError(f"expected {nd} padding entries, got {padding!r}")
    return tuple(out)


def _matrix_of(fn, in_shape: tuple[int, ...]) -> np.ndarray:
    """Dense matrix of a linear map (no bias): column j = fn(e_j)."""
    n = int(np.prod(in_shape))
    cols = []
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1.0
        cols.append(np.asarray(fn(e.reshape(in_shape)), dtype=np.float64).ravel())
    return np.stack(cols, axis=1)


def _conv_nd(x: np.ndarray, w: np.ndarray, stride, pads) -> np.ndarray:
    """Plain cross-correlation (torch convention), no bias, explicit loop over outputs.
    x: (C, *S), w: (O, C, *K)."""
    nd = w.ndim - 2
    if x.ndim != nd + 1 or x.shape[0] != w.shape[1]:
        raise ValueError(f"conv input shape {x.shape} does not match weight {w.shape}")
    xp = np.pad(x, [(0, 0), *pads])
    k = w.shape[2:]
    out_sp = tuple((xp.shape[1 + d] - k[d]) // stride[d] + 1 for d in range(nd))
    if min(out_sp) <= 0:
        raise ValueError("conv output would be empty")
    y = np.zeros((w.shape[0], *out_sp))
    for o in np.ndindex(*out_sp):
        sl = tuple(slice(o[d] * stride[d], o[d] * stride[d] + k[d]) for d in range(nd))
        patch = xp[(slice(None), *sl)]  # (C, *K)
        y[(slice(None), *o)] = np.tensordot(w, patch, axes=nd + 1)
    return y


def _pool_windows(in_shape, kernel, stride):
    """Windows of a (no-padding, floor-mode) pool over (C, *S).

    Returns (out_shape, windows) where windows[o] is the array of flat input indices
    of output flat index o, in row-major order within the window (so np.argmax picks
    the first index on ties, like torch)."""
    c, sp = in_shape[0], tuple(in_shape[1:])
    nd = len(kernel)
    if len(sp) != nd:
        raise ValueError(f"pool over {nd} dims got input shape {in_shape}")
    out_sp = tuple((sp[d] - kernel[d]) // stride[d] + 1 for d in range(nd))
    if min(out_sp) <= 0:
        raise ValueError("pool output would be empty")
    windows = []
    for ch in range(c):
        for o in np.ndindex(*out_sp):
            idx = []
            for kk in np.ndindex(*kernel):
                pos = tuple(o[d] * stride[d] + kk[d] for d in range(nd))
                idx.append(np.ravel_multi_index((ch, *pos), in_shape))
            windows.append(np.array(idx, dtype=np.int64))
    return (c, *out_sp), windows


# --------------------------------------------------------------------------- layers


class Layer:
    kind = "?"

    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class Dense(Layer):
    """y = W x + b with W of shape (out, in); input must be 1-D (in,)."""

    kind = "mixing"

    def __init__(self, W, b=None):
        self.W = _f64(W)
        if self.W.ndim != 2:
            raise ValueError("Dense W must be (out, in)")
        self.b = np.zeros(self.W.shape[0]) if b is None else _f64(b).reshape(-1)

    def forward(self, x):
        if x.shape != (self.W.shape[1],):
            raise ValueError(f"Dense expects input shape ({self.W.shape[1]},), got {x.shape}")
        return self.W @ x + self.b

    def matrices(self, in_shape):
        W = self.W
        return W, np.where(W > 0, W, 0.0), np.where(W < 0, W, 0.0)

    def __repr__(self):
        return f"Dense({self.W.shape[1]}->{self.W.shape[0]})"


class _Conv(Layer):
    kind = "mixing"
    nd = 0

    def __init__(self, weight, bias=None, stride=1, padding=0):
        self.weight = _f64(weight)
        if self.weight.ndim != self.nd + 2:
            raise ValueError(f"Conv{self.nd}d weight must have {self.nd + 2} dims")
        out_ch = self.weight.shape[0]
        self.bias = np.zeros(out_ch) if bias is None else _f64(bias).reshape(-1)
        self.stride = _ntuple(stride, self.nd)
        self.pads = _pad_pairs(padding, self.nd, self.weight.shape[2:])

    def _conv(self, x, w):
        return _conv_nd(x, w, self.stride, self.pads)

    def forward(self, x):
        y = self._conv(x, self.weight)
        return y + self.bias.reshape((-1,) + (1,) * self.nd)

    def matrices(self, in_shape):
        w = self.weight
        W = _matrix_of(lambda e: self._conv(e, w), in_shape)
        P = _matrix_of(lambda e: self._conv(e, np.where(w > 0, w, 0.0)), in_shape)
        N = _matrix_of(lambda e: self._conv(e, np.where(w < 0, w, 0.0)), in_shape)
        return W, P, N

    def __repr__(self):
        return f"Conv{self.nd}d{self.weight.shape}(stride={self.stride}, pads={self.pads})"


class Conv1d(_Conv):
    """weight (O, C, K), input (C, L)."""

    nd = 1


class Conv2d(_Conv):
    """weight (O, C, KH, KW), input (C, H, W)."""

    nd = 2


class Flatten(Layer):
    """C-order flatten of the whole (batch-free) example, like torch.flatten(x, 1)."""

    kind = "stream"

    def forward(self, x):
        return x.reshape(-1)

    def matrix(self, in_shape):
        return _matrix_of(self.forward, in_shape)

    def __repr__(self):
        return "Flatten()"


class _AvgPool(Layer):
    kind = "stream"
    nd = 0

    def __init__(self, kernel, stride=None):
        self.kernel = _ntuple(kernel, self.nd)
        self.stride = self.kernel if stride is None else _ntuple(stride, self.nd)

    def forward(self, x):
        out_shape, windows = _pool_windows(x.shape, self.kernel, self.stride)
        flat = x.ravel()
        return np.array([flat[w].mean() for w in windows]).reshape(out_shape)

    def matrix(self, in_shape):
        return _matrix_of(self.forward, in_shape)

    def __repr__(self):
        return f"AvgPool{self.nd}d(k={self.kernel}, s={self.stride})"


class AvgPool1d(_AvgPool):
    nd = 1


class AvgPool2d(_AvgPool):
    nd = 2


class GlobalAvgPool1d(Layer):
    """Mean over the length axis: (C, L) -> (C,) (or (C, 1) with keepdim=True)."""

    kind = "stream"

    def __init__(self, keepdim: bool = False):
        self.keepdim = bool(keepdim)

    def forward(self, x):
        if x.ndim != 2:
            raise ValueError(f"GlobalAvgPool1d expects (C, L), got {x.shape}")
        return x.mean(axis=-1, keepdims=self.keepdim)

    def matrix(self, in_shape):
        return _matrix_of(self.forward, in_shape)

    def __repr__(self):
        return "GlobalAvgPool1d()"


class BatchNormEval(Layer):
    """y = s*x + t per channel (channel = axis 0 of the batch-free input)."""

    kind = "diag"

    def __init__(self, scale, shift):
        self.scale = _f64(scale).reshape(-1)
        self.shift = _f64(shift).reshape(-1)
        if self.scale.shape != self.shift.shape:
            raise ValueError("scale and shift must have the same length")

    def _bcast(self, v, shape):
        if shape[0] != v.shape[0]:
            raise ValueError(f"BatchNormEval with {v.shape[0]} channels got {shape}")
        return np.broadcast_to(v.reshape((-1,) + (1,) * (len(shape) - 1)), shape)

    def scale_like(self, shape):
        return np.array(self._bcast(self.scale, shape))

    def forward(self, x):
        return self._bcast(self.scale, x.shape) * x + self._bcast(self.shift, x.shape)

    def __repr__(self):
        return f"BatchNormEval({self.scale.shape[0]})"


class _Elementwise(Layer):
    kind = "nonlinear"

    def f(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def fprime(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x):
        return self.f(x)

    def __repr__(self):
        return f"{type(self).__name__}()"


class ReLU(_Elementwise):
    """f'(0) = 0, like torch."""

    def f(self, x):
        return np.maximum(x, 0.0)

    def fprime(self, x):
        return (x > 0).astype(np.float64)


class LeakyReLU(_Elementwise):
    """f(x) = x (x > 0) else slope*x; f'(0) = slope, like torch."""

    def __init__(self, slope: float = 0.01):
        self.slope = float(slope)

    def f(self, x):
        return np.where(x > 0, x, self.slope * x)

    def fprime(self, x):
        return np.where(x > 0, 1.0, self.slope)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class Sigmoid(_Elementwise):
    def f(self, x):
        return _sigmoid(x)

    def fprime(self, x):
        s = _sigmoid(x)
        return s * (1.0 - s)


class Tanh(_Elementwise):
    def f(self, x):
        return np.tanh(x)

    def fprime(self, x):
        return 1.0 - np.tanh(x) ** 2


class Softplus(_Elementwise):
    """torch.nn.Softplus: log(1 + exp(beta x)) / beta, linear where beta x > threshold."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        self.beta = float(beta)
        self.threshold = float(threshold)

    def f(self, x):
        bx = self.beta * x
        return np.where(bx > self.threshold, x, np.logaddexp(0.0, bx) / self.beta)

    def fprime(self, x):
        bx = self.beta * x
        return np.where(bx > self.threshold, 1.0, _sigmoid(bx))


class _MaxPool(Layer):
    kind = "maxpool"
    nd = 0

    def __init__(self, kernel, stride=None):
        self.kernel = _ntuple(kernel, self.nd)
        self.stride = self.kernel if stride is None else _ntuple(stride, self.nd)

    def windows(self, in_shape):
        return _pool_windows(tuple(in_shape), self.kernel, self.stride)

    def forward(self, x):
        out_shape, windows = self.windows(x.shape)
        flat = x.ravel()
        return np.array([flat[w].max() for w in windows]).reshape(out_shape)

    def __repr__(self):
        return f"MaxPool{self.nd}d(k={self.kernel}, s={self.stride})"


class MaxPool1d(_MaxPool):
    nd = 1


class MaxPool2d(_MaxPool):
    nd = 2


# --------------------------------------------------------------------------- algorithm


def resolve_rules(layers: Sequence[Layer], rule: str) -> list[str | None]:
    """The rule ("rescale" / "reveal_cancel") used at each layer (None for
    non-nonlinear layers).  genomics_default: look back through stream / diag /
    maxpool layers to the nearest mixing layer; Conv -> rescale, Dense ->
    reveal_cancel; anything else (start of net, another nonlinearity) -> ValueError."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    out: list[str | None] = []
    for i, layer in enumerate(layers):
        if layer.kind != "nonlinear":
            out.append(None)
            continue
        if rule != "genomics_default":
            out.append(rule)
            continue
        j = i - 1
        while j >= 0 and layers[j].kind in ("stream", "diag", "maxpool"):
            j -= 1
        if j < 0 or layers[j].kind != "mixing":
            what = "the input" if j < 0 else repr(layers[j])
            raise ValueError(
                f"genomics_default: nonlinearity {i} ({layer!r}) has no preceding "
                f"Dense/Conv layer (found {what})"
            )
        out.append("rescale" if isinstance(layers[j], _Conv) else "reveal_cancel")
    return out


def _pc(v: np.ndarray) -> np.ndarray:
    """Division guard (notes §4: "adds ±1e-7"): v + sign(v)·1e-7 where |v| < 0.5e-7.

    Sign-preserving (sign(0) = +), so a tiny negative part keeps a non-negative multiplier.
    """
    sign = np.where(v < 0, -1.0, 1.0)
    return v + NEAR_ZERO * sign * (np.abs(v) < 0.5 * NEAR_ZERO)


def forward(layers: Sequence[Layer], x) -> np.ndarray:
    """Plain forward pass of one example; returns the last layer's output."""
    a = _f64(x)
    for layer in layers:
        a = layer.forward(a)
    return a


def _forward_deltas(layers, rules, x, r):
    d = x - r
    dpos = np.where(d > 0, d, 0.0)
    dneg = np.where(d < 0, d, 0.0)
    act, ref = x, r
    caches = []
    for layer, lrule in zip(layers, rules):
        in_shape = act.shape
        y_act = layer.forward(act)
        y_ref = layer.forward(ref)
        dp, dn = dpos.ravel(), dneg.ravel()
        c: dict = {"in_shape": in_shape}
        if layer.kind == "mixing":
            W, P, N = layer.matrices(in_shape)
            dx = dp + dn
            xp = np.where(dx > 0, dx, 0.0)
            xn = np.where(dx < 0, dx, 0.0)
            ypos = P @ xp + N @ xn
            yneg = N @ xp + P @ xn
            c.update(W=W, P=P, N=N, dx=dx)
        elif layer.kind == "stream":
            A = layer.matrix(in_shape)
            ypos, yneg = A @ dp, A @ dn
            c.update(A=A)
        elif layer.kind == "diag":
            s = layer.scale_like(in_shape).ravel()
            ypos = np.where(s >= 0, s * dp, s * dn)
            yneg = np.where(s >= 0, s * dn, s * dp)
            c.update(s=s)
        elif layer.kind == "nonlinear":
            rr, xx = ref.ravel(), act.ravel()
            f = layer.f
            dx = dp + dn
            if lrule == "rescale":
                dy = f(xx) - f(rr)
                big = np.abs(dx) >= NEAR_ZERO
                m = np.where(big, dy / np.where(big, dx, 1.0), layer.fprime(rr))
                ypos, yneg = m * dp, m * dn
                c.update(mpos=m, mneg=m)
            elif lrule == "reveal_cancel":
                ypos = 0.5 * (f(rr + dp) - f(rr)) + 0.5 * (f(rr + dn + dp) - f(rr + dn))
                yneg = 0.5 * (f(rr + dn) - f(rr)) + 0.5 * (f(rr + dp + dn) - f(rr + dp))
                c.update(mpos=ypos / _pc(dp), mneg=yneg / _pc(dn))
            else:  # pragma: no cover - resolve_rules guarantees this
                raise AssertionError(lrule)
        elif layer.kind == "maxpool":
            out_shape, windows = layer.windows(in_shape)
            xa, xr = act.ravel(), ref.ravel()
            route = np.empty(len(windows), dtype=np.int64)
            m = np.empty(len(windows))
            for o, w in enumerate(windows):
                a = w[np.argmax(xa[w])]  # actual arg-max (first on ties)
                b = w[np.argmax(xr[w])]  # reference arg-max
                dy = xa[a] - xr[b]
                p = a if dy >= 0 else b
                dxp = dp[p] + dn[p]
                m[o] = dy / dxp if dxp != 0 else 0.0
                route[o] = p
            ypos, yneg = m * dp[route], m * dn[route]
            c.update(route=route, m=m, n_in=xa.size)
        else:
            raise TypeError(f"unsupported layer {layer!r}")
        c["ypos"], c["yneg"] = ypos, yneg
        caches.append(c)
        dpos = ypos.reshape(y_act.shape)
        dneg = yneg.reshape(y_act.shape)
        act, ref = y_act, y_ref
    return caches, act, ref


def _backward(layers, caches, mpos, mneg):
    for layer, c in zip(reversed(layers), reversed(caches)):
        if layer.kind == "mixing":
            P, N, W, dx = c["P"], c["N"], c["W"], c["dx"]
            mx = np.where(
                dx > 0,
                P.T @ mpos + N.T @ mneg,
                np.where(dx < 0, N.T @ mpos + P.T @ mneg, 0.5 * (W.T @ (mpos + mneg))),
            )
            mpos, mneg = mx, mx.copy()
        elif layer.kind == "stream":
            A = c["A"]
            mpos, mneg = A.T @ mpos, A.T @ mneg
        elif layer.kind == "diag":
            s = c["s"]
            mpos, mneg = (
                np.where(s >= 0, s * mpos, s * mneg),
                np.where(s >= 0, s * mneg, s * mpos),
            )
        elif layer.kind == "nonlinear":
            mpos, mneg = c["mpos"] * mpos, c["mneg"] * mneg
        elif layer.kind == "maxpool":
            route, m = c["route"], c["m"]
            new_pos = np.zeros(c["n_in"])
            new_neg = np.zeros(c["n_in"])
            np.add.at(new_pos, route, m * mpos)
            np.add.at(new_neg, route, m * mneg)
            mpos, mneg = new_pos, new_neg
        else:  # pragma: no cover
            raise TypeError(layer)
    return mpos, mneg


def deeplift(layers: Sequence[Layer], x, x_ref, target_index: int, rule: str = "rescale") -> dict:
    """DeepLIFT contributions of the inputs of ONE example (no batch axis) to
    output neuron ``target_index`` of the final Dense layer.

    Returns a dict with (all float64):
      contribs, contribs_pos, contribs_neg  -- shape of x; contribs = pos + neg,
          sum(contribs_pos) = delta_t_pos, sum(contribs_neg) = delta_t_neg
      multipliers        -- m at the input from the (m⁺, m⁻) = (1, 1) pass; where the
          first layer is mixing m⁺ = m⁻ and this is m⁺.  Otherwise it is m⁺ where Δx > 0,
          m⁻ where Δx < 0 and ½(m⁺ + m⁻) where Δx = 0 (so contribs = multipliers * Δx).
      multipliers_pos, multipliers_neg -- m⁺_x, m⁻_x from the (1, 1) pass
      delta_t            -- t(x) - t(x_ref) (plain forward passes)
      delta_t_pos, delta_t_neg -- (Δt⁺, Δt⁻) from the linear rule at the final Dense
      t, t_ref, rules    -- target values and the per-layer rule actually used
    """
    layers = list(layers)
    if not layers or not isinstance(layers[-1], Dense):
        raise ValueError("the network must end with a Dense layer")
    rules = resolve_rules(layers, rule)
    x = _f64(x)
    r = _f64(x_ref)
    if x.shape != r.shape:
        raise ValueError(f"x {x.shape} and x_ref {r.shape} differ in shape")
    caches, out_act, out_ref = _forward_deltas(layers, rules, x, r)
    n_out = out_act.shape[0]
    k = int(target_index)
    if not 0 <= k < n_out:
        raise IndexError(f"target_index {k} out of range for {n_out} outputs")
    e = np.zeros(n_out)
    e[k] = 1.0

    d = x - r
    d_pos = np.where(d > 0, d, 0.0)
    d_neg = np.where(d < 0, d, 0.0)

    def run(a, b):
        mp, mn = _backward(layers, caches, a * e, b * e)
        mp, mn = mp.reshape(x.shape), mn.reshape(x.shape)
        return mp, mn, mp * d_pos + mn * d_neg

    mp, mn, contribs = run(1.0, 1.0)
    _, _, contribs_pos = run(1.0, 0.0)
    _, _, contribs_neg = run(0.0, 1.0)
    multipliers = np.where(d > 0, mp, np.where(d < 0, mn, 0.5 * (mp + mn)))
    return {
        "contribs": contribs,
        "contribs_pos": contribs_pos,
        "contribs_neg": contribs_neg,
        "multipliers": multipliers,
        "multipliers_pos": mp,
        "multipliers_neg": mn,
        "delta_t": float(out_act[k] - out_ref[k]),
        "delta_t_pos": float(caches[-1]["ypos"][k]),
        "delta_t_neg": float(caches[-1]["yneg"][k]),
        "t": float(out_act[k]),
        "t_ref": float(out_ref[k]),
        "rules": rules,
    }


def deeplift_batch(layers, xs, x_refs, target_index: int, rule: str = "rescale") -> dict:
    """Loop :func:`deeplift` over a batch (axis 0 of ``xs``).  ``x_refs`` is either one
    reference (shape of one example) or one per example.  Array entries are stacked;
    ``rules`` is taken from the first example."""
    xs = _f64(xs)
    refs = _f64(x_refs)
    if refs.shape == xs.shape[1:]:
        refs = np.broadcast_to(refs, xs.shape)
    results = [deeplift(layers, x, r, target_index, rule) for x, r in zip(xs, refs)]
    out = {}
    for key, val in results[0].items():
        out[key] = val if key == "rules" else np.stack([np.asarray(res[key]) for res in results])
    return out


# --------------------------------------------------------------------------- torch adapter


@functools.cache
def _torch_gap_class():
    import torch

    class GlobalAvgPool1d(torch.nn.Module):
        """Marker module: mean over the last (length) axis, (B, C, L) -> (B, C)."""

        def forward(self, x):
            return x.mean(dim=-1)

    return GlobalAvgPool1d


def torch_global_avg_pool1d():
    """An instance of a torch module named ``GlobalAvgPool1d`` ((B, C, L) -> (B, C))."""
    return _torch_gap_class()()


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy().copy()


def from_torch(seq) -> list[Layer]:
    """Convert an ``nn.Sequential`` (nested Sequentials are flattened) to oracle layers.

    Supported: Linear, Conv1d/2d (groups=1, dilation=1, zero padding), ReLU, Sigmoid,
    Tanh, Softplus, LeakyReLU, Flatten (start_dim=1, end_dim=-1), MaxPool1d/2d and
    AvgPool1d/2d (no padding, floor mode), BatchNorm1d/2d (running statistics, i.e.
    eval semantics regardless of .training), Dropout*/Identity (skipped), any module
    whose class is named ``GlobalAvgPool1d`` (mean over length, dropping it unless it
    has a truthy ``keepdim`` attribute) and AdaptiveAvgPool1d(1) (keeps the length-1
    axis).  Anything else raises TypeError."""
    from torch import nn

    def modules(m):
        if isinstance(m, nn.Sequential):
            for child in m:
                yield from modules(child)
        else:
            yield m

    layers: list[Layer] = []
    for m in modules(seq):
        if type(m).__name__ == "GlobalAvgPool1d":
            layers.append(GlobalAvgPool1d(keepdim=bool(getattr(m, "keepdim", False))))
        elif isinstance(m, nn.Linear):
            b = None if m.bias is None else _np(m.bias)
            layers.append(Dense(_np(m.weight), b))
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nd = 1 if isinstance(m, nn.Conv1d) else 2
            if m.groups != 1 or any(dd != 1 for dd in m.dilation):
                raise TypeError(f"unsupported conv (groups/dilation): {m}")
            if m.padding_mode != "zeros":
                raise TypeError(f"unsupported padding_mode {m.padding_mode!r}")
            cls = Conv1d if nd == 1 else Conv2d
            b = None if m.bias is None else _np(m.bias)
            layers.append(cls(_np(m.weight), b, stride=m.stride, padding=m.padding))
        elif isinstance(m, nn.ReLU):
            layers.append(ReLU())
        elif isinstance(m, nn.Sigmoid):
            layers.append(Sigmoid())
        elif isinstance(m, nn.Tanh):
            layers.append(Tanh())
        elif isinstance(m, nn.Softplus):
            layers.append(Softplus(beta=m.beta, threshold=m.threshold))
        elif isinstance(m, nn.LeakyReLU):
            layers.append(LeakyReLU(m.negative_slope))
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise TypeError(f"unsupported Flatten({m.start_dim}, {m.end_dim})")
            layers.append(Flatten())
        elif isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
            nd = 1 if isinstance(m, nn.MaxPool1d) else 2
            pad = _ntuple(m.padding, nd)
            dil = _ntuple(m.dilation, nd)
            if any(pad) or any(dd != 1 for dd in dil) or m.ceil_mode or m.return_indices:
                raise TypeError(f"unsupported max pool options: {m}")
            cls = MaxPool1d if nd == 1 else MaxPool2d
            layers.append(cls(m.kernel_size, m.stride))
        elif isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
            nd = 1 if isinstance(m, nn.AvgPool1d) else 2
            if any(_ntuple(m.padding, nd)) or m.ceil_mode:
                raise TypeError(f"unsupported avg pool options: {m}")
            if getattr(m, "divisor_override", None) is not None:
                raise TypeError("divisor_override is not supported")
            cls = AvgPool1d if nd == 1 else AvgPool2d
            layers.append(cls(m.kernel_size, m.stride))
        elif isinstance(m, nn.AdaptiveAvgPool1d):
            if _ntuple(m.output_size, 1) != (1,):
                raise TypeError(f"only AdaptiveAvgPool1d(1) is supported: {m}")
            layers.append(GlobalAvgPool1d(keepdim=True))
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if m.running_mean is None or m.running_var is None:
                raise TypeError("BatchNorm without running statistics is not supported")
            mean, var = _np(m.running_mean), _np(m.running_var)
            gamma = np.ones_like(mean) if m.weight is None else _np(m.weight)
            beta = np.zeros_like(mean) if m.bias is None else _np(m.bias)
            s = gamma / np.sqrt(var + m.eps)
            layers.append(BatchNormEval(s, beta - s * mean))
        elif isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)):
            continue
        else:
            raise TypeError(f"from_torch: unsupported module {m}")
    return layers
