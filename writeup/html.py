"""The notes as one self-contained HTML page: the Markdown converted, every image inlined.

The conversion is Python-Markdown's (`tables` and `fenced_code`), with three additions made
through its extension hooks: every image and every link to a figure becomes a data URI, an
image alone in its paragraph becomes a `<figure>` with its caption, and the Mermaid block
becomes the PNG of the same diagram (rendering Mermaid would need JavaScript). Raw HTML in
the Markdown is escaped rather than passed through, so a value read from an artifact (a CPU
name, a method) can never add markup or a script to the page.
"""

from __future__ import annotations

import base64
import html
import re
import xml.etree.ElementTree as etree
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import markdown as markdown_lib
from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor
from markdown.treeprocessors import Treeprocessor

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

MERMAID_CAPTION = "Architecture: data flow between the stages"
EXTERNAL = re.compile(r"^(https?://|#)")
"""Link targets that stay as they are; any other target must be one of the written figures."""

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


class _MermaidAsPicture(Preprocessor):
    """Puts the architecture PNG where the ```mermaid block is, and drops the line that links
    the same picture (on the page it would show the diagram twice)."""

    def __init__(self, md: markdown_lib.Markdown, picture: str):
        super().__init__(md)
        self.picture = picture

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(lines):
            if lines[i].strip() == "```mermaid":
                end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")),
                           len(lines))
                figure = (f'<figure><img alt="Architecture: data flow" src="{self.picture}">'
                          f"<figcaption>{MERMAID_CAPTION}</figcaption></figure>")
                out.append(self.md.htmlStash.store(figure))
                i = end + 1
            elif lines[i].startswith(PICTURE_NOTE):
                i += 1
            else:
                out.append(lines[i])
                i += 1
        return out


class _InlineImages(Treeprocessor):
    """Image sources and links to figures as data URIs; a lone image as a captioned figure."""

    def __init__(self, md: markdown_lib.Markdown, images: ImageSource):
        super().__init__(md)
        self.images = images

    def run(self, root: etree.Element) -> None:
        for img in root.iter("img"):
            img.set("src", self.images(img.get("src", "")))
        for link in root.iter("a"):
            href = link.get("href", "")
            if not EXTERNAL.match(href):
                link.set("href", self.images(href))
        for p in list(root.iter("p")):
            children = list(p)
            if (len(children) == 1 and children[0].tag == "img" and not (p.text or "").strip()
                    and not (children[0].tail or "").strip()):
                img = children[0]
                p.tag = "figure"
                img.tail = None
                caption = etree.SubElement(p, "figcaption")
                caption.text = img.get("alt", "")


class _NotesExtension(Extension):
    def __init__(self, images: ImageSource, mermaid_image: str | None):
        super().__init__()
        self.images = images
        self.mermaid_image = mermaid_image

    def extendMarkdown(self, md: markdown_lib.Markdown) -> None:  # noqa: N802 (library API)
        # Raw HTML is escaped: the notes print values read from files, which must stay text.
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        if self.mermaid_image:
            # after whitespace normalisation (30), before fenced code blocks are taken (25)
            md.preprocessors.register(_MermaidAsPicture(md, self.mermaid_image), "mermaid", 28)
        # after the inline patterns (20) have made the <img> and <a> elements
        md.treeprocessors.register(_InlineImages(md, self.images), "inline_images", 15)


def markdown_to_html(markdown: str, images: ImageSource, mermaid_image: str | None) -> str:
    """The body HTML of `markdown`: GitHub-style tables and fenced code, images inlined through
    `images`, the Mermaid block replaced by `mermaid_image` when there is one."""
    converter = markdown_lib.Markdown(
        extensions=["tables", "fenced_code", _NotesExtension(images, mermaid_image)],
        output_format="html")
    return converter.convert(markdown)


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
