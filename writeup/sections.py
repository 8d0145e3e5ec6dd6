"""The sections of the engineering notes, each a pure function of the collected artifacts.

Every number goes through `Doc.num` / `Doc.ci`, which read it from its file and record it; a
section whose artifact is missing prints the command that produces it instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from writeup import architecture
from writeup.commands import Commands, fill, produce
from writeup.doc import NA, Doc, is_number

CONFIG = "config.yaml"
RUN = "run.json"
TRAIN = "train_summary.json"
CURVE = "eval_during_training.jsonl"
HELDOUT = "eval_heldout/summary.json"
PARITY = "policy.parity.json"
DEPLOY = "deploy/deploy_report.json"
B_ENV, B_TRAIN, B_LEARN = "bench_env.json", "bench_train.json", "bench_learn.json"
B_INFER, B_LOOP = "bench_infer.json", "bench_loop.json"

RANDOMIZATION_GROUPS: dict[str, str] = {
    **dict.fromkeys(("light_azimuth_deg", "light_elevation_deg", "light_ambient",
                     "light_diffuse", "light_specular", "light_tint"), "lighting"),
    **dict.fromkeys(("colour_saturation", "colour_value", "floor_value", "texture_contrast",
                     "goal_value"), "appearance"),
    **dict.fromkeys(("obstacle_count", "obstacle_size_m", "obstacle_height_m",
                     "cylinder_fraction", "goal_height_m", "beacon_radius_m"), "layout"),
    **dict.fromkeys(("friction", "mass_kg", "motor_strength", "action_noise",
                     "action_latency_steps"), "physics"),
    **dict.fromkeys(("camera_height_m", "camera_pitch_deg", "camera_fov_deg"), "camera"),
    **dict.fromkeys(("image_noise_std", "brightness", "contrast", "blur_probability"),
                    "image_noise"),
}
"""Factor group of each randomization range. config.yaml stores the ranges without their
group and the writeup reads files only, so the grouping is kept here (a `randomization_groups`
map in run.json, where a run records one, takes precedence); a test checks it against the env
config so that the two cannot drift apart unnoticed."""
UNLISTED_GROUP = "unlisted"

EVAL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("success_rate", "success"), ("spl", "SPL"), ("soft_spl", "SoftSPL"),
    ("collisions_per_episode", "collisions / episode"), ("mean_steps", "steps"),
    ("mean_return", "return"))
MAX_CURVE_ROWS = 12
"""Rows of the evaluation-during-training table (evenly spaced, always the first and last)."""
STRIP_NOTE = "frames evenly spaced over the recording, left to right"


# -------------------------------------------------------------------------------- helpers


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown pipe table (cells must not contain `|`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def image(doc: Doc, name: str, alt: str) -> str | None:
    """`![alt](figures/file)` for a figure that was made, else None."""
    link = doc.data.get("figures", {}).get(name)
    return f"![{alt}]({link})" if link else None


def _join(*parts: str | None) -> str:
    return "\n\n".join(p for p in parts if p)


def machine(doc: Doc, file: str) -> str:
    """One line naming the machine a benchmark ran on, from its `machine` record."""
    if doc.value(file, "machine") is None:
        return f"_Machine: not recorded in `{file}`._"
    parts = [doc.text(file, "machine", "cpu"),
             f"{doc.num(file, 'machine', 'cores', kind='int')} cores",
             f"1-minute load {doc.num(file, 'machine', 'load_avg_1m', kind='load')} "
             "when it started"]
    versions = [f"{name} {doc.text(file, 'machine', name)}"
                for name in ("python", "torch", "onnxruntime", "pybullet")
                if doc.value(file, "machine", name) is not None]
    return f"_Machine ({file}): " + ", ".join(parts + versions) + "._"


def _indices(n: int, most: int) -> list[int]:
    if n <= most:
        return list(range(n))
    step = (n - 1) / (most - 1)
    return sorted({round(k * step) for k in range(most)})


def _method(doc: Doc) -> str:
    method = doc.value(CONFIG, "method") or doc.value(TRAIN, "method")
    if method == "ppo":
        return "pixel PPO (stable-baselines3) on the task reward"
    if method == "distill":
        teacher = doc.value(CONFIG, "distill", "teacher")
        who = ("a PPO teacher trained on privileged state" if teacher == "ppo"
               else "the privileged grid-planner oracle")
        text = f"teacher → student distillation (DAgger on the student's own visits, {who})"
        finetune = doc.value(CONFIG, "distill", "finetune_timesteps")
        if is_number(finetune) and finetune > 0:
            text += (f", then {doc.num(CONFIG, 'distill', 'finetune_timesteps', kind='int')} "
                     "steps of PPO fine-tuning")
        return text
    return "the method recorded in its config"


def _resolution(doc: Doc) -> str | None:
    if not is_number(doc.value(CONFIG, "env", "observation", "width")):
        return None
    return (f"{doc.num(CONFIG, 'env', 'observation', 'width', kind='int')}×"
            f"{doc.num(CONFIG, 'env', 'observation', 'height', kind='int')}")


# -------------------------------------------------------------------------------- summary


def summary(doc: Doc, cmd: Commands) -> str:
    """What was built and the result, in three sentences with the headline numbers."""
    return _join("## Summary", " ".join([_built(doc, cmd), _result(doc, cmd),
                                         _deployed(doc, cmd)]))


def _built(doc: Doc, cmd: Commands) -> str:
    res = _resolution(doc)
    camera = f"its onboard {res} RGB camera" if res else "its onboard RGB camera"
    lead = f"A small wheeled robot in PyBullet learns to reach a goal beacon from {camera} alone"
    if not doc.has(TRAIN):
        return f"{lead}; this run has no training summary yet: run `{cmd.train()}` to produce it."
    return (f"{lead}; this run trained it by {_method(doc)} for "
            f"{doc.num(TRAIN, 'timesteps', kind='int')} env steps in "
            f"{doc.num(TRAIN, 'wall_clock_s', kind='s')} s of wall-clock on "
            f"{doc.num(TRAIN, 'n_envs', kind='int')} envs "
            f"({doc.num(TRAIN, 'steps_per_s', kind='per_s')} steps/s).")


def _result(doc: Doc, cmd: Commands) -> str:
    if not doc.has(HELDOUT) or doc.value(HELDOUT, "policy") is None:
        return ("The held-out evaluation is missing: run "
                f"`{cmd.eval()}` to score the policy beside the oracle and random baselines.")
    text = (f"On the held-out split ({doc.num(HELDOUT, 'episodes', kind='int')} episodes "
            "with colours, textures and layouts training never saw) the policy reached the "
            "goal at a rate "
            f"of {doc.ci(HELDOUT, 'policy', 'success_rate')} with SPL "
            f"{doc.ci(HELDOUT, 'policy', 'spl')} (95 % intervals)")
    baselines = []
    for name, label in (("oracle", "the privileged oracle"), ("random", "random actions")):
        if doc.value(HELDOUT, name) is not None:
            baselines.append(f"{doc.num(HELDOUT, name, 'success_rate')} / SPL "
                             f"{doc.num(HELDOUT, name, 'spl')} for {label}")
    if baselines:
        text += ", against " + " and ".join(baselines)
    if is_number(doc.value(HELDOUT, "spl_vs_oracle")):
        text += (f"; its SPL is {doc.num(HELDOUT, 'spl_vs_oracle', kind='ratio')} of the "
                 "oracle's")
    return text + "."


def _deployed(doc: Doc, cmd: Commands) -> str:
    parts = []
    if is_number(doc.value(B_INFER, "backends", "onnxruntime", "p50_ms")):
        parts.append("answers a camera frame in "
                     f"{doc.num(B_INFER, 'backends', 'onnxruntime', 'p50_ms', kind='ms')} ms "
                     f"(p50; p99 {doc.num(B_INFER, 'backends', 'onnxruntime', 'p99_ms', kind='ms')}"
                     " ms) on ONNX Runtime")
    row = _idle_loop_row(doc)
    if row is not None:
        def n(key: str, kind: str) -> str:
            return doc.num(B_LOOP, "rows", row, key, kind=kind)
        parts.append(f"ran the ROS 2-style control loop at {n('rate_hz', 'g')} Hz with "
                     f"{n('deadline_misses', 'int')} deadline misses in {n('ticks', 'int')} "
                     f"ticks and period jitter p99 {n('jitter_p99_ms', 'ms')} ms on an idle "
                     "machine")
    elif is_number(doc.value(DEPLOY, "latency_ms", "total", "p99")):
        parts.append(f"ran this run's deploy loop at {doc.num(DEPLOY, 'rate_hz', kind='g')} Hz "
                     "with sense→act p99 "
                     f"{doc.num(DEPLOY, 'latency_ms', 'total', 'p99', kind='ms')} ms and "
                     f"{doc.num(DEPLOY, 'deadline_misses', 'count', kind='int')} deadline misses "
                     f"in {doc.num(DEPLOY, 'ticks_measured', kind='int')} ticks")
    if not parts:
        return ("The deployment figures are missing: run "
                f"`{cmd.bench_cmd('infer')}` and `{cmd.bench_cmd('loop')}` to measure "
                "inference latency and control-loop timing.")
    return "Exported to ONNX, the policy " + " and ".join(parts) + "."


def _idle_loop_row(doc: Doc) -> int | None:
    rows = doc.records(B_LOOP, "rows")
    idle = [i for i, r in rows if r.get("load") == "idle"]
    return idle[0] if idle else (rows[0][0] if rows else None)


# -------------------------------------------------------------------------------- architecture


def architecture_section(doc: Doc, cmd: Commands) -> str:
    link = doc.data.get("figures", {}).get("architecture")
    png = f"{architecture.PICTURE_NOTE} [{link}]({link})." if link else None
    folders = table(["folder", "what it holds"],
                    [[f"`{name}`", text] for name, text in architecture.FOLDERS])
    run_dir = "\n".join(f"- `{name}`: {text}" for name, text in (
        ("config.yaml, run.json", "the resolved config; command, versions, commit, seeds"),
        ("train_summary.json, eval_during_training.jsonl, monitor/, tb/",
         "training figures and logs"),
        ("best/, final/, checkpoints/", "weights-only checkpoints and resumable state"),
        ("eval_heldout/", "held-out report, per-episode records, robustness sweeps"),
        ("video_policy.mp4, video_policy.gif", "recorded episodes"),
        ("policy.onnx, policy.parity.json, deploy/", "export, parity, control-loop report"),
    ))
    return _join(
        "## Architecture",
        "Data flows left to right. The run directory is the only hand-off between stages: "
        "each stage reads what the previous one wrote there, so any stage can be re-run alone.",
        "```mermaid\n" + architecture.mermaid() + "\n```", png,
        "### Folder map", folders, "### What a run directory holds", run_dir)


# -------------------------------------------------------------------------------- decisions


def _decision(title: str, chosen: str, alternatives: str, why: str, measured: str) -> str:
    return _join(f"### {title}", f"**Chosen.** {chosen}", f"**Alternatives.** {alternatives}",
                 f"**Why.** {why}", f"**Measured.** {measured}")


def _env_row(doc: Doc, resolution: Any) -> int | None:
    hits = [i for i, r in doc.records(B_ENV, "resolutions") if r.get("resolution") == resolution]
    return hits[0] if hits else None


def decisions(doc: Doc, cmd: Commands) -> str:
    return _join("## Key decisions", *(f(doc, cmd) for f in (
        _d_renderer, _d_robot, _d_resolution, _d_vec, _d_method, _d_student, _d_runtime,
        _d_messages,
        _d_checkpoints, _d_success)))


def _d_renderer(doc: Doc, cmd: Commands) -> str:
    width = doc.value(CONFIG, "env", "observation", "width") or 64
    row = _env_row(doc, width)
    if row is None:
        row = _env_row(doc, 64)
    if row is None:
        measured = produce(cmd.bench_cmd("env"))
    else:
        def n(key: str, kind: str) -> str:
            return doc.num(B_ENV, "resolutions", row, key, kind=kind)
        measured = (f"at {n('resolution', 'int')} px the env steps "
                    f"{n('env_steps_per_s', 'per_s')} times a second against a render-only "
                    f"bound of {n('render_fps', 'per_s')} frames/s "
                    f"({n('env_vs_bound', 'ratio')} of it): rendering is most of a step's cost "
                    f"({B_ENV}).")
    return _decision(
        "Renderer: PyBullet TinyRenderer on the CPU",
        "`ER_TINY_RENDERER` in a DIRECT client, one client per env process.",
        "the EGL plugin (hardware OpenGL), an external renderer (Isaac Sim, Unity, Habitat-Sim).",
        "it needs no GPU and no display, gives the same pixels on every machine and scales with "
        "CPU cores, one env per process. Without a GPU the EGL plugin falls back to software GL, "
        "is slower, and takes over TinyRenderer's calls in the same process.",
        measured)


def _d_robot(doc: Doc, cmd: Commands) -> str:
    if doc.value(B_ENV, "naive_mesh_robot") is None:
        measured = produce(cmd.bench_cmd("env"))
    else:
        n = ("naive_mesh_robot",)
        ours = _env_row(doc, doc.value(B_ENV, *n, "resolution"))
        primitive = ("" if ours is None else
                     " against " + doc.num(B_ENV, "resolutions", ours, "env_steps_per_s",
                                           kind="per_s") + " with the primitive robot")
        speedup = doc.num(B_ENV, *n, "speedup_of_primitive_robot", kind="ratio")
        measured = (f"with `{doc.text(B_ENV, *n, 'urdf')}` in view the env steps "
                    f"{doc.num(B_ENV, *n, 'env_steps_per_s', kind='per_s')} times a second "
                    f"at {doc.num(B_ENV, *n, 'resolution', kind='int')} px{primitive}"
                    + ("" if speedup == NA else f": {speedup}× faster") + f" ({B_ENV}).")
    return _decision(
        "Robot: primitive shapes instead of a mesh",
        "a base, wheels and a camera mast built from boxes and cylinders.",
        "a detailed mesh robot from `pybullet_data` (the racecar).",
        "TinyRenderer rasterises every triangle in view with no culling, so its cost follows "
        "the triangle count; the camera policy only needs the robot's footprint and pose.",
        measured)


def _d_resolution(doc: Doc, cmd: Commands) -> str:
    rows = doc.records(B_ENV, "resolutions")
    if rows:
        measured = "; ".join(
            f"{doc.num(B_ENV, 'resolutions', i, 'resolution', kind='int')} px: "
            f"{doc.num(B_ENV, 'resolutions', i, 'env_steps_per_s', kind='per_s')} steps/s"
            for i, _ in rows) + f" ({B_ENV})."
    else:
        measured = produce(cmd.bench_cmd("env"))
    res = _resolution(doc)
    chosen = (f"a square RGB image; this run uses {res}." if res
              else "a square RGB image (64×64 by default).")
    return _decision(
        "Camera resolution", chosen, "48×48 (faster, the goal beacon shrinks to a few pixels at "
        "range), 84×84 as in Atari-style agents, 128×128.",
        "throughput falls with the pixel count, while obstacles and the goal beacon stay "
        "recognisable across the arena at 64×64.", measured)


def _d_vec(doc: Doc, cmd: Commands) -> str:
    if doc.has(CONFIG):
        chosen = (f"one process per env (`subproc`) by default; this run: "
                  f"{doc.num(CONFIG, 'n_envs', kind='int')} envs in a "
                  f"`{doc.text(CONFIG, 'vec_env')}` vec env, torch with "
                  f"{doc.num(CONFIG, 'torch_threads_collect', kind='int')} thread(s) while the "
                  f"envs step and {doc.num(CONFIG, 'torch_threads_train', kind='int')} during "
                  "gradient updates; idle OpenMP threads sleep (`OMP_WAIT_POLICY=PASSIVE`).")
    else:
        chosen = "one process per env (`SubprocVecEnv`) and few torch threads while collecting."
    if doc.has(B_TRAIN):
        measured = (f"the tuned layout runs {doc.num(B_TRAIN, 'speedup', kind='ratio')}× the "
                    f"naive one's steps/s; every layout is in the training-throughput table "
                    f"below ({B_TRAIN}).")
    else:
        measured = produce(cmd.bench_cmd("train"))
    return _decision(
        "Vec-env layout and threads", chosen,
        "all envs in one process (`DummyVecEnv`), more envs than cores, torch's default thread "
        "count.",
        "rendering is CPU-bound, so each env gets its own process; torch threads that spin while "
        "waiting take the cores the renderers need, so the learner gets threads only while it "
        "trains.", measured)


def _d_method(doc: Doc, cmd: Commands) -> str:
    rows = doc.records(B_LEARN, "rows")
    if rows:
        parts = []
        for i, r in rows:
            t = r.get("time_to_90pct_heldout_s")
            reach = (f"90 % held-out success after "
                     f"{doc.num(B_LEARN, 'rows', i, 'time_to_90pct_heldout_s', kind='s')} s"
                     if is_number(t) else
                     f"did not reach 90 % held-out success in "
                     f"{doc.num(B_LEARN, 'budget_s', kind='s')} s")
            parts.append(f"{doc.text(B_LEARN, 'rows', i, 'method')}: {reach}")
        measured = "; ".join(parts) + f" ({B_LEARN})."
    else:
        measured = produce(cmd.bench_cmd("learn"))
    chosen = f"this run used {_method(doc)}." if doc.has(CONFIG) else _method(doc) + "."
    return _decision(
        "Learning method: teacher → student distillation, pixel PPO as the baseline", chosen,
        "pixel PPO from the task reward alone; a PPO teacher on privileged state instead of "
        "the planner; PPO fine-tuning of the distilled student.",
        "the camera student gets the teacher's action on every frame it sees, a dense "
        "supervised signal, where PPO must discover the goal from reward; DAgger labels the "
        "states the student itself visits, which removes behaviour cloning's compounding "
        "errors (Learning by Cheating, Chen et al. 2019).", measured)


def _d_student(doc: Doc, cmd: Commands) -> str:
    def setting(key: str, default: Any) -> Any:
        value = doc.value(CONFIG, "distill", key)
        return default if value is None else value

    stack = doc.value(CONFIG, "frame_stack") or 1
    chosen = (f"this run: frame stack {stack}, class-weighted loss "
              f"{'on' if setting('balance_actions', False) else 'off'}, colour augmentation "
              f"{'on' if setting('augment_colour', False) else 'off'}, random shift "
              f"{setting('augment_shift_px', 0)} px.")
    if doc.has(HELDOUT) and doc.value(HELDOUT, "policy") is not None:
        measured = (f"held-out success {doc.ci(HELDOUT, 'policy', 'success_rate')}, "
                    f"{doc.num(HELDOUT, 'policy', 'collisions_per_episode', kind='metric')} "
                    f"collisions per episode ({HELDOUT}); the robustness sweep below isolates "
                    "appearance.")
    else:
        measured = produce(cmd.eval())
    return _decision(
        "Making the teacher imitable from pixels", chosen,
        "the plain planner as teacher; a teacher that searches left only until it has first "
        "seen the goal; an unweighted loss; shift augmentation only; a recurrent student.",
        "a memoryless camera student can only copy what its images determine. A teacher that "
        "remembers having seen the goal labels the same goal-less image \"left\" early and "
        "\"right\" later, and the student dithers between them; the state-only rule (out of view "
        "and turning in place: turn left) removes that. Searching fills the buffer with "
        "\"turn left\" labels, which an unweighted loss lets drown the rare \"drive to the "
        "beacon\" ones. Held-out walls and obstacles have hues the training split never draws; "
        "swapping and rescaling green and blue (red untouched) makes colour useless for "
        "finding them while the red beacon stays the one red thing. Two stacked frames tell "
        "the student which way it was turning.", measured)


def _d_runtime(doc: Doc, cmd: Commands) -> str:
    backends = doc.keys(B_INFER, "backends")
    if backends:
        measured = "; ".join(
            f"{name} p50 {doc.num(B_INFER, 'backends', name, 'p50_ms', kind='ms')} ms, p99 "
            f"{doc.num(B_INFER, 'backends', name, 'p99_ms', kind='ms')} ms"
            for name in backends) + f" (batch 1, one thread, {B_INFER})."
    else:
        measured = produce(cmd.bench_cmd("infer"))
    return _decision(
        "Deployment runtime: ONNX Runtime",
        "the actor exported to ONNX with the image preprocessing (layout, scaling) and the "
        "action clip inside the graph, checked for parity against PyTorch on recorded frames.",
        "SB3's `predict`, eager PyTorch, TorchScript.",
        "the lowest batch-1 latency and tail, a deployment that needs neither torch nor SB3, "
        "and one file that carries its own env metadata.", measured)


def _d_messages(doc: Doc, cmd: Commands) -> str:
    if doc.has(DEPLOY):
        measured = (f"in this run's deploy loop {doc.num(DEPLOY, 'rejected_messages', kind='int')}"
                    f" malformed messages were rejected out of "
                    f"{doc.num(DEPLOY, 'malformed_injected', kind='int')} injected ({DEPLOY}).")
    else:
        measured = produce(cmd.deploy())
    return _decision(
        "ROS 2 messages: rosbags' generated types",
        "`sensor_msgs/Image`, `geometry_msgs/Twist` and `nav_msgs/Odometry` from the `rosbags` "
        "type store (ROS 2 Humble), serialised to CDR and written to rosbag2 files.",
        "hand-written look-alike dataclasses; a full ROS 2 install with rclpy.",
        "exact ROS 2 field names and wire bytes without installing ROS, and bags that ROS tools "
        "open; hand-written copies drift from the real definitions unnoticed.", measured)


def _d_checkpoints(doc: Doc, cmd: Commands) -> str:
    return _decision(
        "Checkpoints: weights only",
        "`policy.pt` holds tensors plus a JSON string of metadata (architecture, spaces, env "
        "config) and is read with `torch.load(weights_only=True)`; optimizer state for resuming "
        "lives apart in `trainer.pt`.",
        "SB3's `model.zip` (pickled Python objects), `torch.save` of whole modules.",
        "loading never runs pickled code, a checkpoint outlives refactors of the training "
        "code, and evaluation, export and deployment load it without importing training/.",
        "not a speed decision; the training tests load every checkpoint with "
        "`weights_only=True`.")


def _d_success(doc: Doc, cmd: Commands) -> str:
    radius = doc.num(CONFIG, "env", "goal_radius_m", kind="g")
    grid = doc.num(CONFIG, "env", "grid_resolution_m", kind="g")
    if doc.value(HELDOUT, "oracle") is not None:
        measured = ("the privileged oracle, which follows the planner's path, scores SPL "
                    f"{doc.num(HELDOUT, 'oracle', 'spl')} on the held-out episodes ({HELDOUT}); "
                    "a perfect agent would score 1.")
    else:
        measured = produce(cmd.eval())
    return _decision(
        "Success rule and SPL",
        f"an episode succeeds when the robot's centre comes within the goal radius ({radius} m) "
        "of the goal's centre, and ends there; there is no STOP action. SPL's shortest path "
        "l_i is the geodesic from the start to the edge of that success disk, measured on an "
        f"occupancy grid ({grid} m cells, obstacles inflated by the robot radius) with a "
        "16-neighbour distance transform (orthogonal, diagonal and knight moves).",
        "Habitat's rule, which also demands an explicit STOP action; l_i to the goal's centre; "
        "an 8-neighbour grid.",
        "a STOP action adds a termination decision that a small camera policy learns slowly; "
        "without it scores are more lenient than Habitat's, which is why the rule is stated "
        "here. Measuring l_i to the centre would cap even a perfect agent's SPL below 1, since "
        "its episode ends at the disk's edge; knight moves make grid distances much closer to "
        "true shortest paths than 8 neighbours.", measured)


# -------------------------------------------------------------------------------- environment


TASK_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("arena half-size (m)", ("arena_half_size_m",)),
    ("robot radius (m)", ("robot_radius_m",)),
    ("goal radius (m)", ("goal_radius_m",)),
    ("minimum start-goal distance (m)", ("min_goal_distance_m",)),
    ("control rate (Hz)", ("control_hz",)),
    ("physics rate (Hz)", ("physics_hz",)),
    ("episode limit (control steps)", ("max_steps",)),
    ("top speed (m/s)", ("max_linear_mps",)),
    ("top turn rate (rad/s)", ("max_angular_rps",)),
    ("planner grid cell (m)", ("grid_resolution_m",)),
    ("camera width (px)", ("observation", "width")),
    ("camera height (px)", ("observation", "height")),
    ("randomization strength", ("strength",)),
)
SENSORS = ("camera", "depth", "segmentation", "lidar", "proprio", "privileged")


def _group(doc: Doc, field: str) -> str:
    if isinstance(doc.value(RUN, "randomization_groups", field), str):
        return doc.text(RUN, "randomization_groups", field)
    return RANDOMIZATION_GROUPS.get(field, UNLISTED_GROUP)


def environment(doc: Doc, cmd: Commands) -> str:
    if not doc.has(CONFIG) or doc.value(CONFIG, "env") is None:
        return _join("## The environment and its randomization", fill(cmd.train()))
    task = table(["parameter", "value"], [
        [label, doc.num(CONFIG, "env", *path, kind="g")] for label, path in TASK_FIELDS
        if doc.value(CONFIG, "env", *path) is not None])
    sensors = [s for s in SENSORS if doc.value(CONFIG, "env", "observation", s) is True]
    reward = table(["reward term", "weight"], [
        [name, doc.num(CONFIG, "env", "reward", name, kind="g")]
        for name in doc.keys(CONFIG, "env", "reward")])
    ranges = doc.keys(CONFIG, "env", "randomization")
    rand = table(["field", "low", "high", "group"], [
        [f"`{name}`", doc.num(CONFIG, "env", "randomization", name, 0, kind="g"),
         doc.num(CONFIG, "env", "randomization", name, 1, kind="g"),
         _group(doc, name)] for name in ranges])
    return _join(
        "## The environment and its randomization",
        "A walled square arena with box and cylinder obstacles and a red-magenta goal beacon. "
        "The robot drives forward, along left or right arcs, or turns in place (discrete "
        "actions) and observes its camera only; reward is a sum of named terms. Values from "
        "the run's "
        f"`{CONFIG}`:",
        task, f"Sensors on: {', '.join(sensors) or 'none recorded'}.", reward,
        "Every randomization range, drawn per episode in `reset` (values at strength 1; a "
        "strength s moves each value from its strength-0 anchor towards the drawn one). The "
        "held-out split draws obstacle, wall and floor colours from hue bands and texture "
        "families that training never uses, and layouts from a disjoint set of layout seeds.",
        rand)


# -------------------------------------------------------------------------------- learning


def learning(doc: Doc, cmd: Commands) -> str:
    fig = image(doc, "learning_curves", "Success rate against env steps and wall-clock")
    if doc.has(TRAIN):
        t = (TRAIN,)
        ttg = doc.value(TRAIN, "time_to_90pct_heldout_s")
        rows = [["env steps", doc.num(*t, "timesteps", kind="int")],
                ["wall-clock (s)", doc.num(*t, "wall_clock_s", kind="s")],
                ["steps/s", doc.num(*t, "steps_per_s", kind="per_s")],
                ["best held-out validation success", doc.num(*t, "best_heldout_success")],
                ["best held-out validation SPL", doc.num(*t, "best_heldout_spl")],
                ["time to 90 % validation success (s)",
                 doc.num(*t, "time_to_90pct_heldout_s", kind="s") if is_number(ttg)
                 else "not reached"],
                ["envs", doc.num(*t, "n_envs", kind="int")],
                ["learner device", doc.text(*t, "device")]]
        train_table = table(["training", "value"], rows)
    else:
        train_table = fill(cmd.train())
    curve = doc.value(CURVE) or []
    if curve:
        curve_rows = [[doc.num(CURVE, i, "timesteps", kind="int"),
                       doc.num(CURVE, i, "wall_clock_s", kind="s"),
                       doc.num(CURVE, i, "success_rate"), doc.num(CURVE, i, "spl"),
                       doc.num(CURVE, i, "collisions_per_episode", kind="metric"),
                       doc.num(CURVE, i, "episodes", kind="int")]
                      for i in _indices(len(curve), MAX_CURVE_ROWS)]
        curve_table = table(["env steps", "wall-clock (s)", "held-out success", "SPL",
                             "collisions / episode", "episodes"], curve_rows)
    else:
        curve_table = fill(cmd.train())
    caption = ("Grey: rolling success of training episodes (`monitor/*.monitor.csv`); blue: "
               f"the periodic held-out evaluation (`{CURVE}`).")
    if doc.value(CONFIG, "method") == "distill":
        # DAgger's early iterations let the teacher drive, which flatters the grey line.
        caption += (" Early training episodes are driven partly by the teacher (DAgger's "
                    "mixing), so their success starts high and falls as the student takes "
                    "over; the held-out line is the student alone.")
    return _join(
        "## Learning curves", fig or produce(cmd.train()), caption if fig else None,
        f"From `{TRAIN}`:", train_table, f"Periodic held-out evaluation (`{CURVE}`):",
        curve_table)


# -------------------------------------------------------------------------------- evaluation


def evaluation(doc: Doc, cmd: Commands) -> str:
    if not doc.has(HELDOUT):
        return _join("## Evaluation on the held-out split", fill(cmd.eval()))
    names = [n for n in doc.value(HELDOUT, "policies") or ("policy", "oracle", "random")
             if isinstance(doc.value(HELDOUT, n), dict)]
    rows = [[f"**{n}**" if n == "policy" else n, doc.num(HELDOUT, n, "episodes", kind="int")]
            + [doc.ci(HELDOUT, n, key) for key, _ in EVAL_COLUMNS] for n in names]
    ratio = doc.value(HELDOUT, "spl_vs_oracle")
    ratio_text = (f"The policy's SPL is {doc.num(HELDOUT, 'spl_vs_oracle', kind='ratio')} of "
                  "the oracle's on the same episodes." if is_number(ratio) else
                  "No SPL ratio: the oracle scored no SPL on these episodes or the policy "
                  "was not evaluated.")
    return _join(
        "## Evaluation on the held-out split",
        f"Split `{doc.text(HELDOUT, 'split')}`, evaluation seed "
        f"{doc.num(HELDOUT, 'seed', kind='int')}: every policy is scored on the same episodes "
        "(same layouts and appearance), so differences between rows come from the policies. "
        "`oracle` is the privileged grid planner, `random` draws uniform actions. Each cell is "
        "the mean over episodes with its 95 % bootstrap interval.",
        table(["policy", "episodes", *(label for _, label in EVAL_COLUMNS)], rows),
        ratio_text, f"Source: `{HELDOUT}` and `episodes_<policy>.jsonl` beside it.")


def _sweep_factor(name: str) -> str:
    """`eval_heldout/sweep_lighting.json` -> `lighting` (the PNG beside it shares the stem)."""
    return name.removeprefix("eval_heldout/sweep_").removesuffix(".json")


def robustness(doc: Doc, cmd: Commands) -> str:
    sweeps = sorted(name for name in doc.data.get("files", {})
                    if name.startswith("eval_heldout/sweep_"))
    pngs = doc.data.get("figures", {})
    if not sweeps and not any(k.startswith("sweep_") for k in pngs):
        return _join("## Robustness", fill(cmd.sweep()))
    trained = (f" (this run: {doc.num(CONFIG, 'env', 'strength', kind='g')})"
               if is_number(doc.value(CONFIG, "env", "strength")) else "")
    parts = ["## Robustness",
             "Success and SPL as the randomization strength moves away from the one used in "
             f"training{trained}; a sweep of one factor group holds every other group at "
             "strength 0."]
    for name in sweeps:
        factor = _sweep_factor(name)
        parts.append(f"### Sweep: {factor}")
        parts.append(image(doc, f"sweep_{factor}", f"Robustness sweep {factor}"))
        rows = [[doc.num(name, "rows", i, "strength", kind="g"),
                 doc.text(name, "rows", i, "policy"),
                 doc.num(name, "rows", i, "episodes", kind="int"),
                 doc.ci(name, "rows", i, "success_rate", kind="rate"),
                 doc.ci(name, "rows", i, "spl", kind="rate")]
                for i, _ in doc.records(name, "rows")]
        parts.append(table(["strength", "policy", "episodes", "success", "SPL"], rows))
        parts.append(f"Source: `{name}`.")
    tabled = {f"sweep_{_sweep_factor(name)}" for name in sweeps}
    for fig in sorted(k for k in pngs if k.startswith("sweep_") and k not in tabled):
        factor = fig.removeprefix("sweep_")
        parts += [f"### Sweep: {factor}", image(doc, fig, f"Robustness sweep {factor}"),
                  f"Its table needs `eval_heldout/{fig}.json`: {fill(cmd.sweep())}"]
    return _join(*parts)


def video(doc: Doc, cmd: Commands) -> str:
    strip = image(doc, "frame_strip", "Frames of the recorded policy")
    gif = image(doc, "video_gif", "The policy driving (GIF)")
    if not strip and not gif:
        return _join("## The policy at work", produce(cmd.video()))
    return _join("## The policy at work",
                 "Held-out episodes recorded by `embodied video`: the robot's camera beside a "
                 "top-down map, with the action, reward and distance to the goal per step.",
                 strip, f"_{STRIP_NOTE}._" if strip else None, gif)


# -------------------------------------------------------------------------------- performance


def performance(doc: Doc, cmd: Commands) -> str:
    return _join("## Performance: before and after", _p_env(doc, cmd), _p_train(doc, cmd),
                 _p_learn(doc, cmd), _p_infer(doc, cmd), _p_loop(doc, cmd),
                 _p_this_run(doc, cmd))


def _no_rows(doc: Doc, cmd: Commands, head: str, file: str, kind: str) -> str:
    """A benchmark section without data: the command, and why when the file exists."""
    why = f"`{file}` holds no rows in the shape this page reads. " if doc.has(file) else ""
    return _join(head, why + fill(cmd.bench_cmd(kind)))


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
    return _join(head, "Env steps per second against the render-only bound (the same camera "
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
    return _join(head, "End-to-end training steps per second (rendering, inference and "
                 "updates) for each vec-env layout and torch thread setting, naive first.",
                 table(["layout", "envs", "vec env", "torch threads", "steps/s"], rows),
                 f"Speed-up of the tuned layout over the naive one: "
                 f"{doc.num(B_TRAIN, 'speedup', kind='ratio')}×.", machine(doc, B_TRAIN))


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
    return _join(head, f"Each method trained for a budget of "
                 f"{doc.num(B_LEARN, 'budget_s', kind='s')} s of wall-clock on the same machine. "
                 "Time to 90 % is read off the periodic held-out validation during training "
                 "(evaluation seed 0, which also picks the best checkpoint); the final columns "
                 "score that checkpoint on fresh held-out test episodes (seed 1).",
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
    return _join(head, f"One camera frame in, one action out (batch 1, "
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
                     n("jitter_p99_ms", "ms"), n("jitter_max_ms", "ms"),
                     n("lateness_p99_ms", "ms"), n("latency_total_p99_ms", "ms"),
                     "yes" if r.get("met") else "no"])
    return _join(head, "The exported policy in the fixed-rate ROS 2-style loop at each rate, "
                 "on an idle machine and with a CPU-burning process on the other core. Misses "
                 "count deadlines that passed without a tick and ticks that found no fresh "
                 "command; all times in ms.",
                 table(["rate (Hz)", "load", "ticks", "misses", "miss %", "jitter p99",
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
    return _join(*parts)


# -------------------------------------------------------------------------------- limits


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
        "Discrete actions at a fixed control rate; continuous control and latency "
        "randomization beyond one step are not trained for.",
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
    if is_number(episodes):
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
    return _join("## Trade-offs and known limits", "\n".join(f"- {t}" for t in items))


# -------------------------------------------------------------------------------- reproduce


def reproduce(doc: Doc, cmd: Commands) -> str:
    blocks = []
    for comment, lines in cmd.reproduce():
        blocks.append(f"# {comment}\n" + "\n".join(lines))
    parts: list[str | None] = [
        "## Reproduce every number",
        "Each command below is rebuilt from the artifact it produced (the run's `run.json`, "
        "the settings stored in each report and benchmark file).",
        "```bash\n" + "\n\n".join(blocks) + "\n```"]
    versions = doc.keys(RUN, "versions")
    if versions:
        rows = [[name, f"`{doc.text(RUN, 'versions', name)}`"] for name in versions]
        commit = doc.value(RUN, "git_commit")
        rows.append(["git commit", f"`{doc.text(RUN, 'git_commit')}`" if commit else
                     "not recorded"])
        rows.append(["learner device", doc.text(RUN, "device")])
        parts += ["Versions recorded in `run.json`:", table(["component", "version"], rows)]
    else:
        parts.append(fill(cmd.train()))
    return _join(*parts)


# -------------------------------------------------------------------------------- document


def header(doc: Doc, cmd: Commands) -> str:
    sources = ", ".join(f"`{name}`" for name in sorted(doc.data.get("files", {})))
    missing = doc.data.get("missing") or []
    errors = doc.data.get("errors") or {}
    lines = ["# Engineering notes: camera-only navigation in PyBullet",
             f"_Written by `{cmd.writeup()}` from the run directory and the benchmark folder "
             f"`{cmd.bench}`. Every measured figure below is read from one of these files: "
             f"{sources or 'none'}._"]
    if missing:
        lines.append("_Not found, so their sections name the command that produces them: "
                     + ", ".join(f"`{m}`" for m in missing) + "._")
    if errors:
        lines.append("_Unreadable, treated as missing: "
                     + "; ".join(f"`{k}` ({v})" for k, v in sorted(errors.items())) + "._")
    return _join(*lines)


SECTIONS: tuple[Callable[[Doc, Commands], str], ...] = (
    header, summary, architecture_section, decisions, environment, learning, evaluation,
    robustness, video, performance, limits, reproduce)
"""The notes, top to bottom."""
