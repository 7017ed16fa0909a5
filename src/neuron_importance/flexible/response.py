"""Per-input response curves of a whole model: partial dependence through the network.

For feature ``j`` and grid value ``v`` the partial dependence is the model output averaged over
background rows with feature ``j`` set to ``v``::

    PD_j(v) = (1/N) Σ_i f(x_i with x_ij := v)

(Friedman 2001). For an additive model ``f(x) = Σ_j f_j(x_j) + b`` it equals ``f_j(v)`` plus a
constant, so it recovers each component up to a shift; with interactions it is an average and
can hide them. Works for any torch module (or callable) mapping ``(N, d)`` to ``(N,)`` or
``(N, k)``; the model is put in eval mode for the evaluation and restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["partial_dependence", "per_input_responses", "plot_responses"]

_MAX_ROWS = 1 << 18  # rows evaluated per model call


def _as_tensor(x, model) -> Tensor:
    if isinstance(x, Tensor):
        t = x.detach()
    else:
        t = torch.as_tensor(np.asarray(x))
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if isinstance(model, nn.Module):
        p = next(model.parameters(), None)
        if p is not None:
            t = t.to(dtype=p.dtype, device=p.device)
    return t


def partial_dependence(
    model: nn.Module | Callable[[Tensor], Tensor],
    x_background,
    feature: int,
    grid=None,
    n_points: int = 50,
    target: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean model output when input ``feature`` is swept over ``grid``, others from the rows.

    Args:
        model: maps ``(N, d)`` to ``(N,)`` or ``(N, k)``.
        x_background: ``(N, d)`` background rows (array-like or tensor).
        feature: column to vary.
        grid: values for the feature (default ``n_points`` evenly spaced over its background
            range).
        n_points: grid size when ``grid`` is None (≥ 2).
        target: output column to report (default: all; a single output is squeezed).

    Returns:
        ``(grid, mean_response)`` as NumPy arrays: ``(G,)`` and ``(G,)`` (one output or
        ``target`` given) or ``(G, k)``.

    Raises:
        ValueError: bad shapes, feature index, grid, or NaN background values.
    """
    xb = _as_tensor(x_background, model)
    if xb.dim() != 2 or xb.shape[0] < 1:
        raise ValueError(f"x_background must have shape (N, d) with N ≥ 1, got {tuple(xb.shape)}")
    d = xb.shape[1]
    if int(feature) != feature or not -d <= feature < d:
        raise ValueError(f"feature must be an integer in [0, {d}), got {feature!r}")
    feature = int(feature) % d
    if bool(torch.isnan(xb).any()):
        raise ValueError("x_background contains NaN")
    if grid is None:
        if int(n_points) != n_points or n_points < 2:
            raise ValueError(f"n_points must be an integer ≥ 2, got {n_points!r}")
        col = xb[:, feature]
        g = torch.linspace(float(col.min()), float(col.max()), int(n_points), dtype=xb.dtype,
                           device=xb.device)
    else:
        g = _as_tensor(grid, model).flatten().to(xb)
        if g.numel() < 1 or not bool(torch.isfinite(g).all()):
            raise ValueError("grid must be a non-empty set of finite values")
    n = xb.shape[0]
    per_call = max(1, _MAX_ROWS // n)
    was_training = model.training if isinstance(model, nn.Module) else None
    if was_training:
        model.eval()
    means = []
    try:
        with torch.no_grad():
            for s in range(0, g.numel(), per_call):
                gs = g[s:s + per_call]
                xr = xb.unsqueeze(0).repeat(gs.numel(), 1, 1)
                xr[:, :, feature] = gs.unsqueeze(1)
                out = model(xr.reshape(-1, d))
                out = out.reshape(gs.numel(), n, -1)
                means.append(out.mean(1))
    finally:
        if was_training:
            model.train(True)
    mean = torch.cat(means).double().cpu().numpy()
    if target is not None:
        mean = mean[:, target]
    elif mean.shape[1] == 1:
        mean = mean[:, 0]
    return g.double().cpu().numpy(), mean


def per_input_responses(
    model: nn.Module | Callable[[Tensor], Tensor],
    x_background,
    feature_names: Sequence[str] | None = None,
    n_points: int = 50,
    target: int | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Partial dependence of every input: ``{name: (grid, mean_response)}`` in column order.

    ``feature_names`` defaults to ``x0, x1, …``. The range ``max − min`` of a curve is a simple
    measure of how much the model's output moves with that input.
    """
    xb = _as_tensor(x_background, model)
    if xb.dim() != 2:
        raise ValueError(f"x_background must have shape (N, d), got {tuple(xb.shape)}")
    d = xb.shape[1]
    names = [f"x{j}" for j in range(d)] if feature_names is None else list(feature_names)
    if len(names) != d:
        raise ValueError(f"{len(names)} feature names for {d} features")
    return {names[j]: partial_dependence(model, xb, j, n_points=n_points, target=target)
            for j in range(d)}


def plot_responses(
    responses: dict[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    centre: bool = True,
    panel_size: float = 2.0,
    ylabel: str = "mean model output",
    x_background=None,
) -> Path:
    """One panel per input with its response curve; save a PNG to ``path``.

    With ``centre`` each curve is shifted to mean 0 (the partial dependence is defined up to a
    constant for additive models), and all panels share the y axis so the curves' ranges can be
    compared. ``x_background`` (``(N, d)``, columns in the order of ``responses``) adds a rug of
    the data. Uses an explicit Agg canvas (no global pyplot state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not responses:
        raise ValueError("no responses to plot")
    names = list(responses)
    k = len(names)
    cols = min(k, 4)
    rows = -(-k // cols)
    fig = Figure(figsize=(panel_size * cols, panel_size * rows * 0.9), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    xb = None if x_background is None else np.asarray(
        x_background.detach().cpu() if isinstance(x_background, Tensor) else x_background)
    for j, name in enumerate(names):
        ax = axes[j // cols][j % cols]
        g, r = responses[name]
        r = np.asarray(r, dtype=float)
        if r.ndim == 1:
            r = r[:, None]
        if centre:
            r = r - r.mean(0, keepdims=True)
        for o in range(r.shape[1]):
            ax.plot(g, r[:, o], lw=1.4, label=None if r.shape[1] == 1 else f"out {o}")
        if xb is not None:
            ax.plot(xb[:, j], np.zeros(len(xb)), "|", color="0.4", ms=4, alpha=0.3,
                    transform=ax.get_xaxis_transform())
        ax.set_title(f"{name} (range {np.ptp(r, axis=0).max():.3g})", fontsize=8)
        ax.tick_params(labelsize=6)
        if j % cols == 0:
            ax.set_ylabel(ylabel + (" (centred)" if centre else ""), fontsize=7)
        if r.shape[1] > 1 and j == 0:
            ax.legend(fontsize=6)
    for j in range(k, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    return path
