"""Horizontal bar charts of per-feature attributions (tabular models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

POSITIVE = "#d62728"  # red, as in the RdBu_r image heatmaps
NEGATIVE = "#1f77b4"  # blue
MAX_PANELS = 8


def plot_feature_bars(
    attributions: Tensor,
    feature_names: list[str] | None,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Draw per-feature attributions as horizontal bars (positive red, negative blue) to a PNG.

    Args:
        attributions: ``(F,)`` for one panel, or ``(N, F)`` for one panel per row, side by side
            with a shared feature axis and a shared symmetric x-range so bars compare across
            panels. At most the first 8 rows are drawn (the title says so when rows are cut).
        feature_names: ``F`` names, top to bottom; ``None`` gives ``x0, x1, ...``.
        path: output PNG file (parent folders are created).
        title: figure title.
    """
    values = attributions.detach().cpu().double().numpy()
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2:
        raise ValueError(f"attributions must be (F,) or (N, F), got {tuple(attributions.shape)}")
    n_rows, n_features = values.shape
    if n_rows == 0 or n_features == 0:
        raise ValueError(f"nothing to plot: attributions have shape {tuple(attributions.shape)}")
    names = (
        list(feature_names) if feature_names is not None else [f"x{i}" for i in range(n_features)]
    )
    if len(names) != n_features:
        raise ValueError(f"got {len(names)} feature names for {n_features} features")
    shown = values[:MAX_PANELS]

    # Panels wrap after 4 per line so 8 panels read as a 2 x 4 grid rather than a thin strip.
    ncols = min(len(shown), 4)
    nrows = -(-len(shown) // ncols)
    panel_height = float(np.clip(0.28 * n_features + 1.2, 2.2, 20.0))
    fig = Figure(figsize=(1.2 + 3.0 * ncols, panel_height * nrows + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    limit = float(np.abs(shown[np.isfinite(shown)]).max(initial=0.0)) or 1.0
    y = np.arange(n_features)
    for i, (ax, row) in enumerate(zip(axes, shown)):
        colours = [POSITIVE if v >= 0 else NEGATIVE for v in row]
        ax.barh(y, row, color=colours, height=0.75)
        ax.axvline(0.0, color="0.3", lw=0.8)
        ax.set_xlim(-1.08 * limit, 1.08 * limit)
        ax.grid(axis="x", color="0.9", lw=0.6)
        ax.set_axisbelow(True)
        if n_rows > 1:
            ax.set_title(f"row {i}", fontsize=10)
        ax.set_xlabel("attribution")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[0].set_yticks(y, names, fontsize=9 if n_features <= 30 else 6)
    axes[0].invert_yaxis()  # first feature on top; sharey applies it to every panel
    full_title = title or ""
    if n_rows > MAX_PANELS:
        full_title += f"{' ' if full_title else ''}(first {MAX_PANELS} of {n_rows} rows)"
    if full_title:
        fig.suptitle(full_title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path
