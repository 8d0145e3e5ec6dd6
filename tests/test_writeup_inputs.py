"""The writeup's readers and guards on hand-made inputs: monitor CSVs of fresh and resumed
runs, folders with nothing to write up, output folders that must not be overwritten, values
that must stay text on the page."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import embodied_cli
from writeup.build import render_markdown, write_writeup
from writeup.collect import collect, parse_monitor, read_monitor
from writeup.figures import monitor_series

HEADER = "r,l,t,success,collisions"


def _start(t_start: float) -> str:
    return "#" + json.dumps({"t_start": t_start, "env_id": "CameraNav-v0"})


def _times(episodes: list[dict]) -> list[float]:
    return [e["t"] for e in episodes]


# ------------------------------------------------------------------------------ monitor CSVs


def test_monitor_reads_a_fresh_sb3_file() -> None:
    text = "\n".join([_start(1.7e9), HEADER, "1.5,40,2.0,True,0", "-0.5,60,5.0,False,2"])
    episodes, bad = parse_monitor(text)
    assert bad == []
    assert episodes == [{"r": 1.5, "l": 40.0, "t": 2.0, "success": True},
                        {"r": -0.5, "l": 60.0, "t": 5.0, "success": False}]


def test_monitor_reads_a_resumed_file_with_a_second_header() -> None:
    text = "\n".join([_start(1.7e9), HEADER, "1,10,1.0,True,0", "2,20,3.0,False,1",
                      _start(1.7e9 + 500), HEADER, "3,30,0.5,True,0", "4,40,2.5,True,0"])
    episodes, bad = parse_monitor(text)
    assert bad == [] and len(episodes) == 4
    # the second monitor's clock restarts at 0; its episodes follow the first one's
    assert _times(episodes) == [1.0, 3.0, 3.5, 5.5]
    assert [e["success"] for e in episodes] == [True, False, True, True]


def test_monitor_reads_a_file_without_any_header() -> None:
    # an older run, resumed once: rows only, the clock drops back when training restarted
    text = "1,10,1.0,True,0\n2,20,4.0,False,0\n0.5,5,0.7,True,1\n"
    episodes, bad = parse_monitor(text)
    assert bad == []
    assert _times(episodes) == pytest.approx([1.0, 4.0, 4.7])
    assert [e["success"] for e in episodes] == [True, False, True]
    assert [e["l"] for e in episodes] == [10, 20, 5]


def test_monitor_follows_the_header_it_finds() -> None:
    text = "\n".join([_start(0), "r,l,t,collisions,success", "1,10,1.0,3,True",
                      _start(9), "r,l,t", "2,20,2.0"])
    episodes, _ = parse_monitor(text)
    assert [e["success"] for e in episodes] == [True, None]
    assert _times(episodes) == [1.0, 3.0]


def test_monitor_reports_unreadable_lines_but_not_a_row_being_written() -> None:
    text = "\n".join([_start(0), HEADER, "1,10,1.0,True,0", "garbage", "2,20,2.0,False,0",
                      "3,3"])
    episodes, bad = parse_monitor(text)
    assert len(episodes) == 2 and bad == [4]


def test_resumed_monitors_draw_the_training_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "monitor").mkdir(parents=True)
    (run / "monitor" / "env0.monitor.csv").write_text(
        "\n".join([_start(0), HEADER, "1,10,1.0,True,0", _start(50), HEADER,
                   "1,10,0.5,False,0", "garbage", "1,10,0.9,True,0"]) + "\n")
    (run / "monitor" / "env1.monitor.csv").write_text("1,10,2.0,False,0\n1,10,0.2,True,0\n")
    assert len(read_monitor(run / "monitor" / "env1.monitor.csv")) == 2
    data = collect(run, tmp_path / "no_bench")
    series = monitor_series(data["monitor"])
    assert len(series["timesteps"]) == 5
    assert np.all(np.diff(series["wall_clock_s"]) >= 0)
    assert data["skipped"] == {"monitor/env0.monitor.csv": "1 unreadable line(s): 7"}
    md = render_markdown(data)
    assert "`monitor/env0.monitor.csv` (1 unreadable line(s): 7)" in md


def test_the_caption_names_a_training_line_only_where_there_is_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "monitor").mkdir(parents=True)
    (run / "eval_during_training.jsonl").write_text(json.dumps(
        {"timesteps": 64, "wall_clock_s": 3.0, "success_rate": 0.5}) + "\n")
    (run / "monitor" / "env0.monitor.csv").write_text(f"{_start(0)}\nr,l,t\n1,10,1.0\n")
    paths = write_writeup(run, tmp_path / "no_bench", tmp_path / "notes")
    md = paths["markdown"].read_text()
    assert "Grey" not in md
    assert ("No training line: the training monitors (`monitor/*.monitor.csv`) have no "
            "success column.") in md


def test_doc_prints_only_what_it_can_trace() -> None:
    from writeup.doc import Doc

    doc = Doc({"files": {"x.json": {"a": {"20.0": 1.5}, "b": [0.123, True, None],
                                    "cpu": "A | B\nC"}}})
    assert doc.num("x.json", "a", "20.0") == "n/a"  # no writable key, so not printed
    assert doc.num("x.json", "b", 0) == "0.12"
    assert doc.num("x.json", "b", 1) == "n/a" and doc.num("x.json", "b", 2) == "n/a"
    assert doc.num("x.json", "missing") == "n/a" and doc.num("y.json", "a") == "n/a"
    assert doc.text("x.json", "cpu") == "A / B C"
    assert [p.key for p in doc.printed] == ["x.json:b[0]", "x.json:cpu"]


def test_monitor_series_merges_envs_in_time_order() -> None:
    from writeup.figures import frame_strip, monitor_series

    monitor = {"env0": [{"l": 10, "t": 1.0, "success": True}, {"l": 5, "t": 3.0,
                                                                 "success": False}],
               "env1": [{"l": 20, "t": 2.0, "success": True},
                        {"l": 7, "t": 4.0, "success": None}]}
    series = monitor_series(monitor, window=2)
    assert series["timesteps"].tolist() == [10, 30, 35]
    assert series["wall_clock_s"].tolist() == [1.0, 2.0, 3.0]
    assert series["success_rate"].tolist() == [1.0, 1.0, 0.5]
    frames = np.zeros((9, 4, 5, 3), dtype=np.uint8)
    strip = frame_strip(frames, count=3, gap=2)
    assert strip.shape == (4, 3 * 5 + 2 * 2, 3)


# ------------------------------------------------------------------------------ run folders


def _tiny_run(folder: Path) -> Path:
    """A run directory with one file: enough to write notes that name every missing one."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps(
        {"command": "embodied train --config tiny", "versions": {"torch": "2.13.0"},
         "device": "cpu"}))
    return folder


def test_missing_run_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="embodied train"):
        collect(tmp_path / "nowhere", tmp_path)


def test_a_folder_without_a_run_is_refused_in_one_line(tmp_path: Path, capsys,
                                                       monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert embodied_cli.main(["writeup", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing to write up" in err and "run.json" in err
    assert list(empty.iterdir()) == [] and not (tmp_path / "writeup").exists()


def test_the_default_output_is_inside_the_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = _tiny_run(tmp_path / "run")
    assert embodied_cli.main(["writeup", str(run), "--bench", str(tmp_path / "bench")]) == 0
    notes = run / "writeup" / "ENGINEERING_NOTES.md"
    assert notes.is_file() and (run / "writeup" / "index.html").is_file()
    assert not (tmp_path / "writeup").exists()
    assert f"embodied writeup {run} --bench {tmp_path / 'bench'} --out {run / 'writeup'}\n" in (
        notes.read_text())


def test_a_folder_tracked_by_git_is_written_only_when_named(tmp_path: Path, capsys,
                                                            monkeypatch) -> None:
    # a checkout whose committed notes sit where the default output would go
    repo = _tiny_run(tmp_path / "repo")
    committed = repo / "writeup" / "ENGINEERING_NOTES.md"
    committed.parent.mkdir()
    committed.write_text("the committed notes\n")
    (repo / "writeup" / "figures").mkdir()
    (repo / "writeup" / "figures" / "old.png").write_bytes(b"png")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "writeup"], check=True)
    monkeypatch.chdir(repo)

    assert embodied_cli.main(["writeup", ".", "--bench", "bench"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tracked by git" in err and "--out" in err
    assert committed.read_text() == "the committed notes\n"
    assert (repo / "writeup" / "figures" / "old.png").exists()

    assert embodied_cli.main(["writeup", ".", "--bench", "bench", "--out", "writeup"]) == 0
    assert committed.read_text().startswith("# Engineering notes")
    assert "--out writeup" in committed.read_text()


def test_values_from_files_stay_text_on_the_page(tmp_path: Path) -> None:
    run = _tiny_run(tmp_path / "run")
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "bench_infer.json").write_text(json.dumps(
        {"backends": {"onnxruntime": {"p50_ms": 0.1, "p99_ms": 0.2, "mean_ms": 0.1,
                                      "max_ms": 0.3}},
         "machine": {"cpu": "<script>alert(1)</script><img src=x>", "cores": 2}}))
    page = write_writeup(run, bench, tmp_path / "notes")["html"].read_text()
    assert "<script" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
