"""`embodied writeup`: engineering notes from a run directory and the benchmark JSON files.

    data = collect(run_dir, bench_dir, sweep_dir)  # files -> one dict (nothing imported)
    figures = make_figures(data, out/"figures")  # PNGs (and the GIF) the data supports
    data = with_figures(data, figures, out)
    markdown = render_markdown(data)            # pure
    page = render_html(data, markdown)          # self-contained, images inlined

`write_writeup` does all of it and writes `ENGINEERING_NOTES.md`, `index.html` and
`figures/` atomically, by default into the run directory's `writeup/` folder; it refuses to
write the default folder where it holds files tracked by git (the committed notes are rebuilt
only when that folder is named on purpose).

`numbers(data)` maps every number the notes print to its value, keyed `<file>:<path>` (e.g.
`eval_heldout/summary.json:policy.success_rate`), so a test can check each one against its
source file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import rundir
from writeup.collect import DEFAULT_BENCH_DIR, collect, sweep_run
from writeup.commands import Commands
from writeup.doc import Doc, Printed
from writeup.figures import make_figures
from writeup.html import render_html
from writeup.sections import SECTIONS

__all__ = ["collect", "default_out_dir", "make_figures", "numbers", "printed", "render_html",
           "render_markdown", "with_figures", "write_writeup"]

MARKDOWN_NAME = "ENGINEERING_NOTES.md"
HTML_NAME = "index.html"
FIGURES_DIR = "figures"


def _document(data: Mapping[str, Any]) -> tuple[str, list[Printed]]:
    doc, cmd = Doc(data), Commands(data)
    text = "\n\n".join(section(doc, cmd) for section in SECTIONS) + "\n"
    return text, doc.printed


def render_markdown(data: Mapping[str, Any]) -> str:
    """The notes as Markdown (GitHub-flavoured: pipe tables, a Mermaid block)."""
    return _document(data)[0]


def printed(data: Mapping[str, Any]) -> list[Printed]:
    """Every value the notes print from an artifact, in page order, with its text."""
    return _document(data)[1]


def numbers(data: Mapping[str, Any]) -> dict[str, float]:
    """{`<file>:<path>`: value} of every number the notes print."""
    return {p.key: float(p.value) for p in printed(data) if not isinstance(p.value, str)}


def with_figures(data: Mapping[str, Any], figures: Mapping[str, Path],
                 out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """`data` plus `figures` ({name: link relative to `out_dir`}) and `figure_files` ({link:
    absolute path}), which the Markdown links and the HTML inlines."""
    out = Path(out_dir).resolve()
    links = {name: Path(path).resolve().relative_to(out).as_posix()
             for name, path in figures.items()}
    files = {links[name]: str(Path(path).resolve()) for name, path in figures.items()}
    return {**data, "out_dir": str(out_dir), "figures": links, "figure_files": files}


def _remove_stale(figures_dir: Path, keep: set[Path]) -> None:
    # Figures of an earlier build that this one did not make (a sweep since deleted, say)
    # would sit in the folder unlinked; only image files this module writes are removed.
    for path in figures_dir.iterdir():
        if path.suffix in (".png", ".gif") and path.resolve() not in keep:
            path.unlink()


def default_out_dir(run_dir: str | os.PathLike[str]) -> Path:
    """Where the notes of `run_dir` go unless another folder is named: `<run_dir>/writeup`."""
    return Path(run_dir) / rundir.WRITEUP_DIR


def write_writeup(run_dir: str | os.PathLike[str],
                  bench_dir: str | os.PathLike[str] = DEFAULT_BENCH_DIR,
                  out_dir: str | os.PathLike[str] | None = None,
                  sweep_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Write `ENGINEERING_NOTES.md`, `index.html` and `figures/*` into `out_dir`.

    `sweep_dir`, a folder `embodied sweep` wrote, adds its statistics across seeds. A
    `run_dir` that is itself a sweep folder (it holds sweep.json) is taken as `sweep_dir`, and
    the run the other sections describe is `writeup.collect.sweep_run`'s trial of it (a
    typical seed of the best configuration); the notes then go to `<sweep folder>/writeup`.

    `out_dir` None means `default_out_dir(run_dir)`; that default is refused where it holds
    files tracked by git, since a rebuild replaces the notes and deletes stale figures (naming
    the folder explicitly is how the committed notes are rebuilt). Figures are written first,
    then the two documents, each through a temp file and a rename, so a reader never sees a
    page that links a figure not yet there; figures of an earlier build that this one did not
    make are removed last.

    Returns:
        {"markdown": path, "html": path, <figure name>: path, ...}.

    Raises:
        FileNotFoundError: `run_dir` or `sweep_dir` is not a directory.
        rundir.RunFileError: `run_dir` holds none of a run's files; `sweep_dir` no sweep.json.
        ValueError: `out_dir` is None and the default folder holds files tracked by git.
    """
    home = run_dir  # the folder whose writeup/ is the default output
    if sweep_dir is None and (Path(run_dir) / rundir.SWEEP_FILE).is_file():
        sweep_dir, run_dir = run_dir, sweep_run(run_dir)
    if out_dir is None:
        out = default_out_dir(home)
        tracked = rundir.tracked_files(out)
        if tracked:
            raise ValueError(f"{out} holds files tracked by git ({tracked[0]}, ...) that the notes "
                             f"would replace; pass --out {out} to overwrite them on purpose, or "
                             "another --out")
    else:
        out = Path(out_dir)
    data = collect(run_dir, bench_dir, sweep_dir)
    figures = make_figures(data, out / FIGURES_DIR)
    data = with_figures(data, figures, out)
    markdown = render_markdown(data)
    page = render_html(data, markdown)
    md_path = rundir.write_text(out / MARKDOWN_NAME, markdown)
    html_path = rundir.write_text(out / HTML_NAME, page)
    # only now: until the new notes are in place, the old ones may still link these
    _remove_stale(out / FIGURES_DIR, {p.resolve() for p in figures.values()})
    return {"markdown": md_path, "html": html_path, **figures}
