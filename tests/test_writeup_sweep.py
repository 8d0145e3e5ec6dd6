"""The notes' "Across seeds" and "Scaling out" sections from hand-made sweep.json and
bench_sweep.json (the shapes training/sweep_report.py and training/sweep_bench.py write): every
statistic printed from its file, the sweep's plots copied, the projection computed from the
measured inputs where the file has none, and the commands named where an input is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

import embodied_cli
from writeup.build import numbers, render_markdown, write_writeup
from writeup.collect import collect, sweep_run
from writeup.sections.scaling import project


def section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    end = md.find("\n## ", start + 1)
    return md[start:end if end > 0 else None]


def _agg(scores: list[float], mean: float, ci: list[float], iqm: float, iqm_ci: list[float],
         worst: float) -> dict[str, Any]:
    # invented statistics, deliberately not what the scores would give: the notes must copy
    # sweep.json's numbers, never recompute them
    return {"n": len(scores), "scores": scores, "mean": mean, "iqm": iqm, "worst": worst,
            "best": max(scores), "mean_ci95": ci, "iqm_ci95": iqm_ci}


def _trial(cid: str, seed: int, success: float) -> dict[str, Any]:
    return {"config_id": cid, "params": {"distill.learning_rate": 5e-4 if cid == "c0" else 1e-3},
            "seed": seed, "status": "done", "run_dir": f"trials/{cid}_s{seed}",
            "timesteps": 4000, "wall_clock_s": 93.4 + seed, "best_val_success": 0.9,
            "curve": [{"timesteps": 2000, "wall_clock_s": 50.0, "success_rate": 0.4, "spl": 0.3}],
            "test": {"success_rate": success, "success_rate_ci95": [success - 0.2, success + 0.1],
                     "spl": success - 0.05, "episodes": 20}}


SUCCESS = {"c0": [0.55, 0.6, 0.65], "c1": [0.85, 0.75, 0.8]}


def sweep_report() -> dict[str, Any]:
    return {
        "kind": "sweep", "command": "embodied sweep --config quickstart --seeds 3 --out sw",
        "machine": {"cpu": "Test CPU", "cores": 2, "load_avg_1m": 0.4, "ray": "2.60.0"},
        "cluster": {"mode": "local", "address": None, "nodes": ["127.0.0.1"], "cpus": 2.0},
        "base_config": "quickstart", "overrides": ["n_envs=2"], "search": "grid",
        "samples": None, "scheduler": "asha", "seeds": [0, 1, 2],
        "resources_per_trial": {"cpu": 2, "gpu": 0.0},
        "validation": {"split": "heldout", "episodes": 5, "every_timesteps": 2000},
        "test": {"split": "heldout", "seed": 1, "episodes": 40,
                 "oracle": {"success_rate": 1.0, "spl": 0.985, "collision_free_success": 0.975,
                            "contact_episode_rate": 0.025}}, "max_timesteps": 4000,
        "trials": [_trial(c, s, SUCCESS[c][s]) for c in ("c0", "c1") for s in range(3)],
        "configs": [
            {"config_id": "c0", "params": {"distill.learning_rate": 5e-4}, "seeds": [0, 1, 2],
             "scored_seeds": [0, 1, 2],
             "success_rate": _agg(SUCCESS["c0"], 0.613, [0.563, 0.671], 0.604, [0.552, 0.648],
                                  0.547),
             "spl": _agg([0.5, 0.55, 0.6], 0.553, [0.511, 0.597], 0.557, [0.503, 0.592],
                         0.498),
             "contact_episode_rate": _agg([0.1, 0.2, 0.15], 0.15, [0.1, 0.2], 0.15,
                                          [0.1, 0.2], 0.2)},
            {"config_id": "c1", "params": {"distill.learning_rate": 1e-3}, "seeds": [0, 1, 2],
             "scored_seeds": [0, 1, 2],
             "success_rate": _agg(SUCCESS["c1"], 0.793, [0.742, 0.846], 0.812, [0.758, 0.857],
                                  0.748),
             "spl": _agg([0.8, 0.7, 0.75], 0.746, [0.694, 0.801], 0.737, [0.689, 0.783],
                         0.691)}],
        "probability_of_improvement": {"metric": "success_rate", "pairs": [
            {"x": "c0", "y": "c1", "p": 0.034, "ci95": [0.0, 0.222]},
            {"x": "c1", "y": "c0", "p": 0.966, "ci95": [0.778, 1.0]}]},
        "files": {"table": "sweep.md", "curves": "sweep_curves.png", "final": "sweep_final.png"},
        "timings_s": {"ray_start_s": 8.37, "fit_s": 612.48, "score_s": 31.26},
    }


def bench_report() -> dict[str, Any]:
    return {
        "machine": {"cpu": "Test CPU", "cores": 2, "load_avg_1m": 1.23, "python": "3.11.7",
                    "ray": "2.60.0", "torch": "2.13.0+cpu"},
        "config": "quickstart", "overrides": ["n_envs=2"],
        "grid": ["distill.learning_rate=5e-4,1e-3"], "seeds": [0, 1], "trials": 4,
        "cpus_per_trial": 2, "timesteps_per_trial": 4000,
        "sequential": {"wall_clock_s": 301.7, "per_trial_s": [73.11, 76.42, 74.83, 77.34],
                       "mean_trial_s": 75.4},
        "sweep": {"wall_clock_s": 318.6, "ray_start_s": 9.2, "fit_s": 309.4, "score_s": 23.8,
                  "concurrent_trials": 1, "per_trial_s": 77.3, "folder": "/x/sweep"},
        "ratio": 1.056, "target_ratio": 1.1, "overhead_per_trial_s": 4.22,
        "load_avg_1m": {"before_sequential": 1.23, "before_sweep": 1.48, "after_sweep": 1.37},
        "projection": {
            "configs": 4, "seeds": 5, "trials": 20,
            "here": {"cores": 2, "concurrent_trials": 1, "waves": 20, "wall_clock_s": 1673.2},
            "clusters": [
                {"cores": 16, "concurrent_trials": 8, "waves": 3, "wall_clock_s": 264.9},
                {"cores": 64, "concurrent_trials": 32, "waves": 1, "wall_clock_s": 98.4}],
            "assumes": "cluster cores as fast as this machine's"},
    }


def _png(path: Path, colour: str) -> None:
    fig = Figure(figsize=(1, 1), dpi=20)
    fig.add_subplot(1, 1, 1).plot([0, 1], [0, 1], color=colour)
    fig.savefig(path, format="png")


@pytest.fixture
def sweep_folder(tmp_path: Path) -> Path:
    """A sweep folder: sweep.json, its two plots, and a run.json in every trial."""
    folder = tmp_path / "sweep"
    report = sweep_report()
    for trial in report["trials"]:
        run = folder / trial["run_dir"]
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"command": "embodied train", "device": "cpu"}))
    (folder / "sweep.json").write_text(json.dumps(report))
    _png(folder / "sweep_curves.png", "red")
    _png(folder / "sweep_final.png", "blue")
    return folder


@pytest.fixture
def bench_folder(tmp_path: Path) -> Path:
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "bench_sweep.json").write_text(json.dumps(bench_report()))
    return bench


def _data(files: dict[str, Any], sweep_dir: str | None = None) -> dict[str, Any]:
    return {"run_dir": "runs/r", "bench_dir": "runs/bench", "sweep_dir": sweep_dir,
            "files": files, "missing": [], "errors": {}, "monitor": {}, "media": {},
            "figures": {}, "figure_files": {}}


# ------------------------------------------------------------------------------ Across seeds


def test_across_seeds_prints_every_statistic_from_sweep_json() -> None:
    data = _data({"sweep.json": sweep_report()}, sweep_dir="runs/sw")
    text = section(render_markdown(data), "Across seeds")
    # per configuration and metric: mean [CI], IQM [CI], worst seed, each seed's score
    assert ("| `c0` | 3 of 3 | success | 0.61 [0.56, 0.67] | 0.60 [0.55, 0.65] | 0.55 | "
            "seed 0: 0.55, seed 1: 0.60, seed 2: 0.65 |") in text
    assert ("|  |  | SPL | 0.55 [0.51, 0.60] | 0.56 [0.50, 0.59] | 0.50 | "
            "seed 0: 0.50, seed 1: 0.55, seed 2: 0.60 |") in text
    # a lower-is-better rate: its worst seed is the highest (as sweep.json recorded it)
    assert ("|  |  | episodes with contact | 0.15 [0.10, 0.20] | 0.15 [0.10, 0.20] | 0.20 | "
            "seed 0: 0.10, seed 1: 0.20, seed 2: 0.15 |") in text
    assert "| `c1` | 3 of 3 | success | 0.79 [0.74, 0.85] | 0.81 [0.76, 0.86] | 0.75 |" in text
    assert ("The oracle on the same test episodes: success 1.00, SPL 0.98, collision-free "
            "success 0.97, episodes with contact 0.03.") in text
    # probability of improvement, both directions, with intervals
    assert "| `c0` | – | 0.03 [0.00, 0.22] |" in text
    assert "| `c1` | 0.97 [0.78, 1.00] | – |" in text
    for phrase in ("scipy.stats.bootstrap", "scipy.stats.trim_mean", "Agarwal et al. 2021",
                   "rliable", "pandas < 3", "40 `heldout` test episodes", "training seeds 0, 1, 2",
                   "`distill.learning_rate=0.0005`", "`trials/c1_s2`", "612.5 s"):
        assert phrase in text, phrase
    values = numbers(data)
    assert values["sweep.json:configs[1].success_rate.iqm"] == 0.812
    assert values["sweep.json:configs[0].spl.iqm_ci95[1]"] == 0.592
    assert values["sweep.json:probability_of_improvement.pairs[1].ci95[0]"] == 0.778
    assert values["sweep.json:test.episodes"] == 40


def test_a_single_seed_prints_no_interval_and_one_configuration_no_comparison() -> None:
    report = sweep_report()
    one = report["configs"][0]
    one["scored_seeds"] = [0]
    one["success_rate"] = {**_agg([0.55], 0.55, None, 0.55, None, 0.55)}
    report["configs"] = [one]
    report["probability_of_improvement"]["pairs"] = []
    text = section(render_markdown(_data({"sweep.json": report})), "Across seeds")
    assert "| `c0` | 1 of 3 | success | 0.55 | 0.55 | 0.55 |" in text
    assert "One configuration: there is no other to compare it with." in text


def test_without_a_sweep_the_section_names_the_commands() -> None:
    md = render_markdown(_data({}))
    text = section(md, "Across seeds")
    assert "Run `embodied sweep --config default --seeds 5 --out runs/sweep`" in text
    assert "`embodied writeup runs/r --sweep runs/sweep`" in text
    assert "Run `embodied bench sweep` to fill this table." in section(md, "Scaling out")


def test_the_representative_trial_is_a_median_seed_of_the_best_configuration(
        sweep_folder: Path) -> None:
    # c1 has the higher IQM; its seeds scored 0.85, 0.75, 0.80: the median is seed 2
    assert sweep_run(sweep_folder) == sweep_folder / "trials" / "c1_s2"


# ------------------------------------------------------------------------------ Scaling out


def test_scaling_out_prints_the_measured_overhead_and_the_projection() -> None:
    data = _data({"bench_sweep.json": bench_report()})
    text = section(render_markdown(data), "Scaling out")
    for phrase in ("| one after another (`train()`) | 301.7 | 75.4 | 73.1, 76.4, 74.8, 77.3 |",
                   "| `embodied sweep` (Ray Tune, local) | 318.6 | 77.3 | 1 at a time |",
                   "Ratio sweep / one after another: 1.06 (target ≤ 1.10: met); 4.2 s per "
                   "trial", "Ray's start (9.2 s)", "(23.8 s)",
                   "5-seed × 4-configuration sweep (20 trials)",
                   "| here | 2 | 1 | 20 | 1,673.2 |", "| cluster | 16 | 8 | 3 | 264.9 |",
                   "| cluster | 64 | 32 | 1 | 98.4 |",
                   "waves = ⌈trials / ⌊cores / CPUs per trial⌋⌉",
                   "before sweep 1.48", "Assumes cluster cores as fast as this machine's."):
        assert phrase in text, phrase
    assert "A ratio below 1" not in text
    values = numbers(data)
    assert values["bench_sweep.json:projection.clusters[0].wall_clock_s"] == 264.9
    assert values["bench_sweep.json:ratio"] == 1.056


def test_without_a_projection_it_is_computed_from_the_measured_inputs() -> None:
    report = bench_report()
    del report["projection"]
    report["sweep"].update(per_trial_s=60.0, score_s=20.0, ray_start_s=10.0)
    text = section(render_markdown(_data({"bench_sweep.json": report})), "Scaling out")
    assert "holds no projection, so it is computed here" in text
    # scoring wave = 20 s / ceil(4 trials / 2 cores) = 10 s; 20 trials of 2 CPUs each
    assert "| here | 2 | 1 | 20 | 1,310.0 |" in text  # 10 + 20 * 60 + 10 * 10
    assert "| cluster | 16 | 8 | 3 | 210.0 |" in text  # 10 + 3 * 60 + 2 * 10
    assert "| cluster | 64 | 32 | 1 | 80.0 |" in text  # 10 + 60 + 1 * 10
    assert project(20, 256, 2, 60.0, 10.0, 10.0)["wall_clock_s"] == 80.0


def test_a_bench_file_of_another_shape_names_the_command() -> None:
    text = section(render_markdown(_data({"bench_sweep.json": [1, 2]})), "Scaling out")
    assert "holds no timings" in text and "Run `embodied bench sweep` to fill" in text


# ------------------------------------------------------------------------------ end to end


def test_a_sweep_folder_as_run_dir_writes_both_sections_and_copies_the_plots(
        sweep_folder: Path, bench_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "notes"
    assert embodied_cli.main(["writeup", str(sweep_folder), "--bench", str(bench_folder),
                              "--out", str(out)]) == 0
    md = (out / "ENGINEERING_NOTES.md").read_text()
    for name in ("seeds_curves.png", "seeds_final.png"):
        assert (out / "figures" / name).read_bytes() == (
            sweep_folder / name.replace("seeds_", "sweep_")).read_bytes()
        assert f"](figures/{name})" in section(md, "Across seeds")
    assert "1,673.2" in section(md, "Scaling out")
    # the notes' own command names the trial they describe and the sweep
    assert (f"embodied writeup {sweep_folder / 'trials' / 'c1_s2'} --bench {bench_folder} "
            f"--sweep {sweep_folder} --out {out}") in md
    assert "embodied sweep --config quickstart --seeds 3 --out sw" in section(md, "Reproduce")


def test_every_number_of_both_sections_equals_its_source(sweep_folder: Path,
                                                         bench_folder: Path) -> None:
    data = collect(sweep_folder / "trials" / "c0_s0", bench_folder, sweep_folder)
    sources = {"sweep.json": sweep_report(), "bench_sweep.json": bench_report()}
    values = {k: v for k, v in numbers(data).items() if k.split(":")[0] in sources}
    assert len(values) > 80
    for key, value in values.items():
        file, path = key.split(":", 1)
        node: Any = sources[file]
        for part in path.replace("[", ".").replace("]", "").split("."):
            node = node[int(part)] if part.isdigit() else node[part]
        assert node == value, key


def test_a_sweep_folder_without_sweep_json_is_refused_in_one_line(
        sweep_folder: Path, tmp_path: Path, capsys) -> None:
    run = sweep_folder / "trials" / "c0_s0"
    assert embodied_cli.main(["writeup", str(run), "--sweep", str(tmp_path / "nowhere"),
                              "--out", str(tmp_path / "o1")]) == 2
    assert embodied_cli.main(["writeup", str(run), "--sweep", str(run),
                              "--out", str(tmp_path / "o2")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "does not exist" in errors[0]
    assert "holds no sweep.json" in errors[1] and "embodied sweep --resume" in errors[1]
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_without_sweep_inputs_nothing_is_reported_missing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"command": "embodied train"}))
    data = collect(run, tmp_path / "no_bench")
    assert "bench_sweep.json" not in data["missing"] and "sweep.json" not in data["missing"]
    paths = write_writeup(run, tmp_path / "no_bench", tmp_path / "notes")
    md = paths["markdown"].read_text()
    assert f"embodied bench sweep --out {tmp_path / 'no_bench'}" in section(md, "Scaling out")
    assert f"--sweep runs/sweep --out {tmp_path / 'notes'}`" in section(md, "Across seeds")
    assert data["media"].get("seeds_curves") is None and data["sweep_dir"] is None
