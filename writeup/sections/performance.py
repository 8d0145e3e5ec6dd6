"""Performance: env and training throughput, wall-clock to success, inference latency, the
control loop, and this run's export and deployment."""

from __future__ import annotations

from writeup.commands import Commands, fill
from writeup.doc import Doc, is_number
from writeup.sections.common import (
    B_ENV,
    B_INFER,
    B_LEARN,
    B_LOOP,
    B_TRAIN,
    DEPLOY,
    PARITY,
    image,
    join,
    machine,
    table,
)
from writeup.sections.envspeed import env_speed


def performance(doc: Doc, cmd: Commands) -> str:
    return join("## Performance: before and after", _p_env(doc, cmd), env_speed(doc, cmd),
                 _p_train(doc, cmd),
                 _p_learn(doc, cmd), _p_infer(doc, cmd), _p_loop(doc, cmd),
                 _p_this_run(doc, cmd))


def _no_rows(doc: Doc, cmd: Commands, head: str, file: str, kind: str) -> str:
    """A benchmark section without data: the command, and why when the file exists."""
    why = f"`{file}` holds no rows in the shape this page reads. " if doc.has(file) else ""
    return join(head, why + fill(cmd.bench_cmd(kind)))


def _p_env(doc: Doc, cmd: Commands) -> str:
    head = "### Environment throughput"
    mesh = doc.value(B_ENV, "naive_mesh_robot")
    if not doc.records(B_ENV, "resolutions") and not isinstance(mesh, dict):
        return _no_rows(doc, cmd, head, B_ENV, "env")
    rows = []
    if isinstance(mesh, dict):
        n = ("naive_mesh_robot",)
        res = doc.num(B_ENV, *n, "resolution", kind="int")
        rows.append([f"before: mesh robot ({doc.text(B_ENV, *n, 'urdf')})", f"{res}×{res}",
                     doc.num(B_ENV, *n, "env_steps_per_s", kind="per_s"),
                     doc.num(B_ENV, *n, "render_fps", kind="per_s"),
                     doc.num(B_ENV, *n, "env_vs_bound", kind="ratio")])
    for i, _ in doc.records(B_ENV, "resolutions"):
        res = doc.num(B_ENV, "resolutions", i, "resolution", kind="int")
        rows.append(["after: primitive robot", f"{res}×{res}",
                     doc.num(B_ENV, "resolutions", i, "env_steps_per_s", kind="per_s"),
                     doc.num(B_ENV, "resolutions", i, "render_fps", kind="per_s"),
                     doc.num(B_ENV, "resolutions", i, "env_vs_bound", kind="ratio")])
    notes = []
    if isinstance(mesh, dict) and is_number(mesh.get("speedup_of_primitive_robot")):
        speedup = doc.num(B_ENV, "naive_mesh_robot", "speedup_of_primitive_robot", kind="ratio")
        notes.append(f"The primitive robot steps {speedup}× faster than the mesh robot at the "
                     "same resolution.")
    if isinstance(doc.value(B_ENV, "memory"), dict):
        growth = doc.num(B_ENV, "memory", "rss_growth_mb", kind="mb")
        notes.append(f"Memory: resident set grew {growth}"
                     f" MB over {doc.num(B_ENV, 'memory', 'resets', kind='int')} randomized "
                     f"resets ({doc.num(B_ENV, 'memory', 'reset_ms', kind='metric')} ms per "
                     "reset).")
    if isinstance(doc.value(B_ENV, "oracle"), dict):
        o = ("oracle",)
        split = str(doc.value(B_ENV, *o, "split") or "heldout")
        label = {"heldout": "held-out", "train": "training"}.get(split, split)
        notes.append(f"Oracle on {doc.num(B_ENV, *o, 'episodes', kind='int')} {label} episodes "
                     f"(default camera): success {doc.num(B_ENV, *o, f'oracle_{split}_success')} "
                     f"[{doc.num(B_ENV, *o, 'success_ci95', 0)}, "
                     f"{doc.num(B_ENV, *o, 'success_ci95', 1)}], SPL {doc.num(B_ENV, *o, 'spl')}.")
    return join(head, "Env steps per second against the render-only bound (the same camera "
                 "rendering alone, the most a step can reach), one env in one process.",
                 table(["robot", "camera", "env steps/s", "render-only frames/s", "env / bound"],
                       rows), " ".join(notes), machine(doc, B_ENV))


def _p_train(doc: Doc, cmd: Commands) -> str:
    head = "### Training throughput"
    if not doc.records(B_TRAIN, "rows"):
        return _no_rows(doc, cmd, head, B_TRAIN, "train")
    rows = [[doc.text(B_TRAIN, "rows", i, "layout"),
             doc.num(B_TRAIN, "rows", i, "n_envs", kind="int"),
             doc.text(B_TRAIN, "rows", i, "vec_env"), doc.text(B_TRAIN, "rows", i, "threads"),
             doc.num(B_TRAIN, "rows", i, "steps_per_s", kind="per_s")]
            for i, _ in doc.records(B_TRAIN, "rows")]
    return join(head, "End-to-end training steps per second (rendering, inference and "
                 "updates) for each vec-env layout and torch thread setting, naive first.",
                 table(["layout", "envs", "vec env", "torch threads", "steps/s"], rows),
                 f"Speed-up of the tuned layout over the naive one: "
                 f"{doc.num(B_TRAIN, 'speedup', kind='ratio')}×.", _world_builds(doc),
                 _schedules(doc), machine(doc, B_TRAIN))


def _world_builds(doc: Doc) -> str | None:
    """PPO and DAgger end to end on the first release's world build against today's."""
    if not doc.records(B_TRAIN, "world_builds", "rows"):
        return None
    rows = [[doc.text(B_TRAIN, "world_builds", "rows", i, "label"),
             doc.num(B_TRAIN, "world_builds", "rows", i, "ppo_steps_per_s", kind="per_s"),
             doc.num(B_TRAIN, "world_builds", "rows", i, "distill_steps_per_s", kind="per_s")]
            for i, _ in doc.records(B_TRAIN, "world_builds", "rows")]

    def ratio(key: str) -> str:
        return doc.num(B_TRAIN, "world_builds", key, kind="ratio")

    speedups = [doc.value(B_TRAIN, "world_builds", key)
                for key in ("ppo_speedup", "distill_speedup")]
    if all(is_number(s) for s in speedups) and min(speedups) >= 1.1:
        why = "rendering is most of a step, so the fill-rate savings carry into learning speed."
    elif all(is_number(s) for s in speedups):
        # the env's own gain shows in bench env; here the learner shares the same cores
        why = ("the faster frame does not show in learning speed on this machine: the "
               "network's forward and backward passes share the same cores with the env "
               "workers and bound the step, so a faster env leaves them idle sooner rather "
               "than collecting more.")
    else:
        why = "one of the two was not measured."
    return join("The same run, PPO (4 subprocess envs, 1/2 threads) and DAgger (the default "
                "preset, collection with labels and gradient steps) on the first release's "
                "world build and on today's (`env.world_build`):",
                table(["world build", "PPO steps/s", "DAgger steps/s"], rows),
                f"Today's build trains PPO {ratio('ppo_speedup')}× and DAgger "
                f"{ratio('distill_speedup')}× as fast; {why}")


def _schedules(doc: Doc) -> str | None:
    """DAgger taking turns (collect, then fit) against fitting while it collects."""
    if not doc.records(B_TRAIN, "distill_schedules", "rows"):
        return None
    rows = [[doc.text(B_TRAIN, "distill_schedules", "rows", i, "label"),
             doc.num(B_TRAIN, "distill_schedules", "rows", i, "distill_steps_per_s",
                     kind="per_s")]
            for i, _ in doc.records(B_TRAIN, "distill_schedules", "rows")]
    return join("The same run, DAgger (the default preset) collecting and then fitting, against "
                "fitting in a second thread while the envs collect the next iteration with a "
                "frozen copy of the student (`distill.train_while_collecting`); both do the same "
                "frames and gradient steps per iteration:",
                table(["schedule", "DAgger steps/s"], rows),
                f"Fitting while collecting runs "
                f"{doc.num(B_TRAIN, 'distill_schedules', 'speedup', kind='ratio')}× as many "
                "iterations per minute: taking turns, the renderers idle while the network "
                "trains and the trainer idles while they render.")


def _p_learn(doc: Doc, cmd: Commands) -> str:
    head = "### Wall-clock to success per method"
    if not doc.records(B_LEARN, "rows"):
        return _no_rows(doc, cmd, head, B_LEARN, "learn")
    rows = []
    for i, r in doc.records(B_LEARN, "rows"):
        ttg = (doc.num(B_LEARN, "rows", i, "time_to_90pct_heldout_s", kind="s")
               if is_number(r.get("time_to_90pct_heldout_s")) else "not reached")
        rows.append([doc.text(B_LEARN, "rows", i, "method"), ttg,
                     doc.num(B_LEARN, "rows", i, "final_heldout_success"),
                     doc.num(B_LEARN, "rows", i, "final_heldout_spl"),
                     doc.num(B_LEARN, "rows", i, "timesteps", kind="int"),
                     doc.num(B_LEARN, "rows", i, "wall_clock_s", kind="s")])
    return join(head, f"Each method trained for a budget of "
                 f"{doc.num(B_LEARN, 'budget_s', kind='s')} s of wall-clock on the same machine. "
                 "Time to 90 % is read off the periodic held-out validation during training "
                 "(evaluation seed 0); the final columns score each run's final policy on "
                 "fresh held-out test episodes (seed 1).",
                 table(["method", "time to 90 % validation success (s)", "final test success",
                        "final test SPL", "env steps", "wall-clock (s)"], rows),
                 image(doc, "learning_by_method", "Held-out success against wall-clock per method"),
                 machine(doc, B_LEARN))


def _p_infer(doc: Doc, cmd: Commands) -> str:
    head = "### Inference latency per runtime"
    if not doc.keys(B_INFER, "backends"):
        return _no_rows(doc, cmd, head, B_INFER, "infer")
    rows = [[name, doc.num(B_INFER, "backends", name, "p50_ms", kind="ms"),
             doc.num(B_INFER, "backends", name, "p99_ms", kind="ms"),
             doc.num(B_INFER, "backends", name, "mean_ms", kind="ms"),
             doc.num(B_INFER, "backends", name, "max_ms", kind="ms"),
             doc.num(B_INFER, "speedup_p50_vs_sb3", name, kind="ratio")]
            for name in doc.keys(B_INFER, "backends")]
    parity = []
    for fmt in doc.keys(B_INFER, "parity"):
        diff = doc.num(B_INFER, "parity", fmt, "max_abs_diff", kind="sci")
        parity.append(f"{fmt}: max abs diff {diff}, action agreement "
                      f"{doc.num(B_INFER, 'parity', fmt, 'action_agreement')}")
    target = ""
    if is_number(doc.value(B_INFER, "target", "onnx_p99_ms")):
        met = doc.value(B_INFER, "target", "met")
        limit = doc.num(B_INFER, "target", "onnx_p99_ms", kind="ms")
        target = f"Target ONNX Runtime p99 ≤ {limit} ms: {'met' if met else 'not met'}."
    return join(head, f"One camera frame in, one action out (batch 1, "
                 f"{doc.num(B_INFER, 'threads', kind='int')} thread, "
                 f"{doc.num(B_INFER, 'n', kind='int')} timed calls after "
                 f"{doc.num(B_INFER, 'warmup', kind='int')} warm-up), before (SB3 `predict`) "
                 "and after (ONNX Runtime); each runtime converts the uint8 frame itself.",
                 table(["runtime", "p50 (ms)", "p99 (ms)", "mean (ms)", "max (ms)",
                        "p50 speed-up vs SB3 (×)"], rows),
                 target, ("Export parity with PyTorch: " + "; ".join(parity) + ".")
                 if parity else None, machine(doc, B_INFER))


def _p_loop(doc: Doc, cmd: Commands) -> str:
    head = "### Control loop: jitter and deadline misses"
    if not doc.records(B_LOOP, "rows"):
        return _no_rows(doc, cmd, head, B_LOOP, "loop")
    rows = []
    for i, r in doc.records(B_LOOP, "rows"):
        def n(key: str, kind: str, i: int = i) -> str:
            return doc.num(B_LOOP, "rows", i, key, kind=kind)
        rows.append([n("rate_hz", "g"), doc.text(B_LOOP, "rows", i, "load"), n("ticks", "int"),
                     n("deadline_misses", "int"), n("miss_percent", "pct"),
                     n("sim_reset_misses", "int"),
                     n("jitter_p99_ms", "ms"), n("jitter_max_ms", "ms"),
                     n("lateness_p99_ms", "ms"), n("latency_total_p99_ms", "ms"),
                     "yes" if r.get("met") else "no"])
    return join(head, "The exported policy in the fixed-rate ROS 2-style loop at each rate, "
                 "on an idle machine and with a CPU-burning process on the other core. Misses "
                 "count deadlines that passed without a tick and ticks that found no fresh "
                 "command; those on the tick after a simulator scene rebuild (a new episode's "
                 "world, which a real robot does not have) are counted apart and left out of "
                 "the miss %; all times in ms.",
                 table(["rate (Hz)", "load", "ticks", "misses", "miss %",
                        "misses after a scene rebuild", "jitter p99",
                        "jitter max", "wake-up lateness p99", "sense→act p99", "targets met"],
                       rows), machine(doc, B_LOOP))


def _p_this_run(doc: Doc, cmd: Commands) -> str:
    head = "### This run's export and deployment"
    parts: list[str | None] = [head]
    formats = doc.keys(PARITY)
    if formats:
        parts.append(table(["format", "max abs diff", "action agreement", "observations"], [
            [fmt, doc.num(PARITY, fmt, "max_abs_diff", kind="sci"),
             doc.num(PARITY, fmt, "action_agreement"),
             doc.num(PARITY, fmt, "n_obs", kind="int")] for fmt in formats]))
        parts.append(f"Source: `{PARITY}`.")
    else:
        parts.append(fill(cmd.export()))
    if doc.has(DEPLOY):
        d = (DEPLOY,)
        rows = [["rate (Hz)", doc.num(*d, "rate_hz", kind="g")],
                ["ticks measured (after warm-up)", doc.num(*d, "ticks_measured", kind="int")],
                ["sense→act p50 (ms)", doc.num(*d, "latency_ms", "total", "p50", kind="ms")],
                ["sense→act p99 (ms)", doc.num(*d, "latency_ms", "total", "p99", kind="ms")],
                ["inference p99 (ms)", doc.num(*d, "latency_ms", "inference", "p99", kind="ms")],
                ["period jitter p99 (ms)", doc.num(*d, "period_jitter_ms", "p99", kind="ms")],
                ["deadline misses", doc.num(*d, "deadline_misses", "count", kind="int")],
                ["deadline misses (%)", doc.num(*d, "deadline_misses", "percent", kind="pct")],
                ["episodes / successes", f"{doc.num(*d, 'episodes', kind='int')} / "
                                         f"{doc.num(*d, 'successes', kind='int')}"],
                ["rejected messages", doc.num(*d, "rejected_messages", kind="int")]]
        if doc.value(DEPLOY, "ticks_measured") == 0:
            rows.append(["note", "no tick was measured after the warm-up: run the loop longer"])
        parts += [table(["deploy loop", "value"], rows),
                  image(doc, "deploy_latency", "Camera frame to /cmd_vel latency histogram"),
                  machine(doc, DEPLOY)]
    else:
        parts.append(fill(cmd.deploy()))
    return join(*parts)
