"""Image attribution heatmaps: one row per example, one column per method.

Drawing goes through ``matplotlib.figure.Figure`` with an explicit Agg canvas rather than
``pyplot``: it never needs a display, never touches the global backend of a user's session
(e.g. Jupyter), and keeps no global figure state between calls.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

# Diverging, white at zero, red = positive (same convention as the bar and logo plots).
CMAP = "RdBu_r"
# Per-panel colour limit: this percentile of |attribution|, so one extreme pixel does not wash
# out the rest of the map (values beyond it saturate).
PERCENTILE = 99.0


def _to_numpy(t: Tensor) -> np.ndarray:
    # float64 on the CPU whatever came in (bfloat16/half have no numpy equivalent).
    return t.detach().cpu().double().numpy()


def _display_image(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) -> something imshow can draw, plus a colormap (None for RGB)."""
    if img.shape[0] == 3:
        rgb = np.moveaxis(img, 0, -1)
        lo, hi = float(rgb.min()), float(rgb.max())
        if lo < 0.0 or hi > 1.0:  # e.g. a normalised input: rescale for display only
            rgb = (rgb - lo) / (hi - lo) if hi > lo else np.zeros_like(rgb)
        return rgb, None
    return img.mean(axis=0), "gray"


def _grey(img: np.ndarray) -> np.ndarray:
    g = img.mean(axis=0)
    lo, hi = float(g.min()), float(g.max())
    return (g - lo) / (hi - lo) if hi > lo else np.zeros_like(g)


def symmetric_limit(values: np.ndarray, percentile: float = PERCENTILE) -> float:
    """``percentile`` of ``|values|``, falling back to the max (and to 1 for an all-zero map)."""
    mag = np.abs(values[np.isfinite(values)])
    if mag.size == 0:
        return 1.0
    vmax = float(np.percentile(mag, percentile))
    if vmax <= 0.0:
        vmax = float(mag.max())
    return vmax if vmax > 0.0 else 1.0


def plot_image_attributions(
    images: Tensor,
    attributions: Mapping[str, Tensor],
    path: str | Path,
    titles: list[str] | None = None,
    suptitle: str | None = None,
) -> Path:
    """Draw images and their attribution maps to a PNG; return its path.

    Row ``i`` shows example ``i``: first the image (greyscale for one channel, RGB for three,
    the channel mean otherwise), then for every method the attribution summed over channels,
    ``a[h, w] = Σ_c A[c, h, w]``, as a heatmap with colormap ``RdBu_r`` centred at zero with
    symmetric limits ``±(99th percentile of |a|)`` per panel, overlaid on the faint image.

    Args:
        images: ``(N, C, H, W)``.
        attributions: method name -> ``(N, C', H, W)`` (or ``(N, H, W)``) attributions.
        path: output PNG file (parent folders are created).
        titles: one label per example (e.g. "label 8, pred 3"), shown left of each row.
        suptitle: a title for the whole figure.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    maps: dict[str, np.ndarray] = {}
    for name, attr in attributions.items():
        if attr.dim() == 3:
            attr = attr.unsqueeze(1)
        if attr.dim() != 4 or attr.shape[0] != n or tuple(attr.shape[2:]) != (h, w):
            raise ValueError(
                f"attributions[{name!r}] has shape {tuple(attr.shape)}; expected (N, C, H, W) "
                f"with N={n}, H={h}, W={w} to match the images"
            )
        maps[name] = _to_numpy(attr).sum(axis=1)
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {len(titles)} titles for {n} images")
    imgs = _to_numpy(images)

    ncols = 1 + len(maps)
    fig = Figure(
        figsize=(2.6 * ncols, 2.4 * n + (0.5 if suptitle else 0.0) + 0.3), layout="constrained"
    )
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(n, ncols, squeeze=False))
    for i in range(n):
        disp, cmap = _display_image(imgs[i])
        ax = axes[i, 0]
        ax.imshow(disp, cmap=cmap, interpolation="nearest")
        if i == 0:
            ax.set_title("input", fontsize=10)
        if titles is not None:
            ax.set_ylabel(titles[i], fontsize=9)
        grey = _grey(imgs[i])
        for j, (name, amap) in enumerate(maps.items(), start=1):
            ax = axes[i, j]
            vmax = symmetric_limit(amap[i])
            # Faint image underneath so the heatmap can be read against the digit/object.
            ax.imshow(grey, cmap="gray", alpha=0.35, interpolation="nearest")
            im = ax.imshow(
                amap[i], cmap=CMAP, vmin=-vmax, vmax=vmax, alpha=0.8, interpolation="nearest"
            )
            cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, ticks=[-vmax, 0.0, vmax])
            cbar.ax.tick_params(labelsize=7)
            cbar.ax.set_yticklabels([f"{-vmax:.2g}", "0", f"{vmax:.2g}"])
            if i == 0:
                ax.set_title(name, fontsize=10)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if suptitle:
        fig.suptitle(suptitle)
    note = (
        "attribution summed over channels; red > 0 > blue; colour limits "
        f"±{PERCENTILE:g}th percentile of |attribution| per panel"
    )
    # supxlabel takes part in constrained layout (fig.text does not); wrap to the figure width
    # (about 15 characters per inch at 8 pt) so narrow figures do not clip it.
    width_chars = max(30, int(fig.get_figwidth() * 15))
    fig.supxlabel(textwrap.fill(note, width_chars), fontsize=8, color="0.3")
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path
