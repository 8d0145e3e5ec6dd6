"""Numbers with their sources: every figure the notes print is looked up and recorded here.

A `Doc` wraps the collected artifacts (see `writeup.collect`). Sections ask it for a value by
file and path, e.g. `doc.num("eval_heldout/summary.json", "policy", "spl")`; it returns the
formatted text and records `(key, value, text)` with the key
`"eval_heldout/summary.json:policy.spl"`. A value that is absent is printed as `n/a` and not
recorded, so no number reaches the page without a file behind it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PathPart = str | int

FORMATS: dict[str, str] = {
    "rate": "{:.2f}",      # success, SPL, fractions in [0, 1]
    "ratio": "{:.2f}",     # dimensionless ratios (env / bound, SPL / oracle SPL, speed-ups)
    "metric": "{:.2f}",    # evaluation means and intervals (collisions, steps, return)
    "per_s": "{:,.0f}",    # throughputs (steps/s, frames/s)
    "s": "{:,.1f}",        # wall-clock seconds
    "ms": "{:.3f}",        # latencies and jitter
    "pct": "{:.2f}",       # values that are already percentages
    "mb": "{:.2f}",        # memory
    "load": "{:.2f}",      # 1-minute load average
    "sci": "{:.2e}",       # tiny differences (export parity)
    "ns": "{:,.0f}",       # micro- and nanosecond costs (per frame, per filled pixel)
    "rate3": "{:.3f}",     # fractions whose third decimal matters (contact-flag agreement)
    "g": "{:g}",           # config values, shown as written
}
"""Format of each kind of number; `int` is handled apart (thousands separators, no decimals)."""

NA = "n/a"


@dataclass(frozen=True)
class Printed:
    """One value printed in the notes: where it came from, what it is, how it reads."""

    key: str
    """`<file>:<path>`, e.g. `bench_env.json:resolutions[1].env_steps_per_s`."""
    value: float | str
    text: str


def path_text(path: tuple[PathPart, ...]) -> str:
    """`("rows", 0, "spl")` -> `"rows[0].spl"`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            if "." in part or "[" in part:
                raise ValueError(f"key {part!r} cannot be written in a dotted path")
            out += f".{part}" if out else part
    return out


def lookup(content: Any, path: tuple[PathPart, ...]) -> Any:
    """The value at `path` inside parsed JSON/YAML, or None where the path does not exist."""
    node = content
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                return None
        elif not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def is_number(value: Any) -> bool:
    """A finite int or float (bools and NaN are not numbers to print)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def format_number(value: float, kind: str) -> str:
    """`value` as the tables print it (`kind` from `FORMATS`, or `int`)."""
    if kind == "int":
        if float(value).is_integer():
            return f"{int(value):,d}"
        return f"{value:,.1f}"
    return FORMATS[kind].format(value)


def _key(file: str, path: tuple[PathPart, ...]) -> str | None:
    """`<file>:<path>`, or None for a path that cannot be written (its value is not printed)."""
    try:
        return f"{file}:{path_text(path)}"
    except ValueError:
        return None


@dataclass
class Doc:
    """The collected artifacts plus the record of every value printed from them."""

    data: Mapping[str, Any]
    printed: list[Printed] = field(default_factory=list)

    def has(self, file: str) -> bool:
        return file in self.data.get("files", {})

    def value(self, file: str, *path: PathPart) -> Any:
        """The raw value at `path` in `file` (None when the file or the path is absent)."""
        content = self.data.get("files", {}).get(file)
        return None if content is None else lookup(content, path)

    def records(self, file: str, *path: PathPart) -> list[tuple[int, Mapping[str, Any]]]:
        """(index, row) of each mapping in the list at `path`; anything else is skipped, so a
        file written in another shape prints fewer rows instead of failing."""
        rows = self.value(file, *path)
        if not isinstance(rows, list):
            return []
        return [(i, r) for i, r in enumerate(rows) if isinstance(r, Mapping)]

    def keys(self, file: str, *path: PathPart) -> list[str]:
        """The keys of the mapping at `path` ([] where there is none)."""
        node = self.value(file, *path)
        return [str(k) for k in node] if isinstance(node, Mapping) else []

    def num(self, file: str, *path: PathPart, kind: str = "rate") -> str:
        """The formatted number at `path` in `file`, recorded; `n/a` when there is none."""
        value = self.value(file, *path)
        key = _key(file, path)
        if not is_number(value) or key is None:
            return NA
        text = format_number(value, kind)
        self.printed.append(Printed(key, value, text))
        return text

    def text(self, file: str, *path: PathPart) -> str:
        """A string value (a method name, a CPU model) from `file`, recorded; `n/a` if absent."""
        value = self.value(file, *path)
        key = _key(file, path)
        if value is None or isinstance(value, (Mapping, list)) or key is None:
            return NA
        # a pipe or a line break inside a value would split a table row
        text = " ".join(str(value).replace("|", "/").split())
        self.printed.append(Printed(key, str(value), text))
        return text

    def ci(self, file: str, *path: PathPart, kind: str = "metric") -> str:
        """`mean [lo, hi]` of a metric stored as `<name>` and `<name>_ci95` beside it."""
        *parent, name = path
        mean = self.num(file, *path, kind=kind)
        if mean == NA:
            return NA
        interval = self.value(file, *parent, f"{name}_ci95")
        if not isinstance(interval, list) or len(interval) != 2 or not all(
                is_number(v) for v in interval):
            return mean
        lo = self.num(file, *parent, f"{name}_ci95", 0, kind=kind)
        hi = self.num(file, *parent, f"{name}_ci95", 1, kind=kind)
        return f"{mean} [{lo}, {hi}]"
