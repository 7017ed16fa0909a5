"""DeepLIFT's MNIST digit-conversion experiment (Shrikumar et al. 2017, Fig. 4).

The experiment behind ``neuron-importance reproduce deeplift-mnist`` (protocol:
``docs/methods/deeplift.md`` §9). For every test image of an original class ``o`` and each
conversion ``o -> t`` (8->3, 8->6, 9->1, 4->1) every method scores the pixels for the logits of
``o`` and ``t`` with an all-zero reference; the pixels are ranked by
``S_diff = S(o) - S(t)``, at most ``max_erase`` (157, 20 %) pixels with a positive ``S_diff``
are erased (set to the reference 0: ``thr = max(S_diff sorted descending [157], 0)``, erase
``S_diff > thr``), and the change of the log-odds on the logits,
``(z_o - z_t)(original) - (z_o - z_t)(erased)``, is recorded: larger is better.

Methods (names used in ``results.json``):

* ``abs_grad``: ``|dz/dx|`` masked to ``x > 0`` (:class:`~neuron_importance.Saliency`);
* ``grad_x_input``: :class:`~neuron_importance.InputXGradient`;
* ``guided_backprop``: guided backprop masked to ``x > 0``; ``gbp_x_input``: guided backprop
  times the input;
* ``ig_5``, ``ig_10``, ``ig_50``: :class:`~neuron_importance.IntegratedGradients`, midpoint
  rule (``riemann_middle``), zero baseline;
* ``deeplift_rescale``, ``deeplift_revealcancel``: :class:`~neuron_importance.DeepLift`, zero
  reference, one rule on every nonlinearity;
* ``deepliftshap``: :class:`~neuron_importance.DeepLiftShap` (Rescale) averaged over a few
  random training images as references (erasing still sets pixels to 0);
* ``random``: a control, random scores on the ink pixels (``x > 0``).

:func:`run_experiment` takes any model and data (the tests use a tiny CNN);
:func:`reproduce` loads (or trains and caches) the paper's CNN on MNIST and calls it. Both
write ``results.json``, ``report.md``, ``logodds_boxplot.png`` and ``examples.png``; the keys
of ``results.json`` are documented in ``docs/deeplift-mnist.md`` and :func:`run_experiment`.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from neuron_importance.experiments.machine import machine_info

__all__ = [
    "ALL_METHODS",
    "PAPER_MEDIANS",
    "PAPER_RATIOS",
    "Settings",
    "box_stats",
    "erase_mask",
    "erase_top_pixels",
    "logodds_change",
    "ordering_check",
    "reproduce",
    "run_experiment",
]

ALL_METHODS: tuple[str, ...] = (
    "abs_grad", "guided_backprop", "gbp_x_input", "grad_x_input", "ig_5", "ig_10", "ig_50",
    "deeplift_rescale", "deeplift_revealcancel", "deepliftshap", "random",
)  # fmt: skip

METHOD_LABELS: dict[str, str] = {
    "abs_grad": "|grad| (x > 0)",
    "guided_backprop": "guided backprop (x > 0)",
    "gbp_x_input": "guided backprop × input",
    "grad_x_input": "grad × input",
    "ig_5": "IG, 5 steps (midpoint)",
    "ig_10": "IG, 10 steps (midpoint)",
    "ig_50": "IG, 50 steps (midpoint)",
    "deeplift_rescale": "DeepLIFT Rescale",
    "deeplift_revealcancel": "DeepLIFT RevealCancel",
    "deepliftshap": "DeepLiftShap (Rescale, training-image references)",
    "random": "random ink pixels (control)",
}

#: medians [Q1, Q3] read off the authors' replication notebook (deeplift.md §9; raw 0-255
#: pixels, hence the 1e4 scale). IG rows give the median only.
PAPER_MEDIANS: dict[str, dict[str, list[float | None]]] = {
    "abs_grad": {"8->3": [4824, 3566, 6015], "8->6": [4691, 3301, 6015],
                 "9->1": [5750, 4228, 7074], "4->1": [6015, 4691, 7206]},
    "guided_backprop": {"8->3": [6478, 5353, 7735], "8->6": [6941, 5353, 8397],
                        "9->1": [7868, 6279, 9257], "4->1": [7074, 5684, 8265]},
    "grad_x_input": {"8->3": [7934, 6743, 9191], "8->6": [7140, 5750, 8596],
                     "9->1": [8596, 7007, 9985], "4->1": [7735, 6412, 8993]},
    "ig_5": {"8->3": [7934, None, None], "8->6": [7140, None, None],
             "9->1": [8596, None, None], "4->1": [7735, None, None]},
    "ig_10": {"8->3": [8000, None, None], "8->6": [7140, None, None],
              "9->1": [8596, None, None], "4->1": [7801, None, None]},
    "deeplift_revealcancel": {"8->3": [10051, 8596, 11640], "8->6": [8596, 7007, 9985],
                              "9->1": [10051, 8331, 11574], "4->1": [8596, 7074, 9919]},
}
PAPER_MEDIANS["gbp_x_input"] = PAPER_MEDIANS["guided_backprop"]  # equal in every row

#: the paper's medians divided by its grad×input median (deeplift.md §9)
PAPER_RATIOS: dict[str, dict[str, float]] = {
    "abs_grad": {"8->3": 0.61, "8->6": 0.66, "9->1": 0.67, "4->1": 0.78},
    "guided_backprop": {"8->3": 0.82, "8->6": 0.97, "9->1": 0.92, "4->1": 0.91},
    "ig_10": {"8->3": 1.01, "8->6": 1.00, "9->1": 1.00, "4->1": 1.01},
    "deeplift_revealcancel": {"8->3": 1.27, "8->6": 1.20, "9->1": 1.17, "4->1": 1.11},
}

#: methods drawn in the example figure
EXAMPLE_METHODS = ("abs_grad", "guided_backprop", "grad_x_input", "ig_10", "deeplift_rescale",
                   "deeplift_revealcancel", "deepliftshap")

#: test image shown in the paper (an 8)
PAPER_EXAMPLE_INDEX = 5846

#: training of the paper's CNN for this experiment (≥ 99.2 % test accuracy, deeplift.md §9)
FULL_TRAINING: dict[str, Any] = {
    "dataset": "mnist", "n_train": 60000, "epochs": 15, "batch_size": 64, "lr": 1e-3,
    "lr_decay": 0.85, "seed": 0, "trainer": "deeplift-mnist/adam-exponential-decay",
}
QUICK_TRAINING: dict[str, Any] = {
    "dataset": "mnist", "n_train": 10000, "epochs": 2, "batch_size": 64, "lr": 1e-3,
    "lr_decay": 1.0, "seed": 0, "trainer": "deeplift-mnist/adam-exponential-decay",
}


def conv_name(o: int, t: int) -> str:
    return f"{o}->{t}"


@dataclass
class Settings:
    """What the experiment computes (recorded under ``config`` in ``results.json``)."""

    conversions: tuple[tuple[int, int], ...] = ((8, 3), (8, 6), (9, 1), (4, 1))
    methods: tuple[str, ...] = ALL_METHODS
    max_erase: int = 157  # at most this many pixels erased (20 % of 784)
    n_per_class: int | None = None  # images of each original class (None: all of them)
    shap_references: int = 10  # training images averaged over by DeepLiftShap
    input_scale: float = 1.0  # pixels are multiplied by this before scoring and erasing
    batch_size: int = 250  # images per attribution call (x targets rows)
    ig_internal_batch_size: int = 2000  # rows per IG pass
    n_examples: int = 4  # (image, conversion) pairs in examples.png
    seed: int = 0  # image subset, DeepLiftShap references, random control, examples

    @classmethod
    def full(cls, seed: int = 0) -> Settings:
        return cls(seed=seed)

    @classmethod
    def quick(cls, seed: int = 0) -> Settings:
        return cls(n_per_class=40, shap_references=4, seed=seed)

    def check(self) -> None:
        if not self.conversions:
            raise ValueError("need at least one conversion")
        for o, t in self.conversions:
            if o == t:
                raise ValueError(f"conversion {o}->{t} has the same original and target class")
        bad = set(self.methods) - set(ALL_METHODS)
        if bad or not self.methods:
            raise ValueError(f"unknown methods {sorted(bad)}; known: {', '.join(ALL_METHODS)}")
        if self.max_erase < 0:
            raise ValueError("max_erase must be >= 0")
        if self.n_per_class is not None and self.n_per_class < 1:
            raise ValueError("n_per_class must be positive (or None for all images)")
        if self.shap_references < 1 or self.batch_size < 1 or self.ig_internal_batch_size < 1:
            raise ValueError("shap_references, batch_size and ig_internal_batch_size must be "
                             "positive")
        if not self.input_scale > 0:
            raise ValueError("input_scale must be positive")


# ----------------------------------------------------------------------------- protocol


def erase_mask(s_diff: Tensor, max_erase: int) -> Tensor:
    """Pixels to erase: ``S_diff > max(S_diff sorted descending [max_erase], 0)`` per row.

    ``s_diff`` is ``(N, P)``. At most ``max_erase`` pixels per row, only positive scores, fewer
    on ties at the threshold (deeplift.md §9 step 3). Returns a bool ``(N, P)`` mask.
    """
    if s_diff.dim() != 2:
        raise ValueError(f"s_diff must be (N, P), got shape {tuple(s_diff.shape)}")
    n, p = s_diff.shape
    if max_erase >= p:
        thr = torch.zeros(n, dtype=s_diff.dtype, device=s_diff.device)
    else:
        srt = torch.sort(s_diff, dim=1, descending=True).values
        thr = srt[:, max_erase].clamp_min(0)
    return s_diff > thr.unsqueeze(1)


@torch.no_grad()
def logodds_change(model: nn.Module, x: Tensor, erased: Tensor, o: int, t: int) -> Tensor:
    """``(z_o − z_t)(x) − (z_o − z_t)(erased)`` per image, on the logits (float64)."""
    z, ze = model(x).double(), model(erased).double()
    return (z[:, o] - z[:, t]) - (ze[:, o] - ze[:, t])


def erase_top_pixels(
    model: nn.Module, x: Tensor, s_diff: Tensor, o: int, t: int, max_erase: int = 157
) -> tuple[Tensor, Tensor, Tensor]:
    """Erase (set to 0) the pixels :func:`erase_mask` picks from ``s_diff`` (shaped like ``x``).

    Returns ``(change, n_erased, mask)``: the log-odds change per image, the number of erased
    pixels per image and the bool mask shaped like ``x``.
    """
    n = x.shape[0]
    mask = erase_mask(s_diff.reshape(n, -1), max_erase).reshape(x.shape)
    erased = x.masked_fill(mask, 0.0)
    return logodds_change(model, x, erased, o, t), mask.reshape(n, -1).sum(1), mask


def box_stats(v: Sequence[float] | np.ndarray) -> dict[str, float | int | None]:
    """Median, quartiles, Tukey whiskers (furthest points within 1.5 IQR), mean and n."""
    a = np.asarray(v, dtype=np.float64)
    if a.size == 0:
        return {"median": None, "q1": None, "q3": None, "whisker_low": None,
                "whisker_high": None, "mean": None, "n": 0}
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    iqr = q3 - q1
    inside = a[(a >= q1 - 1.5 * iqr) & (a <= q3 + 1.5 * iqr)]
    return {"median": float(med), "q1": float(q1), "q3": float(q3),
            "whisker_low": float(inside.min()), "whisker_high": float(inside.max()),
            "mean": float(a.mean()), "n": int(a.size)}


#: the paper's expected ordering of medians: (a, relation, b); "≥" allows ``tol`` relative
#: shortfall, ">" is strict. "grad×input/IG" is the group grad_x_input, ig_5, ig_10.
ORDERING = (
    ("deeplift_revealcancel", "≥", "deeplift_rescale"),
    ("deeplift_rescale", "≥", "grad_x_input"),
    ("deeplift_rescale", "≥", "ig_5"),
    ("deeplift_rescale", "≥", "ig_10"),
    ("grad_x_input", ">", "guided_backprop"),
    ("ig_5", ">", "guided_backprop"),
    ("ig_10", ">", "guided_backprop"),
    ("guided_backprop", ">", "abs_grad"),
)

#: the ordering the paper's goal table itself supports (it has no Rescale column):
#: RevealCancel > grad×input ≈ IG-5 ≈ IG-10 > guided backprop > |grad|
ORDERING_PAPER_TABLE = (
    ("deeplift_revealcancel", ">", "grad_x_input"),
    ("deeplift_revealcancel", ">", "ig_5"),
    ("deeplift_revealcancel", ">", "ig_10"),
    *ORDERING[4:],
)


def ordering_check(
    medians: Mapping[str, float | None], tol: float = 0.0,
    relations: Sequence[tuple[str, str, str]] = ORDERING,
) -> dict[str, Any]:
    """Check the paper's ordering RevealCancel ≥ Rescale ≥ grad×input/IG > GBP > |grad|.

    ``medians``: method -> median log-odds change of one conversion. Pairs with a missing
    method are skipped. ``tol``: relative slack of the "≥" relations (0: strict ≥).
    ``relations``: :data:`ORDERING` (the brief's chain, with Rescale) or
    :data:`ORDERING_PAPER_TABLE`.
    """
    checks = []
    for a, rel, b in relations:
        ma, mb = medians.get(a), medians.get(b)
        if ma is None or mb is None:
            continue
        ok = ma > mb if rel == ">" else ma >= mb - tol * abs(mb)
        checks.append({"a": a, "relation": rel, "b": b, "a_median": ma, "b_median": mb,
                       "pass": bool(ok)})
    return {"checks": checks, "pass": all(c["pass"] for c in checks), "tol": tol}


# ----------------------------------------------------------------------------- scoring


def _methods(
    model: nn.Module, methods: Sequence[str], refs: Tensor, settings: Settings, seed: int
) -> dict[str, Callable[[Tensor, Tensor], tuple[Tensor, Tensor | None]]]:
    """name -> fn(x, target) returning ``(scores shaped like x, completeness δ or None)``."""
    import neuron_importance as ni

    sal = ni.Saliency(model)
    ixg = ni.InputXGradient(model)
    gbp = ni.GuidedBackprop(model)
    ig = ni.IntegratedGradients(model)
    gen = torch.Generator().manual_seed(seed + 1)
    out: dict[str, Callable[[Tensor, Tensor], tuple[Tensor, Tensor | None]]] = {}
    for m in methods:
        if m == "abs_grad":
            out[m] = lambda x, t: (sal.attribute(x, target=t, abs=True) * (x > 0), None)
        elif m == "grad_x_input":
            out[m] = lambda x, t: (ixg.attribute(x, target=t), None)
        elif m == "guided_backprop":
            out[m] = lambda x, t: (gbp.attribute(x, target=t) * (x > 0), None)
        elif m == "gbp_x_input":
            out[m] = lambda x, t: (gbp.attribute(x, target=t) * x, None)
        elif m.startswith("ig_"):
            steps = int(m[3:])
            out[m] = lambda x, t, steps=steps: ig.attribute(
                x, target=t, n_steps=steps, method="riemann_middle",
                internal_batch_size=settings.ig_internal_batch_size,
                return_convergence_delta=True, completeness_tol=None)
        elif m in ("deeplift_rescale", "deeplift_revealcancel"):
            dl = ni.DeepLift(model, rule="rescale" if m == "deeplift_rescale" else
                             "reveal_cancel", completeness_tol=float("inf"))
            out[m] = lambda x, t, dl=dl: dl.attribute(x, target=t, return_convergence_delta=True)
        elif m == "deepliftshap":
            dls = ni.DeepLiftShap(model, rule="rescale", completeness_tol=float("inf"))
            out[m] = lambda x, t, dls=dls: dls.attribute(x, baselines=refs, target=t,
                                                         return_convergence_delta=True)
        elif m == "random":
            # the same random scores for every target would cancel in S(o) − S(t): draw
            # S_diff directly, as S(o) = noise and S(t) = 0
            def rand(x, t, gen=gen):
                s = torch.rand(x.shape, generator=gen, dtype=x.dtype) * (x > 0)
                return s, None
            out[m] = rand
    return out


def _score_pool(
    fn: Callable[[Tensor, Tensor], tuple[Tensor, Tensor | None]],
    x: Tensor, targets: Sequence[int], batch_size: int, random: bool = False,
    bar: Any = None,
) -> tuple[Tensor, Tensor | None]:
    """Scores ``(K, N, P)`` for each target class and every image (rows = image × target)."""
    k = len(targets)
    n = x.shape[0]
    parts, deltas = [], []
    step = max(1, batch_size // k)
    for s in range(0, n, step):
        xb = x[s : s + step]
        m = xb.shape[0]
        rows = xb.repeat(k, 1, 1, 1)  # target-major: rows j*m..(j+1)*m are target j
        tgt = torch.tensor(targets, dtype=torch.long).repeat_interleave(m)
        sc, delta = fn(rows, tgt)
        if random:  # S(o) = noise, S(t) = 0 for every other target
            sc = sc.clone()
            sc[m:] = 0
        parts.append(sc.detach().reshape(k, m, -1))
        if delta is not None:
            deltas.append(delta.detach().reshape(k, m))
        if bar is not None:
            bar.update(m * k)
    return torch.cat(parts, dim=1), (torch.cat(deltas, dim=1) if deltas else None)


# ----------------------------------------------------------------------------- experiment


def _pools(labels: Tensor, settings: Settings) -> dict[int, Tensor]:
    """Original class -> indices of its test images (a seeded subset when n_per_class)."""
    gen = torch.Generator().manual_seed(settings.seed)
    pools = {}
    for o in dict.fromkeys(o for o, _ in settings.conversions):
        idx = (labels == o).nonzero().view(-1)
        if settings.n_per_class is not None and len(idx) > settings.n_per_class:
            keep = torch.randperm(len(idx), generator=gen)[: settings.n_per_class]
            idx = idx[keep.sort().values]
        pools[o] = idx
    return pools


def _example_pairs(labels: Tensor, pools: Mapping[int, Tensor], settings: Settings
                   ) -> list[tuple[int, int, int]]:
    """``(test index, o, t)``: the paper's 8 (index 5846) for the 8->t conversions, then the
    first image of each other conversion's pool."""
    pairs: list[tuple[int, int, int]] = []
    for o, t in settings.conversions:
        if len(pairs) >= settings.n_examples:
            break
        if PAPER_EXAMPLE_INDEX < len(labels) and int(labels[PAPER_EXAMPLE_INDEX]) == o:
            pairs.append((PAPER_EXAMPLE_INDEX, o, t))
        elif len(pools[o]):
            pairs.append((int(pools[o][0]), o, t))
    return pairs


def run_experiment(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    out_dir: str | os.PathLike,
    *,
    references: Tensor | None = None,
    settings: Settings | None = None,
    info: Mapping[str, Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score, erase and measure; write the results to ``out_dir``.

    Args:
        model: a trained classifier returning ``(N, 10)`` logits (put in eval mode).
        images, labels: the test set (``(N, 1, H, W)`` in the model's input scale; indices in
            ``results.json`` refer to it).
        references: a pool of training images; ``settings.shap_references`` of them (seeded)
            are DeepLiftShap's references (required when ``deepliftshap`` is among the methods).
        settings: :class:`Settings` (default: the full configuration).
        info: extra entries for ``config`` (model, data, accuracy, ...); ``test_accuracy`` in
            it is copied to the top level.

    Returns:
        The ``results.json`` dictionary. Keys (``M`` = method, ``C`` = conversion ``"8->3"``):

        * ``logodds[M][C]``: ``{median, q1, q3, whisker_low, whisker_high, mean, n}`` of the
          log-odds change;
        * ``ratio_to_grad_x_input[M][C]``: median / median of ``grad_x_input``;
        * ``pixels_erased[M][C]``: ``{mean, min, max}`` pixels erased per image;
        * ``completeness[M]``: mean and max ``|Σ S − (z(x) − z(x⁰))|`` (and relative to the
          mean ``|z(x) − z(x⁰)|``) for IG, DeepLIFT and DeepLiftShap;
        * ``ordering[C]``: :func:`ordering_check` of the medians (strict, and
          ``ordering_tolerant[C]`` with 2 % slack on the "≥" relations); ``ordering_all_pass``;
          ``ordering_paper_table[C]``: the chain the paper's table supports (no Rescale:
          RevealCancel > grad×input, IG > GBP > |grad|) and ``ordering_paper_table_all_pass``;
        * ``paper``: the goal table (``medians`` = [median, Q1, Q3], ``ratios``);
        * ``baseline_logodds[C]``: box statistics of ``(z_o − z_t)`` on the original images;
        * ``examples``: per example ``{index, conversion, label, logodds_change[M],
          n_erased[M]}``;
        * ``timings``: ``scoring_seconds[M]``, ``ms_per_row[M]`` (row = image × target),
          ``erasing_seconds``, ``total_seconds``;
        * ``test_accuracy`` (when given), ``methods``, ``conversions``, ``config``,
          ``machine``, ``files``.
    """
    from tqdm.auto import tqdm

    from neuron_importance.attribution._common import CompletenessWarning

    settings = settings or Settings.full()
    settings.check()
    say = log or (lambda _msg: None)
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    machine = machine_info()
    scale = float(settings.input_scale)
    images = images.to(torch.float32)
    methods = list(settings.methods)
    convs = [conv_name(o, t) for o, t in settings.conversions]

    refs = torch.zeros(0)
    if "deepliftshap" in methods:
        if references is None or len(references) == 0:
            raise ValueError("deepliftshap needs reference images (references=...)")
        gen = torch.Generator().manual_seed(settings.seed + 2)
        pick = torch.randperm(len(references), generator=gen)[: settings.shap_references]
        refs = references[pick].to(torch.float32) * scale

    pools = _pools(labels, settings)
    targets_of = {o: [o, *dict.fromkeys(t for oo, t in settings.conversions if oo == o)]
                  for o in pools}
    for o, idx in pools.items():
        if len(idx) == 0:
            raise ValueError(f"no test images of class {o}")
    n_rows = sum(len(idx) * len(targets_of[o]) for o, idx in pools.items())
    say(f"{', '.join(f'{len(i)} images of class {o}' for o, i in pools.items())}; conversions "
        f"{', '.join(convs)}; {len(methods)} methods; pixels × {scale:g}; erase ≤ "
        f"{settings.max_erase} pixels")

    fns = _methods(model, methods, refs, settings, settings.seed)
    changes: dict[str, dict[str, np.ndarray]] = {m: {} for m in methods}
    n_erased: dict[str, dict[str, np.ndarray]] = {m: {} for m in methods}
    comp: dict[str, dict[str, float]] = {}
    scoring_seconds: dict[str, float] = {}
    erasing = 0.0
    baseline: dict[str, np.ndarray] = {}
    xs = {o: images[idx] * scale for o, idx in pools.items()}
    with torch.no_grad():
        for o, t in settings.conversions:
            z = model(xs[o]).double()
            baseline[conv_name(o, t)] = (z[:, o] - z[:, t]).numpy()

    with warnings.catch_warnings():
        # completeness is measured and reported below
        warnings.simplefilter("ignore", CompletenessWarning)
        bar = tqdm(total=n_rows * len(methods), desc="scoring pixels", unit="row",
                   disable=not progress)
        try:
            for m in methods:
                bar.set_postfix_str(m)
                fns[m](xs[next(iter(xs))][:2], torch.tensor([0, 1]))  # warm-up, not timed
                t0 = time.perf_counter()
                scores = {}
                dsum, dmax, chg = 0.0, 0.0, 0.0
                nd = 0
                for o in pools:
                    s, delta = _score_pool(fns[m], xs[o], targets_of[o], settings.batch_size,
                                           random=m == "random", bar=bar)
                    scores[o] = s
                    if delta is not None:
                        xo = xs[o]
                        with torch.no_grad():
                            zx = model(xo).double()
                            zr = (model(refs).double().mean(0, keepdim=True)
                                  if m == "deepliftshap" else model(torch.zeros_like(xo[:1])))
                        d = delta.double().abs()
                        dsum += float(d.sum())
                        dmax = max(dmax, float(d.max()))
                        nd += d.numel()
                        ch = (zx - zr.double())[:, targets_of[o]].T.abs()
                        chg += float(ch.sum())
                scoring_seconds[m] = time.perf_counter() - t0
                if nd:
                    comp[m] = {"mean_abs": dsum / nd, "max_abs": dmax,
                               "mean_rel": dsum / max(chg, 1e-12)}
                t0 = time.perf_counter()
                for o, t in settings.conversions:
                    s = scores[o]
                    k = targets_of[o].index(t)
                    s_diff = s[0] - s[k]
                    ch, ne, _ = erase_top_pixels(model, xs[o], s_diff.reshape(xs[o].shape), o, t,
                                                 settings.max_erase)
                    changes[m][conv_name(o, t)] = ch.numpy()
                    n_erased[m][conv_name(o, t)] = ne.numpy()
                erasing += time.perf_counter() - t0
        finally:
            bar.close()

        # ---- examples
        pairs = _example_pairs(labels, pools, settings)
        examples: list[dict[str, Any]] = []
        ex_maps: list[dict[str, Any]] = []
        for index, o, t in pairs:
            x1 = images[index : index + 1] * scale
            ex = {"index": index, "conversion": conv_name(o, t), "label": int(labels[index]),
                  "logodds_change": {}, "n_erased": {}}
            maps = {"image": x1[0, 0].numpy(), "s_diff": {}, "mask": {}}
            for m in methods:
                if m == "random":
                    continue
                s, _ = _score_pool(fns[m], x1, [o, t], settings.batch_size)
                s_diff = (s[0] - s[1]).reshape(x1.shape)
                ch, ne, mask = erase_top_pixels(model, x1, s_diff, o, t, settings.max_erase)
                ex["logodds_change"][m] = float(ch[0])
                ex["n_erased"][m] = int(ne[0])
                maps["s_diff"][m] = s_diff[0, 0].numpy()
                maps["mask"][m] = mask[0, 0].numpy()
            examples.append(ex)
            ex_maps.append(maps)

    logodds = {m: {c: box_stats(changes[m][c]) for c in convs} for m in methods}
    ratios: dict[str, dict[str, float | None]] = {}
    if "grad_x_input" in methods:
        for m in methods:
            ratios[m] = {}
            for c in convs:
                ref = logodds["grad_x_input"][c]["median"]
                med = logodds[m][c]["median"]
                ratios[m][c] = (None if ref is None or med is None or ref == 0
                                else med / ref)
    ordering = {c: ordering_check({m: logodds[m][c]["median"] for m in methods}) for c in convs}
    tolerant = {c: ordering_check({m: logodds[m][c]["median"] for m in methods}, tol=0.02)
                for c in convs}
    info = dict(info or {})
    paper_order = {c: ordering_check({m: logodds[m][c]["median"] for m in methods},
                                     relations=ORDERING_PAPER_TABLE) for c in convs}
    res: dict[str, Any] = {
        "methods": methods,
        "method_labels": {m: METHOD_LABELS[m] for m in methods},
        "conversions": convs,
        "logodds": logodds,
        "ratio_to_grad_x_input": ratios,
        "pixels_erased": {m: {c: {"mean": float(n_erased[m][c].mean()),
                                  "min": int(n_erased[m][c].min()),
                                  "max": int(n_erased[m][c].max())} for c in convs}
                          for m in methods},
        "completeness": comp,
        "ordering": ordering,
        "ordering_tolerant": tolerant,
        "ordering_all_pass": all(v["pass"] for v in ordering.values()),
        "ordering_tolerant_all_pass": all(v["pass"] for v in tolerant.values()),
        "ordering_paper_table": paper_order,
        "ordering_paper_table_all_pass": all(v["pass"] for v in paper_order.values()),
        "baseline_logodds": {c: box_stats(baseline[c]) for c in convs},
        "paper": {"medians": PAPER_MEDIANS, "ratios": PAPER_RATIOS,
                  "source": "docs/methods/deeplift.md §9 (authors' replication notebook, "
                            "raw 0-255 pixels)"},
        "examples": examples,
        "timings": {
            "scoring_seconds": {m: round(v, 3) for m, v in scoring_seconds.items()},
            "ms_per_row": {m: round(1000 * v / n_rows, 4) for m, v in scoring_seconds.items()},
            "rows_per_method": n_rows,
            "erasing_seconds": round(erasing, 3),
        },
        "config": {**asdict(settings), "n_images": {str(o): len(i) for o, i in pools.items()},
                   "reference": "all-zero image (erased pixels are set to 0)",
                   "target": "pre-softmax logits", **info},
        "machine": machine,
    }
    if "test_accuracy" in info:
        res["test_accuracy"] = info["test_accuracy"]
    files = ["results.json", "report.md"]
    files.append(_plot_box(res, changes, out / "logodds_boxplot.png"))
    if ex_maps:
        files.append(_plot_examples(res, ex_maps, out / "examples.png"))
    res["files"] = files
    res["timings"]["total_seconds"] = round(time.perf_counter() - t_start, 2)
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(_report_markdown(res), encoding="utf-8")
    return res


# ----------------------------------------------------------------------------- figures


def _plot_box(res: Mapping[str, Any], changes: Mapping[str, Mapping[str, np.ndarray]],
              path: Path) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    convs = res["conversions"]
    methods = res["methods"]
    fig = Figure(figsize=(3.6 * len(convs), 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(convs), sharey=True, squeeze=False)[0]
    for ax, c in zip(axes, convs):
        ax.boxplot([changes[m][c] for m in methods], whis=1.5, showfliers=False,
                   medianprops={"color": "tab:red"})
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=70, fontsize=7)
        ax.set_title(f"{c} (n = {res['logodds'][methods[0]][c]['n']})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("change in log-odds (z_o − z_t), logits")
    fig.suptitle(f"Erasing ≤ {res['config']['max_erase']} pixels ranked by S(o) − S(t) "
                 f"(pixels × {res['config']['input_scale']:g}; higher = better)", fontsize=10)
    fig.savefig(path, dpi=110)
    return path.name


def _plot_examples(res: Mapping[str, Any], ex_maps: Sequence[Mapping[str, Any]],
                   path: Path) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = [m for m in EXAMPLE_METHODS if m in res["methods"]]
    rows = 2 * len(ex_maps)
    fig = Figure(figsize=(1.7 * (len(methods) + 1), 1.9 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, len(methods) + 1, squeeze=False)
    for i, (maps, ex) in enumerate(zip(ex_maps, res["examples"])):
        img = maps["image"]
        a0, a1 = axes[2 * i][0], axes[2 * i + 1][0]
        a0.imshow(img, cmap="gray_r")
        a0.set_title(f"test #{ex['index']}\n{ex['conversion']}", fontsize=8)
        a1.axis("off")
        for j, m in enumerate(methods, start=1):
            s = maps["s_diff"][m]
            lim = float(np.percentile(np.abs(s), 99)) or 1.0
            ax = axes[2 * i][j]
            ax.imshow(s, cmap="RdBu_r", vmin=-lim, vmax=lim)
            if i == 0:
                ax.set_title(f"{m}\nS(o) − S(t)", fontsize=7)
            ax = axes[2 * i + 1][j]
            rgb = np.stack([1 - img / max(img.max(), 1e-12)] * 3, axis=-1)
            rgb[maps["mask"][m]] = (0.85, 0.1, 0.1)
            ax.imshow(rgb)
            ax.set_title(f"Δ {ex['logodds_change'][m]:.2f}, {ex['n_erased'][m]} px",
                         fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("S(o) − S(t) (red > 0) and the erased pixels (red); Δ = log-odds change",
                 fontsize=9)
    fig.savefig(path, dpi=100)
    return path.name


# ----------------------------------------------------------------------------- report


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def table_lines(res: Mapping[str, Any]) -> list[str]:
    """Markdown table: median [Q1, Q3] per method and conversion, ratio to grad×input, the
    paper's median [Q1, Q3] and ratio."""
    convs = res["conversions"]
    head = ["method"] + [f"{c} median [Q1, Q3]" for c in convs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in res["methods"]:
        row = [f"`{m}`"]
        for c in convs:
            s = res["logodds"][m][c]
            r = res["ratio_to_grad_x_input"].get(m, {}).get(c)
            row.append(f"{_fmt(s['median'])} [{_fmt(s['q1'])}, {_fmt(s['q3'])}]"
                       + ("" if r is None else f" ×{r:.2f}"))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def paper_lines(res: Mapping[str, Any]) -> list[str]:
    convs = res["conversions"]
    head = ["method"] + [f"{c}: ours ×gxi / paper ×gxi / paper median [Q1, Q3]"
                         for c in convs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in res["methods"]:
        if m not in PAPER_MEDIANS:
            continue
        row = [f"`{m}`"]
        for c in convs:
            r = res["ratio_to_grad_x_input"].get(m, {}).get(c)
            pm = PAPER_MEDIANS[m].get(c)
            if pm is None:
                row.append("–")
                continue
            pr = PAPER_RATIOS.get(m, {}).get(c)
            if pr is None and m in PAPER_MEDIANS and "grad_x_input" in PAPER_MEDIANS:
                pr = pm[0] / PAPER_MEDIANS["grad_x_input"][c][0]
            q = f" [{pm[1]:.0f}, {pm[2]:.0f}]" if pm[1] is not None else ""
            row.append(f"{_fmt(r, 2)} / {_fmt(pr, 2)} / {pm[0]:.0f}{q}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _report_markdown(res: Mapping[str, Any]) -> str:
    cfg = res["config"]
    lines = ["# DeepLIFT MNIST digit conversion (paper Fig. 4)", ""]
    bits = []
    if "model" in cfg:
        bits.append(f"Model `{cfg['model']}`")
    if "dataset" in cfg:
        bits.append(f"data {cfg['dataset']}")
    if "test_accuracy" in res:
        bits.append(f"test accuracy {100 * res['test_accuracy']:.2f} %")
    if "trained" in cfg:
        bits.append(str(cfg["trained"]))
    if bits:
        lines += ["; ".join(bits) + ".", ""]
    lines += [
        f"Images per original class: {', '.join(f'{k}: {v}' for k, v in cfg['n_images'].items())}"
        f" ({'all test images' if cfg['n_per_class'] is None else 'seeded subset'}). "
        f"Pixels in [0, 1] × {cfg['input_scale']:g}; reference: {cfg['reference']}; "
        f"target: {cfg['target']}. Erase ≤ {cfg['max_erase']} pixels with S(o) − S(t) > "
        f"max(158th largest, 0). DeepLiftShap: {cfg['shap_references']} training images as "
        f"references. Seed {cfg['seed']}. Machine: {res['machine']['cpu']}, "
        f"{res['machine']['torch_threads']} torch thread(s), torch {res['machine']['torch']}.",
        "",
        "## Log-odds change (z_o − z_t)(original) − (z_o − z_t)(erased)",
        "",
        "Median [Q1, Q3] and ×r = median / median of `grad_x_input` (scale-free):",
        "",
        *table_lines(res),
        "",
        "Baseline log-odds (z_o − z_t) of the unerased images, median [Q1, Q3]: "
        + "; ".join(f"{c}: {_fmt(s['median'])} [{_fmt(s['q1'])}, {_fmt(s['q3'])}]"
                    for c, s in res["baseline_logodds"].items()) + ".",
        "",
        "## Against the paper",
        "",
        "The paper's numbers (authors' replication notebook, raw 0–255 pixels) are on a ~10⁴ "
        "scale; compare the ratios to grad×input (ours / paper) and the ordering.",
        "",
        *paper_lines(res),
        "",
        "Expected ordering of medians: RevealCancel ≥ Rescale ≥ grad×input/IG > guided "
        "backprop > |grad|.",
        "",
        "The paper's table has no Rescale column; its own chain is RevealCancel > "
        "grad×input ≈ IG > guided backprop > |grad| (last column).",
        "",
        "| conversion | strict | 2 % slack on ≥ | failed (strict) | paper-table chain |",
        "|---|---|---|---|---|",
    ]
    for c in res["conversions"]:
        o, ot = res["ordering"][c], res["ordering_tolerant"][c]
        pt = res["ordering_paper_table"][c]
        failed = "; ".join(f"`{k['a']}` {_fmt(k['a_median'])} {k['relation']} `{k['b']}` "
                           f"{_fmt(k['b_median'])}" for k in o["checks"] if not k["pass"])
        lines.append(f"| {c} | {'pass' if o['pass'] else 'FAIL'} | "
                     f"{'pass' if ot['pass'] else 'FAIL'} | {failed or '–'} | "
                     f"{'pass' if pt['pass'] else 'FAIL'} |")
    lines += ["", "## Pixels erased and completeness", "",
              "| method | mean pixels erased per conversion | completeness mean abs δ (rel.) "
              "| ms per row |", "|---|---|---|---|"]
    for m in res["methods"]:
        pe = ", ".join(f"{res['pixels_erased'][m][c]['mean']:.0f}" for c in res["conversions"])
        cp = res["completeness"].get(m)
        cps = "–" if cp is None else f"{_fmt(cp['mean_abs'])} ({_fmt(cp['mean_rel'])})"
        lines.append(f"| `{m}` | {pe} | {cps} | {res['timings']['ms_per_row'][m]:.3f} |")
    lines += ["", "## Examples", "",
              "| test index | conversion | " + " | ".join(f"`{m}`" for m in EXAMPLE_METHODS
                                                         if m in res["methods"]) + " |",
              "|" + "---|" * (2 + len([m for m in EXAMPLE_METHODS if m in res["methods"]]))]
    for ex in res["examples"]:
        lines.append(f"| {ex['index']} | {ex['conversion']} | " + " | ".join(
            f"{ex['logodds_change'][m]:.2f} ({ex['n_erased'][m]} px)"
            for m in EXAMPLE_METHODS if m in res["methods"]) + " |")
    lines += ["", "Figures: `logodds_boxplot.png` (boxes: quartiles; whiskers: 1.5 IQR; "
              "outliers not drawn), `examples.png`.", "",
              f"Experiment time: {res['timings']['total_seconds']:.1f} s.", ""]
    return "\n".join(lines)


def headline(res: Mapping[str, Any]) -> list[str]:
    """Terminal summary: medians per method and conversion, and the ordering check."""
    convs = res["conversions"]
    lines = [f"{'method':<24}" + "".join(f"{c:>16}" for c in convs)]
    for m in res["methods"]:
        cells = []
        for c in convs:
            med = res["logodds"][m][c]["median"]
            r = res["ratio_to_grad_x_input"].get(m, {}).get(c)
            cells.append(f"{_fmt(med):>9} ×{_fmt(r, 2):<5}" if r is not None
                         else f"{_fmt(med):>16}")
        lines.append(f"{m:<24}" + "".join(f"{s:>16}" for s in cells))
    lines.append("ordering RevealCancel ≥ Rescale ≥ grad×input/IG > GBP > |grad|: " + ", ".join(
        f"{c} {'pass' if res['ordering'][c]['pass'] else 'FAIL'}" for c in convs))
    lines.append("paper-table chain RevealCancel > grad×input/IG > GBP > |grad|: " + ", ".join(
        f"{c} {'pass' if res['ordering_paper_table'][c]['pass'] else 'FAIL'}" for c in convs))
    if "test_accuracy" in res:
        lines.append(f"test accuracy {100 * res['test_accuracy']:.2f} %")
    return lines


# ----------------------------------------------------------------------------- MNIST


def _missing_mnist(data_dir: str | os.PathLike | None) -> FileNotFoundError:
    from neuron_importance.data.paths import DATA_ENV_VAR, data_search_locations

    looked = ([str(Path(data_dir)), str(Path(data_dir) / "mnist")] if data_dir is not None
              else [str(p / "mnist") for p in data_search_locations()])
    return FileNotFoundError(
        "MNIST not found: expected t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, "
        "train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz in one of: "
        f"{', '.join(looked)}. Point the tool at them with --data-dir DIR (the folder with "
        f"the files, or one holding mnist/) or set {DATA_ENV_VAR} to the shared data folder."
    )


def reproduce(
    out_dir: str | os.PathLike,
    *,
    quick: bool = False,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    n_per_class: int | None = None,
    input_scale: float = 1.0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train (or load from the weight cache) the paper's CNN and run :func:`run_experiment`.

    Full mode trains :data:`FULL_TRAINING` (60000 images, 15 epochs, batch 64, Adam 1e-3
    decayed by 0.85 per epoch) and scores all test images of the original classes. ``quick``
    uses that model when it is cached and otherwise trains :data:`QUICK_TRAINING` (10000 images, 2 epochs),
    and scores 40 images per class. Pixels are in [0, 1] (the model is trained on them);
    ``input_scale`` multiplies them before scoring (255 mimics the authors' raw pixels fed to
    a model trained on [0, 1]).
    """
    from neuron_importance.cli.demo import find_mnist
    from neuron_importance.data.mnist import load_mnist
    from neuron_importance.models import (
        cache_path,
        cached_model,
        evaluate_accuracy,
        train_classifier,
    )

    say = log or (lambda _msg: None)
    t0 = time.perf_counter()
    mnist_dir = find_mnist(data_dir)
    if mnist_dir is None:
        raise _missing_mnist(data_dir)
    cache = Path(cache_dir) if cache_dir else Path.cwd() / ".cache" / "neuron-importance"
    config = dict(FULL_TRAINING)
    if quick and not cache_path("mnist_cnn", config, cache).exists():
        config = dict(QUICK_TRAINING)
        say("quick mode: the fully trained model is not cached; training a quick one "
            f"({config['n_train']} images, {config['epochs']} epochs)")
    trained: dict[str, float] = {}

    def train(model: nn.Module) -> nn.Module:
        tx, ty = load_mnist("train", data_dir=mnist_dir, limit=config["n_train"])
        say(f"training mnist_cnn on {len(tx)} images: {config['epochs']} epochs, batch "
            f"{config['batch_size']}, Adam lr {config['lr']} × {config['lr_decay']}/epoch")
        t = time.perf_counter()
        train_classifier(model, tx, ty, epochs=config["epochs"],
                         batch_size=config["batch_size"], lr=config["lr"],
                         lr_decay=config["lr_decay"], seed=config["seed"], progress=progress)
        trained["seconds"] = time.perf_counter() - t
        return model

    model = cached_model("mnist_cnn", config, train, cache, log=say)
    test_x, test_y = load_mnist("test", data_dir=mnist_dir)
    accuracy = evaluate_accuracy(model, test_x, test_y)
    note = (f"trained in {trained['seconds']:.1f} s" if trained
            else "loaded from the weight cache")
    say(f"mnist_cnn: test accuracy {100 * accuracy:.2f} % on {len(test_x)} images ({note})")
    settings = Settings.quick(seed) if quick else Settings.full(seed)
    if n_per_class is not None:
        settings.n_per_class = n_per_class
    settings.input_scale = input_scale
    ref_x, _ = load_mnist("train", data_dir=mnist_dir, limit=2000)
    info = {
        "mode": "quick" if quick else "full",
        "model": "mnist_cnn",
        "dataset": f"MNIST ({mnist_dir})",
        "training": config,
        "trained": note,
        "train_seconds": trained.get("seconds"),
        "test_accuracy": round(accuracy, 4),
        "n_test": len(test_x),
        "input_scaling": "model trained and scored on pixels / 255 in [0, 1]"
        + (f", scored pixels multiplied by {input_scale:g}" if input_scale != 1 else ""),
    }
    res = run_experiment(model, test_x, test_y, out_dir, references=ref_x, settings=settings,
                         info=info, progress=progress, log=say)
    res["timings"]["command_seconds"] = round(time.perf_counter() - t0, 2)
    Path(out_dir, "results.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    report = Path(out_dir, "report.md")
    report.write_text(report.read_text(encoding="utf-8") + f"Command time: "
                      f"{res['timings']['command_seconds']:.1f} s (data, model, experiment).\n",
                      encoding="utf-8")
    return res
