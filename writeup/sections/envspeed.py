"""Performance, "Where an env step's time goes": the per-part breakdown of a step, the env beside
the bare PyBullet scene, the physics rate's contact agreement and the gap to Miniworld, from
bench_env.json (`embodied bench env`; the measurements are described in eval/bench_env.py and
eval/bench_render.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from writeup.commands import Commands, fill
from writeup.doc import NA, Doc, format_number, is_number
from writeup.sections.common import B_ENV, CONFIG, degree_range, join, table

HEAD = "### Where an env step's time goes"
PART_NOTES = {
    "render": "the onboard camera's TinyRenderer frame",
    "drive": "physics: the control period's solver steps and the contact check",
    "noise": "camera imperfections applied to the frame",
    "geodesic": "distance-to-goal lookup for the reward",
    "reset": "resets (new world; their renders count as render), spread over the steps",
    "other": "the rest of a step: action, reward, info, Python",
}
"""What each part of `breakdown.parts_ms` times (eval/bench_env.py's PARTS)."""
TARGET_RESOLUTION = 64
"""The camera size `targets.steps_per_s_64` is set for."""


def env_speed(doc: Doc, cmd: Commands) -> str | None:
    """The subsection; None without bench_env.json (the throughput part names its command)."""
    if not doc.has(B_ENV):
        return None
    breakdown, bare, physics, gap = (_breakdown(doc), _bare_scene(doc), _physics(doc),
                                     _miniworld(doc))
    rate = _rate_at_target(doc)
    if not any((breakdown, bare, physics, gap)):
        return join(HEAD, rate, f"`{B_ENV}` holds no step breakdown, bare-scene comparison, "
                    "physics-rate or Miniworld figures (it was written before them). "
                    + fill(cmd.bench_cmd("env")))
    return join(HEAD, breakdown, bare, _lens(doc), rate, physics, gap)


def _verdict(doc: Doc, value: Any, target_key: str, at_least: bool,
             kind: str = "ratio") -> str:
    """` (target ≥ x: ok)` / ` (target ≤ x: miss)`, or "" where the value or target is absent."""
    target = doc.value(B_ENV, "targets", target_key)
    if not is_number(value) or not is_number(target):
        return ""
    ok = value >= target if at_least else value <= target
    return (f" (target {'≥' if at_least else '≤'} "
            f"{doc.num(B_ENV, 'targets', target_key, kind=kind)}: {'ok' if ok else 'miss'})")


def _breakdown(doc: Doc) -> str | None:
    b = ("breakdown",)
    step = doc.value(B_ENV, *b, "step_ms")
    names = doc.keys(B_ENV, *b, "parts_ms")
    if not is_number(step) or step <= 0 or not names:
        return None
    rows = []
    for name in names:
        ms = doc.value(B_ENV, *b, "parts_ms", name)
        rows.append([name, PART_NOTES.get(name, ""),
                     doc.num(B_ENV, *b, "parts_ms", name, kind="ms"),
                     format_number(ms / step, "rate") if is_number(ms) else NA])
    rows.append(["whole step", "", doc.num(B_ENV, *b, "step_ms", kind="ms"), ""])
    share = doc.value(B_ENV, *b, "non_render_fraction")
    outside = None
    if is_number(share):
        outside = (f"Outside the renderer: {doc.num(B_ENV, *b, 'non_render_fraction')} of the "
                   f"step{_verdict(doc, share, 'non_render_fraction', at_least=False)}")
        if is_number(doc.value(B_ENV, *b, "non_render_fraction_without_rebuilds")):
            outside += (", " + doc.num(B_ENV, *b, "non_render_fraction_without_rebuilds")
                        + " without the resets' world rebuilds")
        outside += "."
    return join(
        f"Exclusive time per part of a step, over {doc.num(B_ENV, *b, 'steps', kind='int')} "
        f"steps of a fixed action cycle with {doc.num(B_ENV, *b, 'resets', kind='int')} resets "
        "among them, timed by wrapping the env's own methods (a call nested in another counts "
        "for its own part only). The share column is computed here from the ms columns.",
        table(["part", "what it times", "ms per step", "share of the step"], rows), outside)


def _bare_scene(doc: Doc) -> str | None:
    s = ("bare_scene",)
    if not isinstance(doc.value(B_ENV, *s), Mapping):
        return None
    rows = [["the env", doc.num(B_ENV, *s, "env_steps_per_s", kind="per_s")],
            ["bare PyBullet scene", doc.num(B_ENV, *s, "bare_steps_per_s", kind="per_s")],
            ["the env's camera rendering alone (frames/s)",
             doc.num(B_ENV, *s, "env_render_fps", kind="per_s")]]
    ratio = doc.value(B_ENV, *s, "env_vs_bare")
    scene = doc.value(B_ENV, *s, "scene")
    return join(
        "The env beside a bare PyBullet scene that has none of its randomization, image noise, "
        "planner or info, timed in alternating blocks so that both see the same background "
        "load (on a shared machine the ratio is steadier than either figure):",
        table(["measured side by side", "steps/s"], rows),
        f"Env / bare: {doc.num(B_ENV, *s, 'env_vs_bare', kind='ratio')}"
        f"{_verdict(doc, ratio, 'env_vs_bare', at_least=True)}.",
        doc.text(B_ENV, *s, "scene") if isinstance(scene, str) else None)


def _lens(doc: Doc) -> str | None:
    """What the camera's field of view costs a step: today's against the narrower one."""
    s = ("lens",)
    wide, narrow = (degree_range(doc, B_ENV, *s, key) for key in ("fov_deg", "narrow_fov_deg"))
    if wide is None or narrow is None:
        return None
    return (f"The lens: with the camera's field of view drawn from {wide} the env steps "
            f"{doc.num(B_ENV, *s, 'env_steps_per_s', kind='per_s')} times a second, with the "
            f"{narrow} it replaced "
            f"{doc.num(B_ENV, *s, 'narrow_env_steps_per_s', kind='per_s')} "
            f"({doc.num(B_ENV, *s, 'env_vs_narrow', kind='ratio')}), the same scenes side by "
            f"side; rendering alone {doc.num(B_ENV, *s, 'render_fps', kind='per_s')} against "
            f"{doc.num(B_ENV, *s, 'narrow_render_fps', kind='per_s')} frames/s.")


def _rate_at_target(doc: Doc) -> str | None:
    hits = [i for i, r in doc.records(B_ENV, "resolutions")
            if r.get("resolution") == TARGET_RESOLUTION]
    if not hits or not is_number(doc.value(B_ENV, "targets", "steps_per_s_64")):
        return None
    row = ("resolutions", hits[0])
    rate = doc.value(B_ENV, *row, "env_steps_per_s")
    text = (f"At {doc.num(B_ENV, *row, 'resolution', kind='int')} px the env steps "
            f"{doc.num(B_ENV, *row, 'env_steps_per_s', kind='per_s')} times a second in the "
            f"throughput table above{_verdict(doc, rate, 'steps_per_s_64', True, 'per_s')}.")
    if is_number(doc.value(B_ENV, "bare_scene", "env_steps_per_s")):
        text += (" The side-by-side run measured "
                 f"{doc.num(B_ENV, 'bare_scene', 'env_steps_per_s', kind='per_s')}: the "
                 "machine's load moves absolute figures between runs.")
    return text


def _physics(doc: Doc) -> str | None:
    p = ("physics_rates",)
    records = doc.records(B_ENV, *p, "rates")
    if not records:
        return None
    own = doc.value(CONFIG, "env", "physics_hz")
    rows = []
    for i, r in records:
        def n(key: str, kind: str, i: int = i) -> str:
            return doc.num(B_ENV, *p, "rates", i, key, kind=kind)
        hz = n("physics_hz", "g")
        if is_number(own) and r.get("physics_hz") == own:
            hz += " (this run)"
        rows.append([hz, n("substeps", "int"), n("flag_agreement", "rate3"),
                     n("collision_rate", "rate3"), n("mean_position_diff_mm", "metric"),
                     n("max_position_diff_mm", "metric"), n("mean_penetration_mm", "metric")])
    ref = ("reference",)
    reference = None
    if isinstance(doc.value(B_ENV, *p, *ref), Mapping):
        reference = (f"Reference: {doc.text(B_ENV, *p, *ref, 'drive')}; it collides in "
                     f"{doc.num(B_ENV, *p, *ref, 'collision_rate', kind='rate3')} of the steps, "
                     f"{doc.num(B_ENV, *p, *ref, 'mean_penetration_mm', kind='metric')} mm deep "
                     "on average when it does.")
    return join(
        "**Physics rate.** One control step from the same saved states, "
        f"{doc.num(B_ENV, *p, 'samples', kind='int')} times along random-action rollouts that "
        "often hit walls, driven by the reference and by the env's drive (one velocity per "
        "control step, the solver steps in one call) at each solver rate. Agreement is how "
        "often the two agree on whether the robot collided.",
        table(["solver rate (Hz)", "solver steps per control step", "collision-flag agreement",
               "collision rate", "end position off, mean (mm)", "end position off, max (mm)",
               "penetration in contact, mean (mm)"], rows), reference)


def _miniworld(doc: Doc) -> str | None:
    g = ("miniworld_gap",)
    if not isinstance(doc.value(B_ENV, *g), Mapping):
        return None

    def n(*path: str | int, kind: str) -> str:
        return doc.num(B_ENV, *g, *path, kind=kind)

    where = (f"Farama Miniworld (OpenGL through Mesa llvmpipe, random actions, resets "
             f"included) stepped {n('miniworld_steps_per_s', 0, kind='per_s')}–"
             f"{n('miniworld_steps_per_s', 1, kind='per_s')} times a second and the bare scene "
             f"{n('bare_scene_cited_steps_per_s', kind='per_s')} in the cited runs. Source: "
             f"{doc.text(B_ENV, *g, 'source')}. With this run's env / bare ratio "
             f"({doc.num(B_ENV, 'bare_scene', 'env_vs_bare', kind='ratio')}) the env would step "
             f"{n('env_equivalent_steps_per_s', kind='per_s')} times a second in those runs: "
             f"{n('env_vs_miniworld', 0, kind='ratio')}× Miniworld's fastest figure and "
             f"{n('env_vs_miniworld', 1, kind='ratio')}× its slowest.")
    step, target = doc.value(B_ENV, *g, "step_ms"), doc.value(B_ENV, *g, "target_step_ms")
    if is_number(step) and is_number(target) and target >= step:
        passing = "The env already matches Miniworld's fastest figure: no faster render is needed."
    elif not is_number(doc.value(B_ENV, *g, "needed_ns_per_filled_pixel")):
        passing = (f"Passing Miniworld's fastest figure needs a step of "
                   f"{n('target_step_ms', kind='ms')} ms, less than the step's other parts "
                   f"({n('non_render_ms', kind='ms')} ms) and an empty TinyRenderer frame "
                   f"({n('tiny_empty_frame_us', kind='ns')} µs) take: a faster fill alone "
                   "cannot close the gap.")
    else:
        covered = ""
        if is_number(doc.value(B_ENV, "renderers", "covered_fraction")):
            covered = (f" ({doc.num(B_ENV, 'renderers', 'covered_fraction')} of it; the rest "
                       "is sky)")
        passing = (f"Passing Miniworld's fastest figure needs a step of "
                   f"{n('target_step_ms', kind='ms')} ms instead of {n('step_ms', kind='ms')} ms. "
                   f"With the other parts as they are ({n('non_render_ms', kind='ms')} ms) the "
                   f"render must fit in {n('render_budget_ms', kind='ms')} ms. Less an empty "
                   f"frame's {n('tiny_empty_frame_us', kind='ns')} µs and spread over the "
                   f"{n('filled_pixels_per_frame', kind='per_s')} pixels geometry covers in an "
                   f"average frame{covered}, that allows at most "
                   f"{n('needed_ns_per_filled_pixel', kind='ns')} ns per covered pixel, "
                   f"against {n('env_ns_per_covered_pixel', kind='ns')} ns in the "
                   "env's frames today (triangle bounding-box walks and overdraw included): "
                   f"a {n('fill_speedup_needed', kind='ratio')}× faster fill. For comparison, a "
                   "full-screen quad costs TinyRenderer "
                   f"{n('tiny_ns_per_filled_pixel', kind='ns')} ns per pixel"
                   + (f" and llvmpipe {n('llvmpipe_ns_per_filled_pixel', kind='ns')} ns"
                      f"{_llvmpipe_size(doc)}"
                      if is_number(doc.value(B_ENV, *g, "llvmpipe_ns_per_filled_pixel"))
                      else "") + ".")
    return join("**Against Miniworld.** " + where, passing, _rasterisers(doc))


def _llvmpipe_size(doc: Doc) -> str:
    """` (at N px)`: the frame size of llvmpipe's fill figure (bench_render takes the largest)."""
    at = ("renderers", "egl_llvmpipe", "fill", "256", "size")
    return f" (at {doc.num(B_ENV, *at, kind='int')} px)" if is_number(doc.value(B_ENV, *at)) else ""


def _rasterisers(doc: Doc) -> str:
    """Why llvmpipe's low cost per pixel does not make the env faster at small frames."""
    text = ("TinyRenderer is a scalar rasteriser: it walks each triangle's bounding box and "
            "shades one pixel at a time. Mesa's llvmpipe JIT-compiles the pipeline into SIMD "
            "code that fills blocks of pixels at once, so a filled pixel costs it far less; "
            "but through PyBullet's EGL plugin every frame carries a fixed cost")
    e, t = ("renderers", "egl_llvmpipe"), ("renderers", "tiny_renderer_fill")
    small = doc.value(B_ENV, *e, "fill", str(TARGET_RESOLUTION))
    if doc.value(B_ENV, *e, "available") is not True or not isinstance(small, Mapping):
        return text + " that dominates at small frames."
    fill_at = (*e, "fill", str(TARGET_RESOLUTION))
    tiny = ""
    if is_number(doc.value(B_ENV, *t, "empty_frame_us")):
        tiny = f", against TinyRenderer's {doc.num(B_ENV, *t, 'empty_frame_us', kind='ns')} µs"
    return (text + f" ({doc.num(B_ENV, *fill_at, 'empty_frame_us', kind='ns')} µs for an empty "
            f"{doc.num(B_ENV, *fill_at, 'size', kind='int')} px frame{tiny}) that dominates at "
            f"that size: the env on it steps "
            f"{doc.num(B_ENV, *e, 'env_steps_per_s', kind='per_s')} times a second. Miniworld "
            "draws through llvmpipe too and steps far faster than that fixed cost would allow, "
            "so the cost comes with PyBullet's EGL plugin rather than with llvmpipe itself.")
