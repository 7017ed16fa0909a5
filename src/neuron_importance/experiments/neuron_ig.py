"""Neuron importance in the MNIST CNN: Total Conductance vs DeepLIFT vs activation.

The experiment behind ``neuron-importance reproduce neuron-ig`` (Shrikumar, Su & Kundaje 2018,
"Computationally Efficient Measures of Internal Neuron Importance"; Dhamdhere et al. 2019, "How
Important Is a Neuron?"; protocol: ``docs/methods/evaluation.md`` §4). For test images of every
class, with the predicted class's logit as the target and a black (all-zero) image as the
baseline, it scores the neurons of a hidden conv layer (one score per channel: the sum over its
spatial positions) and of the dense hidden layer with

* ``conductance_m{m}``: :class:`~neuron_importance.TotalConductance` (trapezoid rule) for each
  ``m`` in ``n_steps``;
* ``deeplift_rescale``, ``deeplift_revealcancel``: :class:`~neuron_importance.LayerDeepLift`;
* ``activation``: the layer's output on the input (:class:`~neuron_importance.LayerActivation`);
* ``grad_x_activation``: ``y · ∂F/∂y`` at the input (one backward pass),

and reports (a) how well the scores agree (Spearman rank correlation and top-k overlap per
example, mean ± std), (b) ablation curves: the drop of the target logit as each example's top-k
neurons are set to 0 (and to their value on the baseline), against random orders, and (c) the
seconds per example of every method, measured in the same run.

:func:`run_experiment` takes any model and data (the tests use a tiny CNN);
:func:`reproduce` loads (or trains and caches) the MNIST CNN and calls it. Both write
``results.json``, ``report.md``, ``ablation_curves.png`` and ``rank_agreement.png``; the keys of
``results.json`` are listed in ``docs/neuron-ig.md`` and in :func:`run_experiment`.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from neuron_importance.experiments.machine import machine_info

__all__ = [
    "DEFAULT_LAYERS",
    "Settings",
    "average_ranks",
    "reproduce",
    "run_experiment",
    "select_examples",
    "spearman_rows",
    "topk_overlap_rows",
]

#: hidden layers scored in the zoo models: label -> dotted module name. ``conv1``/``conv2`` are
#: the ReLUs after the first/second convolution (scored per channel), ``dense`` the ReLU after
#: the first Linear (per unit). Only a linear layer follows ``dense``, so there ∂F/∂y is
#: constant along the path and Total Conductance (difference rules), DeepLIFT and
#: ``w·(y(x) − y(x′))`` coincide exactly: the conv layers are where the scores can differ.
DEFAULT_LAYERS: dict[str, dict[str, str]] = {
    "mnist_cnn": {"conv1": "1", "conv2": "3", "dense": "7"},
    "digits_cnn": {"conv1": "1", "conv2": "3", "dense": "6"},
}

RANDOM = "random"


@dataclass
class Settings:
    """What the experiment computes (recorded under ``config`` in ``results.json``)."""

    n_examples: int = 200  # test images, spread evenly over the classes
    n_steps: tuple[int, ...] = (5, 20, 50)  # Total Conductance step counts
    k_max: int = 50  # ablate k = 0..min(k_max, neurons) neurons
    topk: int = 10  # k of the top-k overlap
    random_orders: int = 10  # random ablation orders (the control)
    ablation_modes: tuple[str, ...] = ("zero", "reference")
    rule_check: bool = True  # also run the left rule (Captum's) for the completeness table
    batch_size: int = 50  # examples per attribution call
    #: rows (path points × examples) per pass of Total Conductance; moderate chunks keep the
    #: conv1 activations in cache (measured: 50 examples × 51 points in one pass cost about 2×
    #: more per example than chunks of 256 rows on the conv1 layer)
    internal_batch_size: int | None = 256
    seed: int = 0  # image choice, random orders, tie-breaking

    @classmethod
    def full(cls, seed: int = 0) -> Settings:
        return cls(seed=seed)

    @classmethod
    def quick(cls, seed: int = 0) -> Settings:
        return cls(n_examples=20, n_steps=(5, 20), k_max=20, random_orders=5, seed=seed)

    def check(self) -> None:
        if self.n_examples < 1:
            raise ValueError(f"n_examples must be positive, got {self.n_examples}")
        if not self.n_steps or min(self.n_steps) < 1:
            raise ValueError(f"n_steps must be positive integers, got {self.n_steps}")
        if self.k_max < 1 or self.topk < 1 or self.batch_size < 1:
            raise ValueError("k_max, topk and batch_size must be positive")
        if self.internal_batch_size is not None and self.internal_batch_size < 1:
            raise ValueError("internal_batch_size must be None or positive")
        if self.random_orders < 1:
            raise ValueError("random_orders must be at least 1 (the random control)")
        bad = set(self.ablation_modes) - {"zero", "reference"}
        if bad or not self.ablation_modes:
            raise ValueError(f"ablation_modes must be 'zero' and/or 'reference', got {bad}")


# ----------------------------------------------------------------------------- statistics


def average_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks ``0..n-1`` of a 1-D array, ties sharing the average of their ranks."""
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts + 1) / 2.0)[inverse.reshape(-1)]


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation between the rows of ``a`` and ``b`` (``(N, U)`` each) -> ``(N,)``.

    Pearson correlation of the average ranks; ``nan`` for a row where either score is
    constant (its ranking is undefined).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two (N, U) arrays of one shape, got {a.shape} and {b.shape}")
    out = np.full(a.shape[0], np.nan)
    for i in range(a.shape[0]):
        ra = average_ranks(a[i])
        rb = average_ranks(b[i])
        ra -= ra.mean()
        rb -= rb.mean()
        den = math.sqrt(float(ra @ ra) * float(rb @ rb))
        if den > 0:
            out[i] = min(1.0, max(-1.0, float(ra @ rb) / den))
    return out


def topk_overlap_rows(a: np.ndarray, b: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fraction of shared neurons among the top ``k`` of each row of ``a`` and ``b`` ->
    ``(N,)``; ties in the scores are broken at random (``seed``)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n, u = a.shape
    k = min(k, u)
    rng = np.random.default_rng(seed)
    out = np.empty(n)
    for i in range(n):
        noise = rng.random(u)
        top_a = np.lexsort((noise, -a[i]))[:k]
        top_b = np.lexsort((noise, -b[i]))[:k]
        out[i] = len(np.intersect1d(top_a, top_b)) / k
    return out


def _mean_std(v: np.ndarray) -> tuple[float | None, float | None, int]:
    v = v[~np.isnan(v)]
    if v.size == 0:
        return None, None, 0
    return float(v.mean()), float(v.std()), int(v.size)


# ----------------------------------------------------------------------------- helpers


def select_examples(y: Tensor, n: int, seed: int) -> Tensor:
    """Indices of ``n`` examples spread as evenly as possible over the classes of ``y``.

    Classes take turns (0, 1, ..., 9, 0, ...); within a class the examples are a random
    permutation (``seed``). Returned in that interleaved order.
    """
    gen = torch.Generator().manual_seed(seed)
    classes = torch.unique(y).tolist()
    pools = {c: (y == c).nonzero().view(-1) for c in classes}
    pools = {c: p[torch.randperm(len(p), generator=gen)].tolist() for c, p in pools.items()}
    n = min(n, len(y))
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        for c in classes:
            if depth < len(pools[c]) and len(chosen) < n:
                chosen.append(pools[c][depth])
        depth += 1
    return torch.tensor(chosen, dtype=torch.long)


def _grad_x_activation(model: nn.Module, layer: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """``y · ∂F/∂y`` for the layer output ``y`` at the input (F = the target logit)."""
    captured: list[Tensor] = []

    def hook(_module, _inp, out):
        captured.append(out)

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            out = model(x.detach().requires_grad_(True))
            if len(captured) != 1:
                raise RuntimeError(f"the layer ran {len(captured)} times in one forward pass")
            y = captured[0]
            f = out.gather(1, target.view(-1, 1)).sum()
            (g,) = torch.autograd.grad(f, y)
    finally:
        handle.remove()
    return (y * g).detach()


def _unit_scores(scores: Tensor) -> Tensor:
    """``(N, U)``: channels (sum over positions) for ``(N, C, ...)``, else the flat units."""
    if scores.dim() >= 3:
        return scores.sum(dim=tuple(range(2, scores.dim())))
    return scores.reshape(scores.shape[0], -1)


@dataclass
class _Method:
    name: str
    label: str
    fn: Callable[[Tensor, Tensor], Tensor]  # (x batch, target batch) -> layer-shaped scores
    complete: bool  # whether Σ scores should equal F(x) − F(x′)


@dataclass
class _LayerResult:
    key: str
    name: str
    module_type: str
    output_shape: list[int]
    level: str
    n_neurons: int
    scores: dict[str, Tensor] = field(default_factory=dict)  # (N, U) float64
    seconds: dict[str, float] = field(default_factory=dict)
    completeness: dict[str, dict[str, float]] = field(default_factory=dict)
    rule_check: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def _completeness(total: Tensor, change: Tensor) -> dict[str, float]:
    """Summary of ``δ = Σ_neurons score − (F(x) − F(x′))`` over the examples."""
    d = (total - change).abs()
    return {
        "mean_abs": float(d.mean()),
        "max_abs": float(d.max()),
        "mean_rel": float(d.mean() / change.abs().mean().clamp_min(1e-12)),
    }


def _methods(
    model: nn.Module, layer: str, zero: Tensor, settings: Settings
) -> list[_Method]:
    import neuron_importance as ni

    module = dict(model.named_modules())[layer]
    methods: list[_Method] = []
    tc = ni.TotalConductance(model, layer)
    for m in settings.n_steps:
        methods.append(
            _Method(
                f"conductance_m{m}",
                f"Total Conductance, trapezoid, {m} steps",
                lambda x, t, m=m: tc.attribute(
                    x, baselines=zero, target=t, n_steps=m, method="trapezoid",
                    internal_batch_size=settings.internal_batch_size,
                ),
                True,
            )
        )
    for rule, name in (("rescale", "deeplift_rescale"), ("reveal_cancel", "deeplift_revealcancel")):
        dl = ni.LayerDeepLift(model, layer, rule=rule)
        methods.append(
            _Method(
                name,
                f"LayerDeepLift {rule}",
                lambda x, t, dl=dl: dl.attribute(x, baselines=zero, target=t),
                True,
            )
        )
    act = ni.LayerActivation(model, layer)
    methods.append(_Method("activation", "activation", lambda x, t: act.attribute(x), False))
    methods.append(
        _Method(
            "grad_x_activation",
            "gradient × activation",
            lambda x, t: _grad_x_activation(model, module, x, t),
            False,
        )
    )
    return methods


def _run_batched(fn, x: Tensor, target: Tensor, batch_size: int) -> Tensor:
    parts = [
        fn(x[s : s + batch_size], target[s : s + batch_size]).detach()
        for s in range(0, len(x), batch_size)
    ]
    return torch.cat(parts)


# ----------------------------------------------------------------------------- experiment


def run_experiment(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    out_dir: str | os.PathLike,
    *,
    layers: Mapping[str, str],
    settings: Settings | None = None,
    info: Mapping[str, Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score, compare and ablate the neurons of ``layers``; write the results to ``out_dir``.

    Args:
        model: a trained classifier returning ``(N, classes)`` logits (put in eval mode).
        images, labels: the pool of test examples; ``settings.n_examples`` of them are chosen
            evenly over the classes (:func:`select_examples`).
        out_dir: created if needed; receives ``results.json``, ``report.md``,
            ``ablation_curves.png`` and ``rank_agreement.png``.
        layers: label -> dotted module name, e.g. ``{"conv": "3", "dense": "7"}``. A layer
            with a ``(N, C, H, W)`` output is scored per channel (sum over positions).
        settings: :class:`Settings` (default: the full configuration).
        info: extra entries for ``config`` (model, data, accuracy, ...).

    Returns:
        The ``results.json`` dictionary. Keys (``L/M`` = layer label / method name, e.g.
        ``"dense/conductance_m50"``):

        * ``ablation[L/M]``: mean drop of the target logit for ``k = 0..K`` (zero ablation);
          ``ablation[L/random]`` the mean over the random orders;
        * ``ablation_reference[L/M]``: the same, ablating to the neurons' baseline values;
        * ``random[L][mode]``: ``{"mean", "std", "orders"}``, std over orders of each order's
          mean curve;
        * ``ablation_auc[L/M][mode]``: area under the mean curve divided by ``K``;
        * ``flips[L/M][mode]``: how many ablations change the predicted class;
        * ``k_values[L]``: ``[0, ..., K]``;
        * ``rank_agreement[L]``, ``topk_overlap[L]``: ``methods`` and ``mean``/``std``
          matrices over examples (plus ``pairs``);
        * ``seconds_per_example[L/M]``, ``completeness_error[L/M]``
          (``{"mean_abs", "max_abs", "mean_rel"}``, ``None`` where no identity holds),
          ``completeness_by_rule[L][rule][m]``;
        * ``methods``, ``layers``, ``config``, ``machine``, ``total_seconds``.
    """
    from tqdm.auto import tqdm

    from neuron_importance.attribution._common import CompletenessWarning
    from neuron_importance.evaluation.ablation import ablate_neurons
    from neuron_importance.neurons._layers import resolve_layer
    from neuron_importance.neurons.activation import LayerActivation

    settings = settings or Settings.full()
    settings.check()
    say = log or (lambda _msg: None)
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    machine = machine_info()

    idx = select_examples(labels, settings.n_examples, settings.seed)
    x = images[idx].to(torch.float32).contiguous()
    y = labels[idx]
    zero = torch.zeros_like(x[:1])
    with torch.no_grad():
        logits = model(x)
        pred = logits.argmax(dim=1)
        f_x = logits.gather(1, pred.view(-1, 1)).view(-1).double()
        f_ref = model(zero)[0, pred].double()
    change = f_x - f_ref
    n = len(x)
    say(
        f"{n} test images ({len(torch.unique(y))} classes, {int((pred == y).sum())} predicted "
        f"correctly); target: the predicted class's logit; baseline: zero image; "
        f"mean F(x) − F(x′) = {float(change.mean()):.3f}"
    )

    # ---- scores, times and completeness
    results: dict[str, _LayerResult] = {}
    plans = []
    labels_of: dict[str, str] = {}
    for key, name in layers.items():
        _, module = resolve_layer(model, name)
        with torch.no_grad():
            a = LayerActivation(model, name).attribute(x[:1])
        level = "channel" if a.dim() >= 3 else "unit"
        shape = list(a.shape[1:])
        results[key] = _LayerResult(
            key, name, type(module).__name__, shape, level,
            shape[0] if level == "channel" else int(np.prod(shape)),
        )
        for method in _methods(model, name, zero, settings):
            plans.append((key, name, method))
            labels_of[method.name] = method.label
    methods = list(labels_of)

    with warnings.catch_warnings():
        # the completeness error of every method is measured and reported below
        warnings.simplefilter("ignore", CompletenessWarning)
        bar = tqdm(plans, desc="scoring neurons", unit="method", disable=not progress)
        for key, _name, method in bar:
            bar.set_postfix_str(f"{key}: {method.name}")
            method.fn(x[:2], pred[:2])  # warm-up (first-call setup is not timed)
            t0 = time.perf_counter()
            s = _run_batched(method.fn, x, pred, settings.batch_size)
            seconds = time.perf_counter() - t0
            r = results[key]
            r.seconds[method.name] = seconds / n
            r.scores[method.name] = _unit_scores(s).double()
            if method.complete:
                total = s.reshape(n, -1).sum(dim=1).double()
                r.completeness[method.name] = _completeness(total, change)
        if settings.rule_check:
            import neuron_importance as ni

            rule_plans = [
                (key, name, rule, m)
                for key, name in layers.items()
                for rule in ("left", "trapezoid", "gausslegendre")
                for m in settings.n_steps
            ]
            bar = tqdm(rule_plans, desc="quadrature check", unit="run", disable=not progress)
            for key, name, rule, m in bar:
                r = results[key]
                if rule == "trapezoid":
                    err = r.completeness[f"conductance_m{m}"]
                else:
                    tc = ni.TotalConductance(model, name)
                    s = _run_batched(
                        lambda xb, tb, tc=tc, rule=rule, m=m: tc.attribute(
                            xb, baselines=zero, target=tb, n_steps=m, method=rule,
                            internal_batch_size=settings.internal_batch_size,
                        ),
                        x, pred, settings.batch_size,
                    )
                    err = _completeness(s.reshape(n, -1).sum(dim=1).double(), change)
                r.rule_check.setdefault(rule, {})[str(m)] = err

    # ---- agreement between scores
    rank_agreement: dict[str, Any] = {}
    topk_overlap: dict[str, Any] = {}
    for key, r in results.items():
        n_m = len(methods)
        sp_mean = [[None] * n_m for _ in range(n_m)]
        sp_std = [[None] * n_m for _ in range(n_m)]
        tk_mean = [[None] * n_m for _ in range(n_m)]
        tk_std = [[None] * n_m for _ in range(n_m)]
        sp_pairs, tk_pairs = {}, {}
        k = min(settings.topk, r.n_neurons)
        for i, a in enumerate(methods):
            for j, b in enumerate(methods):
                if j < i:
                    continue
                sa, sb = r.scores[a].numpy(), r.scores[b].numpy()
                m_, s_, cnt = _mean_std(spearman_rows(sa, sb))
                t_, ts_, _ = _mean_std(topk_overlap_rows(sa, sb, k, settings.seed))
                for (p, q) in ((i, j), (j, i)):
                    sp_mean[p][q], sp_std[p][q] = m_, s_
                    tk_mean[p][q], tk_std[p][q] = t_, ts_
                if i != j:
                    sp_pairs[f"{a} vs {b}"] = {"mean": m_, "std": s_, "n": cnt}
                    tk_pairs[f"{a} vs {b}"] = {"mean": t_, "std": ts_}
        rank_agreement[key] = {
            "measure": "Spearman rank correlation per example (average ranks for ties)",
            "methods": methods, "mean": sp_mean, "std": sp_std, "pairs": sp_pairs,
            "n_examples": n,
        }
        topk_overlap[key] = {
            "k": k, "methods": methods, "mean": tk_mean, "std": tk_std, "pairs": tk_pairs,
        }

    # ---- ablation curves
    ablation: dict[str, list[float]] = {}
    ablation_ref: dict[str, list[float]] = {}
    auc: dict[str, dict[str, float]] = {}
    flips: dict[str, dict[str, Any]] = {}
    random_ctrl: dict[str, dict[str, Any]] = {}
    k_values: dict[str, list[int]] = {}
    jobs = [(key, mode, m) for key in results for mode in settings.ablation_modes
            for m in [RANDOM, *methods]]
    bar = tqdm(jobs, desc="ablation curves", unit="curve", disable=not progress)
    random_scores = {}
    for key, mode, m in bar:
        bar.set_postfix_str(f"{key}: {m} ({mode})")
        r = results[key]
        kk = list(range(min(settings.k_max, r.n_neurons) + 1))
        k_values[key] = kk
        if m == RANDOM:
            # the random control: orders drawn by ablate_neurons (any scores serve for the call)
            scores = torch.zeros(n, r.n_neurons, dtype=torch.float64)
            n_random = settings.random_orders
        else:
            scores = r.scores[m]
            n_random = 0
        curves = ablate_neurons(
            model, r.name, x, scores, target=pred, k_values=kk, mode=mode,
            baselines=zero if mode == "reference" else None, random_orders=n_random,
            seed=settings.seed, batch_size=max(settings.batch_size, 100),
        )
        full_key = f"{key}/{m}"
        if m == RANDOM:
            mean = curves.random_mean.tolist()
            random_ctrl.setdefault(key, {})[mode] = {
                "mean": mean, "std": curves.random_std.tolist(), "orders": n_random,
                "std_over": "orders (std of each order's mean curve)",
            }
            random_scores[(key, mode)] = curves
            area = curves.area_under_curve("random")
        else:
            mean = curves.mean.tolist()
            area = curves.area_under_curve("mean")
            flips.setdefault(full_key, {})[mode] = _flip_summary(curves)
        (ablation if mode == "zero" else ablation_ref)[full_key] = mean
        auc.setdefault(full_key, {})[mode] = area

    seconds = {f"{k}/{m}": r.seconds[m] for k, r in results.items() for m in methods}
    completeness = {
        f"{k}/{m}": r.completeness.get(m) for k, r in results.items() for m in methods
    }
    config = {
        **dict(info or {}),
        **asdict(settings),
        "n_examples": n,
        "examples_per_class": {int(c): int((y == c).sum()) for c in torch.unique(y)},
        "correctly_predicted": int((pred == y).sum()),
        "target": "logit of the predicted class",
        "baseline": "zero image",
        "mean_output_change": float(change.mean()),
        "mean_abs_output_change": float(change.abs().mean()),
        "layers": {
            k: {"module": r.name, "type": r.module_type, "output_shape": r.output_shape,
                "level": r.level, "n_neurons": r.n_neurons,
                "score": ("sum over spatial positions per channel" if r.level == "channel"
                          else "per unit")}
            for k, r in results.items()
        },
        "method_labels": labels_of,
    }
    res: dict[str, Any] = {
        "experiment": "neuron-ig",
        "layers": list(results),
        "methods": methods,
        "k_values": k_values,
        "ablation": ablation,
        "ablation_reference": ablation_ref,
        "ablation_auc": auc,
        "random": random_ctrl,
        "flips": flips,
        "rank_agreement": rank_agreement,
        "topk_overlap": topk_overlap,
        "seconds_per_example": seconds,
        "completeness_error": completeness,
        "completeness_by_rule": {k: r.rule_check for k, r in results.items()},
        "config": config,
        "machine": machine,
    }
    res["files"] = _write_outputs(res, out)
    res["total_seconds"] = round(time.perf_counter() - t_start, 2)
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    # the report was written before the total time was known; add it now
    report = out / "report.md"
    report.write_text(
        report.read_text(encoding="utf-8")
        + f"\nExperiment time: {res['total_seconds']:.1f} s (after the model was ready).\n",
        encoding="utf-8",
    )
    return res


def _flip_summary(curves) -> dict[str, Any]:
    flips = curves.ablations_to_flip().numpy()
    k_max = int(curves.k_values[-1])
    flipped = np.isfinite(flips)
    return {
        "flipped_within_K": float(flipped.mean()),
        "flipped_within_10": float((flips <= 10).mean()),
        "mean_k_to_flip_if_flipped": float(flips[flipped].mean()) if flipped.any() else None,
        "median_k_to_flip": (None if not np.isfinite(np.median(flips))
                             else float(np.median(flips))),
        "max_k_to_flip": int(flips[flipped].max()) if flipped.any() else None,
        "K": k_max,
    }


# ----------------------------------------------------------------------------- outputs


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"


def _write_outputs(res: dict[str, Any], out: Path) -> list[str]:
    files = [_plot_ablation(res, out / "ablation_curves.png"),
             _plot_agreement(res, out / "rank_agreement.png")]
    (out / "report.md").write_text(_report_markdown(res), encoding="utf-8")
    return ["results.json", "report.md", *files]


def _plot_ablation(res: dict[str, Any], path: Path) -> str:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = res["layers"]
    modes = [m for m in ("zero", "reference") if m in res["config"]["ablation_modes"]]
    fig = Figure(figsize=(6.0 * len(layers), 4.2 * len(modes)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(modes), len(layers), squeeze=False)
    cmap = matplotlib.colormaps["tab10"]
    for row, mode in enumerate(modes):
        curves = res["ablation"] if mode == "zero" else res["ablation_reference"]
        for col, key in enumerate(layers):
            ax = axes[row][col]
            k = res["k_values"][key]
            for i, m in enumerate(res["methods"]):
                ax.plot(k, curves[f"{key}/{m}"], label=m, color=cmap(i % 10), lw=1.6)
            rnd = res["random"][key][mode]
            mean, std = np.array(rnd["mean"]), np.array(rnd["std"])
            ax.plot(k, mean, color="black", ls="--", lw=1.4,
                    label=f"random ({rnd['orders']} orders)")
            ax.fill_between(k, mean - 2 * std, mean + 2 * std, color="grey", alpha=0.3,
                            label="random ± 2 std over orders")
            info = res["config"]["layers"][key]
            level = "channels" if info["level"] == "channel" else "units"
            ax.set_title(f"{key} (module {info['module']}, {info['n_neurons']} {level}): "
                         f"ablate to {'0' if mode == 'zero' else 'baseline value'}", fontsize=9)
            ax.set_xlabel(f"k = number of top-ranked {level} ablated")
            ax.set_ylabel("mean drop of the target logit")
            ax.grid(alpha=0.3)
            if row == 0 and col == len(layers) - 1:
                ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Neuron ablation, {res['config']['n_examples']} test images "
                 "(a better importance score drops the output faster)", fontsize=10)
    fig.savefig(path, dpi=110)
    return path.name


def _plot_agreement(res: dict[str, Any], path: Path) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = res["layers"]
    methods = res["methods"]
    fig = Figure(figsize=(5.6 * len(layers), 10.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(layers), squeeze=False)
    for col, key in enumerate(layers):
        for row, (what, data, vmin) in enumerate((
            ("Spearman rank correlation", res["rank_agreement"][key], -1.0),
            (f"top-{res['topk_overlap'][key]['k']} overlap", res["topk_overlap"][key], 0.0),
        )):
            ax = axes[row][col]
            mat = np.array([[np.nan if v is None else v for v in r] for r in data["mean"]])
            im = ax.imshow(mat, vmin=vmin, vmax=1.0, cmap="viridis")
            ax.set_xticks(range(len(methods)), methods, rotation=60, ha="right", fontsize=7)
            ax.set_yticks(range(len(methods)), methods, fontsize=7)
            for i in range(len(methods)):
                for j in range(len(methods)):
                    if not np.isnan(mat[i, j]):
                        ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=6,
                                color="white" if mat[i, j] < (vmin + 1) / 2 else "black")
            ax.set_title(f"{key}: {what}, mean over examples", fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.7)
    fig.savefig(path, dpi=110)
    return path.name


def _report_markdown(res: dict[str, Any]) -> str:
    cfg = res["config"]
    lines = ["# Neuron importance in the MNIST CNN: Total Conductance, DeepLIFT, activation", ""]
    if "model" in cfg:
        bits = [f"`{cfg['model']}`"]
        if "dataset" in cfg:
            bits.append(f"on {cfg['dataset']}")
        if "test_accuracy" in cfg:
            bits.append(f"test accuracy {100 * cfg['test_accuracy']:.2f} %")
        if "trained" in cfg:
            bits.append(f"({cfg['trained']})")
        lines += ["Model: " + ", ".join(bits[:2]) + (", " + " ".join(bits[2:]) if bits[2:]
                                                      else "") + ".", ""]
    lines += [
        f"{cfg['n_examples']} test images ({len(cfg['examples_per_class'])} classes, "
        f"{cfg['correctly_predicted']} predicted correctly), target: {cfg['target']}, "
        f"baseline: {cfg['baseline']}; mean F(x) − F(x′) = {cfg['mean_output_change']:.3f}. "
        f"Seed {cfg['seed']}. Machine: {res['machine']['cpu']}, "
        f"{res['machine']['torch_threads']} torch thread(s), torch {res['machine']['torch']}.",
        "",
        "Methods: " + "; ".join(f"`{m}` = {lab}" for m, lab in cfg["method_labels"].items())
        + ". Conv channels are scored by the sum of their units' scores.",
        "",
        "## Summary",
        "",
        *_summary_lines(res),
        "",
    ]
    for key in res["layers"]:
        info = cfg["layers"][key]
        k_max = res["k_values"][key][-1]
        lines += [
            f"## Layer `{key}`: module `{info['module']}` ({info['type']}), output "
            f"{tuple(info['output_shape'])}, {info['n_neurons']} {info['level']}s",
            "",
            "Ablation (zero): mean drop of the target logit after removing each example's top-k "
            f"{info['level']}s; AUC = area under the mean curve over k = 0..{k_max} divided by "
            f"{k_max} (higher = the score finds the important {info['level']}s sooner). "
            "'flip ≤ 10' = fraction of images whose predicted class changes within 10 "
            "ablations. Completeness: mean |Σ scores − (F(x) − F(x′))| (relative to mean "
            "|F(x) − F(x′)|).",
            "",
        ]
        modes = cfg["ablation_modes"]
        head = ["method", "ms / example", "completeness |δ| (rel.)"]
        for mode in modes:
            head += [f"AUC {mode}"]
        head += ["drop k=1", "drop k=5", "drop k=10", "flip ≤ 10 (zero)", "median k to flip"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        ks = res["k_values"][key]
        for m in [*res["methods"], RANDOM]:
            fk = f"{key}/{m}"
            curve = res["ablation"].get(fk) if "zero" in modes else res["ablation_reference"][fk]
            comp = res["completeness_error"].get(fk)
            row = [
                f"`{m}`",
                _fmt(1000 * res["seconds_per_example"][fk], 3) if fk in res[
                    "seconds_per_example"] else "–",
                "–" if comp is None else f"{_fmt(comp['mean_abs'])} ({_fmt(comp['mean_rel'])})",
            ]
            row += [_fmt(res["ablation_auc"][fk][mode]) for mode in modes]
            row += [_fmt(curve[ks.index(k)]) if k in ks else "–" for k in (1, 5, 10)]
            fl = res["flips"].get(fk, {}).get(modes[0])
            row += ["–" if fl is None else _fmt(fl["flipped_within_10"], 2),
                    "–" if fl is None else (f"> {fl['K']}" if fl["median_k_to_flip"] is None
                                            else _fmt(fl["median_k_to_flip"], 2))]
            lines.append("| " + " | ".join(row) + " |")
        lines += ["", f"Random: mean of {res['random'][key][modes[0]]['orders']} random orders.",
                  ""]
        for what, data in (("Spearman rank correlation", res["rank_agreement"][key]),
                           (f"Top-{res['topk_overlap'][key]['k']} overlap",
                            res["topk_overlap"][key])):
            ms = data["methods"]
            lines += [f"{what} per example, mean ± std over {cfg['n_examples']} images:", "",
                      "| | " + " | ".join(f"`{m}`" for m in ms) + " |",
                      "|" + "---|" * (len(ms) + 1)]
            for i, a in enumerate(ms):
                cells = []
                for j in range(len(ms)):
                    mu, sd = data["mean"][i][j], data["std"][i][j]
                    cells.append("–" if mu is None else f"{mu:.2f} ± {sd:.2f}")
                lines.append(f"| `{a}` | " + " | ".join(cells) + " |")
            lines.append("")
        rc = res["completeness_by_rule"].get(key)
        if rc:
            steps = sorted({int(m) for r in rc.values() for m in r})
            lines += ["Total Conductance completeness, mean |δ| (relative) by quadrature rule "
                      "(left = Captum's `LayerConductance(method='riemann_trapezoid')`; "
                      "gausslegendre: exact path derivative at the nodes):", "",
                      "| rule | " + " | ".join(f"{m} steps" for m in steps) + " |",
                      "|" + "---|" * (len(steps) + 1)]
            for rule, by_m in rc.items():
                lines.append(f"| {rule} | " + " | ".join(
                    f"{_fmt(by_m[str(m)]['mean_abs'])} ({_fmt(by_m[str(m)]['mean_rel'])})"
                    for m in steps) + " |")
            lines.append("")
    lines += ["Figures: `ablation_curves.png` (random band: mean ± 2 std over the random "
              "orders), `rank_agreement.png`.", ""]
    return "\n".join(lines)


def _summary_lines(res: Mapping[str, Any]) -> list[str]:
    """One bullet per layer: the best score by ablation AUC, agreement and cost of TC vs
    DeepLIFT."""
    methods = res["methods"]
    tcs = [m for m in methods if m.startswith("conductance_m")]
    tc = tcs[-1] if tcs else None
    lines = []
    for key in res["layers"]:
        parts = []
        for mode in res["config"]["ablation_modes"]:
            aucs = {m: res["ablation_auc"][f"{key}/{m}"][mode] for m in methods}
            top = max(aucs.values())
            best = " = ".join(f"`{m}`" for m in methods if aucs[m] >= top - 1e-6 * abs(top))
            rnd = res["ablation_auc"][f"{key}/{RANDOM}"][mode]
            parts.append(f"ablation to {'0' if mode == 'zero' else 'the baseline value'}: best "
                         f"AUC {best} {top:.3f}, random {rnd:.3f}")
        if tc is not None and "deeplift_rescale" in methods:
            ra = res["rank_agreement"][key]
            i, j = ra["methods"].index(tc), ra["methods"].index("deeplift_rescale")
            mu, sd = ra["mean"][i][j], ra["std"][i][j]
            agree = "–" if mu is None else f"{mu:.3f} ± {sd:.3f}"
            t_tc = res["seconds_per_example"][f"{key}/{tc}"]
            t_dl = res["seconds_per_example"][f"{key}/deeplift_rescale"]
            comp = res["completeness_error"][f"{key}/{tc}"]["mean_rel"]
            parts.append(f"Spearman(`{tc}`, `deeplift_rescale`) {agree}; `{tc}` costs "
                         f"{t_tc / t_dl:.1f}× DeepLIFT Rescale per example, completeness error "
                         f"{_fmt(comp)} (relative)")
        lines.append(f"- `{key}`: " + "; ".join(parts) + ".")
    return lines


# ----------------------------------------------------------------------------- MNIST


def _mnist_setup(data_dir, quick: bool, cache_dir: Path, log):
    """``(name, spec, description, config, train_loader, test_x, test_y)``."""
    from neuron_importance.cli.demo import SETTINGS, find_mnist
    from neuron_importance.models import cache_path

    mnist_dir = find_mnist(data_dir)
    if mnist_dir is not None:
        from neuron_importance.data.mnist import load_mnist

        full = {"dataset": "mnist", "n_train": SETTINGS[("mnist", False)]["n_train"],
                **SETTINGS[("mnist", False)]}
        config = full
        if quick and not cache_path("mnist_cnn", full, cache_dir).exists():
            q = SETTINGS[("mnist", True)]
            config = {"dataset": "mnist", "n_train": q["n_train"], **q}
            log("quick mode: the fully trained MNIST CNN is not cached; training a quick one")

        def train_data():
            return load_mnist("train", data_dir=mnist_dir, limit=config["n_train"])

        test_x, test_y = load_mnist("test", data_dir=mnist_dir)
        return "mnist", "mnist_cnn", f"MNIST ({mnist_dir})", config, train_data, test_x, test_y
    from neuron_importance.data.digits import load_digits_dataset

    looked = str(data_dir) if data_dir is not None else "the shared data folder"
    log(f"MNIST not found in {looked}; using scikit-learn's 8x8 digits with digits_cnn instead")
    tr_x, tr_y, te_x, te_y = load_digits_dataset(seed=0)
    cfg = SETTINGS[("digits", quick)]
    config = {"dataset": "digits", "n_train": len(tr_x), **cfg}
    return ("digits", "digits_cnn", "scikit-learn 8x8 digits (MNIST not found)", config,
            lambda: (tr_x, tr_y), te_x, te_y)


def reproduce(
    out_dir: str | os.PathLike,
    *,
    quick: bool = False,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    n_examples: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train (or load from the weight cache) the MNIST CNN and run :func:`run_experiment`.

    The model and its training settings are the ``demo`` command's (8 epochs on the 60000
    training images, seed 0), so both commands share one cached model. ``quick`` uses that
    model when it is cached and otherwise trains the demo's quick model (5000 images, 2
    epochs); it scores 20 images with 5 and 20 steps and ablates up to 20 neurons. ``seed``
    chooses the test images and the random ablation orders (not the training). Without the
    MNIST files the digits CNN on scikit-learn's 8x8 digits stands in (as in ``demo``).
    """
    from neuron_importance.models import cached_model, evaluate_accuracy, train_classifier

    say = log or (lambda _msg: None)
    t0 = time.perf_counter()
    cache = Path(cache_dir) if cache_dir else Path.cwd() / ".cache" / "neuron-importance"
    name, spec, description, config, train_data, test_x, test_y = _mnist_setup(
        data_dir, quick, cache, say)
    trained: dict[str, float] = {}

    def train(model: nn.Module) -> nn.Module:
        tx, ty = train_data()
        say(f"training {spec} on {len(tx)} images: {config['epochs']} epoch(s), batch "
            f"{config['batch_size']}, Adam lr {config['lr']}")
        t = time.perf_counter()
        train_classifier(model, tx, ty, epochs=config["epochs"], batch_size=config["batch_size"],
                         lr=config["lr"], seed=config["seed"], progress=progress)
        trained["seconds"] = time.perf_counter() - t
        return model

    model = cached_model(spec, config, train, cache, log=say)
    accuracy = evaluate_accuracy(model, test_x, test_y)
    note = (f"trained in {trained['seconds']:.1f} s" if trained
            else "loaded from the weight cache")
    say(f"{spec}: test accuracy {100 * accuracy:.2f} % on {len(test_x)} images ({note})")
    settings = Settings.quick(seed) if quick else Settings.full(seed)
    if n_examples is not None:
        settings.n_examples = n_examples
    info = {
        "mode": "quick" if quick else "full",
        "model": spec,
        "dataset": description,
        "training": config,
        "trained": note,
        "train_seconds": trained.get("seconds"),
        "test_accuracy": round(accuracy, 4),
        "n_test": len(test_x),
    }
    res = run_experiment(model, test_x, test_y, out_dir, layers=DEFAULT_LAYERS[spec],
                         settings=settings, info=info, progress=progress, log=say)
    res["command_seconds"] = round(time.perf_counter() - t0, 2)
    Path(out_dir, "results.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    report = Path(out_dir, "report.md")
    report.write_text(
        report.read_text(encoding="utf-8")
        + f"Command time: {res['command_seconds']:.1f} s (data, model, experiment).\n",
        encoding="utf-8",
    )
    return res


def headline(res: Mapping[str, Any]) -> list[str]:
    """A few lines for the terminal: time, completeness and ablation AUC per method."""
    lines = []
    for key in res["layers"]:
        lines.append(f"layer {key} ({res['config']['layers'][key]['n_neurons']} "
                     f"{res['config']['layers'][key]['level']}s):")
        lines.append(f"  {'method':<24}{'ms/example':>11}{'compl. rel':>12}{'AUC zero':>10}")
        for m in [*res["methods"], RANDOM]:
            fk = f"{key}/{m}"
            comp = res["completeness_error"].get(fk)
            ms = res["seconds_per_example"].get(fk)
            auc = res["ablation_auc"][fk].get("zero")
            lines.append(
                f"  {m:<24}{'' if ms is None else f'{1000 * ms:.3f}':>11}"
                f"{'' if comp is None else _fmt(comp['mean_rel']):>12}"
                f"{'' if auc is None else f'{auc:.3f}':>10}")
    return lines
