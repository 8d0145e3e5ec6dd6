"""The sections of the engineering notes, each a pure function of the collected artifacts.

One module per section; `SECTIONS` lists them in page order. Every number goes through
`Doc.num` / `Doc.ci`, which read it from its file and record it; a section whose artifact is
missing prints the command that produces it instead. Helpers the sections share (artifact
names, tables, images, the machine line) live in `writeup.sections.common`.
"""

from __future__ import annotations

from collections.abc import Callable

from writeup.commands import Commands
from writeup.doc import Doc
from writeup.sections.architecture import architecture_section
from writeup.sections.decisions import decisions
from writeup.sections.environment import environment
from writeup.sections.evaluation import evaluation
from writeup.sections.failures import failures
from writeup.sections.header import header
from writeup.sections.learning import learning
from writeup.sections.limits import limits
from writeup.sections.performance import performance
from writeup.sections.reproduce import reproduce
from writeup.sections.robustness import robustness
from writeup.sections.scaling import scaling_out
from writeup.sections.seeds import across_seeds
from writeup.sections.summary import summary
from writeup.sections.video import video

Section = Callable[[Doc, Commands], str]
"""A section: the collected artifacts and the command builder in, Markdown out."""

SECTIONS: tuple[Section, ...] = (
    header, summary, architecture_section, decisions, environment, learning, evaluation,
    across_seeds, failures, robustness, video, performance, scaling_out, limits, reproduce)
"""The notes, top to bottom."""
