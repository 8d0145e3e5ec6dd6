"""The data-flow diagram, defined once and drawn twice: Mermaid for Markdown, PNG for HTML."""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch


@dataclass(frozen=True)
class Node:
    id: str
    title: str
    detail: str
    col: float
    """Column in the PNG layout (left to right)."""
    row: float
    """Row in the PNG layout (0 = middle, positive = up)."""
    stage: str
    """Colour group: config, sim, learn, artifact, use, report."""


NODES: tuple[Node, ...] = (
    Node("cfg", "config.yaml", "TrainConfig preset\n+ overrides", 0, 0, "config"),
    Node("env", "CameraNavEnv", "PyBullet + TinyRenderer\nrandomized scenes", 1, 0, "sim"),
    Node("vec", "vec env", "n envs\nSubprocVecEnv", 2, 0, "sim"),
    Node("ppo", "pixel PPO", "stable-baselines3", 3, 0.7, "learn"),
    Node("dis", "teacher -> student", "DAgger on the\nstudent's own visits", 3, -0.7, "learn"),
    Node("ckpt", "checkpoint", "policy.pt\nweights only", 4, 0, "artifact"),
    Node("eval", "eval", "held-out split\nbaselines, sweeps", 5, 1.1, "use"),
    Node("video", "video", "MP4 + GIF\nwith overlays", 5, 0, "use"),
    Node("export", "export", "ONNX\n+ parity check", 5, -1.1, "use"),
    Node("deploy", "deploy loop", "ROS 2-style nodes\nrosbag2", 6, -1.1, "use"),
    Node("writeup", "writeup", "ENGINEERING_NOTES.md\nindex.html", 7, 0, "report"),
)

EDGES: tuple[tuple[str, str], ...] = (
    ("cfg", "env"), ("env", "vec"), ("vec", "ppo"), ("vec", "dis"), ("ppo", "ckpt"),
    ("dis", "ckpt"), ("ckpt", "eval"), ("ckpt", "video"), ("ckpt", "export"),
    ("export", "deploy"), ("eval", "writeup"), ("video", "writeup"), ("deploy", "writeup"),
)

PICTURE_NOTE = "The same diagram as a picture:"
"""Opens the Markdown line that links the PNG for viewers without Mermaid; the HTML, which
shows the picture in the diagram's place, leaves that line out."""

COLOURS = {"config": "#e8eef7", "sim": "#e6f4ea", "learn": "#fdf1dc", "artifact": "#f3e8fd",
           "use": "#e7f5f8", "report": "#fde7e7"}

FOLDERS: tuple[tuple[str, str], ...] = (
    ("envs/", "the gymnasium env: config and randomization ranges, pure scene sampler, "
              "scene builder and camera, occupancy grid and planner"),
    ("training/", "config presets, pixel PPO, teacher -> student distillation, vec-env "
                  "layout, the run directory and its hooks"),
    ("policies/", "networks, the weights-only checkpoint format, oracle, ONNX / TorchScript "
                  "export, ROS 2 message shims, nodes, the deploy loop"),
    ("eval/", "rollouts, pure navigation metrics, reports with baselines, robustness "
              "sweeps, videos, benchmarks of env, inference and control loop"),
    ("writeup/", "these notes: reads the run directory and benchmark JSON, imports no other "
                 "package of the project"),
    ("tests/", "pytest suites per stage, each on tiny configs that run in seconds"),
)
"""The folder map: what each top-level package holds."""


def mermaid() -> str:
    """The diagram as a Mermaid flowchart (without the code fence)."""
    lines = ["flowchart LR"]
    for n in NODES:
        title = n.title.replace("->", "→")
        detail = n.detail.replace("\n", "<br/>")
        lines.append(f'    {n.id}["{title}<br/>{detail}"]')
    lines += [f"    {a} --> {b}" for a, b in EDGES]
    return "\n".join(lines)


BOX_W, BOX_H = 0.86, 0.62


def draw(path: str) -> None:
    """Draw the diagram as a PNG at `path` (Agg canvas, no display or pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(15.0, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.96))
    ax.set_xlim(-0.5, 7.5)
    ax.set_ylim(-1.6, 1.6)
    ax.axis("off")
    where = {n.id: n for n in NODES}
    for n in NODES:
        ax.add_patch(FancyBboxPatch((n.col - BOX_W / 2, n.row - BOX_H / 2), BOX_W, BOX_H,
                                    boxstyle="round,pad=0.02,rounding_size=0.06",
                                    facecolor=COLOURS[n.stage], edgecolor="#555555",
                                    linewidth=1.0))
        ax.text(n.col, n.row + 0.14, n.title.replace("->", "→"), ha="center", va="center",
                fontsize=10.5, fontweight="bold")
        ax.text(n.col, n.row - 0.1, n.detail, ha="center", va="center", fontsize=7.8,
                linespacing=1.3, color="#333333")
    for a, b in EDGES:
        start, end = where[a], where[b]
        ax.add_patch(FancyArrowPatch(
            _anchor(start, end), _anchor(end, start), arrowstyle="-|>", mutation_scale=12,
            color="#444444", linewidth=1.1, shrinkA=2, shrinkB=2))
    fig.savefig(path, format="png", dpi=110)


def _anchor(node: Node, other: Node) -> tuple[float, float]:
    """Where an arrow between `node` and `other` leaves `node`'s box: its side or its top."""
    if abs(other.col - node.col) < 1e-9:  # same column: leave through top or bottom
        dy = BOX_H / 2 if other.row > node.row else -BOX_H / 2
        return (node.col, node.row + dy)
    dx = BOX_W / 2 if other.col > node.col else -BOX_W / 2
    return (node.col + dx, node.row)
