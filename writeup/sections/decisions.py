"""Key decisions: each choice with its alternatives, the reason and what was measured."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from writeup.commands import Commands, produce
from writeup.doc import NA, Doc, is_number
from writeup.sections.common import (
    B_ENV,
    B_INFER,
    B_LEARN,
    B_TRAIN,
    CONFIG,
    DEPLOY,
    HELDOUT,
    degree_range,
    join,
    method_text,
    resolution,
    table,
)


def _decision(title: str, chosen: str, alternatives: str, why: str, measured: str) -> str:
    return join(f"### {title}", f"**Chosen.** {chosen}", f"**Alternatives.** {alternatives}",
                 f"**Why.** {why}", f"**Measured.** {measured}")


def _env_row(doc: Doc, resolution: Any) -> int | None:
    hits = [i for i, r in doc.records(B_ENV, "resolutions") if r.get("resolution") == resolution]
    return hits[0] if hits else None


def decisions(doc: Doc, cmd: Commands) -> str:
    return join("## Key decisions", *(f(doc, cmd) for f in (
        _d_renderer, _d_robot, _d_resolution, _d_vec, _d_method, _d_student, _d_runtime,
        _d_messages,
        _d_checkpoints, _d_success)))


def _d_renderer(doc: Doc, cmd: Commands) -> str:
    width = doc.value(CONFIG, "env", "observation", "width") or 64
    row = _env_row(doc, width)
    if row is None:
        row = _env_row(doc, 64)
    parts = []
    if row is not None:
        def n(key: str, kind: str) -> str:
            return doc.num(B_ENV, "resolutions", row, key, kind=kind)
        parts.append(f"at {n('resolution', 'int')} px the env steps "
                     f"{n('env_steps_per_s', 'per_s')} times a second against a render-only "
                     f"bound of {n('render_fps', 'per_s')} frames/s "
                     f"({n('env_vs_bound', 'ratio')} of it): rendering is most of a step's "
                     f"cost ({B_ENV}).")
    parts += [_tiny_fill(doc), _egl(doc)]
    measured = " ".join(p for p in parts if p) or produce(cmd.bench_cmd("env"))
    return _decision(
        "Renderer: PyBullet TinyRenderer on the CPU",
        "`ER_TINY_RENDERER` in a DIRECT client, one client per env process.",
        "the EGL plugin (hardware OpenGL), an external renderer (Isaac Sim, Unity, Habitat-Sim).",
        "it needs no GPU and no display, gives the same pixels on every machine and scales with "
        "CPU cores, one env per process. Without a GPU the EGL plugin falls back to software GL, "
        "is slower, and takes over TinyRenderer's calls in the same process.",
        join(measured, _world_builds(doc)))


def _tiny_fill(doc: Doc) -> str | None:
    """TinyRenderer's cost of an empty frame and of each filled pixel (a full-screen quad)."""
    t = ("renderers", "tiny_renderer_fill")
    if not isinstance(doc.value(B_ENV, *t), Mapping):
        return None
    return (f"TinyRenderer at {doc.num(B_ENV, *t, 'size', kind='int')} px takes "
            f"{doc.num(B_ENV, *t, 'empty_frame_us', kind='ns')} µs for an empty frame and "
            f"{doc.num(B_ENV, *t, 'ns_per_filled_pixel', kind='ns')} ns per filled pixel of a "
            "full-screen quad.")


def _egl(doc: Doc) -> str | None:
    """The EGL plugin on Mesa llvmpipe: the env's rate and its fill cost at two frame sizes."""
    e = ("renderers", "egl_llvmpipe")
    if not isinstance(doc.value(B_ENV, *e), Mapping):
        return None
    if doc.value(B_ENV, *e, "available") is not True:
        return f"The EGL plugin could not be measured here ({doc.text(B_ENV, *e, 'reason')})."
    text = (f"PyBullet's EGL plugin on Mesa llvmpipe (software OpenGL, no GPU; world build: "
            f"{doc.text(B_ENV, *e, 'world')}, since the plugin cannot convert in-memory "
            f"meshes) steps the env {doc.num(B_ENV, *e, 'env_steps_per_s', kind='per_s')} "
            f"times a second and renders {doc.num(B_ENV, *e, 'render_fps', kind='per_s')} "
            "frames/s.")
    big, small = (*e, "fill", "256"), (*e, "fill", "64")
    if isinstance(doc.value(B_ENV, *big), Mapping) and isinstance(
            doc.value(B_ENV, *small), Mapping):
        text += (f" It fills a pixel in {doc.num(B_ENV, *big, 'ns_per_filled_pixel', kind='ns')}"
                 f" ns at {doc.num(B_ENV, *big, 'size', kind='int')} px but in "
                 f"{doc.num(B_ENV, *small, 'ns_per_filled_pixel', kind='ns')} ns at "
                 f"{doc.num(B_ENV, *small, 'size', kind='int')} px, where its fixed cost per "
                 f"frame ({doc.num(B_ENV, *small, 'empty_frame_us', kind='ns')} µs for an empty "
                 "frame) dominates.")
    return text


def _world_builds(doc: Doc) -> str | None:
    """Render-only frames/s of each world build over the same views, per way of driving."""
    rows = doc.records(B_ENV, "geometry_variants")
    if not rows:
        return None
    drivers = [k.split("|", 1)[1] for k in rows[0][1] if str(k).startswith("render_fps|")]
    if not drivers:
        return None
    body = []
    for i, _ in rows:
        v = ("geometry_variants", i)
        body.append([doc.text(B_ENV, *v, "variant")] + [
            f"{doc.num(B_ENV, *v, f'render_fps|{d}', kind='per_s')} "
            f"({doc.num(B_ENV, *v, f'vs_chosen|{d}', kind='ratio')}×)" for d in drivers])
    return join("How the world is built into triangles sets the renderer's work: render-only "
                "frames/s of each world build over the same scenes and camera poses, per way of "
                f"driving (× the chosen build in brackets; {B_ENV}):",
                table(["world build", *drivers], body))


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
    res = resolution(doc)
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
    chosen = f"this run used {method_text(doc)}." if doc.has(CONFIG) else method_text(doc) + "."
    schedule = _dagger_schedule(doc)
    if schedule:
        chosen += f" {schedule}"
    return _decision(
        "Learning method: teacher → student distillation, pixel PPO as the baseline", chosen,
        "pixel PPO from the task reward alone; a PPO teacher on privileged state instead of "
        "the planner; PPO fine-tuning of the distilled student; 150 or 300 gradient steps "
        "after each DAgger iteration; rollouts driven by the student's likeliest action "
        "(`distill.rollout_decision=argmax`); a second imitation term on the teacher's group "
        "of actions, driving or turning in place (`distill.group_weight=1`).",
        "the camera student gets the teacher's action on every frame it sees, a dense "
        "supervised signal, where PPO must discover the goal from reward; DAgger labels the "
        "states the student itself visits, which removes behaviour cloning's compounding "
        "errors (Learning by Cheating, Chen et al. 2019). Rollouts driven as the policy is "
        "deployed label the states it really reaches, recovery drives included; 75 gradient "
        "steps per iteration instead of 150 reached more goals with them, at the same contact "
        "as 150 steps with argmax rollouts, and 300 fewer; the group term lost more goals "
        "than it won and touched obstacles in more episodes (three training seeds, five test "
        "sets; the README's table of the recipe's routes).", measured)


ROLLOUT_DECISIONS_TEXT = {
    "argmax": "the student's likeliest action",
    "drive_or_turn": "the student deciding as it is deployed (drive or turn in place first, "
                     "recovery drives included)",
}


def _dagger_schedule(doc: Doc) -> str | None:
    """How a distillation run's DAgger iterations collected and fitted, from config.yaml (None
    for another method, or a config that does not say)."""
    if doc.value(CONFIG, "method") != "distill":
        return None
    frames = doc.value(CONFIG, "distill", "steps_per_iteration")
    steps = doc.value(CONFIG, "distill", "grad_steps_per_iteration")
    if not (is_number(frames) and is_number(steps)):
        return None
    driver = ROLLOUT_DECISIONS_TEXT.get(doc.value(CONFIG, "distill", "rollout_decision")
                                        or "argmax", "its recorded rollout decision")
    # a config.yaml from before `train_while_collecting` took turns
    overlapped = doc.value(CONFIG, "distill", "train_while_collecting") is True
    fit = (", while a second thread fits the student on the frames already gathered with "
           if overlapped else ", then fits the student with ")
    text = (f"Each DAgger iteration collects "
            f"{doc.num(CONFIG, 'distill', 'steps_per_iteration', kind='int')} frames driven by "
            f"{driver}{' (a copy of the student one iteration behind)' if overlapped else ''}"
            f"{fit}{doc.num(CONFIG, 'distill', 'grad_steps_per_iteration', kind='int')} "
            "gradient steps")
    clearance = doc.value(CONFIG, "distill", "teacher_clearance_m")
    if is_number(clearance) and clearance > 0:
        text += (f"; the planner's labels keep "
                 f"{doc.num(CONFIG, 'distill', 'teacher_clearance_m', kind='metric')} m from "
                 "obstacles and walls")
    return text + "."


def _weighting(setting) -> str:
    """The class weighting of a run's imitation loss, from its `distill` settings."""
    if not setting("balance_actions", False):
        return "off"
    final = setting("balance_power_final", 0.5)
    if final == 0.5:
        return "on (1/sqrt of each action's frequency)"
    return f"on, its exponent moving from 1/2 to {final:g} over the run"


def _d_student(doc: Doc, cmd: Commands) -> str:
    def setting(key: str, default: Any) -> Any:
        value = doc.value(CONFIG, "distill", key)
        return default if value is None else value

    # env.observation.frame_stack; older run configs kept it at the top level
    stack = (doc.value(CONFIG, "env", "observation", "frame_stack")
             or doc.value(CONFIG, "frame_stack") or 1)
    lstm = doc.value(CONFIG, "arch", "lstm_hidden") or 0
    memory = (f"an LSTM of {lstm} units between the CNN and the actor, trained on "
              f"{setting('sequence_length', 0)}-step sequences with {setting('burn_in', 0)} "
              "burn-in steps" if lstm else "no memory beyond the stack")
    keep_in_view = ("the teacher keeping a visible goal in view where it can, "
                    if setting("teacher_keep_goal_in_view", False) else "")
    fov = degree_range(doc, CONFIG, "env", "randomization", "camera_fov_deg")
    lens = f"a camera field of view drawn from {fov}, " if fov else ""
    aux_weight = setting("aux_weight", 0.0)
    auxiliary = (f"an auxiliary head on the CNN features predicting the lidar ranges and the "
                 f"goal's bearing (weight {aux_weight:g}), " if aux_weight else "")
    chosen = (f"this run: {lens}frame stack {stack}, {memory}, "
              f"{setting('teacher_search', 'left')} search while the goal is out of view, "
              f"{keep_in_view}{auxiliary}"
              f"class-weighted loss {_weighting(setting)}, colour augmentation "
              f"{'on' if setting('augment_colour', False) else 'off'}, random shift "
              f"{setting('augment_shift_px', 0)} px"
              f"{'' if setting('augment_shift_horizontal', True) else ', up and down only'}.")
    if doc.has(HELDOUT) and doc.value(HELDOUT, "policy") is not None:
        measured = (f"held-out success {doc.ci(HELDOUT, 'policy', 'success_rate')}, "
                    f"{doc.num(HELDOUT, 'policy', 'collisions_per_episode', kind='metric')} "
                    f"collisions per episode ({HELDOUT}); the robustness sweep below isolates "
                    "appearance.")
    else:
        measured = produce(cmd.eval())
    return _decision(
        "Making the teacher imitable from pixels", chosen,
        "a narrower lens (80–95°); the plain planner as teacher; a teacher that searches left "
        "only until it has first seen the goal; a search that keeps the way the robot already "
        "rotates while the image shows no goal (`distill.teacher_search=continue`); an "
        "unweighted loss; shift augmentation only; a recurrent student "
        "(`arch.lstm_hidden`, an LSTM over the CNN features trained on sequence windows); no "
        "auxiliary task (`distill.aux_weight=0`).",
        "a memoryless camera student can only copy what its images determine. Where the "
        "teacher drives on round an obstacle with the goal out of the image, the student turns "
        "in place instead; a wider lens leaves fewer such steps. A teacher that "
        "remembers having seen the goal labels the same goal-less image \"left\" early and "
        "\"right\" later, and the student dithers between them; the state-only rule (out of view "
        "and turning in place: turn left) removes that; keeping the rotation instead, so that a "
        "turn towards the plan's waypoint is not reversed once the goal leaves the image, did not "
        "help the students over seeds. Searching fills the buffer with "
        "\"turn left\" labels, which an unweighted loss lets drown the rare \"drive to the "
        "beacon\" ones. Held-out walls and obstacles have hues the training split never draws; "
        "swapping and rescaling green and blue (red untouched) makes colour useless for "
        "finding them while the red beacon stays the one red thing. Two stacked frames tell "
        "the student which way it was turning. An LSTM remembers further back; over training "
        "seeds it traded contact for success rather than removing the dithering (the README's "
        "table of the recipe's routes gives its measured result). An auxiliary task (predicting "
        "from the image the lidar ranges and the goal's bearing the simulator knows) makes the "
        "features encode how near the obstacles are; over training seeds it touched obstacles "
        "in fewer episodes at the same success.",
        measured)


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
