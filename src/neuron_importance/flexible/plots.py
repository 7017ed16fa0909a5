"""Plot every learned 1-D function of a GP-activation bank or KST network (like pykan's plot).

Each panel shows the curve over the control range plus a margin on both sides (shaded: the
extrapolated part), with the control points ``(X_c, y_c)`` marked. Drawing uses an explicit
Agg canvas (no display, no global pyplot state); matplotlib is imported only when plotting.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from .gp_activation import GPActivation
from .kst import KSTNetwork


def _panel(ax, bank: GPActivation, edge: int, xs, ys, title: str, colour: str) -> None:
    c = bank.control_points.detach().cpu().numpy()
    yc = bank.values.detach()[edge].cpu().numpy()
    ax.axvspan(xs[0], c[0], color="0.93", lw=0)
    ax.axvspan(c[-1], xs[-1], color="0.93", lw=0)
    ax.plot(xs, ys[:, edge], color=colour, lw=1.4)
    ax.plot(c, yc, "o", ms=3.5, mfc="white", mec="k", mew=0.8)
    ax.set_title(title, fontsize=7, pad=2)
    ax.tick_params(labelsize=5, length=2, pad=1)
    ax.set_xlim(xs[0], xs[-1])


def _curves(bank: GPActivation, margin: float, n_points: int):
    c = bank.control_points.detach()
    lo, hi = float(c[0]), float(c[-1])
    pad = margin * (hi - lo)
    xs = torch.linspace(lo - pad, hi + pad, n_points, dtype=bank.values.dtype)
    was_training = bank.training
    bank.eval()
    try:
        ys = bank.evaluate(xs).cpu().numpy()
    finally:
        bank.train(was_training)
    return xs.numpy(), ys


def plot_learned_functions(
    layer_or_model: nn.Module,
    path: str | Path,
    margin: float = 0.25,
    n_points: int = 200,
    panel_size: float = 1.3,
    input_names: list[str] | None = None,
) -> Path:
    """Draw one small plot per learned function and save a PNG to ``path``.

    Args:
        layer_or_model: a :class:`GPActivation` (panels in a near-square grid, edge ``e`` in
            reading order) or a :class:`KSTNetwork` (row ``q`` = hidden sum ``q``: the inner
            functions ``φ_{q,p}`` in the first ``n`` columns, the outer functions ``Φ_{o,q}``,
            in another colour, in the last ``n_outputs`` columns).
        path: the PNG to write (parent folders are created).
        margin: extra range on each side, as a fraction of the control range (shaded).
        n_points: points per curve.
        panel_size: inches per panel.
        input_names: labels of the inputs for a KST network (default ``x1 … xn``).

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(layer_or_model, KSTNetwork):
        m = layer_or_model
        names = input_names or [f"x{p + 1}" for p in range(m.n_inputs)]
        if len(names) != m.n_inputs:
            raise ValueError(f"input_names has {len(names)} names for {m.n_inputs} inputs")
        rows, cols = m.width, m.n_inputs + m.n_outputs
        fig = Figure(figsize=(panel_size * cols, panel_size * 0.85 * rows + 0.4))
        FigureCanvasAgg(fig)
        axes = fig.subplots(rows, cols, squeeze=False)
        xi, yi = _curves(m.inner, margin, n_points)
        xo, yo = _curves(m.outer, margin, n_points)
        for q in range(rows):
            for p in range(m.n_inputs):
                _panel(axes[q][p], m.inner, q * m.n_inputs + p, xi, yi,
                       f"φ[{q + 1},{p + 1}]({names[p]})", "C0")
            for o in range(m.n_outputs):
                _panel(axes[q][m.n_inputs + o], m.outer, o * m.width + q, xo, yo,
                       f"Φ[{o + 1},{q + 1}](z{q + 1})", "C3")
        fig.suptitle(f"KST {m.n_inputs}→{m.width}→{m.n_outputs}: inner φ (blue), outer Φ (red)",
                     fontsize=8)
    elif isinstance(layer_or_model, GPActivation):
        bank = layer_or_model
        cols = math.ceil(math.sqrt(bank.n_edges))
        rows = math.ceil(bank.n_edges / cols)
        fig = Figure(figsize=(panel_size * cols, panel_size * 0.85 * rows + 0.4))
        FigureCanvasAgg(fig)
        axes = fig.subplots(rows, cols, squeeze=False)
        xs, ys = _curves(bank, margin, n_points)
        for e in range(rows * cols):
            ax = axes[e // cols][e % cols]
            if e >= bank.n_edges:
                ax.set_axis_off()
                continue
            _panel(ax, bank, e, xs, ys, f"edge {e}", "C0")
        fig.suptitle(f"GP activations ({bank.n_edges} edges)", fontsize=8)
    else:
        raise TypeError("plot_learned_functions takes a GPActivation or a KSTNetwork, got "
                        f"{type(layer_or_model).__name__}")
    fig.tight_layout(pad=0.4)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110)
    return path
