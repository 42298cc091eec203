"""Render report blocks as Markdown and as one self-contained HTML page (CSS inline, PNGs as base64).

A block is a tuple: ("h1"|"h2"|"h3"|"p"|"note", text), ("quote", text), ("table", header, rows) or
("img", file, caption). Text may use `code` and **bold**, the only Markdown the HTML side translates.
Text that must be shown verbatim (model prompts and answers) is wrapped in `Lit` (a str): Markdown escapes
every markup character in it and HTML only HTML-escapes it; a ("quote", text) block is always verbatim.
Table cells never break a Markdown table: `|` is escaped and line breaks become " ↵ "."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

CSS = """body{font-family:DejaVu Sans,Liberation Sans,Arial,sans-serif;max-width:1100px;margin:24px auto;
padding:0 16px;color:#222;line-height:1.45}h1{font-size:1.6em;border-bottom:2px solid #2a7ab9}
h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}h3{font-size:1.05em}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.9em}th,td{border:1px solid #ccc;padding:4px 8px;
text-align:left}th{background:#f0f4f8}tr:nth-child(even) td{background:#fafafa}
code{background:#f3f3f3;padding:0 3px;border-radius:3px}.note{background:#fff8e1;border-left:4px solid #e6a23c;
padding:6px 12px}figure{margin:12px 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
blockquote{margin:6px 0;padding:4px 12px;border-left:4px solid #ccc;color:#333;white-space:pre-wrap}"""


class Lit(str):
    """Text shown as is: no Markdown or inline markup is interpreted in it."""


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#+!|~])")


def md_escape(text: str) -> str:
    """Backslash-escape every Markdown markup character (literal text in a Markdown document)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def _md_cell(c) -> str:
    t = md_escape(c) if isinstance(c, Lit) else str(c).replace("|", "\\|")
    return t.replace("\r\n", "\n").replace("\n", " ↵ ")


def to_markdown(blocks: list[tuple]) -> str:
    out: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out += ["#" * int(kind[1]) + " " + b[1], ""]
        elif kind == "p":
            out += [b[1], ""]
        elif kind == "note":
            out += [f"> **Note.** {b[1]}", ""]
        elif kind == "quote":
            out += ["> " + md_escape(b[1]).replace("\r\n", "\n").replace("\n", "  \n> "), ""]
        elif kind == "table":
            out += ["| " + " | ".join(_md_cell(h) for h in b[1]) + " |", "|" + "---|" * len(b[1])]
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b[2]]
            out.append("")
        elif kind == "img":
            out += [f"![{b[2]}]({b[1]})", ""]
    return "\n".join(out)


def _inline(text: str) -> str:
    if isinstance(text, Lit):
        return html.escape(str(text), quote=False).replace("\n", "<br>")
    t = html.escape(str(text), quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)


def to_html(blocks: list[tuple], root: Path, title: str) -> str:
    """`root` is where the images named by ("img", file, caption) blocks live; they are inlined."""
    body: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{_inline(b[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "note":
            body.append(f'<p class="note"><b>Note.</b> {_inline(b[1])}</p>')
        elif kind == "quote":
            body.append(f"<blockquote>{html.escape(str(b[1]), quote=False)}</blockquote>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode((root / b[1]).read_bytes()).decode("ascii")
            body.append(
                f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{_inline(b[2])}</figcaption></figure>"
            )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
