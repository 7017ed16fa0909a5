"""A single self-contained HTML report: text, tables and images embedded as base64.

Images are inlined as ``data:`` URIs so the one file can be moved, mailed or attached to a CI
run without the PNGs beside it. All text is HTML-escaped; nothing from a section is trusted as
markup.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_SECTION_KEYS = {"heading", "text", "images", "table"}

# Magic bytes -> MIME type. PNG is the expected case; the others are accepted so a stray
# JPEG/GIF/SVG figure does not need converting first.
_MIME = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #eee; padding-bottom: .2rem; }
p { white-space: pre-wrap; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .8rem; color: #666; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .3rem .6rem; text-align: left; }
th { background: #f5f5f5; }
tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
""".strip()


def _mime(path: Path, data: bytes) -> str:
    for magic, mime in _MIME:
        if data.startswith(magic):
            return mime
    if path.suffix.lower() == ".svg" and b"<svg" in data[:1000]:
        return "image/svg+xml"
    raise ValueError(f"{path} is not a PNG (nor JPEG, GIF or SVG) image")


def _image_html(path: str | Path, section: int) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"section {section}: image {path} does not exist")
    data = path.read_bytes()
    uri = f"data:{_mime(path, data)};base64,{base64.b64encode(data).decode('ascii')}"
    name = html.escape(path.name)
    return f'<figure><img src="{uri}" alt="{name}"><figcaption>{name}</figcaption></figure>'


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return f"<td>{html.escape('' if value is None else str(value))}</td>"
    if isinstance(value, float):
        return f'<td class="num">{html.escape(f"{value:.4g}")}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table_html(rows: Sequence[Mapping[str, Any]], section: int) -> str:
    if not rows:
        return ""
    columns: list[str] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(
                f"section {section}: table row {i} is a {type(row).__name__}, not a dict"
            )
        for key in row:
            if key not in columns:  # union of keys, first-seen order
                columns.append(key)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(_cell(row.get(c)) for c in columns) + "</tr>" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def write_html_report(path: str | Path, title: str, sections: list[dict]) -> Path:
    """Write a self-contained HTML report and return its path.

    Each section is a dict with keys ``heading`` (required), ``text`` (plain text, escaped;
    blank lines separate paragraphs, line breaks are kept), ``images`` (PNG paths, embedded as
    base64 ``data:`` URIs) and ``table`` (a list of dicts, one per row; the header is the union
    of their keys in first-seen order, missing cells are empty, floats shown to 4 significant
    digits). Unknown keys raise ``ValueError`` so a typo does not silently drop content.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>\n{_CSS}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for i, section in enumerate(sections):
        if not isinstance(section, Mapping):
            raise ValueError(f"section {i} is a {type(section).__name__}, not a dict")
        unknown = sorted(set(section) - _SECTION_KEYS)
        if unknown:
            raise ValueError(
                f"section {i} has unknown keys {unknown}; expected heading, text, images, table"
            )
        if "heading" not in section:
            raise ValueError(f"section {i} has no 'heading'")
        parts.append(f"<section>\n<h2>{html.escape(str(section['heading']))}</h2>")
        text = section.get("text")
        if text:
            for para in str(text).strip().split("\n\n"):
                if para.strip():
                    parts.append(f"<p>{html.escape(para.strip())}</p>")
        images = section.get("images") or []
        if isinstance(images, (str, Path)):
            images = [images]
        parts.extend(_image_html(img, i) for img in images)
        if section.get("table"):
            parts.append(_table_html(section["table"], i))
        parts.append("</section>")
    parts += ["</body>", "</html>", ""]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
