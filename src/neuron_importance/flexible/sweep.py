"""Complexity vs expressive power of KST networks (issue 6).

:func:`complexity_sweep` trains a :class:`~neuron_importance.flexible.KSTNetwork` for every
(hidden width ``H``, control points ``m``) pair, reports the held-out accuracy (stratified
k-fold repeated over seeds, or one stratified train/test split), the parameter count, the
number of learned 1-D functions and, for a network of that topology trained on *all* the
training data, the total description length and mean R² of its
:func:`~neuron_importance.flexible.symbolic_readout`. :func:`plot_tradeoff` draws accuracy
against total description length, one labelled point per topology.

Note: at fixed ``m`` the number of learned functions ``n·H + H·k`` grows with ``H``, and at
fixed ``H`` more control points add parameters but no functions; across both axes a
larger-``m`` narrow network can have more parameters than a wider small-``m`` one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .kst import KSTNetwork
from .symbolic import symbolic_readout

__all__ = ["complexity_sweep", "plot_tradeoff", "train_network"]

TrainFn = Callable[[np.ndarray, np.ndarray, int, int, int], nn.Module]


def train_network(x: np.ndarray, y: np.ndarray, width: int, n_control: int, seed: int = 0, *,
                  steps: int = 300, lr: float = 0.03) -> KSTNetwork:
    """Default ``train_fn``: full-batch Adam on a KST network with z-scored inputs.

    Two classes: one logit and BCE; more: one logit per class and cross-entropy.
    """
    n_classes = int(np.max(y)) + 1
    n_out = 1 if n_classes <= 2 else n_classes
    net = KSTNetwork(x.shape[1], n_outputs=n_out, width=width, n_control=n_control,
                     generator=torch.Generator().manual_seed(seed))
    xt = torch.as_tensor(x, dtype=torch.float32)
    net.fit_normalisation(xt)
    if n_out == 1:
        t = torch.as_tensor(y, dtype=torch.float32)

        def loss_fn(o):
            return nn.functional.binary_cross_entropy_with_logits(o[:, 0], t)
    else:
        tl = torch.as_tensor(y, dtype=torch.long)

        def loss_fn(o):
            return nn.functional.cross_entropy(o, tl)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss_fn(net(xt)).backward()
        opt.step()
    net.eval()
    return net


@torch.no_grad()
def _predict(net: nn.Module, x: np.ndarray) -> np.ndarray:
    dtype = next(net.parameters()).dtype
    out = net(torch.as_tensor(x, dtype=dtype))
    if out.shape[1] == 1:
        return (out[:, 0] > 0).long().numpy()
    return out.argmax(1).numpy()


def _splits(y: np.ndarray, n_folds: int, seeds: Sequence[int], test_size: float | None):
    from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

    for s in seeds:
        if test_size is not None:
            splitter = StratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=s)
        else:
            splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=s)
        for k, (tr, te) in enumerate(splitter.split(np.zeros(len(y)), y)):
            yield s, k, tr, te


def complexity_sweep(
    x: np.ndarray, y: np.ndarray, widths: Sequence[int], n_controls: Sequence[int], *,
    n_folds: int = 3, seeds: Sequence[int] = (0,), test_size: float | None = None,
    train_fn: TrainFn | None = None, n_points: int = 200, progress: bool = False,
) -> list[dict[str, Any]]:
    """Accuracy vs complexity of KST networks over ``widths × n_controls``.

    Args:
        x, y: ``(N, d)`` features and integer class labels ``0..k-1``.
        widths, n_controls: hidden widths ``H`` (≥ 1) and control points ``m`` (≥ 2).
        n_folds, seeds: stratified ``n_folds``-fold CV, shuffled once per seed.
        test_size: if given, one stratified train/test split per seed (this fraction held
            out) instead of k-fold.
        train_fn: ``train_fn(x_train, y_train, width, n_control, seed) -> KSTNetwork``
            (default :func:`train_network`). The held-out prediction is ``logit > 0`` for one
            output, else the arg-max.
        n_points: samples per learned function for :func:`symbolic_readout`.

    Returns one dict per topology (in ``widths × n_controls`` order): ``topology``
    (``"H{H}_m{m}"``), ``width``, ``n_control``, ``accuracy_mean``, ``accuracy_std`` (ddof 0
    over all folds × seeds), ``accuracy_min``, ``n_evals``, ``n_params`` (trainable),
    ``n_functions``, ``description_length`` (total over the learned functions of a network
    trained on all of ``x``, seed ``seeds[0]``), ``readout_mean_r2``, ``readout_names`` (the
    symbolic family of each function: inner then outer) and ``seconds``.
    """
    from tqdm.auto import tqdm

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x must be (N, d) and y (N,), got {x.shape} and {y.shape}")
    if not widths or not n_controls or not seeds:
        raise ValueError("need at least one width, one n_control and one seed")
    if any(int(h) < 1 for h in widths) or any(int(m) < 2 for m in n_controls):
        raise ValueError("widths must be ≥ 1 and n_controls ≥ 2")
    if test_size is None and n_folds < 2:
        raise ValueError("n_folds must be ≥ 2 (or give test_size)")
    train = train_fn if train_fn is not None else train_network
    splits = list(_splits(y, n_folds, seeds, test_size))
    tops = [(int(h), int(m)) for h in widths for m in n_controls]
    rows: list[dict[str, Any]] = []
    for h, m in tqdm(tops, desc="complexity sweep", unit="topology", disable=not progress):
        t0 = time.perf_counter()
        accs = []
        for s, k, tr, te in splits:
            net = train(x[tr], y[tr], h, m, 1000 * s + 10 * k + h)
            accs.append(float((_predict(net, x[te]) == y[te]).mean()))
        full = train(x, y, h, m, int(seeds[0]))
        readout = symbolic_readout(full, n_points=n_points)
        a = np.asarray(accs)
        rows.append({
            "topology": f"H{h}_m{m}", "width": h, "n_control": m,
            "accuracy_mean": float(a.mean()), "accuracy_std": float(a.std()),
            "accuracy_min": float(a.min()), "n_evals": int(a.size),
            "n_params": int(sum(p.numel() for p in full.parameters() if p.requires_grad)),
            "n_functions": int(full.n_functions),
            "description_length": readout.total_description_length,
            "readout_mean_r2": readout.mean_r2,
            "readout_names": [e["name"] for e in readout],
            "seconds": round(time.perf_counter() - t0, 2),
        })
    return rows


def plot_tradeoff(rows: Sequence[dict[str, Any]], path: str | Path,
                  title: str = "Accuracy vs symbolic description length") -> Path:
    """Scatter of mean accuracy (± std) against total description length, one point per
    topology, labelled ``H{H},m{m}`` and coloured by width. Writes a PNG to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("no rows to plot")
    path = Path(path)
    fig = Figure(figsize=(5.5, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    widths = sorted({r["width"] for r in rows})
    for r in rows:
        col = f"C{widths.index(r['width']) % 10}"
        ax.errorbar(r["description_length"], 100 * r["accuracy_mean"],
                    yerr=100 * r["accuracy_std"], fmt="o", color=col, ms=5, capsize=2)
        ax.annotate(f"H{r['width']},m{r['n_control']}",
                    (r["description_length"], 100 * r["accuracy_mean"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    for h in widths:
        ax.plot([], [], "o", color=f"C{widths.index(h) % 10}", label=f"H = {h}")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("total description length of the symbolic read-out", fontsize=8)
    ax.set_ylabel("held-out accuracy (%)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    fig.tight_layout(pad=0.4)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110)
    return path
