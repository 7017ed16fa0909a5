"""Contribution logos for DNA: letter heights are the per-base scores.

Uses ``logomaker`` (the ``dna`` extra) when it can be imported; otherwise draws stacked coloured
bars per base so the plot still works on a minimal install. Rendering goes through an explicit
Agg canvas (no display, no global ``pyplot`` state).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

BASES = "ACGT"
# logomaker's "classic" DNA colours, reused by the fallback so both renderings read the same.
BASE_COLOURS = {"A": "#008000", "C": "#0000ff", "G": "#ffa500", "T": "#ff0000"}


def plot_contribution_logo(
    contributions: Tensor,
    path: str | Path,
    title: str | None = None,
    highlight: list[tuple[int, int]] | None = None,
) -> Path:
    """Draw a contribution logo of a ``(4, L)`` score matrix (rows A, C, G, T) to a PNG.

    Each position ``j`` shows letter ``b`` with signed height ``contributions[b, j]`` (negative
    scores hang below the axis). For actual contributions on the observed base pass
    ``onehot * projected_score``; hypothetical contributions can be drawn directly.

    Args:
        contributions: ``(4, L)`` (a leading batch dimension of 1 is accepted).
        path: output PNG file (parent folders are created).
        title: figure title.
        highlight: spans ``(start, end)``, 0-based and end-exclusive like Python slices (e.g.
            the position and length of an embedded motif), shaded in the background.
    """
    if contributions.dim() == 3 and contributions.shape[0] == 1:
        contributions = contributions[0]
    if contributions.dim() != 2 or contributions.shape[0] != 4:
        raise ValueError(
            f"contributions must be (4, L) with rows A, C, G, T, got {tuple(contributions.shape)}"
        )
    scores = contributions.detach().cpu().double().numpy()
    length = scores.shape[1]
    spans = list(highlight or [])
    for start, end in spans:
        if not 0 <= start < end <= length:
            raise ValueError(
                f"highlight span ({start}, {end}) is not a non-empty range inside 0..{length}"
            )

    width = float(np.clip(0.12 * length, 6.0, 30.0))
    fig = Figure(figsize=(width, 2.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for start, end in spans:
        # Letters occupy [j - 0.5, j + 0.5]; shade whole letters, behind everything.
        ax.axvspan(start - 0.5, end - 0.5, color="#ffd54f", alpha=0.35, zorder=0, lw=0)

    if not _draw_logomaker(ax, scores):
        _draw_bars(ax, scores)
    ax.axhline(0.0, color="0.4", lw=0.6, zorder=1)
    ax.set_xlim(-0.5, length - 0.5)
    lo, hi = (
        float(min(scores.clip(max=0).sum(axis=0).min(), 0.0)),
        float(max(scores.clip(min=0).sum(axis=0).max(), 0.0)),
    )
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("position")
    ax.set_ylabel("contribution")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def _draw_logomaker(ax: Axes, scores: np.ndarray) -> bool:
    try:
        import logomaker
        import pandas as pd
    except ImportError:
        return False
    frame = pd.DataFrame(scores.T, columns=list(BASES))
    logomaker.Logo(frame, ax=ax, color_scheme=BASE_COLOURS, zorder=2)
    return True


def _draw_bars(ax: Axes, scores: np.ndarray) -> None:
    """Fallback: per position, positive parts stacked up and negative parts down, one colour
    per base (usually only the observed base is non-zero, so this is one bar per position)."""
    x = np.arange(scores.shape[1])
    up = np.zeros(scores.shape[1])
    down = np.zeros(scores.shape[1])
    for b, base in enumerate(BASES):
        pos = scores[b].clip(min=0.0)
        neg = scores[b].clip(max=0.0)
        ax.bar(x, pos, bottom=up, width=0.9, color=BASE_COLOURS[base], zorder=2)
        ax.bar(x, neg, bottom=down, width=0.9, color=BASE_COLOURS[base], zorder=2)
        up += pos
        down += neg
    ax.legend(
        handles=[Patch(color=BASE_COLOURS[b], label=b) for b in BASES],
        ncols=4,
        fontsize=8,
        frameon=False,
        loc="upper right",
    )
