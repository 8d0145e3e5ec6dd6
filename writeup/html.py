"""The notes as one self-contained HTML page: the Markdown converted, every image inlined.

Only the Markdown that `writeup.sections` writes is converted (headings, paragraphs, pipe
tables, bullet lists, fenced code, images, links, inline code, bold and italics), which keeps
the page free of any script or outside dependency. The Mermaid block becomes the PNG of the
same diagram, because rendering Mermaid would need JavaScript.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from writeup.architecture import PICTURE_NOTE

MIME = {".png": "image/png", ".gif": "image/gif", ".svg": "image/svg+xml",
        ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

CSS = """
body { font: 15px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       max-width: 1100px; margin: 2rem auto; padding: 0 1.2rem; background: #fff; }
h1 { font-size: 1.8rem; border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
h2 { font-size: 1.35rem; margin-top: 2.2rem; border-bottom: 1px solid #eee; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; }
th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fbfcfd; }
code { background: #f3f4f6; padding: .05rem .3rem; border-radius: 4px; font-size: .88em; }
pre { background: #f6f8fa; padding: .8rem 1rem; overflow-x: auto; border-radius: 6px; }
pre code { background: none; padding: 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figure { margin: 1rem 0; }
figcaption { color: #555; font-size: .85rem; }
em { color: #444; }
"""

_CODE = re.compile(r"`([^`]*)`")
_IMAGE_LINE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)$")
_INLINE_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])_(.+?)_(?![\w*])")

ImageSource = Callable[[str], str]
"""Turns a link from the Markdown into the data URI of the file behind it."""


def data_uri(path: str | Path) -> str:
    """`data:<mime>;base64,...` of an image file."""
    path = Path(path)
    mime = MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"{path}: not an image type the notes embed ({sorted(MIME)})")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def image_source(figure_files: Mapping[str, str]) -> ImageSource:
    """An `ImageSource` over {Markdown link: file path}; unknown links are an error, since a
    page that loads a file from elsewhere is no longer self-contained."""
    def source(link: str) -> str:
        if link not in figure_files:
            raise ValueError(f"image {link!r} is not one of the figures written with the notes")
        return data_uri(figure_files[link])
    return source


def _inline(text: str, images: ImageSource) -> str:
    """Inline Markdown of one line -> HTML. Code spans are set aside first, so that nothing
    inside them is formatted and emphasis may run across them."""
    codes: list[str] = []

    def keep(m: re.Match[str]) -> str:
        codes.append(f"<code>{html.escape(m[1])}</code>")
        return f"\x00{len(codes) - 1}\x00"

    out = html.escape(_CODE.sub(keep, text), quote=False)
    out = _INLINE_IMAGE.sub(
        lambda m: f'<img alt="{html.escape(m[1])}" src="{images(m[2])}">', out)
    out = _LINK.sub(lambda m: _link(m[1], m[2], images), out)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    out = _ITALIC.sub(r"<em>\1</em>", out)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m[1])], out)


def _link(text: str, target: str, images: ImageSource) -> str:
    # A link to one of the figures is embedded too, so the page never points at a local file.
    href = target if re.match(r"^(https?://|#)", target) else images(target)
    return f'<a href="{html.escape(href)}">{text}</a>'


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(lines: list[str], images: ImageSource) -> str:
    head = "".join(f"<th>{_inline(c, images)}</th>" for c in _cells(lines[0]))
    body = "".join("<tr>" + "".join(f"<td>{_inline(c, images)}</td>" for c in _cells(row))
                   + "</tr>" for row in lines[2:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _code(lang: str, body: list[str], mermaid_image: str | None) -> str:
    if lang == "mermaid" and mermaid_image:
        return (f'<figure><img alt="Architecture: data flow" src="{mermaid_image}">'
                "<figcaption>Architecture: data flow between the stages</figcaption></figure>")
    return f"<pre><code>{html.escape(chr(10).join(body))}</code></pre>"


def markdown_to_html(markdown: str, images: ImageSource, mermaid_image: str | None) -> str:
    """The body HTML of the Markdown subset the notes use."""
    lines = markdown.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")),
                       len(lines))
            out.append(_code(line[3:].strip(), lines[i + 1:end], mermaid_image))
            i = end + 1
        elif m := re.match(r"^(#{1,6}) (.*)$", line):
            level = len(m[1])
            out.append(f"<h{level}>{_inline(m[2], images)}</h{level}>")
            i += 1
        elif line.startswith("|"):
            end = next((j for j in range(i, len(lines)) if not lines[j].startswith("|")),
                       len(lines))
            out.append(_table(lines[i:end], images))
            i = end
        elif line.startswith("- "):
            end = next((j for j in range(i, len(lines)) if not lines[j].startswith("- ")),
                       len(lines))
            out.append("<ul>" + "".join(f"<li>{_inline(x[2:], images)}</li>"
                                        for x in lines[i:end]) + "</ul>")
            i = end
        elif m := _IMAGE_LINE.match(line.strip()):
            out.append(f'<figure><img alt="{html.escape(m[1])}" src="{images(m[2])}">'
                       f"<figcaption>{html.escape(m[1])}</figcaption></figure>")
            i += 1
        elif not line.strip() or (mermaid_image and line.startswith(PICTURE_NOTE)):
            i += 1
        else:
            end = next((j for j in range(i + 1, len(lines)) if not lines[j].strip()
                        or lines[j].startswith(("```", "#", "|", "- "))), len(lines))
            out.append("<p>" + _inline(" ".join(lines[i:end]), images) + "</p>")
            i = end
    return "\n".join(out)


def render_html(data: Mapping[str, Any], markdown: str) -> str:
    """A self-contained page of `markdown`: images from `data["figure_files"]` inlined as
    data URIs, the Mermaid block replaced by the architecture PNG, CSS in the page.

    Raises:
        ValueError: the Markdown links an image that is not among the written figures.
    """
    figure_files = data.get("figure_files") or {}
    images = image_source(figure_files)
    arch_link = (data.get("figures") or {}).get("architecture")
    mermaid_image = images(arch_link) if arch_link else None
    body = markdown_to_html(markdown, images, mermaid_image)
    title = next((ln[2:] for ln in markdown.splitlines() if ln.startswith("# ")),
                 "Engineering notes")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")
