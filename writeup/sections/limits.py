"""Trade-offs and known limits, with what this run measured against them."""

from __future__ import annotations

from writeup.commands import Commands
from writeup.doc import Doc, is_number
from writeup.sections.common import CONFIG, CURVE, HELDOUT, SWEEP, TRAIN, join


def _plateau(doc: Doc) -> str:
    """Where the periodic held-out success peaked, and where it ended."""
    curve = doc.value(CURVE) or []
    rates = [row.get("success_rate") for row in curve]
    if len(rates) < 2 or not all(is_number(r) for r in rates):
        return ""
    best = max(range(len(rates)), key=lambda i: rates[i])
    if best == len(rates) - 1:
        return " Its held-out success was still rising when the budget ran out."
    last = len(rates) - 1
    return (f" Its periodic held-out success peaked at {doc.num(CURVE, best, 'success_rate')} "
            f"after {doc.num(CURVE, best, 'timesteps', kind='int')} steps and ended at "
            f"{doc.num(CURVE, last, 'success_rate')}: further DAgger iterations on a growing "
            "buffer did not help, and the checkpoint kept is the peak one.")


def limits(doc: Doc, cmd: Commands) -> str:
    items = [
        "Simulation only: TinyRenderer draws flat-shaded primitives without shadows, so the "
        "randomized appearance is a stand-in for real images; nothing here has met a real "
        "camera.",
        "Success needs no STOP action, which is more lenient than Habitat's rule; compare SPL "
        "with published numbers only with that in mind.",
        f"{'Continuous' if doc.value(CONFIG, 'continuous') else 'Discrete'} actions at a "
        "fixed control rate; latency randomization beyond one step is not trained for.",
        "The distillation teacher is a privileged planner with the full map; the student can "
        "only be as good as what the camera reveals of it.",
        "The colour augmentation mirrors hues about red (green and blue swapped), which maps "
        "the training colour bands onto parts of the held-out ones: held-out scenes, textures "
        "and layouts are never rendered in training, but held-out success is no test of hues "
        "the augmentation cannot produce.",
        "Timings come from small shared machines and move with background load; every "
        "benchmark table names its machine and the load when it started.",
        "The deploy loop is ROS 2-shaped (nodes, topics, messages, bags) but runs in one "
        "process on a single-threaded executor, not over DDS.",
    ]
    episodes = doc.value(HELDOUT, "episodes")
    if is_number(episodes) and not doc.has(SWEEP):
        items.insert(2, f"The held-out report rests on {doc.num(HELDOUT, 'episodes', kind='int')}"
                        " episodes of one training seed; its intervals cover episode noise, "
                        "not seed-to-seed variation.")
    test = doc.value(HELDOUT, "policy", "success_rate") if doc.has(HELDOUT) else None
    if (is_number(doc.value(TRAIN, "time_to_90pct_heldout_s")) and is_number(test)
            and test < 0.9):
        items.insert(0, "The periodic validation first read 90 % held-out success after "
                        f"{doc.num(TRAIN, 'time_to_90pct_heldout_s', kind='s')} s, but the "
                        f"kept checkpoint scores {doc.ci(HELDOUT, 'policy', 'success_rate')} on "
                        f"the {doc.num(HELDOUT, 'episodes', kind='int')} test episodes: the "
                        "validation is small and picks the checkpoint, so it reads high.")
    if doc.has(TRAIN) and not is_number(doc.value(TRAIN, "time_to_90pct_heldout_s")):
        items.insert(0, "This run never reached 90 % held-out success within its budget."
                     + _plateau(doc))
    return join("## Trade-offs and known limits", "\n".join(f"- {t}" for t in items))
