"""Run a model under operation interception and propagate DeepLIFT differences.

Design (see ``docs/engine.md``): the model runs once, unmodified, under a
:class:`torch.overrides.TorchFunctionMode`. Every torch operation the model performs —
whether it comes from an ``nn.Module`` (``nn.ReLU``), a function (``F.relu``,
``torch.sigmoid``) or a tensor method (``x.relu()``) — reaches :meth:`DeltaEngine.__torch_function__`
once per call, so module reuse and functional code need no special care. The tensors the
model sees are the *actual* activations; a side table keyed by tensor identity holds, for
every input-dependent activation, its *reference* activation and (in split mode) the
positive and negative parts ``Δ⁺``/``Δ⁻`` of its difference from the reference.

Two modes:

* fast (Rescale, no ± split): the actual activations carry autograd; every nonlinear op is
  replaced by ``y + (x − x.detach())·m``, whose value is exactly ``f(x)`` and whose gradient
  is the DeepLIFT multiplier ``m``. Linear ops run as they are (their gradient *is* the
  Linear-rule multiplier). Cost: one forward on the input, one gradient-free forward on
  the reference, one backward.
* split (RevealCancel, genomics_default, or any rule with separated ± contributions): the
  ``Δ⁺``/``Δ⁻`` parts carry autograd through the Linear rule of :mod:`..rules.linear`;
  multipliers enter as constants, so autograd's backward *is* DeepLIFT's multiplier chain
  rule and the gradients at the input are the input multipliers.

Any op on input-dependent values without a rule raises :class:`UnsupportedOperationError`
naming the op and the model line that called it (or, if asked, falls back to the gradient).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from ..rules import maxpool as maxpool_rule
from ..rules.linear import mixing_rule, signed_scale, split_by_sign
from ..rules.nonlinear import rescale_multiplier, reveal_cancel_multipliers
from .callsite import user_call_site
from .errors import UnsupportedOperationError
from .ops import NO_RULE_REASONS, family, op_name

RULES = ("rescale", "reveal_cancel", "genomics_default")

# Ops that treat every example (row of dim 0) separately, with arguments that cannot refer to
# the batch size: a reference shared by the whole batch can go through them as one row.
_PER_EXAMPLE = frozenset(
    "linear conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d batch_norm "
    "avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d "
    "adaptive_avg_pool3d dropout dropout1d dropout2d dropout3d alpha_dropout "
    "feature_alpha_dropout add sub rsub neg mul div contiguous clone".split()
)
_DROPOUTS = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
             "feature_alpha_dropout"}
_NONNEG_INTERP = {"nearest", "nearest-exact", "linear", "bilinear", "trilinear", "area"}


@dataclass
class Streams:
    """What the engine knows about one input-dependent activation besides its actual value."""

    ref: Tensor
    pos: Tensor | None = None
    neg: Tensor | None = None
    # Kind of the nearest preceding mixing layer ("dense"/"conv"), for genomics_default.
    tag: str | None = None
    # Set on softmax outputs: the op name, and the pre-activation (logits) tensor.
    blocked: str | None = None
    pre: Tensor | None = None
    blocked_reason: str | None = None


def _walk(obj: Any):
    """Yield the leaves of nested tuples/lists/dicts (cheaper than pytree for op arguments)."""
    if isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _walk(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _walk(o)
    else:
        yield obj


def _map(fn: Callable[[Any], Any], obj: Any) -> Any:
    if isinstance(obj, tuple):
        return tuple(_map(fn, o) for o in obj)
    if isinstance(obj, list):
        return [_map(fn, o) for o in obj]
    if isinstance(obj, dict):
        return {k: _map(fn, v) for k, v in obj.items()}
    return fn(obj)


def _has_tensor(obj: Any) -> bool:
    return any(isinstance(t, Tensor) for t in _walk(obj))


class _AttachMultiplier(torch.autograd.Function):
    """Value ``y`` (given), gradient ``grad·m`` w.r.t. ``x``: a DeepLIFT multiplier on autograd."""

    @staticmethod
    def forward(ctx, x: Tensor, m: Tensor, holder: list) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(m)
        return holder[0]  # y is passed boxed so that autograd does not treat it as an input

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (m,) = ctx.saved_tensors
        return grad * m, None, None


def attach_multiplier(x: Tensor, y: Tensor, m: Tensor) -> Tensor:
    """``y`` whose gradient w.r.t. ``x`` is the (broadcast) multiplier ``m``."""
    if not x.requires_grad:
        return y
    if m.shape != x.shape:
        m = m.expand(x.shape)
    return _AttachMultiplier.apply(x, m, [y])


_SIGNATURES: dict[Any, inspect.Signature | None] = {}


def full_ref(ref: Tensor, like: Tensor) -> Tensor:
    """The reference at the batch size of ``like`` (it may be kept as one shared row)."""
    if ref.shape == like.shape or ref.dim() == 0 or like.dim() == 0:
        return ref
    if ref.shape[0] == 1 and like.shape[0] != 1:
        return ref.expand(like.shape).contiguous()
    return ref


def _per_example(func: Any, args: tuple, kwargs: dict) -> bool:
    name = op_name(func)
    if name in _PER_EXAMPLE or family(name) in ("elementwise", "maxpool"):
        return True
    if name == "flatten":  # nn.Flatten: flatten(start_dim=1) keeps the batch dimension
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        return isinstance(start, int) and start >= 1
    return False


def _signature(func: Any) -> inspect.Signature | None:
    if func not in _SIGNATURES:
        try:
            _SIGNATURES[func] = inspect.signature(func)
        except (TypeError, ValueError):
            _SIGNATURES[func] = None
    return _SIGNATURES[func]


def _bound_arg(func: Any, args: tuple, kwargs: dict, name: str, default: Any) -> Any:
    sig = _signature(func)
    if sig is None or name not in sig.parameters:
        return kwargs.get(name, default)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        return kwargs.get(name, default)
    if name in bound.arguments:
        return bound.arguments[name]
    p = sig.parameters[name].default
    return default if p is inspect.Parameter.empty else p


def _out_of_place(func: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple, dict, bool]:
    """The same op without in-place mutation, and whether the call was in-place.

    Rules are evaluated out of place (the reference and ± parts must never be overwritten);
    the engine then writes the result back into the mutated tensor itself.
    """
    inplace = False
    raw = getattr(func, "__name__", "")
    if raw.endswith("_") and not raw.startswith("_"):
        alt = getattr(torch.Tensor, raw[:-1], None)
        if alt is not None:
            func, inplace = alt, True
    sig = _signature(func)
    if sig is not None and "inplace" in sig.parameters:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            return func, args, kwargs, inplace
        inplace = inplace or bool(bound.arguments.get("inplace", False))
        bound.arguments["inplace"] = False
        return func, bound.args, bound.kwargs, inplace
    return func, args, kwargs, inplace


class DeltaEngine(TorchFunctionMode):
    """Intercepts torch operations and propagates reference activations and ± differences.

    Args:
        split: carry ``Δ⁺``/``Δ⁻`` parts (needed for RevealCancel, genomics_default and for
            separated positive/negative contributions); otherwise the fast Rescale path.
        rule: ``"rescale"``, ``"reveal_cancel"`` or ``"genomics_default"``.
        unsupported: ``"error"`` (default) or ``"gradient"`` to use the plain gradient for
            ops without a rule.
    """

    def __init__(self, split: bool, rule: str = "rescale", unsupported: str = "error"):
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"unknown DeepLIFT rule {rule!r}; choose one of {', '.join(RULES)}")
        if rule != "rescale" and not split:
            raise ValueError(f"rule {rule!r} needs split mode")
        if unsupported not in ("error", "gradient"):
            raise ValueError("unsupported must be 'error' or 'gradient'")
        self.split = split
        self.rule = rule
        self.unsupported = unsupported
        self.table: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.fallbacks: list[str] = []
        self.bytes_tracked = 0  # activations kept by the engine (memory estimate)

    # ------------------------------------------------------------------ bookkeeping
    def track(self, value: Tensor, streams: Streams) -> None:
        self.table[value] = streams
        n = value.numel() * value.element_size()
        self.bytes_tracked += n * (4 if self.split else 2)

    def streams(self, t: Tensor) -> Streams:
        return self.table[t]

    def _is_dep(self, t: Any) -> bool:
        return isinstance(t, Tensor) and t in self.table

    def _subst(self, obj: Any, field: str, rows_ok: bool = False) -> Any:
        def f(t: Any) -> Any:
            if isinstance(t, Tensor) and t in self.table:
                v = getattr(self.table[t], field)
                if field == "ref" and not rows_ok:
                    v = full_ref(v, t)
                return v
            return t

        return _map(f, obj)

    def _fail(self, name: str, reason: str) -> None:
        raise UnsupportedOperationError(name, user_call_site(), reason)

    def _merged_tag(self, deps: list[Tensor]) -> str | None:
        tags = {self.table[t].tag for t in deps}
        return tags.pop() if len(tags) == 1 else None

    def _register(self, out: Any, ref: Any, pos: Any, neg: Any, tag: str | None) -> None:
        if isinstance(out, Tensor):
            self.track(out, Streams(ref, pos, neg, tag))
        elif isinstance(out, (tuple, list)):
            n = len(out)
            pos = pos if pos is not None else [None] * n
            neg = neg if neg is not None else [None] * n
            for o, r, p, q in zip(out, ref, pos, neg):
                self._register(o, r, p, q, tag)

    # ------------------------------------------------------------------ dispatch
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        leaves = list(_walk((args, kwargs)))
        deps = [t for t in leaves if self._is_dep(t)]
        if not deps:
            return func(*args, **kwargs)
        name = op_name(func)
        fam = family(name)
        if fam is None:
            out = func(*args, **kwargs)
            if not _has_tensor(out):  # size(), dim(), shape, len(): no values flow on
                return out
        for t in deps:
            s = self.table[t]
            if s.blocked is not None:
                self._fail(
                    s.blocked,
                    s.blocked_reason or
                    f"its output is used by '{name}'; {s.blocked} has no DeepLIFT rule "
                    "except as the model's output (where attribution is to its input logits)",
                )
        if fam is None:
            if self.unsupported == "gradient":
                return self._fallback(func, name, args, kwargs, deps)
            self._fail(name, NO_RULE_REASONS.get(
                name, "this operation has no DeepLIFT rule (pass unsupported='gradient' to "
                "use the gradient for it, at the cost of exact summation-to-delta)"))
        if fam == "constant":
            return func(*args, **kwargs)
        mutated = args[0] if args and isinstance(args[0], Tensor) else None
        func, args, kwargs, inplace = _out_of_place(func, args, kwargs)
        handler: Callable = getattr(self, f"_op_{fam}")
        if self.unsupported == "gradient":
            try:
                out = handler(func, name, args, kwargs, deps)
            except UnsupportedOperationError:  # e.g. a product of two dependent tensors
                out = self._fallback(func, name, args, kwargs, deps)
        else:
            out = handler(func, name, args, kwargs, deps)
        if inplace and mutated is not None and isinstance(out, Tensor):
            return self._write_back(name, mutated, out)
        return out

    def _write_back(self, name: str, target: Tensor, out: Tensor) -> Tensor:
        """Make an in-place op mutate ``target`` as the model expects, and track it."""
        base = target._base
        if base is not None and base in self.table:
            # The base's reference and ± parts would silently go stale: refuse later use.
            self.table[base].blocked = name
            self.table[base].blocked_reason = (
                f"it was modified in place through a view by '{name}'; use the out-of-place "
                "form or write the result to a new tensor"
            )
        if self.split or not out.requires_grad:
            with torch.no_grad():
                target.copy_(out)
        else:
            target.copy_(out)  # autograd routes the gradient to ``out``
        self.table[target] = self.table[out]
        return target

    # ------------------------------------------------------------------ helpers
    def _run(self, func, args, kwargs, field: str | None):
        """Apply ``func`` with dependent tensors replaced by ``field`` (None = actual)."""
        if field is None:
            if self.split:
                with torch.no_grad():
                    return func(*args, **kwargs)
            return func(*args, **kwargs)
        a, k = self._subst((args, kwargs), field, rows_ok=field == "ref" and
                           _per_example(func, args, kwargs))
        if field == "ref":
            with torch.no_grad():
                return func(*a, **k)
        return func(*a, **k)

    def _single_dep(self, name: str, deps: list[Tensor], what: str) -> Tensor:
        if len(deps) != 1:  # x * x counts twice: a square is not linear
            self._fail(name, f"{what} of two input-dependent tensors is not linear and has no "
                       "DeepLIFT rule")
        return deps[0]

    # ------------------------------------------------------------------ families
    def _op_homogeneous(self, func, name, args, kwargs, deps):
        if name in _DROPOUTS:
            training = _bound_arg(func, args, kwargs, "training", True)
            p = _bound_arg(func, args, kwargs, "p", 0.5)
            if training and p > 0:
                self._fail(name, "dropout in training mode draws different masks for the input "
                           "and the reference; call model.eval() (or pass training=False)")
        if name == "interpolate":
            mode = _bound_arg(func, args, kwargs, "mode", "nearest")
            if self.split and mode not in _NONNEG_INTERP:
                self._fail(name, f"interpolation mode {mode!r} has negative weights; use one of "
                           f"{sorted(_NONNEG_INTERP)}")
        out = self._run(func, args, kwargs, None)
        ref = self._run(func, args, kwargs, "ref")
        pos = neg = None
        if self.split:
            a, k = args, kwargs
            if name == "pad":  # a constant pad value belongs to the reference, not to Δ
                sig = _signature(func)
                if sig is not None:
                    bound = sig.bind(*args, **kwargs)
                    bound.arguments["value"] = 0.0 if bound.arguments.get(
                        "mode", "constant") == "constant" else bound.arguments.get("value")
                    a, k = bound.args, bound.kwargs
            pos = self._run(func, a, k, "pos")
            neg = self._run(func, a, k, "neg")
        self._register(out, ref, pos, neg, self._merged_tag(deps))
        return out

    def _op_concat(self, func, name, args, kwargs, deps):
        seq = args[0] if args else kwargs.get("tensors")
        rest_args = args[1:] if args else ()
        rest_kwargs = {k: v for k, v in kwargs.items() if k != "tensors"}
        if any(self._is_dep(t) for t in _walk((rest_args, rest_kwargs))):
            self._fail(name, "only the tensors being joined may depend on the input")

        def parts(field: str | None) -> list[Tensor]:
            items = []
            for t in seq:
                if self._is_dep(t):
                    if field is None:
                        items.append(t)
                    else:
                        v = getattr(self.table[t], field)
                        items.append(full_ref(v, t) if field == "ref" else v)
                elif field in ("pos", "neg"):
                    items.append(torch.zeros_like(t))  # constants carry no difference
                else:
                    items.append(t)
            return items

        def run(field):
            if field == "ref" or (field is None and self.split):
                with torch.no_grad():
                    return func(parts(field), *rest_args, **rest_kwargs)
            return func(parts(field), *rest_args, **rest_kwargs)

        out = run(None)
        ref = run("ref")
        pos = run("pos") if self.split else None
        neg = run("neg") if self.split else None
        self._register(out, ref, pos, neg, self._merged_tag(deps))
        return out

    def _op_affine(self, func, name, args, kwargs, deps):
        if name in ("mul", "multiply"):
            self._single_dep(name, deps, "a product")
        if name in ("div", "divide", "true_divide"):
            divisor = args[1] if len(args) > 1 else kwargs.get("other")
            if self._is_dep(divisor):
                self._fail(name, "division by an input-dependent tensor is not linear; write "
                           "it as a nonlinearity (e.g. torch.reciprocal) times a constant")
            if kwargs.get("rounding_mode") is not None:
                self._fail(name, "rounded division is not linear")
        if name == "where":
            cond = args[0] if args else kwargs.get("condition")
            if self._is_dep(cond):
                self._fail(name, "a condition computed from the input is a data-dependent mask")
        if name == "batch_norm":
            training = _bound_arg(func, args, kwargs, "training", False)
            if training:
                self._fail(name, "batch norm in training mode mixes examples through batch "
                           "statistics; call model.eval()")
        out = self._run(func, args, kwargs, None)
        ref = self._run(func, args, kwargs, "ref")
        pos = neg = None
        if self.split:
            pos, neg = self._affine_streams(func, name, args, kwargs, out)
        self._register(out, ref, pos, neg, self._merged_tag(deps))
        return out

    def _affine_streams(self, func, name, args, kwargs, out):
        def st(t):
            s = self.table[t]
            return s.pos, s.neg

        def fit(p: Tensor) -> Tensor:
            return p.expand(out.shape) if p.shape != out.shape else p

        if name in ("add", "sub", "subtract", "rsub"):
            a = args[0]
            b = args[1] if len(args) > 1 else kwargs.get("other")
            alpha = args[2] if len(args) > 2 else kwargs.get("alpha", 1)
            if name == "rsub":
                coef = ((a, -alpha), (b, 1))
            elif name == "add":
                coef = ((a, 1), (b, alpha))
            else:
                coef = ((a, 1), (b, -alpha))
            pos = neg = None
            for t, c in coef:
                if self._is_dep(t):
                    p, q = signed_scale(*st(t), c)
                    pos = p if pos is None else pos + p
                    neg = q if neg is None else neg + q
            return fit(pos), fit(neg)
        if name in ("neg", "negative"):
            p, q = st(args[0])
            return -q, -p
        if name == "positive":
            return st(args[0])
        if name in ("mul", "multiply"):
            a = args[0]
            b = args[1] if len(args) > 1 else kwargs.get("other")
            x, c = (a, b) if self._is_dep(a) else (b, a)
            p, q = signed_scale(*st(x), c)
            return fit(p), fit(q)
        if name in ("div", "divide", "true_divide"):
            b = args[1] if len(args) > 1 else kwargs.get("other")
            c = 1.0 / b if not isinstance(b, Tensor) else torch.reciprocal(b.detach())
            p, q = signed_scale(*st(args[0]), c)
            return fit(p), fit(q)
        if name == "where":
            cond, a, b = (list(args) + [kwargs.get("input"), kwargs.get("other")])[:3]

            def part(t, i):
                return st(t)[i] if self._is_dep(t) else torch.zeros((), dtype=out.dtype,
                                                                      device=out.device)

            return (torch.where(cond, part(a, 0), part(b, 0)),
                    torch.where(cond, part(a, 1), part(b, 1)))
        if name == "batch_norm":
            x = args[0]
            var = _bound_arg(func, args, kwargs, "running_var", None)
            weight = _bound_arg(func, args, kwargs, "weight", None)
            eps = _bound_arg(func, args, kwargs, "eps", 1e-5)
            scale = torch.rsqrt(var.detach() + eps)
            if weight is not None:
                scale = scale * weight.detach()
            shape = [1, -1] + [1] * (x.dim() - 2)
            return signed_scale(*st(x), scale.reshape(shape))
        raise AssertionError(name)

    def _op_dense(self, func, name, args, kwargs, deps):
        return self._mixing(func, name, args, kwargs, deps, "dense")

    def _op_conv(self, func, name, args, kwargs, deps):
        return self._mixing(func, name, args, kwargs, deps, "conv")

    def _mixing(self, func, name, args, kwargs, deps, kind):
        x = self._single_dep(name, deps, "a product")
        if name == "linear" or kind == "conv":
            if not (args and args[0] is x):
                self._fail(name, "the weight of a dense/conv layer depends on the input")
        out = self._run(func, args, kwargs, None)
        ref = self._run(func, args, kwargs, "ref")
        pos = neg = None
        if self.split:
            s = self.table[x]
            if name == "linear":
                weight = args[1] if len(args) > 1 else kwargs["weight"]

                def apply(v, w):
                    return F.linear(v, w)
            elif kind == "conv":
                weight = args[1] if len(args) > 1 else kwargs["weight"]
                rest = args[3:]
                kw = {k: v for k, v in kwargs.items() if k not in ("bias", "weight")}

                def apply(v, w):
                    return func(v, w, None, *rest, **kw)
            else:  # matmul family: the other operand is the constant matrix
                a = args[0]
                b = args[1] if len(args) > 1 else kwargs.get("other", kwargs.get("mat2"))
                if name == "rmatmul":  # x.__rmatmul__(W) is W @ x
                    weight = b

                    def apply(v, w):
                        return torch.matmul(w, v)
                elif a is x:
                    weight = b

                    def apply(v, w):
                        return func(v, w)
                else:
                    weight = a

                    def apply(v, w):
                        return func(w, v)
            pos, neg = mixing_rule(apply, weight, s.pos, s.neg)
        self._register(out, ref, pos, neg, kind)
        return out

    def _elementwise_fn(self, func, args, kwargs, x) -> Callable[[Tensor], Tensor]:
        def f(v: Tensor) -> Tensor:
            a, k = _map(lambda t: v if t is x else t, (args, kwargs))
            return func(*a, **k)

        return f

    def _op_elementwise(self, func, name, args, kwargs, deps):
        x = self._single_dep(name, deps, f"'{name}'")
        s = self.table[x]
        f = self._elementwise_fn(func, args, kwargs, x)
        pointwise = sum(isinstance(t, Tensor) for t in _walk((args, kwargs))) == 1
        with torch.no_grad():
            y = f(x)
            y_ref = f(s.ref)
        if y.shape != x.shape:
            self._fail(name, f"it is not elementwise here (input {tuple(x.shape)}, output "
                       f"{tuple(y.shape)})")
        if not self.split:
            m = rescale_multiplier(f, x.detach() - s.ref, s.ref, y - y_ref, scratch=True,
                                   pointwise=pointwise)
            out = attach_multiplier(x, y, m)
            self.track(out, Streams(y_ref, pre=x if name == "sigmoid" else None))
            return out
        rule = self._rule_for(name, s.tag)
        if rule == "rescale":
            d = (s.pos + s.neg).detach()
            m = rescale_multiplier(f, d, s.ref, y - y_ref, scratch=True, pointwise=pointwise)
            pos, neg = s.pos * m, s.neg * m
        else:
            dyp, dyn, mp, mn = reveal_cancel_multipliers(f, s.ref, s.pos.detach(),
                                                         s.neg.detach(), y_ref)
            # Values are the Shapley terms themselves (so that parts which cancel exactly,
            # e.g. a ReLU that is off at both x and x⁰, sum to exactly 0 and get the ½
            # rule downstream); gradients are the multipliers.
            pos = dyp + (s.pos - s.pos.detach()) * mp
            neg = dyn + (s.neg - s.neg.detach()) * mn
        self.track(y, Streams(y_ref, pos, neg, None, pre=x if name == "sigmoid" else None))
        return y

    def _rule_for(self, name: str, tag: str | None) -> str:
        if self.rule != "genomics_default":
            return self.rule
        if tag == "conv":
            return "rescale"
        if tag == "dense":
            return "reveal_cancel"
        self._fail(name, "genomics_default chooses Rescale after a convolution and "
                   "RevealCancel after a dense layer, but no dense or conv layer comes before "
                   "this nonlinearity")
        raise AssertionError

    def _op_maxpool(self, func, name, args, kwargs, deps):
        x = self._single_dep(name, deps, "max-pooling")
        if not (args and args[0] is x):
            self._fail(name, "only the pooled tensor may depend on the input")
        s = self.table[x]
        fn, nd, extra, kw, wants = maxpool_rule.parse(name, args, kwargs)
        with torch.no_grad():
            y, idx = fn(x, *extra, **kw, return_indices=True)
            y_ref, idx_ref = fn(s.ref, *extra, **kw, return_indices=True)
        if not self.split:
            delta = x.detach() - s.ref
            chosen, m = maxpool_rule.route(
                y, idx, y_ref, idx_ref, lambda c: maxpool_rule.gather_windows(delta, c, nd))
            if x.requires_grad:
                g = maxpool_rule.gather_windows(x, chosen, nd)
                out = y + (g - g.detach()) * m
            else:
                out = y
            self.track(out, Streams(y_ref, tag=s.tag))
        else:
            d = (s.pos + s.neg).detach()
            chosen, m = maxpool_rule.route(
                y, idx, y_ref, idx_ref, lambda c: maxpool_rule.gather_windows(d, c, nd))
            pos = maxpool_rule.gather_windows(s.pos, chosen, nd) * m
            neg = maxpool_rule.gather_windows(s.neg, chosen, nd) * m
            out = y
            self.track(out, Streams(y_ref, pos, neg, s.tag))
        return (out, idx) if wants else out

    def _op_output(self, func, name, args, kwargs, deps):
        x = self._single_dep(name, deps, f"'{name}'")
        out = self._run(func, args, kwargs, None)
        ref = self._run(func, args, kwargs, "ref")
        self.track(out, Streams(ref, blocked=name, pre=x))
        return out

    def _fallback(self, func, name, args, kwargs, deps):
        """Gradient fallback for an op without a rule (opt-in; not exact)."""
        self.fallbacks.append(f"{name} at {user_call_site()}")
        out = self._run(func, args, kwargs, None)
        ref = self._run(func, args, kwargs, "ref")
        pos = neg = None
        if self.split:
            def moved(t):
                if self._is_dep(t):
                    s = self.table[t]
                    return s.ref + s.pos + s.neg
                return t

            a, k = _map(moved, (args, kwargs))
            moved_out = func(*a, **k)
            delta = (moved_out - ref if isinstance(moved_out, Tensor)
                     else [o - r for o, r in zip(moved_out, ref)])
            if isinstance(delta, Tensor):
                pos, neg = split_by_sign(delta)
            else:
                pairs = [split_by_sign(t) for t in delta]
                pos, neg = [p for p, _ in pairs], [q for _, q in pairs]
        self._register(out, ref, pos, neg, self._merged_tag(deps))
        return out

    # ------------------------------------------------------------------ output
    def reference_of(self, t: Tensor) -> Tensor:
        """The reference activation of a tracked tensor, at the tensor's batch size."""
        return full_ref(self.table[t].ref, t)

    def resolve_output(self, out: Tensor, output: str) -> tuple[Tensor, Streams]:
        """The tensor to attribute to: logits instead of softmax/sigmoid outputs by default."""
        if out not in self.table:
            raise UnsupportedOperationError(
                "output", "the model's return", "the model output does not depend on the "
                "inputs through operations the engine saw (was it computed under no_grad, "
                "detached, or produced by TorchScript?)")
        s = self.table[out]
        if output == "logit" and s.pre is not None:
            return s.pre, self.table[s.pre]
        if s.blocked is not None:
            raise UnsupportedOperationError(
                s.blocked, "the model's output", f"{s.blocked} has no DeepLIFT rule; attribute "
                "to its input logits (output='logit', the default)")
        return out, s
