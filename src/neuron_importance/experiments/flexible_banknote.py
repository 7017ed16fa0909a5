"""The banknote case study of the flexible-activation (KST-GP) networks (issue 6).

Protocol (``docs/flexible-banknote.md``):

* Data: UCI banknote authentication, **de-duplicated** (the 24 exact repeats dropped, first
  occurrence kept: 1348 rows) before any split.
* Stratified 5-fold CV, repeated over shuffles (3 seeds ``seed, seed+1, seed+2`` in full mode,
  1 in quick); every model sees the same folds. Features are standardised inside each fold
  (training-fold statistics only): :meth:`KSTNetwork.fit_normalisation` for the KST networks,
  a ``StandardScaler`` in a pipeline for the scikit-learn baselines.
* KST networks: a small sweep over hidden width ``H`` and control points ``m``; full-batch Adam
  (:data:`LR`, :data:`STEPS` steps, no early stopping, the last weights are evaluated), binary
  cross-entropy on one logit (cross-entropy on one logit per class for multi-class sets),
  float32, weights initialised from a seeded generator.
* Baselines on the same folds: logistic regression (C=1), RBF SVM (C=1, gamma="scale"), and an
  MLP (one tanh hidden layer, L-BFGS) whose parameter count is the closest to that of the chosen
  KST network.
* The chosen topology is the one with the fewest parameters whose mean accuracy reaches
  :data:`GOAL` (if none does, the most accurate one, with ``goal_met = False``).
* Interpretation: the chosen topology is refitted on all rows; its learned functions are plotted
  (:func:`~neuron_importance.flexible.plot_learned_functions`), the per-feature response
  (:func:`feature_response`: one feature swept over its range, the others at their median) is
  plotted and its logit range ranks the features, and DeepLIFT (Rescale, reference = feature
  means) attributions give a second ranking (mean |attribution| per feature).
* Complexity sweep (:func:`~neuron_importance.flexible.complexity_sweep`): widths ×
  control points, 3-fold CV (first seed), accuracy vs parameters, learned functions and the
  total description length of the symbolic read-out of a network refitted on all rows
  (``complexity_tradeoff.png``).
* Additive check (:func:`additive_check`): a logistic GAM-like additive model (per-feature
  cubic B-splines + L2 logistic regression) next to the KST per-feature response curves.
* Full mode only: the same KST pipeline (one topology) next to logistic regression and the RBF
  SVM on scikit-learn's bundled breast-cancer and wine sets (1 seed).

``std`` in ``cv_accuracy`` is the standard deviation (ddof 0) of the fold accuracies over all
folds × seeds; ``min`` is the worst fold.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neuron_importance.experiments.machine import machine_info
from neuron_importance.flexible import KSTNetwork, plot_learned_functions
from neuron_importance.flexible.sweep import complexity_sweep, plot_tradeoff

__all__ = [
    "GOAL",
    "LR",
    "STEPS",
    "Settings",
    "additive_check",
    "cross_validate",
    "feature_response",
    "headline",
    "reproduce",
    "run_experiment",
    "train_kst",
]

#: target mean CV accuracy for the chosen topology
GOAL = 0.995
#: Adam learning rate and number of full-batch steps of the KST networks
LR = 0.03
STEPS = 1000


@dataclass
class Settings:
    """What one run does. ``topologies``: ``(H, m)`` pairs for the KST sweep."""

    seeds: tuple[int, ...] = (0, 1, 2)
    n_folds: int = 5
    topologies: tuple[tuple[int, int], ...] = ((1, 3), (1, 4), (1, 6), (2, 4), (2, 6), (3, 6),
                                               (9, 6))
    steps: int = STEPS
    lr: float = LR
    other_datasets: tuple[str, ...] = ("breast_cancer", "wine")
    other_topology: tuple[int, int] = (2, 6)
    other_seeds: tuple[int, ...] = (0,)
    sweep_widths: tuple[int, ...] = (1, 2, 3)
    sweep_controls: tuple[int, ...] = (3, 4, 6)
    sweep_folds: int = 3
    quick: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def full(cls, seed: int = 0) -> Settings:
        return cls(seeds=(seed, seed + 1, seed + 2), other_seeds=(seed,))

    @classmethod
    def quick_mode(cls, seed: int = 0) -> Settings:
        return cls(seeds=(seed,), topologies=((1, 3), (1, 4), (2, 4), (9, 6)), steps=600,
                   other_datasets=(), sweep_widths=(1, 2), sweep_controls=(3, 4), quick=True)

    def check(self) -> None:
        if not self.seeds or self.n_folds < 2 or self.steps < 1 or not self.lr > 0:
            raise ValueError("need at least one seed, n_folds >= 2, steps >= 1 and lr > 0")
        for h, m in self.topologies:
            if h < 1 or m < 2:
                raise ValueError(f"bad topology (H={h}, m={m}): need H >= 1 and m >= 2")


# ----------------------------------------------------------------------------- models


def kst_name(width: int, n_control: int) -> str:
    return f"kst_H{width}_m{n_control}"


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_kst(x: np.ndarray, y: np.ndarray, width: int, n_control: int, n_classes: int = 2,
              steps: int = STEPS, lr: float = LR, seed: int = 0) -> KSTNetwork:
    """Fit a KST network full-batch with Adam; inputs are z-scored with ``x``'s statistics.

    Two classes: one logit and BCE; more: one logit per class and cross-entropy.
    """
    torch.manual_seed(seed)
    n_out = 1 if n_classes == 2 else n_classes
    net = KSTNetwork(x.shape[1], n_outputs=n_out, width=width, n_control=n_control,
                     generator=torch.Generator().manual_seed(seed))
    xt = torch.as_tensor(x, dtype=torch.float32)
    net.fit_normalisation(xt)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    if n_out == 1:
        target = torch.as_tensor(y, dtype=torch.float32)

        def loss_fn(out):
            return nn.functional.binary_cross_entropy_with_logits(out[:, 0], target)
    else:
        target_long = torch.as_tensor(y, dtype=torch.long)

        def loss_fn(out):
            return nn.functional.cross_entropy(out, target_long)
    net.train()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xt))
        loss.backward()
        opt.step()
    net.eval()
    return net


@torch.no_grad()
def kst_predict(net: KSTNetwork, x: np.ndarray) -> np.ndarray:
    out = net(torch.as_tensor(x, dtype=torch.float32))
    if out.shape[1] == 1:
        return (out[:, 0] > 0).long().numpy()
    return out.argmax(1).numpy()


def _sklearn_models(mlp_hidden: int, seed: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    models = {
        "logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(C=1.0,
                                                                                  max_iter=5000)),
        "svm_rbf": make_pipeline(StandardScaler(), SVC(C=1.0, kernel="rbf", gamma="scale")),
    }
    if mlp_hidden > 0:
        models["mlp"] = make_pipeline(StandardScaler(), MLPClassifier(
            hidden_layer_sizes=(mlp_hidden,), activation="tanh", solver="lbfgs", max_iter=2000,
            random_state=seed))
    return models


def mlp_hidden_for(n_params: int, n_inputs: int, n_classes: int) -> int:
    """Hidden width of a one-layer MLP whose parameter count is closest to ``n_params``."""
    n_out = 1 if n_classes == 2 else n_classes
    per = n_inputs + 1 + n_out
    return max(1, round((n_params - n_out) / per))


def mlp_parameters(hidden: int, n_inputs: int, n_classes: int) -> int:
    n_out = 1 if n_classes == 2 else n_classes
    return hidden * (n_inputs + 1) + n_out * (hidden + 1)


# ----------------------------------------------------------------------------- CV


def _folds(y: np.ndarray, n_folds: int, seeds: Sequence[int]):
    from sklearn.model_selection import StratifiedKFold

    for s in seeds:
        skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=s)
        for k, (tr, te) in enumerate(skf.split(np.zeros(len(y)), y)):
            yield s, k, tr, te


def _summary(accs: Sequence[float], **extra: Any) -> dict[str, Any]:
    a = np.asarray(accs, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
            "n_folds": int(a.size), "folds": [float(v) for v in a], **extra}


def cross_validate(
    x: np.ndarray, y: np.ndarray, topologies: Sequence[tuple[int, int]], *, seeds: Sequence[int],
    n_folds: int = 5, steps: int = STEPS, lr: float = LR, mlp_params: int | None = None,
    baselines: bool = True, progress: bool = False, desc: str = "CV",
) -> dict[str, dict[str, Any]]:
    """Fold accuracies of the KST topologies and (when ``mlp_params`` is given, or always for
    logistic regression and the RBF SVM) the baselines, on the same stratified folds.

    Returns ``name -> {mean, std, min, n_folds, folds, n_params?, seconds}``.
    """
    from tqdm.auto import tqdm

    n_classes = int(y.max()) + 1
    folds = list(_folds(y, n_folds, seeds))
    accs: dict[str, list[float]] = {}
    secs: dict[str, float] = {}
    params: dict[str, int] = {}
    jobs = [(s, k, tr, te, top) for (s, k, tr, te) in folds for top in topologies]
    for s, k, tr, te, (h, m) in tqdm(jobs, desc=desc, unit="fit", disable=not progress):
        name = kst_name(h, m)
        t0 = time.perf_counter()
        net = train_kst(x[tr], y[tr], h, m, n_classes, steps=steps, lr=lr,
                        seed=1000 * s + 10 * k + h)
        acc = float((kst_predict(net, x[te]) == y[te]).mean())
        secs[name] = secs.get(name, 0.0) + time.perf_counter() - t0
        accs.setdefault(name, []).append(acc)
        params[name] = n_parameters(net)
    hidden = (mlp_hidden_for(mlp_params, x.shape[1], n_classes) if mlp_params is not None
              else 0)
    for s, _k, tr, te in folds if baselines else []:
        for name, model in _sklearn_models(hidden, s).items():
            t0 = time.perf_counter()
            model.fit(x[tr], y[tr])
            accs.setdefault(name, []).append(float((model.predict(x[te]) == y[te]).mean()))
            secs[name] = secs.get(name, 0.0) + time.perf_counter() - t0
    out: dict[str, dict[str, Any]] = {}
    for name, a in accs.items():
        extra: dict[str, Any] = {"seconds": round(secs[name], 2)}
        if name in params:
            extra["n_params"] = params[name]
        if name == "mlp":
            extra["hidden"] = hidden
            extra["n_params"] = mlp_parameters(hidden, x.shape[1], n_classes)
        out[name] = _summary(a, **extra)
    return out


def choose_topology(cv: Mapping[str, Mapping[str, Any]], topologies, goal: float = GOAL,
                    n_inputs: int = 4) -> dict[str, Any]:
    """The fewest-parameter topology reaching ``goal`` (ties: higher mean), else the best."""
    rows = []
    for h, m in topologies:
        r = cv[kst_name(h, m)]
        rows.append((r["n_params"], -r["mean"], h, m))
    ok = [r for r in rows if -r[1] >= goal]
    pick = min(ok) if ok else min(rows, key=lambda r: (r[1], r[0]))
    n_params, neg_mean, h, m = pick
    return {"name": kst_name(h, m), "n_inputs": n_inputs, "width": h, "n_control": m,
            "n_outputs": 1, "n_params": int(n_params), "n_functions": n_inputs * h + h,
            "mean_accuracy": -neg_mean, "goal": goal, "goal_met": bool(ok)}


# ----------------------------------------------------------------------------- interpretation


@torch.no_grad()
def feature_response(model: nn.Module, x: np.ndarray, n_points: int = 101,
                     output: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature response of ``model``: feature ``p`` swept over ``[min x_p, max x_p]`` with
    every other feature at its median over ``x``.

    Returns ``(grid, response)``, both ``(n_features, n_points)``: ``response[p, i]`` is output
    ``output`` (a logit) of the model at ``grid[p, i]``.
    """
    x = np.asarray(x, dtype=np.float64)
    med = np.median(x, axis=0)
    n = x.shape[1]
    grid = np.stack([np.linspace(x[:, p].min(), x[:, p].max(), n_points) for p in range(n)])
    resp = np.empty_like(grid)
    dtype = next(model.parameters()).dtype
    for p in range(n):
        pts = np.tile(med, (n_points, 1))
        pts[:, p] = grid[p]
        resp[p] = model(torch.as_tensor(pts, dtype=dtype))[:, output].double().numpy()
    return grid, resp


def deeplift_importance(net: KSTNetwork, x: np.ndarray) -> np.ndarray:
    """Mean |DeepLIFT (Rescale)| attribution per feature; reference = the feature means.

    Computed on a float64 copy of ``net`` (summation-to-delta holds to float64 precision).
    """
    from neuron_importance import DeepLift

    net64 = copy.deepcopy(net).double()
    xt = torch.as_tensor(x, dtype=torch.float64)
    base = xt.mean(0, keepdim=True).expand_as(xt)
    attr = DeepLift(net64, rule="rescale").attribute(xt, base)
    return attr.abs().mean(0).detach().double().numpy()


def _plot_response(grid, resp, x, y, names, path: Path) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = grid.shape[0]
    fig = Figure(figsize=(2.6 * n, 2.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, sharey=True)
    for p, ax in enumerate(np.atleast_1d(axes)):
        ax.plot(grid[p], resp[p], color="C0", lw=1.6)
        ax.axhline(0.0, color="0.6", lw=0.6, ls="--")
        lo = float(np.min(resp))
        for c, col in ((0, "C2"), (1, "C3")):
            ax.plot(x[y == c, p], np.full((y == c).sum(), lo), "|", color=col, ms=6, alpha=0.3,
                    label=f"class {c}")
        ax.set_title(f"{names[p]} (range {np.ptp(resp[p]):.1f})", fontsize=8)
        ax.set_xlabel(names[p], fontsize=8)
        ax.tick_params(labelsize=7)
    np.atleast_1d(axes)[0].set_ylabel("logit (class 1)", fontsize=8)
    np.atleast_1d(axes)[0].legend(fontsize=6, loc="upper right")
    fig.suptitle("KST response to one feature, the others at their median", fontsize=9)
    fig.tight_layout(pad=0.4)
    fig.savefig(path, format="png", dpi=110)
    return path.name


def _plot_accuracy(cv: Mapping[str, Mapping[str, Any]], path: Path, goal: float) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [k for k in cv if k != "kst"]
    fig = Figure(figsize=(6.5, 0.35 * len(names) + 1.0))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    means = [100 * cv[k]["mean"] for k in names]
    stds = [100 * cv[k]["std"] for k in names]
    cols = ["C0" if k.startswith("kst") else "C1" for k in names]
    ax.barh(range(len(names)), means, xerr=stds, color=cols)
    ax.axvline(100 * goal, color="k", ls="--", lw=0.8)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlim(min(95.0, min(means) - 1), 100.2)
    ax.set_xlabel("CV accuracy (%)", fontsize=8)
    ax.invert_yaxis()
    fig.tight_layout(pad=0.4)
    fig.savefig(path, format="png", dpi=110)
    return path.name


def additive_check(x: np.ndarray, y: np.ndarray, grid: np.ndarray, kst_resp: np.ndarray,
                   feature_names: Sequence[str], *, n_knots: int = 5, C: float = 1.0,
                   seed: int = 0,
                   n_folds: int = 5) -> dict[str, Any]:
    """Compare the KST per-feature response curves with a logistic additive model.

    The additive model is ``StandardScaler → SplineTransformer(n_knots, degree 3) →
    LogisticRegression(C)``: ``logit = b + Σ_p f_p(x_p)`` with each ``f_p`` a cubic spline.
    Its shape function ``f_p`` is read off the same way as the KST response (feature ``p``
    swept over ``grid[p]``, the others at their median; in an additive model this is
    ``f_p`` plus a constant). Where the classes are (nearly) separated the logistic loss barely
    constrains the shapes at the ends of a feature's range, so expect the correlation to be
    limited there by the L2 penalty, not only by disagreement of the models. Per feature: Pearson and Spearman correlation of the two curves on
    the grid (scale-free: the models' logit scales differ), and both logit ranges.
    """
    from scipy.stats import spearmanr
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import SplineTransformer, StandardScaler

    def make():
        return make_pipeline(StandardScaler(), SplineTransformer(n_knots=n_knots, degree=3),
                             LogisticRegression(C=C, max_iter=5000))

    cv = cross_val_score(make(), x, y, cv=StratifiedKFold(n_folds, shuffle=True,
                                                          random_state=seed))
    gam = make().fit(x, y)
    med = np.median(x, axis=0)
    per: dict[str, Any] = {}
    for p, name in enumerate(feature_names):
        pts = np.tile(med, (grid.shape[1], 1))
        pts[:, p] = grid[p]
        f = gam.decision_function(pts)
        k = kst_resp[p]
        flat = np.ptp(f) < 1e-12 or np.ptp(k) < 1e-12
        per[name] = {
            "pearson": float("nan") if flat else float(np.corrcoef(k, f)[0, 1]),
            "spearman": float("nan") if flat else float(spearmanr(k, f).statistic),
            "kst_range_logit": float(np.ptp(k)), "additive_range_logit": float(np.ptp(f)),
        }
    rank_a = sorted(per, key=lambda n: per[n]["additive_range_logit"], reverse=True)
    rank_k = sorted(per, key=lambda n: per[n]["kst_range_logit"], reverse=True)
    return {
        "model": f"StandardScaler + SplineTransformer(n_knots={n_knots}, degree=3) + "
                 f"LogisticRegression(C={C:g})",
        "definition": "per feature: correlation over the response grid (feature swept over its "
                      "observed range, others at their median) between the KST logit and the "
                      "additive model's logit (= its shape function + a constant)",
        "cv_accuracy": {"mean": float(cv.mean()), "std": float(cv.std()),
                        "n_folds": int(cv.size), "seed": seed},
        "train_accuracy": float((gam.predict(x) == y).mean()),
        "per_feature": per,
        "mean_pearson": float(np.nanmean([v["pearson"] for v in per.values()])),
        "mean_spearman": float(np.nanmean([v["spearman"] for v in per.values()])),
        "ranking_additive": rank_a, "ranking_kst": rank_k,
        "rankings_agree": rank_a == rank_k,
    }


# ----------------------------------------------------------------------------- experiment


def _bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    loader = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine}[name]
    d = loader()
    return np.asarray(d.data, dtype=np.float64), np.asarray(d.target, dtype=np.int64)


def run_experiment(
    x: np.ndarray, y: np.ndarray, out_dir: str | Path, settings: Settings, *,
    feature_names: Sequence[str], data_info: Mapping[str, Any] | None = None,
    progress: bool = False, log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the case study on ``(x, y)`` (binary) and write results.json, report.md and PNGs."""
    settings.check()
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    tops = list(settings.topologies)
    log(f"KST sweep {tops} x {settings.n_folds} folds x {len(settings.seeds)} seed(s), "
        f"{settings.steps} Adam steps at lr {settings.lr}")
    t0 = time.perf_counter()
    cv = cross_validate(x, y, tops, seeds=settings.seeds, n_folds=settings.n_folds,
                        steps=settings.steps, lr=settings.lr, baselines=False,
                        progress=progress, desc="KST sweep")
    topology = choose_topology(cv, tops, n_inputs=x.shape[1])
    # baselines on the same folds; the MLP is sized like the chosen network
    base = cross_validate(x, y, [], seeds=settings.seeds, n_folds=settings.n_folds,
                          mlp_params=topology["n_params"])
    cv.update(base)
    cv["kst"] = dict(cv[topology["name"]], topology=topology["name"])
    cv_seconds = time.perf_counter() - t0
    log(f"chosen topology {topology['name']} ({topology['n_params']} parameters): "
        f"{100 * topology['mean_accuracy']:.2f} % (goal met: {topology['goal_met']})")

    # interpretation: refit the chosen topology on all rows
    net = train_kst(x, y, topology["width"], topology["n_control"], 2, steps=settings.steps,
                    lr=settings.lr, seed=settings.seeds[0])
    train_acc = float((kst_predict(net, x) == y).mean())
    files = [plot_learned_functions(net, out / "learned_functions.png",
                                    input_names=list(feature_names)).name]
    grid, resp = feature_response(net, x)
    files.append(_plot_response(grid, resp, x, y, feature_names, out / "feature_response.png"))
    files.append(_plot_accuracy(cv, out / "cv_accuracy.png", GOAL))
    ranges = {n: float(np.ptp(resp[p])) for p, n in enumerate(feature_names)}
    dl = deeplift_importance(net, x)
    dl_imp = {n: float(dl[p]) for p, n in enumerate(feature_names)}
    rank_r = sorted(ranges, key=ranges.get, reverse=True)
    rank_d = sorted(dl_imp, key=dl_imp.get, reverse=True)
    importance = {
        "response_range_logit": ranges, "ranking_response": rank_r,
        "deeplift_mean_abs": dl_imp, "ranking_deeplift": rank_d,
        "dominant": rank_d[0], "least": rank_d[-1],
        "rankings_agree": rank_r == rank_d,
        "refit_train_accuracy": train_acc,
    }
    log(f"feature ranking (DeepLIFT): {' > '.join(rank_d)}; (response range): "
        f"{' > '.join(rank_r)}")

    additive = additive_check(x, y, grid, resp, feature_names, seed=settings.seeds[0],
                              n_folds=settings.n_folds)
    log(f"additive check: mean Pearson {additive['mean_pearson']:.3f}, GAM CV accuracy "
        f"{100 * additive['cv_accuracy']['mean']:.2f} %")

    t2 = time.perf_counter()

    def sweep_train(xs, ys, h, m, s):
        return train_kst(xs, ys, h, m, 2, steps=settings.steps, lr=settings.lr, seed=s)

    sweep = complexity_sweep(x, y, settings.sweep_widths, settings.sweep_controls,
                             n_folds=settings.sweep_folds, seeds=settings.seeds[:1],
                             train_fn=sweep_train, progress=progress)
    files.append(plot_tradeoff(sweep, out / "complexity_tradeoff.png").name)
    sweep_seconds = time.perf_counter() - t2
    log("complexity sweep: " + "; ".join(
        f"{r['topology']} {100 * r['accuracy_mean']:.2f}% DL {r['description_length']}"
        for r in sweep))

    others: dict[str, Any] = {}
    t1 = time.perf_counter()
    for name in settings.other_datasets:
        xo, yo = _bundled(name)
        h, m = settings.other_topology
        log(f"{name}: {xo.shape[0]} rows, {xo.shape[1]} features, {int(yo.max()) + 1} classes")
        cvo = cross_validate(xo, yo, [(h, m)], seeds=settings.other_seeds,
                             n_folds=settings.n_folds, steps=settings.steps, lr=settings.lr,
                             progress=progress, desc=name)
        cvo["kst"] = cvo[kst_name(h, m)]
        others[name] = {"n_rows": int(xo.shape[0]), "n_features": int(xo.shape[1]),
                        "n_classes": int(yo.max()) + 1, "seeds": list(settings.other_seeds),
                        "cv_accuracy": cvo}
    other_seconds = time.perf_counter() - t1

    res: dict[str, Any] = {
        "experiment": "flexible-banknote",
        "quick": settings.quick,
        "data": dict(data_info or {}, n_rows=int(len(y)), features=list(feature_names),
                     class_counts={str(c): int((y == c).sum()) for c in (0, 1)}),
        "protocol": {
            "cv": f"stratified {settings.n_folds}-fold, shuffled, repeated over seeds",
            "n_folds": settings.n_folds, "seeds": list(settings.seeds),
            "standardise": "inside each fold (training-fold mean/std)",
            "kst_optimizer": "Adam, full batch", "kst_lr": settings.lr,
            "kst_steps": settings.steps, "early_stopping": False, "dtype": "float32",
            "topologies": [list(t) for t in tops], "goal": GOAL,
            "baselines": {"logistic_regression": "C=1", "svm_rbf": "C=1, gamma=scale",
                          "mlp": "1 tanh hidden layer sized to the chosen KST's parameter "
                                 "count, L-BFGS, max_iter 2000"},
            "std": "over all folds x seeds (ddof 0)",
        },
        "cv_accuracy": cv,
        "topology": topology,
        "feature_importance": importance,
        "complexity_sweep": sweep,
        "additive_check": additive,
        "other_datasets": others,
        "timings": {"banknote_cv_seconds": round(cv_seconds, 1),
                    "other_datasets_seconds": round(other_seconds, 1),
                    "complexity_sweep_seconds": round(sweep_seconds, 1)},
        "machine": machine,
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    (out / "report.md").write_text(_report_markdown(res, files), encoding="utf-8")
    res["files"] = ["results.json", "report.md", *files]
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return res


def _pct(r: Mapping[str, Any]) -> str:
    return f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}"


def _report_markdown(res: Mapping[str, Any], files: Sequence[str]) -> str:
    cv, top, imp, pr = res["cv_accuracy"], res["topology"], res["feature_importance"], \
        res["protocol"]
    d = res["data"]
    lines = [
        "# flexible-banknote: KST-GP networks on UCI banknote authentication",
        "",
        f"Mode: {'quick' if res['quick'] else 'full'}. Data: {d.get('n_raw', '?')} rows in the "
        f"file, {d.get('n_duplicates', '?')} exact duplicates dropped (first occurrence kept) "
        f"→ {d['n_rows']} rows (class 0: {d['class_counts']['0']}, class 1: "
        f"{d['class_counts']['1']}).",
        f"Protocol: {pr['cv']} (seeds {pr['seeds']}); standardised {pr['standardise']}; KST "
        f"trained with {pr['kst_optimizer']}, lr {pr['kst_lr']}, {pr['kst_steps']} steps, no "
        "early stopping. ± is the std over folds × seeds.",
        "",
        "## Cross-validated accuracy (%)",
        "",
        "| model | params | mean ± std | worst fold | fit time (s, all folds) |",
        "|---|---|---|---|---|",
    ]
    for name, r in cv.items():
        if name == "kst":
            continue
        mark = " **(chosen)**" if name == top["name"] else ""
        lines.append(f"| {name}{mark} | {r.get('n_params', '–')} | {_pct(r)} | "
                     f"{100 * r['min']:.2f} | {r['seconds']} |")
    lines += [
        "",
        f"**Chosen topology** (fewest parameters with mean ≥ {100 * top['goal']:.1f} %): "
        f"{top['n_inputs']} → {top['width']} → {top['n_outputs']}, {top['n_control']} control "
        f"points per function, {top['n_functions']} learned 1-D functions, {top['n_params']} "
        f"parameters; mean accuracy {100 * top['mean_accuracy']:.2f} % (goal met: "
        f"{top['goal_met']}).",
        "",
        "## Which feature dominates",
        "",
        "The chosen topology refitted on all rows (training accuracy "
        f"{100 * imp['refit_train_accuracy']:.2f} %).",
        "",
        "| feature | response range (logit) | mean abs DeepLIFT |",
        "|---|---|---|",
    ]
    for n in res["data"]["features"]:
        lines.append(f"| {n} | {imp['response_range_logit'][n]:.2f} | "
                     f"{imp['deeplift_mean_abs'][n]:.3f} |")
    lines += [
        "",
        f"Ranking by DeepLIFT: {' > '.join(imp['ranking_deeplift'])}; by response range: "
        f"{' > '.join(imp['ranking_response'])} (agree: {imp['rankings_agree']}). "
        f"Dominant feature: **{imp['dominant']}**, least: **{imp['least']}** (expected: "
        "variance most, entropy least informative). The response range is the spread of the "
        "logit when one feature moves over its observed range with the others at their median; "
        "DeepLIFT uses the feature means as reference.",
        "",
    ]
    sw = res["complexity_sweep"]
    lines += ["## Complexity vs expressive power", "",
              f"{sw[0]['n_evals']}-fold CV (seed {pr['seeds'][0]}); description length: total "
              "over the symbolic read-out of a network refitted on all rows.", "",
              "| topology | params | learned functions | accuracy (%) | description length | "
              "read-out mean R² |", "|---|---|---|---|---|---|"]
    for r in sw:
        lines.append(f"| {r['topology']} | {r['n_params']} | {r['n_functions']} | "
                     f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} | "
                     f"{r['description_length']} | {r['readout_mean_r2']:.3f} |")
    ad = res["additive_check"]
    lines += ["", "## Additive-model check", "",
              f"Additive model: {ad['model']}; CV accuracy {_pct(ad['cv_accuracy'])} %. "
              "Correlation of the KST response curve with the additive shape function, per "
              "feature (same grid, others at their median):", "",
              "| feature | Pearson | Spearman | KST range | additive range |",
              "|---|---|---|---|---|"]
    for n, v in ad["per_feature"].items():
        lines.append(f"| {n} | {v['pearson']:.3f} | {v['spearman']:.3f} | "
                     f"{v['kst_range_logit']:.2f} | {v['additive_range_logit']:.2f} |")
    lines += ["", f"Ranking by range, additive: {' > '.join(ad['ranking_additive'])}; KST: "
              f"{' > '.join(ad['ranking_kst'])}.", ""]
    if res["other_datasets"]:
        lines += ["## Other data sets (scikit-learn bundled)", "",
                  "| data set | rows × features, classes | model | mean ± std (%) |",
                  "|---|---|---|---|"]
        for ds, o in res["other_datasets"].items():
            for name, r in o["cv_accuracy"].items():
                if name == "kst":
                    continue
                lines.append(f"| {ds} | {o['n_rows']} × {o['n_features']}, {o['n_classes']} | "
                             f"{name} | {_pct(r)} |")
        lines.append("")
    t = res["timings"]
    m = res["machine"]
    lines += [
        "## Figures",
        "",
        *[f"- `{f}`" for f in files],
        "",
        f"Run time: {res['total_seconds']} s in total (banknote CV {t['banknote_cv_seconds']} s, "
        f"other data sets {t['other_datasets_seconds']} s) on {m['cpu']}, "
        f"{m['torch_threads']} torch thread(s), torch {m['torch']}.",
        "",
    ]
    return "\n".join(lines)


def reproduce(
    out_dir: str | Path, quick: bool = False, data_dir: str | Path | None = None, seed: int = 0,
    progress: bool = True, log: Callable[[str], None] = print,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Load the (de-duplicated) banknote data and run :func:`run_experiment`."""
    from neuron_importance.data.banknote import load_banknote

    data = load_banknote(data_dir)
    log(f"banknote: {data.n_raw} rows, {data.n_duplicates} duplicates dropped -> "
        f"{len(data.y)} rows ({data.path})")
    if settings is None:
        settings = Settings.quick_mode(seed) if quick else Settings.full(seed)
    info = {"path": str(data.path), "n_raw": data.n_raw, "n_duplicates": data.n_duplicates,
            "duplicate_rows": list(data.duplicate_rows)}
    return run_experiment(data.x, data.y, out_dir, settings, feature_names=data.feature_names,
                          data_info=info, progress=progress, log=log)


def headline(res: Mapping[str, Any]) -> list[str]:
    cv, top = res["cv_accuracy"], res["topology"]
    parts = [f"{k} {_pct(v)}" for k, v in cv.items() if k != "kst"]
    lines = ["CV accuracy (%): " + "; ".join(parts),
             f"chosen {top['name']} ({top['n_params']} params, goal met: {top['goal_met']}); "
             f"dominant feature {res['feature_importance']['dominant']}, least "
             f"{res['feature_importance']['least']}"]
    for ds, o in res.get("other_datasets", {}).items():
        lines.append(f"{ds}: " + "; ".join(f"{k} {_pct(v)}" for k, v in o["cv_accuracy"].items()
                                          if k != "kst"))
    return lines

