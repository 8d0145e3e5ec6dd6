"""The engineering notes built from a tiny real run: links, numbers against their sources,
missing artifacts, a self-contained HTML page."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import embodied_cli
from writeup.build import numbers, printed, render_markdown, write_writeup
from writeup.collect import collect

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium")
REQUIRE_BROWSER = os.environ.get("EMBODIED_REQUIRE_BROWSER") == "1"
"""Set by .ci/run, which installs Chromium: there the browser test must run, never skip."""
PROJECT_PACKAGES = {"envs", "training", "policies", "eval", "embodied_cli"}


# ------------------------------------------------------------------------------ fixtures


def _machine() -> dict[str, Any]:
    return {"cpu": "Test CPU (invented)", "cores": 2, "load_avg_1m": 0.35, "python": "3.11.7",
            "pybullet": "3.2.7", "torch": "2.13.0+cpu", "onnxruntime": "1.32.0"}


def _curve(times: list[float], rates: list[float]) -> list[dict[str, float]]:
    return [{"wall_clock_s": t, "timesteps": int(t * 90), "success_rate": r}
            for t, r in zip(times, rates)]


def fake_bench(folder: Path) -> Path:
    """Benchmark files with invented figures in the schemas that eval/bench.py,
    eval/bench_deploy.py and training/bench.py write; built here so that every table of the
    notes has data without running a benchmark."""
    folder.mkdir(parents=True, exist_ok=True)
    backends = {"sb3_predict": (0.62, 0.99, 0.65, 2.10), "torch": (0.37, 0.51, 0.38, 1.20),
                "torchscript": (0.32, 0.41, 0.33, 1.05), "onnxruntime": (0.11, 0.15, 0.12, 0.61)}
    files = {
        "bench_env.json": {
            "machine": _machine(),
            "settings": {"resolutions": [48, 64, 84], "steps": 1000, "resets": 1000, "seed": 0,
                         "warmup_steps": 50, "rounds": 10, "warmup_resets": 20},
            "resolutions": [
                {"resolution": 48, "env_steps_per_s": 1650.2, "render_fps": 1901.7,
                 "env_vs_bound": 0.868},
                {"resolution": 64, "env_steps_per_s": 1012.4, "render_fps": 1190.3,
                 "env_vs_bound": 0.851},
                {"resolution": 84, "env_steps_per_s": 640.9, "render_fps": 752.5,
                 "env_vs_bound": 0.852}],
            "naive_mesh_robot": {"urdf": "racecar/racecar.urdf", "resolution": 64,
                                 "env_steps_per_s": 312.8, "render_fps": 341.0,
                                 "env_vs_bound": 0.917, "speedup_of_primitive_robot": 3.24},
            "memory": {"resets": 1000, "rss_growth_mb": 1.37, "reset_ms": 5.12},
            "targets": {"env_vs_bound": 0.8, "steps_per_s_64": 1000.0, "rss_growth_mb": 5.0,
                        "oracle_success": 0.95},
            "oracle": {"split": "heldout", "episodes": 100, "errors": 0,
                       "oracle_heldout_success": 0.98, "success_ci95": [0.95, 1.0],
                       "spl": 0.934, "collisions_per_episode": 0.12, "mean_steps": 61.3,
                       "wall_s": 88.1, "target": 0.95}},
        "bench_train.json": {
            "machine": _machine(),
            "rows": [
                {"layout": "naive", "n_envs": 1, "vec_env": "dummy", "threads": "default",
                 "steps_per_s": 212.4},
                {"layout": "subproc", "n_envs": 4, "vec_env": "subproc", "threads": "default",
                 "steps_per_s": 151.0},
                {"layout": "tuned", "n_envs": 4, "vec_env": "subproc",
                 "threads": "1 collect / 2 train", "steps_per_s": 371.9}],
            "speedup": 1.75},
        "bench_learn.json": {
            "machine": _machine(),
            "budget_s": 1200.0,
            "rows": [
                {"method": "distill", "run_dir": "runs/bench/learn_distill",
                 "time_to_90pct_heldout_s": 512.3, "final_heldout_success": 0.93,
                 "final_heldout_spl": 0.81, "timesteps": 120000, "wall_clock_s": 1190.4,
                 "curve": _curve([200, 400, 600, 800], [0.4, 0.8, 0.92, 0.93])},
                {"method": "ppo", "run_dir": "runs/bench/learn_ppo",
                 "time_to_90pct_heldout_s": None, "final_heldout_success": 0.31,
                 "final_heldout_spl": 0.22, "timesteps": 300000, "wall_clock_s": 1201.7,
                 "curve": _curve([300, 600, 900, 1200], [0.05, 0.1, 0.2, 0.31])}]},
        "bench_infer.json": {
            "backends": {k: dict(zip(("p50_ms", "p99_ms", "mean_ms", "max_ms"), v))
                         for k, v in backends.items()},
            "speedup_p50_vs_sb3": {k: 0.62 / v[0] for k, v in backends.items()},
            "target": {"onnx_p99_ms": 0.3, "met": True},
            "parity": {"onnx": {"max_abs_diff": 2.4e-7, "action_agreement": 1.0},
                       "torchscript": {"max_abs_diff": 0.0, "action_agreement": 1.0}},
            "arch": {"features_dim": 256}, "image_shape": [64, 64, 3], "n": 2000,
            "warmup": 200, "threads": 1, "machine": _machine()},
        "bench_loop.json": {
            "rows": [_loop_row(20.0, "idle", 0, 0.41, True),
                     _loop_row(20.0, "busy core", 1, 0.97, True),
                     _loop_row(50.0, "idle", 2, 0.55, True),
                     _loop_row(50.0, "busy core", 31, 3.8, False)],
            "targets": {"miss_percent_by_rate": {"20.0": 0.0, "50.0": 0.1},
                        "jitter_p99_ms": 2.0},
            "ticks": 10000, "warmup_ticks": 20, "rt_priority": None, "machine": _machine()},
    }
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content, indent=2))
    return folder


def _loop_row(rate: float, load: str, misses: int, jitter: float, met: bool) -> dict[str, Any]:
    return {"rate_hz": rate, "load": load, "ticks": 10000, "deadline_misses": misses,
            "skipped": misses, "stale_commands": 0, "sim_reset_misses": 3,
            "miss_percent": 100.0 * misses / 10000, "jitter_p99_ms": jitter,
            "jitter_max_ms": 4 * jitter, "lateness_p99_ms": jitter * 0.9,
            "latency_total_p99_ms": 0.52, "latency_total_max_ms": 2.2,
            "inference_p99_ms": 0.16, "episodes": 12, "checks": {"jitter": met}, "met": met}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny real run with every stage's artifacts: training, held-out report with a sweep,
    video, failure videos, ONNX export and a short deploy loop."""
    d = tmp_path_factory.mktemp("writeup") / "run"
    cli = embodied_cli.main
    assert cli(["train", "--config", "tiny", "--run-dir", str(d), "--quiet"]) == 0
    assert cli(["eval", str(d), "--episodes", "2", "--quiet", "--sweep", "strength=0,1",
                "--sweep-episodes", "1"]) == 0
    assert cli(["video", str(d), "--episodes", "1"]) == 0
    assert cli(["video", str(d), "--failures", "1", "--episodes", "2"]) == 0
    assert cli(["export", str(d)]) == 0
    assert cli(["deploy", str(d), "--duration", "2"]) == 0
    return d


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    return fake_bench(tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="module")
def built(run_dir: Path, bench_dir: Path, tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("notes") / "writeup"
    paths = write_writeup(run_dir, bench_dir, out)
    data = collect(run_dir, bench_dir)
    # the figures are part of what render_markdown sees; rebuild that view for the checks
    from writeup.build import with_figures

    figures = {k: v for k, v in paths.items() if k not in ("markdown", "html")}
    data = with_figures(data, figures, out)
    return {"out": out, "paths": paths, "data": data,
            "md": paths["markdown"].read_text(encoding="utf-8"),
            "html": paths["html"].read_text(encoding="utf-8")}


# ------------------------------------------------------------------------------ helpers


def read_source(path: str) -> Any:
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if p.suffix == ".yaml":
        return yaml.safe_load(text)
    return json.loads(text)


def walk(content: Any, path: str) -> Any:
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        content = content[int(index)] if index else content[name]
    return content


def parse_printed(text: str) -> tuple[float, float]:
    """A printed number back as (value, half of its last shown digit)."""
    text = text.replace(",", "")
    if "e" in text:
        mantissa, exponent = text.split("e")
        decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
        return float(text), 0.5 * 10.0 ** (int(exponent) - decimals)
    decimals = len(text.split(".")[1]) if "." in text else 0
    return float(text), 0.5 * 10.0 ** -decimals


def tables(md: str) -> list[list[str]]:
    """The Markdown pipe tables, each as its lines."""
    out, block = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            out.append(block)
            block = []
    return out


def section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    end = md.find("\n## ", start + 1)
    return md[start:end if end > 0 else None]


def linked_files(md: str) -> list[str]:
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", md)
    links = [t for t in re.findall(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)", md)
             if not t.startswith(("http://", "https://", "#"))]
    return images + links


# ------------------------------------------------------------------------------ tests


def test_collect_reads_every_artifact(built: dict[str, Any]) -> None:
    data = built["data"]
    assert data["missing"] == [] and data["errors"] == {}
    for name in ("config.yaml", "run.json", "train_summary.json", "eval_during_training.jsonl",
                 "eval_heldout/summary.json", "eval_heldout/sweep_all.json",
                 "policy.parity.json", "deploy/deploy_report.json", "bench_env.json",
                 "bench_train.json", "bench_learn.json", "bench_infer.json", "bench_loop.json"):
        assert name in data["files"], name
        assert Path(data["sources"][name]).is_file()
    assert data["monitor"] and data["media"]["video_gif"] and data["media"]["sweep_png"]
    # every env's training episodes are read, so the learning curve has its training line
    assert all(data["monitor"].values()), {k: len(v) for k, v in data["monitor"].items()}
    assert "Grey: rolling success of training episodes" in built["md"]


def test_files_are_written_and_every_linked_image_exists(built: dict[str, Any]) -> None:
    out, md = built["out"], built["md"]
    assert (out / "ENGINEERING_NOTES.md").is_file() and (out / "index.html").is_file()
    links = linked_files(md)
    assert links, "the notes link no figure"
    for link in links:
        assert (out / link).is_file(), link
    for name in ("architecture", "learning_curves", "learning_by_method", "frame_strip",
                 "video_gif", "sweep_all", "deploy_latency"):
        assert built["paths"][name].is_file(), name
        assert built["paths"][name].stat().st_size > 1000, name
    assert not [p for p in out.rglob(".*")], "temp files left behind"
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o666 & ~umask}, modes  # as open() would make them


def test_every_printed_number_equals_its_source(built: dict[str, Any]) -> None:
    data, md = built["data"], built["md"]
    values = numbers(data)
    assert len(values) > 150
    for key, value in values.items():
        file, path = key.split(":", 1)
        source = walk(read_source(data["sources"][file]), path)
        assert float(source) == value, key
    for p in printed(data):
        assert p.text in md, p.key
        if not isinstance(p.value, str):
            shown, tolerance = parse_printed(p.text)
            assert abs(shown - p.value) <= tolerance * (1 + 1e-9), (p.key, p.text, p.value)


def test_every_number_in_a_data_table_has_a_source(built: dict[str, Any]) -> None:
    texts = sorted({p.text for p in printed(built["data"])}, key=len, reverse=True)
    checked = 0
    for block in tables(built["md"]):
        if not any(t in line for line in block[2:] for t in texts):
            continue  # a table of prose (the folder map) prints no figures
        for line in block[2:]:
            cells = [c.strip() for c in line.strip().strip("|").split("|")][1:]
            for cell in cells:
                rest = cell.replace("n/a", "")
                for t in texts:
                    rest = rest.replace(t, "")
                assert not re.search(r"\d", rest), (line, cell)
                checked += 1
    assert checked > 100


def test_headline_tables_match_the_json(built: dict[str, Any]) -> None:
    data, md = built["data"], built["md"]
    summary = json.loads((Path(data["run_dir"]) / "eval_heldout/summary.json").read_text())
    for name in ("policy", "oracle", "random"):
        s = summary[name]
        lo, hi = s["spl_ci95"]
        cell = f"{s['spl']:.2f} [{lo:.2f}, {hi:.2f}]"
        body = tables(section(md, "Evaluation"))[0][2:]
        row = next(line for line in body
                   if line.startswith(f"| {name} |") or line.startswith(f"| **{name}** |"))
        assert cell in row, (name, row)
    cfg = yaml.safe_load((Path(data["run_dir"]) / "config.yaml").read_text())
    env_section = section(md, "The environment")
    groups = json.loads((Path(data["run_dir"]) / "run.json").read_text())["randomization_groups"]
    for field, (low, high) in cfg["env"]["randomization"].items():
        group = groups[field]
        assert f"| `{field}` | {low:g} | {high:g} | {group} |" in env_section, field
    bench = json.loads((Path(data["bench_dir"]) / "bench_infer.json").read_text())
    onnx = bench["backends"]["onnxruntime"]
    assert f"| onnxruntime | {onnx['p50_ms']:.3f} | {onnx['p99_ms']:.3f} |" in md
    learn = section(md, "Performance")
    assert "| ppo | not reached |" in learn and "| distill | 512.3 |" in learn
    assert "Test CPU (invented), 2 cores" in learn


def test_summary_states_the_headline_numbers(built: dict[str, Any]) -> None:
    data, md = built["data"], built["md"]
    text = section(md, "Summary")
    train = json.loads((Path(data["run_dir"]) / "train_summary.json").read_text())
    assert f"{train['timesteps']:,d} env steps" in text
    assert "SPL" in text and "oracle" in text and "random" in text
    assert "0.110 ms" in text  # ONNX Runtime p50 of the benchmark file
    assert len(re.findall(r"\.(?:\s|$)", text.split("\n\n", 1)[1])) == 3


def test_spl_ratio_is_printed_when_the_oracle_scores(built: dict[str, Any]) -> None:
    data = json.loads(json.dumps(built["data"]))
    data["files"]["eval_heldout/summary.json"]["spl_vs_oracle"] = 0.5647
    md = render_markdown(data)
    assert "SPL is 0.56 of the oracle's" in md
    assert numbers(data)["eval_heldout/summary.json:spl_vs_oracle"] == 0.5647


@pytest.mark.parametrize(("distill", "expected"), [
    ({"steps_per_iteration": 4000, "grad_steps_per_iteration": 75,
      "rollout_decision": "drive_or_turn", "teacher_clearance_m": 0.15},
     "Each DAgger iteration collects 4,000 frames driven by the student deciding as it is "
     "deployed (drive or turn in place first, recovery drives included), then fits the "
     "student with 75 gradient steps; the planner's labels keep 0.15 m from obstacles"),
    ({"steps_per_iteration": 64, "grad_steps_per_iteration": 4},
     "collects 64 frames driven by the student's likeliest action, then fits the student "
     "with 4 gradient steps."),
    ({"steps_per_iteration": 4000, "grad_steps_per_iteration": 75,
      "train_while_collecting": True},
     "collects 4,000 frames driven by the student's likeliest action (a copy of the student "
     "one iteration behind), while a second thread fits the student on the frames already "
     "gathered with 75 gradient steps."),
])
def test_the_method_decision_states_the_dagger_schedule(built: dict[str, Any],
                                                        distill: dict[str, Any],
                                                        expected: str) -> None:
    data = json.loads(json.dumps(built["data"]))
    data["files"]["config.yaml"]["method"] = "distill"
    data["files"]["config.yaml"]["distill"] = distill
    text = section(render_markdown(data), "Key decisions")
    assert expected in " ".join(text.split())


def test_missing_artifacts_name_the_command_instead(run_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare_run"
    bare.mkdir()
    for name in ("config.yaml", "run.json", "train_summary.json"):
        shutil.copy(run_dir / name, bare / name)
    empty_bench = tmp_path / "no_bench"
    paths = write_writeup(bare, empty_bench, tmp_path / "notes")
    md = paths["markdown"].read_text()
    for cmd in (f"embodied eval {bare}", f"embodied video {bare}", f"embodied export {bare}",
                f"embodied deploy {bare}", f"embodied bench env --out {empty_bench}",
                f"embodied bench train --out {empty_bench}",
                f"embodied bench learn --out {empty_bench}",
                f"embodied bench infer {bare} --out {empty_bench}",
                f"embodied bench loop {bare} --out {empty_bench}"):
        assert f"Run `{cmd}" in md or f"run `{cmd}" in md, cmd
    assert "Run `embodied bench learn" in section(md, "Performance")
    keys = numbers(collect(bare, empty_bench))
    assert keys and all(k.split(":")[0] in ("config.yaml", "run.json", "train_summary.json")
                        for k in keys)
    for link in linked_files(md):
        assert (tmp_path / "notes" / link).is_file()


def test_files_of_another_shape_print_na_or_the_command(run_dir: Path, tmp_path: Path) -> None:
    bench = tmp_path / "odd_bench"
    bench.mkdir()
    (bench / "bench_learn.json").write_text(json.dumps(
        {"rows": [{"method": "distill"}, "not a row"], "budget_s": None}))
    (bench / "bench_loop.json").write_text("{not json")
    (bench / "bench_env.json").write_text(json.dumps([1, 2, 3]))
    data = collect(run_dir, bench)
    assert set(data["errors"]) == {"bench_loop.json"}
    md = render_markdown(data)
    assert "| distill | not reached | n/a | n/a | n/a | n/a |" in md
    assert f"Run `embodied bench loop {run_dir} --out {bench}` to fill this table." in md
    assert "`bench_env.json` holds no rows" in md
    assert not any(k.startswith(("bench_", "bench_env")) for k in numbers(data))


def test_html_is_self_contained(built: dict[str, Any]) -> None:
    page = built["html"]
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "url(" not in page
    for tag, attr, value in re.findall(r"<(\w+)[^>]*?\s(src|href)=\"([^\"]*)\"", page):
        if attr == "src":
            assert value.startswith("data:image/"), value[:60]
        else:
            assert tag == "a", tag
            assert value.startswith(("data:image/", "#", "http://", "https://")), value[:60]
    images = re.findall(r"<img [^>]*>", page)
    assert images and all('src="data:image/' in img for img in images)
    # the Mermaid block becomes the architecture picture
    assert "flowchart LR" not in page
    assert len(images) == len(re.findall(r"!\[", built["md"])) + 1
    assert page.count("<table>") == len(tables(built["md"]))


def test_markdown_renders_with_a_standard_parser(built: dict[str, Any]) -> None:
    import markdown
    html = markdown.markdown(built["md"], extensions=["tables", "fenced_code"])
    assert html.count("<table>") == len(tables(built["md"]))
    assert html.count("<img") == len(re.findall(r"!\[", built["md"]))
    assert 'class="language-mermaid"' in html


@pytest.mark.skipif(not CHROMIUM and not REQUIRE_BROWSER, reason="no chromium on this machine")
def test_html_renders_in_headless_chromium(built: dict[str, Any], tmp_path: Path) -> None:
    import imageio.v3 as iio

    assert CHROMIUM, "EMBODIED_REQUIRE_BROWSER=1 but no chromium on PATH"
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400",
                    f"--screenshot={shot}", built["paths"]["html"].resolve().as_uri()],
                   check=True, timeout=120, capture_output=True)
    assert shot.is_file()
    pixels = iio.imread(shot)[..., :3].astype(np.float64)
    assert pixels.std() > 5.0, "the screenshot is blank"
    # text and tables are grey (0 % of this view above 15, measured); only the inlined figures,
    # the architecture diagram at the top, bring colour (about 2 %): colour means they decoded
    saturation = pixels.max(axis=-1) - pixels.min(axis=-1)
    assert (saturation > 15).mean() > 0.005, "no figure drawn on the page"


def test_rebuild_replaces_the_notes(built: dict[str, Any], run_dir: Path,
                                    bench_dir: Path) -> None:
    out = built["out"]
    stale = out / "figures" / "sweep_gone.png"
    shutil.copy(out / "figures" / "architecture.png", stale)
    paths = write_writeup(run_dir, bench_dir, out)
    assert paths["markdown"].read_text() == built["md"]
    assert not stale.exists()
    assert not [p for p in out.rglob(".*")], "temp files left behind"


def test_randomization_groups_come_from_run_json(built: dict[str, Any]) -> None:
    from envs.config import RandomizationConfig

    data = json.loads(json.dumps(built["data"]))
    groups = data["files"]["run.json"]["randomization_groups"]
    assert groups == {f.name: f.metadata["group"]
                      for f in dataclasses.fields(RandomizationConfig)}
    field = next(iter(groups))
    groups[field] = "renamed_group"
    assert f"| `{field}` |" in render_markdown(data)
    assert "| renamed_group |" in section(render_markdown(data), "The environment")
    del data["files"]["run.json"]["randomization_groups"]
    row = next(line for line in section(render_markdown(data), "The environment").splitlines()
               if line.startswith(f"| `{field}` |"))
    assert row.endswith("| n/a |"), row


def test_writeup_imports_no_project_package() -> None:
    for path in sorted((REPO / "writeup").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            roots = {n.split(".")[0] for n in names}
            assert not roots & PROJECT_PACKAGES, (path.name, roots)
