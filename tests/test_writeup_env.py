"""The env-speed measurements of `embodied bench env` in the notes, from a hand-made
bench_env.json (the shape eval/bench.py, eval/bench_env.py and eval/bench_render.py write): the
renderer decision's measured alternatives and the "Where an env step's time goes" subsection,
every figure read from the file and recorded, and older files without these keys still
rendering."""

from __future__ import annotations

import copy
import re
from typing import Any

from writeup.build import numbers, printed, render_markdown

GOAL, CYCLE = "goal-directed (privileged planner)", "action cycle (into walls often)"
CHOSEN = "chosen (quad floor, 4-tile walls, 16-sided cylinders, robot hidden)"


def _variant(name: str, fps: tuple[float, float], ratio: tuple[float, float]) -> dict[str, Any]:
    return {"variant": name, f"render_fps|{GOAL}": fps[0], f"vs_chosen|{GOAL}": ratio[0],
            f"render_fps|{CYCLE}": fps[1], f"vs_chosen|{CYCLE}": ratio[1]}


def _rate(hz: int, agree: float, rate: float, mean: float, top: float,
          depth: float) -> dict[str, Any]:
    return {"physics_hz": hz, "substeps": hz // 10, "flag_agreement": agree,
            "collision_rate": rate, "mean_position_diff_mm": mean, "max_position_diff_mm": top,
            "mean_penetration_mm": depth}


def old_report() -> dict[str, Any]:
    """bench_env.json as written before the speed report (no breakdown, renderers, ...)."""
    return {
        "machine": {"cpu": "Test CPU", "cores": 2, "load_avg_1m": 0.2, "python": "3.11.7",
                    "pybullet": "3.2.7"},
        "settings": {"resolutions": [48, 64], "steps": 1000, "resets": 1000, "seed": 0},
        "resolutions": [
            {"resolution": 48, "env_steps_per_s": 1410.6, "render_fps": 1702.3,
             "env_vs_bound": 0.829},
            {"resolution": 64, "env_steps_per_s": 1043.2, "render_fps": 1301.8,
             "env_vs_bound": 0.801}],
        "naive_mesh_robot": {"urdf": "racecar/racecar.urdf", "resolution": 64,
                             "env_steps_per_s": 251.7, "render_fps": 270.4,
                             "env_vs_bound": 0.931, "speedup_of_primitive_robot": 4.14},
        "memory": {"resets": 1000, "rss_growth_mb": 0.44, "reset_ms": 9.81},
        "targets": {"env_vs_bound": 0.8, "steps_per_s_64": 1000.0, "rss_growth_mb": 5.0,
                    "oracle_success": 0.95},
    }


def report() -> dict[str, Any]:
    """Today's bench_env.json, invented figures (the notes must copy them, not recompute)."""
    r = old_report()
    r["targets"].update(env_vs_bare=0.8, non_render_fraction=0.1)
    r["bare_scene"] = {"scene": "The reference scene: plane.urdf, 8 static boxes.",
                       "env_steps_per_s": 912.4, "bare_steps_per_s": 851.7,
                       "env_render_fps": 1187.5, "env_vs_bare": 1.071}
    r["lens"] = {"fov_deg": [105.0, 125.0], "narrow_fov_deg": [80.0, 95.0],
                 "env_steps_per_s": 801.3, "narrow_env_steps_per_s": 812.6,
                 "render_fps": 1090.4, "narrow_render_fps": 1104.9, "env_vs_narrow": 0.986}
    r["breakdown"] = {"steps": 1000, "resets": 6, "step_ms": 1.5,
                      "parts_ms": {"render": 1.2, "drive": 0.0912, "noise": 0.1034,
                                   "geodesic": 0.0171, "reset": 0.0533, "other": 0.035},
                      "non_render_fraction": 0.2003, "non_render_fraction_without_rebuilds": 0.171}
    r["geometry_variants"] = [
        _variant("first release (box floor and walls, 124-triangle cylinders, robot drawn)",
                 (803.4, 741.2), (0.797, 0.749)),
        _variant(CHOSEN, (1007.9, 989.6), (1.0, 1.0)),
        _variant("walls as boxes", (929.1, 893.3), (0.922, 0.903))]
    r["physics_rates"] = {
        "samples": 240,
        "reference": {"drive": "first release: cylinder robot, velocity set and contacts read "
                               "at every 60 Hz solver step",
                      "collision_rate": 0.3251, "mean_penetration_mm": 0.147},
        "rates": [_rate(60, 1.0, 0.3251, 0.268, 3.432, 0.119),
                  _rate(30, 0.9958, 0.3208, 0.887, 8.66, 0.243),
                  _rate(10, 0.9917, 0.3167, 3.235, 18.679, 0.109)]}
    r["renderers"] = {
        "tiny_renderer_fill": {"size": 64, "empty_frame_us": 151.4, "full_frame_us": 936.2,
                               "ns_per_filled_pixel": 191.6},
        "egl_llvmpipe": {"available": True, "world": "first release (primitives)",
                         "env_steps_per_s": 54.7, "render_fps": 58.1, "fill": {
                             "64": {"size": 64, "empty_frame_us": 11481.3,
                                    "full_frame_us": 13952.6, "ns_per_filled_pixel": 603.4},
                             "256": {"size": 256, "empty_frame_us": 13601.2,
                                     "full_frame_us": 17066.9, "ns_per_filled_pixel": 52.9}}},
        "covered_fraction": 0.5724}
    r["miniworld_gap"] = {
        "miniworld_steps_per_s": [1240.0, 1620.0], "bare_scene_cited_steps_per_s": 1330.0,
        "source": "Miniworld and the bare scene measured together when the work was planned "
                  "(cited); env/bare measured in this run",
        "env_equivalent_steps_per_s": 1424.4, "env_vs_miniworld": [0.879, 1.149],
        "step_ms": 1.5, "target_step_ms": 1.3189, "non_render_ms": 0.3, "render_budget_ms": 1.0189,
        "filled_pixels_per_frame": 2344.7, "tiny_empty_frame_us": 151.4,
        "tiny_ns_per_filled_pixel": 191.6, "env_ns_per_covered_pixel": 447.2,
        "needed_ns_per_filled_pixel": 370.0, "fill_speedup_needed": 1.21,
        "llvmpipe_ns_per_filled_pixel": 52.9}
    return r


def _data(files: dict[str, Any]) -> dict[str, Any]:
    return {"run_dir": "runs/r", "bench_dir": "runs/bench", "sweep_dir": None, "files": files,
            "missing": [], "errors": {}, "monitor": {}, "media": {}, "figures": {},
            "figure_files": {}}


def part(md: str, title: str) -> str:
    """From the `### title` heading to the next heading of level 2 or 3."""
    start = md.index(f"### {title}")
    ends = [i for i in (md.find("\n### ", start + 1), md.find("\n## ", start + 1)) if i > 0]
    return md[start:min(ends) if ends else None]


STEP = "Where an env step's time goes"
RENDERER = "Renderer: PyBullet TinyRenderer on the CPU"


def _leftover_digits(text: str, data: dict[str, Any],
                     skip_last_cell_of: str | None = None) -> list[str]:
    """Lines of `text` that still hold a digit once every printed text is taken out; in the
    table whose header starts with `skip_last_cell_of` the last cell (computed here) is left
    out."""
    texts = sorted({p.text for p in printed(data)}, key=len, reverse=True)
    left, skipping = [], False
    for line in text.splitlines():
        if skip_last_cell_of and line.startswith(f"| {skip_last_cell_of} |"):
            skipping = True
        elif not line.startswith("|"):
            skipping = False
        rest = line.rsplit("|", 2)[0] if skipping and line.startswith("|") else line
        for t in texts:
            rest = rest.replace(t, "")
        if re.search(r"\d", rest):
            left.append(line)
    return left


# ------------------------------------------------------------------------- the subsection


def test_the_step_subsection_prints_every_measurement_from_the_file() -> None:
    data = _data({"bench_env.json": report(), "config.yaml": {"env": {"physics_hz": 30.0}}})
    text = part(render_markdown(data), STEP)
    for row in (
            "| render | the onboard camera's TinyRenderer frame | 1.200 | 0.80 |",
            "| drive | physics: the control period's solver steps and the contact check | "
            "0.091 | 0.06 |",
            "| geodesic | distance-to-goal lookup for the reward | 0.017 | 0.01 |",
            "| whole step |  | 1.500 |  |",
            "| the env | 912 |", "| bare PyBullet scene | 852 |",
            "| the env's camera rendering alone (frames/s) | 1,188 |",
            "| 60 | 6 | 1.000 | 0.325 | 0.27 | 3.43 | 0.12 |",
            "| 30 (this run) | 3 | 0.996 | 0.321 | 0.89 | 8.66 | 0.24 |",
            "| 10 | 1 | 0.992 | 0.317 | 3.23 | 18.68 | 0.11 |"):
        assert row in text, row
    for phrase in (
            "over 1,000 steps of a fixed action cycle with 6 resets among them",
            "Outside the renderer: 0.20 of the step (target ≤ 0.10: miss), 0.17 without the "
            "resets' world rebuilds.",
            "Env / bare: 1.07 (target ≥ 0.80: ok).",
            "The reference scene: plane.urdf, 8 static boxes.",
            "At 64 px the env steps 1,043 times a second in the throughput table above "
            "(target ≥ 1,000: ok). The side-by-side run measured 912",
            "One control step from the same saved states, 240 times",
            "it collides in 0.325 of the steps, 0.15 mm deep on average",
            "stepped 1,240–1,620 times a second and the bare scene 1,330 in the cited runs",
            "With this run's env / bare ratio (1.07) the env would step 1,424 times a second in "
            "those runs: 0.88× Miniworld's fastest figure and 1.15× its slowest.",
            "needs a step of 1.319 ms instead of 1.500 ms",
            "With the other parts as they are (0.300 ms) the render must fit in 1.019 ms.",
            "Less an empty frame's 151 µs and spread over the 2,345 pixels geometry covers in an "
            "average frame (0.57 of it; the rest is sky), that allows at most 370 ns per covered "
            "pixel, against 447 ns in the env's frames today",
            "a 1.21× faster fill",
            "a full-screen quad costs TinyRenderer 192 ns per pixel and llvmpipe 53 ns (at 256 "
            "px).",
            "TinyRenderer is a scalar rasteriser",
            "JIT-compiles the pipeline into SIMD code",
            "(11,481 µs for an empty 64 px frame, against TinyRenderer's 151 µs) that dominates "
            "at that size: the env on it steps 55 times a second."):
        assert phrase in text, phrase
    values = numbers(data)
    assert values["bench_env.json:breakdown.parts_ms.render"] == 1.2
    assert values["bench_env.json:targets.non_render_fraction"] == 0.1
    assert values["bench_env.json:bare_scene.env_vs_bare"] == 1.071
    assert values["bench_env.json:lens.env_vs_narrow"] == 0.986
    assert "105–125° the env steps 801 times a second, with the 80–95° it replaced 813" in text
    assert values["bench_env.json:physics_rates.rates[1].flag_agreement"] == 0.9958
    assert values["bench_env.json:miniworld_gap.needed_ns_per_filled_pixel"] == 370.0
    assert values["bench_env.json:miniworld_gap.env_vs_miniworld[1]"] == 1.149
    assert values["bench_env.json:renderers.egl_llvmpipe.fill.64.empty_frame_us"] == 11481.3
    # every figure on the page is a recorded one, except the shares computed from them
    assert _leftover_digits(text, data, "part") == []


def test_every_recorded_env_figure_equals_its_source() -> None:
    source = report()
    values = {k: v for k, v in numbers(_data({"bench_env.json": source})).items()
              if k.startswith("bench_env.json:")}
    assert len(values) > 90
    for key, value in values.items():
        node: Any = source
        for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", key.split(":", 1)[1]):
            node = node[int(index)] if index else node[name]
        assert node == value, key


def test_passing_miniworld_is_worded_for_each_case() -> None:
    ahead = report()
    ahead["miniworld_gap"].update(target_step_ms=1.5, needed_ns_per_filled_pixel=447.2,
                                  fill_speedup_needed=1.0)
    text = part(render_markdown(_data({"bench_env.json": ahead})), STEP)
    assert "The env already matches Miniworld's fastest figure: no faster render is needed." \
        in text
    assert "faster fill" not in text
    short = report()
    short["miniworld_gap"].update(target_step_ms=0.41, needed_ns_per_filled_pixel=None,
                                  fill_speedup_needed=None)
    text = part(render_markdown(_data({"bench_env.json": short})), STEP)
    assert ("needs a step of 0.410 ms, less than the step's other parts (0.300 ms) and an empty "
            "TinyRenderer frame (151 µs) take: a faster fill alone cannot close the gap.") in text


# ------------------------------------------------------------------------- the decision


def test_the_renderer_decision_carries_the_measured_alternatives() -> None:
    data = _data({"bench_env.json": report()})
    text = part(render_markdown(data), RENDERER)
    for phrase in (
            "**Measured.** at 64 px the env steps 1,043 times a second against a render-only "
            "bound of 1,302 frames/s (0.80 of it)",
            "TinyRenderer at 64 px takes 151 µs for an empty frame and 192 ns per filled pixel "
            "of a full-screen quad.",
            "PyBullet's EGL plugin on Mesa llvmpipe (software OpenGL, no GPU; world build: first "
            "release (primitives), since the plugin cannot convert in-memory meshes) steps the "
            "env 55 times a second and renders 58 frames/s.",
            "It fills a pixel in 53 ns at 256 px but in 603 ns at 64 px, where its fixed cost "
            "per frame (11,481 µs for an empty frame) dominates.",
            f"| world build | {GOAL} | {CYCLE} |",
            "| first release (box floor and walls, 124-triangle cylinders, robot drawn) | "
            "803 (0.80×) | 741 (0.75×) |",
            f"| {CHOSEN} | 1,008 (1.00×) | 990 (1.00×) |",
            "| walls as boxes | 929 (0.92×) | 893 (0.90×) |"):
        assert phrase in text, phrase
    # the resolution sentence stays the one the decision printed before
    assert "rendering is most of a step's cost (bench_env.json)." in text
    assert "embodied bench env" not in text
    values = numbers(data)
    assert values[f"bench_env.json:geometry_variants[2].render_fps|{CYCLE}"] == 893.3
    assert values["bench_env.json:renderers.tiny_renderer_fill.ns_per_filled_pixel"] == 191.6
    assert _leftover_digits(text, data) == []


def test_an_egl_plugin_that_could_not_run_is_named_with_its_reason() -> None:
    r = report()
    r["renderers"]["egl_llvmpipe"] = {"available": False,
                                      "reason": "the EGL plugin did not load (no EGL driver)"}
    r["miniworld_gap"]["llvmpipe_ns_per_filled_pixel"] = None
    md = render_markdown(_data({"bench_env.json": r}))
    assert ("The EGL plugin could not be measured here (the EGL plugin did not load (no EGL "
            "driver)).") in part(md, RENDERER)
    step = part(md, STEP)
    assert "a full-screen quad costs TinyRenderer 192 ns per pixel." in step
    assert "every frame carries a fixed cost that dominates at small frames." in step


# ------------------------------------------------------------------------- older files


def test_an_older_bench_env_json_still_renders() -> None:
    old = old_report()
    data = _data({"bench_env.json": old})
    md = render_markdown(data)
    assert part(md, RENDERER).count("**Measured.** at 64 px the env steps 1,043 times a second "
                                     "against a render-only bound of 1,302 frames/s (0.80 of "
                                     "it): rendering is most of a step's cost "
                                     "(bench_env.json).\n") == 1
    assert "| world build |" not in md
    assert part(md, STEP) == (
        f"### {STEP}\n\nAt 64 px the env steps 1,043 times a second in the throughput table "
        "above (target ≥ 1,000: ok).\n\n`bench_env.json` holds no step breakdown, bare-scene "
        "comparison, physics-rate or Miniworld figures (it was written before them). Run "
        "`embodied bench env` to fill this table.\n")
    assert {k.split(":")[1].split(".")[0].split("[")[0] for k in numbers(data)
            if k.startswith("bench_env.json:")} <= set(old)
    # keys of another shape print fewer lines instead of failing
    odd = copy.deepcopy(report())
    odd.update(breakdown=[1, 2], bare_scene="fast", physics_rates={"rates": "none"},
               geometry_variants={"a": 1}, miniworld_gap=None,
               renderers={"tiny_renderer_fill": 3, "egl_llvmpipe": {"available": True}})
    text = part(render_markdown(_data({"bench_env.json": odd})), STEP)
    assert "At 64 px the env steps 1,043 times a second" in text


def test_without_bench_env_json_the_decision_names_the_command() -> None:
    md = render_markdown(_data({}))
    assert "**Measured.** Run `embodied bench env` to produce it." in part(md, RENDERER)
    assert f"### {STEP}" not in md


# ------------------------------------------------------------------------- training per build


def _bench_train(ppo: float, distill: float) -> dict[str, Any]:
    rows = [{"label": "first release's world build", "build": "first-release",
             "ppo_steps_per_s": 200.0, "distill_steps_per_s": 100.0},
            {"label": "today's world build (fast)", "build": "fast",
             "ppo_steps_per_s": 200.0 * ppo, "distill_steps_per_s": 100.0 * distill}]
    layout = {"layout": "4 subprocess envs, 1/2 threads", "n_envs": 4, "vec_env": "subproc",
              "threads": "1/2", "steps_per_s": 250.0}
    return {"machine": {"cpu": "Test CPU", "cores": 2}, "rows": [layout], "speedup": 2.0,
            "world_builds": {"rows": rows, "ppo_speedup": ppo, "distill_speedup": distill}}


def test_the_world_build_conclusion_follows_the_measured_speedups() -> None:
    faster = part(render_markdown(_data({"bench_train.json": _bench_train(1.4, 1.2)})),
                  "Training throughput")
    assert "trains PPO 1.40× and DAgger 1.20× as fast; rendering is most of a step" in faster
    same = part(render_markdown(_data({"bench_train.json": _bench_train(1.01, 0.95)})),
                "Training throughput")
    assert "trains PPO 1.01× and DAgger 0.95× as fast; the faster frame does not show" in same
    assert "carry into learning speed" not in same


def test_the_distillation_schedules_show_beside_the_world_builds() -> None:
    data = _bench_train(1.4, 1.2)
    data["distill_schedules"] = {"rows": [
        {"label": "collect, then fit (taking turns)", "distill_steps_per_s": 120.0},
        {"label": "fit while collecting (the default)", "distill_steps_per_s": 174.0}],
        "speedup": 1.45}
    text = part(render_markdown(_data({"bench_train.json": data})), "Training throughput")
    assert "| fit while collecting (the default) | 174 |" in text
    assert "Fitting while collecting runs 1.45× as many iterations per minute" in text
    without = part(render_markdown(_data({"bench_train.json": _bench_train(1.4, 1.2)})),
                   "Training throughput")
    assert "Fitting while collecting" not in without
