"""Plots write real PNGs without a display; the HTML report is self-contained and escaped."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest
import torch

from neuron_importance.plots.dna import plot_contribution_logo
from neuron_importance.plots.images import plot_image_attributions
from neuron_importance.plots.report import write_html_report
from neuron_importance.plots.tabular import plot_feature_bars

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path, min_w: int, min_h: int, max_side: int = 5000) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), f"{path} is not a PNG"
    assert len(data) > 3000, f"{path} is suspiciously small ({len(data)} bytes)"
    # Width and height are the first fields of the IHDR chunk (bytes 16-24, big-endian).
    w = int.from_bytes(data[16:20], "big")
    h = int.from_bytes(data[20:24], "big")
    assert min_w <= w <= max_side and min_h <= h <= max_side, (w, h)


def test_image_attributions_grayscale_and_rgb(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 1, 12, 12, generator=gen)
    attrs = {
        "saliency": torch.randn(3, 1, 12, 12, generator=gen),
        "zeros": torch.zeros(3, 1, 12, 12),  # degenerate map must not crash the colour scale
    }
    out = plot_image_attributions(
        images, attrs, tmp_path / "sub" / "gray.png", titles=["a", "b", "c"], suptitle="test"
    )
    assert out == tmp_path / "sub" / "gray.png"
    _check_png(out, 400, 500)

    rgb = torch.rand(2, 3, 10, 10, generator=gen) * 4 - 2  # outside [0, 1]: rescaled for display
    out = plot_image_attributions(
        rgb, {"ig": torch.randn(2, 3, 10, 10, generator=gen)}, tmp_path / "rgb.png"
    )
    _check_png(out, 300, 300)

    with pytest.raises(ValueError, match="attributions\\['bad'\\]"):
        plot_image_attributions(images, {"bad": torch.zeros(3, 1, 11, 12)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="titles"):
        plot_image_attributions(images, attrs, tmp_path / "x.png", titles=["only one"])


def test_contribution_logo_logomaker_and_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 30, generator=gen)
    if "logomaker" in sys.modules or _importable("logomaker"):
        out = plot_contribution_logo(scores, tmp_path / "logo.png", title="t", highlight=[(3, 13)])
        _check_png(out, 500, 200)
    # Without logomaker the coloured-bar fallback draws instead.
    monkeypatch.setitem(sys.modules, "logomaker", None)
    out = plot_contribution_logo(scores, tmp_path / "bars.png", highlight=[(0, 5), (20, 30)])
    _check_png(out, 500, 200)
    with pytest.raises(ValueError, match="highlight"):
        plot_contribution_logo(scores, tmp_path / "x.png", highlight=[(25, 31)])
    with pytest.raises(ValueError, match=r"\(4, L\)"):
        plot_contribution_logo(torch.zeros(30, 4), tmp_path / "x.png")


def test_plots_leave_no_pyplot_figures(tmp_path: Path) -> None:
    # Rendering uses explicit Agg canvases: nothing may leak into pyplot's global figure list.
    plt = pytest.importorskip("matplotlib.pyplot")
    before = plt.get_fignums()
    plot_contribution_logo(torch.randn(4, 12), tmp_path / "l.png")
    plot_feature_bars(torch.randn(3), None, tmp_path / "b.png")
    plot_image_attributions(
        torch.rand(1, 1, 5, 5), {"a": torch.randn(1, 1, 5, 5)}, tmp_path / "i.png"
    )
    assert plt.get_fignums() == before


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_feature_bars(tmp_path: Path) -> None:
    names = ["variance", "skewness", "curtosis", "entropy"]
    out = plot_feature_bars(torch.tensor([0.5, -1.0, 2.0, -0.1]), names, tmp_path / "one.png", "t")
    _check_png(out, 200, 150)
    out = plot_feature_bars(torch.randn(12, 4), None, tmp_path / "many.png", title="capped")
    _check_png(out, 800, 300)
    with pytest.raises(ValueError, match="feature names"):
        plot_feature_bars(torch.zeros(4), ["a"], tmp_path / "x.png")


def test_html_report_embeds_images_and_escapes(tmp_path: Path) -> None:
    png = plot_feature_bars(torch.tensor([1.0, -1.0]), ["a", "b"], tmp_path / "bars.png")
    report = write_html_report(
        tmp_path / "out" / "report.html",
        "Scores <for> A & B",
        [
            {
                "heading": "<script>alert(1)</script>",
                "text": "x < y & z\n\nsecond paragraph",
                "images": [png],
                "table": [{"method": "<b>IG</b>", "score": 0.123456}, {"method": "DL", "n": 3}],
            },
            {"heading": "only a heading"},
        ],
    )
    html = report.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert base64.b64encode(png.read_bytes()).decode() in html  # embedded, not linked
    assert 'src="bars.png"' not in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Scores &lt;for&gt; A &amp; B" in html
    assert "x &lt; y &amp; z" in html and "<b>IG</b>" not in html
    assert "<th>method</th><th>score</th><th>n</th>" in html
    assert "0.1235" in html
    assert html.count("data:image/png;base64,") == 1

    with pytest.raises(ValueError, match="unknown keys"):
        write_html_report(tmp_path / "r.html", "t", [{"heading": "h", "image": ["x.png"]}])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        write_html_report(tmp_path / "r.html", "t", [{"heading": "h", "images": ["missing.png"]}])
