"""Every attribution and neuron-importance method of the library, driven batch by batch.

:data:`SPECS` lists, per method, the keyword options of its constructor and of its
``attribute`` call with their defaults; :func:`resolve_options` fills the defaults in and
refuses unknown keys, so the manifest of a store records every option that shaped the result.
:class:`BatchAttributor` runs one batch and returns numpy arrays for the store.

Input-level methods return one score per input feature; layer methods return one per neuron
of ``layer`` (``total_conductance``, ``layer_deeplift``, ``layer_activation``), and
``neuron_conductance`` splits the conductance of the neurons in ``neuron_selector`` over the
input features (``(N, K, *input)`` for a list of ``K`` neurons, input-shaped for one).

For one-hot DNA with ``deeplift``/``deeplift_shap`` the *hypothetical contributions*
(:func:`neuron_importance.genomics.hypothetical.hypothetical_contributions`) come from the
multipliers of the same backward pass that gives the contributions, so storing them costs no
extra pass. The contributions are then bit for bit those of ``DeepLift.attribute``; for
``deeplift_shap`` they are the mean over references of ``DeepLift`` per input–reference pair,
which equals ``DeepLiftShap.attribute`` up to the order of the floating-point sums.
"""

from __future__ import annotations

import ast
import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..attribution._common import AttributionError, run_forward, sum_per_example
from ..cli.explain import DNA_BACKGROUND, normalise_method

__all__ = ["METHODS", "SPECS", "BatchAttributor", "MethodSpec", "normalise", "resolve_options"]

REQUIRED = object()
_DL_CTOR = {
    "rule": "rescale",
    "output": "logit",
    "softmax_mean_subtraction": False,
    "unsupported": "error",
}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    level: str  # "input" or "layer"
    ctor: dict[str, Any] = field(default_factory=dict)  # constructor options -> default
    call: dict[str, Any] = field(default_factory=dict)  # attribute() options -> default
    references: str = "single"  # "none", "single" (one per input) or "set" (several)
    has_delta: bool = False  # returns a completeness error per example
    has_target: bool = True
    python_only: bool = False  # replaces the backward pass of operations: no TorchScript


_LAYER = {"layer": REQUIRED, "layer_output_index": None}
_PATH = {"n_steps": 50, "internal_batch_size": None}

SPECS: dict[str, MethodSpec] = {
    s.name: s
    for s in (
        MethodSpec("saliency", "input", call={"abs": True}, references="none"),
        MethodSpec("input_x_gradient", "input", references="none"),
        MethodSpec("guided_backprop", "input", references="none", python_only=True),
        MethodSpec(
            "integrated_gradients",
            "input",
            ctor={"multiply_by_inputs": True},
            call={**_PATH, "method": "gausslegendre"},
            has_delta=True,
        ),
        MethodSpec("deeplift", "input", ctor=dict(_DL_CTOR), has_delta=True, python_only=True),
        MethodSpec(
            "deeplift_shap",
            "input",
            ctor={**_DL_CTOR, "max_memory_mb": 512.0},
            call={"internal_batch_size": None},
            references="set",
            has_delta=True,
            python_only=True,
        ),
        MethodSpec(
            "total_conductance",
            "layer",
            ctor=dict(_LAYER),
            call={**_PATH, "method": "trapezoid"},
            has_delta=True,
        ),
        MethodSpec(
            "neuron_conductance",
            "input",
            ctor=dict(_LAYER),
            call={"neuron_selector": REQUIRED, **_PATH, "method": "gausslegendre"},
        ),
        MethodSpec(
            "layer_deeplift",
            "layer",
            ctor={**_LAYER, **_DL_CTOR},
            has_delta=True,
            python_only=True,
        ),
        MethodSpec("layer_activation", "layer", ctor=dict(_LAYER), references="none",
                   has_target=False),
    )
}
METHODS: tuple[str, ...] = tuple(SPECS)
_NEURON_ALIASES = {
    "tc": "total_conductance",
    "conductance": "total_conductance",
    "totalconductance": "total_conductance",
    "neuron_ig": "total_conductance",
    "neuronconductance": "neuron_conductance",
    "layerdeeplift": "layer_deeplift",
    "activation": "layer_activation",
    "layeractivation": "layer_activation",
}


def normalise(name: str) -> str:
    """Canonical method name (explain's names and aliases, plus the neuron methods)."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = _NEURON_ALIASES.get(key.replace("_", ""), _NEURON_ALIASES.get(key, key))
    if key in SPECS:
        return key
    try:
        return normalise_method(name)
    except ValueError:
        pass
    close = difflib.get_close_matches(key, METHODS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown method {name!r}{hint} (choose from {', '.join(METHODS)})")


def canonical_selector(selector: Any) -> str:
    """A neuron selector as canonical text: ``5``, ``(0, 3, 4)`` or ``[5, (0, 3, 4)]``.

    Text keeps the distinction between one multi-dimensional index (a tuple) and a list of
    flat indices, which JSON would lose.
    """
    if isinstance(selector, str):
        try:
            selector = ast.literal_eval(selector.strip())
        except (ValueError, SyntaxError):
            raise ValueError(
                f"bad neuron selector {selector!r}: expected an int, a tuple of ints or a list "
                "of those"
            ) from None

    def one(v: Any) -> int | tuple[int, ...]:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return int(v)
        if isinstance(v, tuple) and v and all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in v
        ):
            return tuple(int(i) for i in v)
        raise ValueError(
            f"bad neuron selector {selector!r}: each neuron is a flat int index or a tuple of "
            "ints (slices are not stored; list the neurons)"
        )

    if isinstance(selector, list):
        if not selector:
            raise ValueError("the neuron selector selects no neuron")
        return repr([one(v) for v in selector])
    return repr(one(selector))


def resolve_options(method: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """All options of ``method`` (constructor and call) with defaults filled in; JSON-safe."""
    spec = SPECS[method]
    known = {**spec.ctor, **spec.call}
    given = dict(options or {})
    unknown = [k for k in given if k not in known]
    if unknown:
        allowed = ", ".join(known) or "none"
        raise ValueError(
            f"{method} has no option {unknown[0]!r} (its options: {allowed})"
        )
    out: dict[str, Any] = {}
    for k, default in known.items():
        value = given.get(k, default)
        if value is REQUIRED:
            flag = "--neuron" if k == "neuron_selector" else f"--{k.replace('_', '-')}"
            raise ValueError(f"{method} needs the option {k!r} ({flag})")
        if k == "neuron_selector":
            value = canonical_selector(value)
        if k == "layer" and not isinstance(value, str):
            raise ValueError("layer must be given as its dotted name in model.named_modules()")
        out[k] = value
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"options of {method} must be plain values (numbers, text): {err}") from None
    return out


# ----------------------------------------------------------------------------- references


@dataclass
class References:
    """The reference (baseline) of each batch, from ``--baseline``.

    ``kind``: ``none`` (the method takes none), ``zeros``, ``value``, ``background`` (DNA
    background frequencies per position), ``shared`` (one array for every input: a reference
    ``(*x)`` or ``(1, *x)``, or a set ``(R, *x)`` for deeplift_shap), ``per_input`` (a
    memory-mapped ``(N, *x)``, or ``(N, R, *x)`` for deeplift_shap), ``shuffle`` (``K``
    dinucleotide shuffles of each sequence, seeded per example by ``(seed, index)``).
    """

    kind: str
    text: str = "zeros"
    value: float = 0.0
    array: Any = None
    shuffles: int = 0
    fingerprint: str | None = None

    def for_batch(self, x: Tensor, start: int, seed: int, set_method: bool) -> Any:
        feat = tuple(x.shape[1:])
        if self.kind == "none":
            return None
        if self.kind == "zeros":
            return x.new_zeros((1, *feat)) if set_method else None
        if self.kind == "value":
            return x.new_full((1, *feat), self.value) if set_method else self.value
        if self.kind == "background":
            ref = torch.tensor(DNA_BACKGROUND, dtype=x.dtype).view(1, 4, 1)
            return ref.expand(1, *feat).contiguous().to(x.device)
        if self.kind == "shuffle":
            return shuffled_references(x, self.shuffles, start, seed)
        if self.kind == "shared":
            return self.array.to(x.device)
        rows = np.array(self.array[start : start + x.shape[0]], dtype=np.float32)
        return torch.from_numpy(rows).to(x.device)


def shuffled_references(x: Tensor, k: int, start: int, seed: int) -> Tensor:
    """``(B, k, 4, L)`` dinucleotide shuffles; example ``start + i`` uses the seed
    ``(seed, start + i)``, so references depend on neither the batch, the chunk nor the rank.

    Columns of 0.25 (``N`` read with ``n_mode="uniform"``) are shuffled as ``N`` and written
    back as 0.25.
    """
    from ..genomics.shuffle import dinuc_shuffle
    from .sources import UNIFORM_N

    uniform = (x == UNIFORM_N).all(dim=1, keepdim=True)
    z = torch.where(uniform, torch.zeros_like(x), x).cpu()
    refs = torch.stack(
        [
            dinuc_shuffle(z[i], k, rng=np.random.default_rng([seed, start + i]))
            for i in range(x.shape[0])
        ]
    )
    if bool(uniform.any()):
        refs = torch.where((refs == 0).all(dim=2, keepdim=True), UNIFORM_N, refs)
    return refs.to(device=x.device, dtype=x.dtype)


def parse_references(
    text: str | float | None, method: str, kind: str, n: int, example_shape: tuple[int, ...]
) -> References:
    """Read ``--baseline`` (same grammar as ``explain``) for a data set of ``n`` examples."""
    from . import hashing

    spec = SPECS[method]
    if spec.references == "none":
        if text is not None:
            raise ValueError(f"--baseline does not apply to {method} (it takes no reference)")
        return References("none", text="none")
    set_method = spec.references == "set"
    if text is None:
        if set_method and kind == "dna":
            return References("shuffle", text="shuffle:10", shuffles=10)
        if set_method:
            raise ValueError(
                "deeplift_shap needs references: --baseline FILE.npy with (R, ...) shared or "
                "(N, R, ...) per-input references (or shuffle:K for one-hot DNA)"
            )
        return References("zeros")
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return References("value", text=repr(float(text)), value=float(text))
    t = str(text).strip()
    if t.lower() in ("zeros", "zero", "0"):
        return References("zeros")
    if t.lower() == "background":
        if kind != "dna":
            raise ValueError("--baseline background is for one-hot DNA inputs (N, 4, L)")
        return References("background", text="background")
    if t.lower().startswith("shuffle"):
        _, _, k = t.partition(":")
        if not k.strip().isdigit() or int(k) < 1:
            raise ValueError(f"bad --baseline {text!r}: expected shuffle:K with K >= 1")
        if kind != "dna":
            raise ValueError(
                "--baseline shuffle:K makes dinucleotide shuffles of DNA; the inputs are not "
                f"one-hot DNA (N, 4, L) (example shape {example_shape})"
            )
        if not set_method:
            raise ValueError(
                "--baseline shuffle:K gives several references per input; use it with "
                "--method deeplift_shap"
            )
        return References("shuffle", text=f"shuffle:{int(k)}", shuffles=int(k))
    try:
        value = float(t)
    except ValueError:
        pass
    else:
        return References("value", text=repr(value), value=value)
    path = Path(t)
    if path.suffix.lower() != ".npy":
        raise ValueError(
            f"bad --baseline {text!r}: expected zeros, a number, FILE.npy, shuffle:K or background"
        )
    if not path.is_file():
        raise FileNotFoundError(f"baseline file not found: {path}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"cannot read baseline {path}: {err}") from None
    feat = example_shape
    shape = tuple(arr.shape)
    d = len(feat)
    dims = ", ".join(map(str, feat))
    tail_ok = shape[len(shape) - d :] == feat
    if set_method:
        if not tail_ok or arr.ndim not in (d, d + 1, d + 2):
            raise ValueError(
                f"baseline {path} has shape {shape}; for examples of shape {feat} give "
                f"(R, {dims}) shared or (N, R, {dims}) per-input references"
            )
        per_input = arr.ndim == d + 2
    else:
        if not tail_ok or arr.ndim not in (d, d + 1):
            raise ValueError(
                f"baseline {path} has shape {shape}; for examples of shape {feat} give "
                f"({dims}), (1, {dims}) or (N, {dims}) with one per input"
            )
        per_input = arr.ndim == d + 1 and shape[0] != 1
    fp = hashing.file_hash(path)
    if per_input:
        if shape[0] < n:
            raise ValueError(
                f"baseline {path} has {shape[0]} per-input references but there are {n} inputs"
            )
        return References("per_input", text=str(path), array=arr, fingerprint=fp)
    ref = torch.from_numpy(np.array(arr, dtype=np.float32))
    if ref.dim() == d:
        ref = ref.unsqueeze(0)
    return References("shared", text=str(path), array=ref, fingerprint=fp)


# ----------------------------------------------------------------------------- targets


@dataclass
class Targets:
    """Which output each example's attribution explains.

    ``mode``: ``pred`` (the predicted class, arg-max of the output), ``index`` (one class for
    all), ``file`` (a memory-mapped ``.npy`` of one class per example), ``none`` (the method
    has no target, or the model has one output per example).
    """

    mode: str
    index: int = 0
    array: Any = None
    text: str = "pred"
    fingerprint: str | None = None

    def for_batch(self, out: Tensor, start: int) -> Tensor | None:
        """Per-example class indices for a batch whose model output is ``out``."""
        n = out.shape[0]
        if self.mode == "none":
            return None
        if self.mode == "pred":
            return out.reshape(n, -1).argmax(dim=1)
        if self.mode == "index":
            return torch.full((n,), self.index, dtype=torch.long, device=out.device)
        rows = np.array(self.array[start : start + n], dtype=np.int64)
        return torch.from_numpy(rows).to(out.device)


def parse_targets(text: Any, method: str, n: int) -> Targets:
    from . import hashing

    if not SPECS[method].has_target:
        if text not in (None, "pred"):
            raise ValueError(f"--target does not apply to {method} (it explains no output)")
        return Targets("none", text="none")
    if text is None:
        return Targets("none", text="none")
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"bad target {text}: output indices start at 0")
        return Targets("index", index=int(text), text=str(int(text)))
    t = str(text).strip()
    if t.lower() in ("pred", "predicted", "argmax"):
        return Targets("pred")
    if t.lstrip("-").isdigit():
        return parse_targets(int(t), method, n)
    path = Path(t)
    if path.suffix.lower() != ".npy":
        raise ValueError(
            f"bad --target {text!r}: expected an output index, 'pred' or a .npy file of one "
            "index per example"
        )
    if not path.is_file():
        raise FileNotFoundError(f"target file not found: {path}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"cannot read target file {path}: {err}") from None
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"target file {path} holds {arr.dtype} of shape {tuple(arr.shape)}; expected one "
            "integer class index per example, shape (N,)"
        )
    if arr.shape[0] < n:
        raise ValueError(f"target file {path} has {arr.shape[0]} targets for {n} examples")
    return Targets("file", array=arr, text=str(path), fingerprint=hashing.file_hash(path))


def check_targets(targets: Targets, out: Tensor, n: int) -> Targets:
    """Check the targets against the model output of one batch, before any compute.

    Returns the targets to use: ``none`` when the model has one output per example.
    """
    per_example = out.reshape(out.shape[0], -1).shape[1]
    if targets.mode == "none":
        if per_example != 1 and targets.text != "none":
            raise ValueError(
                f"the model returns {per_example} outputs per example (shape "
                f"{tuple(out.shape)}); give --target INDEX, pred or FILE.npy"
            )
        return targets
    if per_example == 1:
        if targets.mode == "index" and targets.index != 0:
            raise ValueError(
                f"target {targets.index} does not exist: the model returns one output per "
                f"example (shape {tuple(out.shape)})"
            )
        return Targets("none", text=targets.text)
    if out.dim() != 2:
        raise ValueError(
            f"the model output has shape {tuple(out.shape)}; a class target needs "
            "(N, classes), or one output per example"
        )
    classes = out.shape[1]
    if targets.mode == "index" and targets.index >= classes:
        raise ValueError(
            f"target {targets.index} is out of range: the model returns {classes} outputs per "
            f"example (valid targets 0..{classes - 1})"
        )
    if targets.mode == "file":
        block = 1 << 20
        for s in range(0, n, block):
            rows = np.asarray(targets.array[s : min(n, s + block)])
            bad = np.flatnonzero((rows < 0) | (rows >= classes))
            if bad.size:
                i = int(bad[0]) + s
                raise ValueError(
                    f"target file {targets.text}: example {i} has target {int(rows[bad[0]])}, "
                    f"out of range for the model's {classes} outputs (valid 0..{classes - 1})"
                )
    return targets


# ----------------------------------------------------------------------------- running


class BatchAttributor:
    """Runs one method with fixed options on batches; results as float32 numpy arrays."""

    def __init__(
        self, model: nn.Module, method: str, options: Mapping[str, Any], hypothetical: bool
    ) -> None:
        import neuron_importance as ni

        self.model = model
        self.method = method
        self.spec = SPECS[method]
        self.options = dict(options)
        self.hypothetical = hypothetical
        ctor = {k: self.options[k] for k in self.spec.ctor}
        self.call = {k: self.options[k] for k in self.spec.call}
        if "neuron_selector" in self.call:
            self.call["neuron_selector"] = ast.literal_eval(self.call["neuron_selector"])
        classes = {
            "saliency": ni.Saliency,
            "input_x_gradient": ni.InputXGradient,
            "guided_backprop": ni.GuidedBackprop,
            "integrated_gradients": ni.IntegratedGradients,
            "deeplift": ni.DeepLift,
            "deeplift_shap": ni.DeepLiftShap,
            "total_conductance": ni.TotalConductance,
            "neuron_conductance": ni.NeuronConductance,
            "layer_deeplift": ni.LayerDeepLift,
            "layer_activation": ni.LayerActivation,
        }
        try:
            self.explainer = classes[method](model, **ctor)
        except AttributionError:
            raise
        except (TypeError, ValueError) as err:
            raise ValueError(f"bad options for {method}: {err}") from None
        if hypothetical:
            if method not in ("deeplift", "deeplift_shap"):
                raise ValueError(
                    "hypothetical contributions are defined for deeplift and deeplift_shap"
                )
            self._deeplift = (
                self.explainer if method == "deeplift" else self.explainer._deeplift
            )

    def outputs(self, x: Tensor) -> Tensor:
        """The model's output for a batch (no autograd)."""
        with torch.no_grad():
            return run_forward(self.model, (x,), ()).detach()

    def __call__(self, x: Tensor, target: Tensor | None, refs: Any) -> dict[str, np.ndarray]:
        """``{"attributions": ..., "delta": ..., "hypothetical": ...}`` for one batch."""
        if self.hypothetical:
            attr, delta, hyp = self._deeplift_pass(x, target, refs)
            return {"attributions": _np(attr), "delta": _np(delta), "hypothetical": _np(hyp)}
        m, e, kw = self.method, self.explainer, self.call
        delta = None
        if m in ("saliency", "input_x_gradient", "guided_backprop"):
            attr = e.attribute(x, target=target, **kw)
        elif m == "layer_activation":
            attr = e.attribute(x)
        elif m == "neuron_conductance":
            attr = e.attribute(x, baselines=refs, target=target, **kw)
            if isinstance(kw["neuron_selector"], list):  # (K, N, ...) -> (N, K, ...)
                attr = attr.transpose(0, 1)
        else:
            attr, delta = e.attribute(
                x, baselines=refs, target=target, return_convergence_delta=True, **kw
            )
        result = {"attributions": _np(attr)}
        if self.spec.has_delta:
            result["delta"] = _np(delta).reshape(x.shape[0])
        return result

    def _deeplift_pass(
        self, x: Tensor, target: Tensor | None, refs: Any
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Contributions, completeness error and hypothetical contributions in one pass."""
        from ..genomics.hypothetical import hypothetical_contributions

        dl = self._deeplift
        n = x.shape[0]
        if self.method == "deeplift":
            res = dl._propagate((x,), refs, target, None, False)
            (attr,) = res.contribs
            delta = sum_per_example(res.contribs) - res.delta_t
            ref = torch.zeros_like(x) if refs is None else torch.as_tensor(refs).to(x)
            hyp = hypothetical_contributions(res.multipliers[0], ref.expand_as(x))
            return attr, delta, hyp
        # deeplift_shap: every input-reference pair, in chunks of internal_batch_size pairs
        refs = refs if refs.dim() == x.dim() + 1 else refs.unsqueeze(0).expand(n, *refs.shape)
        r = refs.shape[1]
        px = x.repeat_interleave(r, dim=0)
        pr = refs.reshape(n * r, *x.shape[1:])
        pt = None if target is None else target.repeat_interleave(r)
        step = self.call.get("internal_batch_size") or n * r
        contribs, mults, deltas = [], [], []
        for s in range(0, n * r, step):
            sl = slice(s, s + step)
            res = dl._propagate((px[sl],), pr[sl], None if pt is None else pt[sl], None, False)
            contribs.append(res.contribs[0])
            mults.append(res.multipliers[0])
            deltas.append(sum_per_example(res.contribs) - res.delta_t)
        shape = (n, r, *x.shape[1:])
        attr = torch.cat(contribs).reshape(shape).sum(dim=1) / r
        delta = torch.cat(deltas).reshape(n, r).sum(dim=1) / r
        hyp = hypothetical_contributions(torch.cat(mults).reshape(shape), refs)
        return attr, delta, hyp


def _np(t: Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
