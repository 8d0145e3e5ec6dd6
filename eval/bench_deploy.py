"""Benchmarks of the deployed policy: batch-1 inference per runtime, and the control loop.

`bench_infer` times one observation -> one action on the same recorded camera frames for
four runtimes, each given the env's uint8 (H, W, C) frame and each doing its own layout
conversion inside the timed call, with one thread (torch and ONNX Runtime):

- sb3_predict: `policy.predict(frame.transpose(2, 0, 1))`, SB3's public API (numpy in/out,
  checks, value head skipped but distribution built);
- torch: the actor graph that gets exported (`ExportedActor`), eager, under `no_grad`;
- torchscript: the same graph traced to TorchScript;
- onnxruntime: the exported ONNX model in an InferenceSession.

A recurrent policy's runners each carry their LSTM state from call to call, as a robot would
(the frames play as one long episode), so the figures include the state's feed-back.

`bench_loop` runs `policies.deploy.loop.run_deploy` at each rate, first on an otherwise idle
machine and then with one CPU-burning process (`python -c "while True: pass"`) on the other core.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import rundir
from policies.checkpoint import load_checkpoint
from policies.deploy.loop import MACHINE_PACKAGES, run_deploy
from policies.export import (
    ExportedActor,
    OnnxPolicy,
    TorchGraphPolicy,
    export_policy,
    load_torchscript,
    record_observations,
)

TARGET_ONNX_P99_MS = 0.3
"""ONNX Runtime batch-1 p99 latency target."""
TARGET_MISS_PERCENT = {20.0: 0.0, 50.0: 0.1}
"""Deadline-miss targets by rate (Hz): none at 20 Hz, at most 0.1 % at 50 Hz."""
TARGET_JITTER_P99_MS = 2.0
"""Period jitter p99 target at every rate."""
BACKENDS = ("sb3_predict", "torch", "torchscript", "onnxruntime")
BUSY_LOOP = "while True: pass"


def _time_calls(fn: Callable[[np.ndarray], Any], frames: np.ndarray, n: int,
                warmup: int) -> dict[str, float]:
    """Call `fn` on frames in turn: `warmup` untimed calls, then `n` timed ones (ms stats)."""
    for i in range(warmup):
        fn(frames[i % len(frames)])
    times = np.empty(n, dtype=np.int64)
    for i in range(n):
        frame = frames[i % len(frames)]
        t0 = time.perf_counter_ns()
        fn(frame)
        times[i] = time.perf_counter_ns() - t0
    ms = times / 1e6
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "max_ms": float(ms.max())}


def _runners(target: str | os.PathLike, frames: np.ndarray,
             folder: Path) -> tuple[dict[str, Callable[[np.ndarray], Any]], dict[str, Any]]:
    """One batch-1 callable per backend, taking a uint8 (H, W, C) frame; plus export parity."""
    loaded = load_checkpoint(target)
    actor = ExportedActor(loaded).eval()
    onnx_r = export_policy(target, "onnx", out=folder / "policy.onnx", check_obs=frames)
    ts_r = export_policy(target, "torchscript", out=folder / "policy.ts", check_obs=frames)
    onnx_policy = OnnxPolicy(onnx_r["path"], threads=1)
    sb3_state: list[Any] = [None]  # SB3's predict takes and returns the state (None: none)

    def sb3(frame: np.ndarray) -> Any:
        action, sb3_state[0] = loaded.policy.predict(frame.transpose(2, 0, 1),
                                                     state=sb3_state[0], deterministic=True)
        return action

    parity = {fmt: {k: r[k] for k in ("max_abs_diff", "action_agreement")}
              for fmt, r in (("onnx", onnx_r), ("torchscript", ts_r))}
    torch_graph = TorchGraphPolicy(actor, actor)
    traced_graph = TorchGraphPolicy(load_torchscript(ts_r["path"]), actor)
    runners = {"sb3_predict": sb3,
               "torch": lambda frame: torch_graph.forward(frame[None]),
               "torchscript": lambda frame: traced_graph.forward(frame[None]),
               "onnxruntime": lambda frame: onnx_policy.forward(frame[None])}
    return runners, {"parity": parity, "arch": loaded.meta.arch.as_dict(),
                     "image_shape": list(frames.shape[1:])}


def bench_infer(target: str | os.PathLike, n: int = 2000, warmup: int = 200) -> dict[str, Any]:
    """Batch-1 inference latency of SB3 predict, torch, TorchScript and ONNX Runtime.

    Args:
        target: checkpoint file or run directory.
        n: timed calls per backend (after `warmup` untimed ones).

    Returns:
        {"backends": {name: {"p50_ms", "p99_ms", "mean_ms", "max_ms"}}, "speedup_p50_vs_sb3",
        "target": {"onnx_p99_ms": 0.3, "met"}, "parity", "arch", "image_shape", "n",
        "warmup", "threads", "machine"}.
    """
    loaded = load_checkpoint(target)
    frames, _ = record_observations(loaded)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_infer_") as tmp:
            runners, info = _runners(target, frames, Path(tmp))
            backends = {name: _time_calls(runners[name], frames, n, warmup)
                        for name in BACKENDS}
    finally:
        torch.set_num_threads(threads)
    base = backends["sb3_predict"]["p50_ms"]
    onnx_p99 = backends["onnxruntime"]["p99_ms"]
    return {
        "backends": backends,
        "speedup_p50_vs_sb3": {k: base / v["p50_ms"] for k, v in backends.items()},
        "target": {"onnx_p99_ms": TARGET_ONNX_P99_MS, "met": onnx_p99 <= TARGET_ONNX_P99_MS},
        **info,
        "n": n,
        "warmup": warmup,
        "threads": 1,
        "machine": rundir.machine_info(MACHINE_PACKAGES),
    }


def _loop_row(report: dict[str, Any], load: str) -> dict[str, Any]:
    rate = float(report["rate_hz"])
    misses = report["deadline_misses"]
    jitter_p99 = report["period_jitter_ms"]["p99"]
    miss_target = TARGET_MISS_PERCENT.get(rate)
    checks = {"jitter": jitter_p99 is not None and jitter_p99 <= TARGET_JITTER_P99_MS}
    if miss_target is not None:
        checks["misses"] = misses["percent"] <= miss_target
    return {
        "rate_hz": rate,
        "load": load,
        "ticks": report["ticks_measured"],
        "deadline_misses": misses["count"],
        "skipped": misses["skipped"],
        "stale_commands": misses["stale_commands"],
        "sim_reset_misses": misses["sim_reset"],
        "miss_percent": misses["percent"],
        "jitter_p99_ms": jitter_p99,
        "jitter_max_ms": report["period_jitter_ms"]["max"],
        "lateness_p99_ms": report["wakeup_lateness_ms"]["p99"],
        "latency_total_p99_ms": report["latency_ms"]["total"]["p99"],
        "latency_total_max_ms": report["latency_ms"]["total"]["max"],
        "inference_p99_ms": report["latency_ms"]["inference"]["p99"],
        "episodes": report["episodes"],
        "checks": checks,
        "met": all(checks.values()),
    }


def _busy_core() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    time.sleep(0.5)  # let it get scheduled before the loop starts
    return proc


def bench_loop(target: str | os.PathLike, rates: Iterable[float] = (20, 50), ticks: int = 10000,
               busy_core: bool = True, warmup_ticks: int = 20,
               rt_priority: int | None = None) -> dict[str, Any]:
    """The deployment loop at each rate for `ticks` measured ticks, idle and with a busy core.

    Args:
        target: checkpoint file or run directory (its policy.onnx is exported if needed).
        rates: control rates, Hz.
        ticks: measured ticks per run (each run lasts (ticks + warmup_ticks) / rate seconds).
        busy_core: also run each rate with a CPU-burning process alongside.
        rt_priority: run the loop under SCHED_FIFO at this priority (see `run_deploy`).

    Returns:
        {"rows": [one row per (rate, load)], "targets", "ticks", "warmup_ticks", "machine"}.
    """
    rows = []
    for rate in rates:
        duration = (ticks + warmup_ticks) / rate
        loads = ("idle", "busy core") if busy_core else ("idle",)
        for load in loads:
            proc = _busy_core() if load == "busy core" else None
            try:
                report = run_deploy(target, rate=float(rate), duration=duration,
                                    warmup_ticks=warmup_ticks, rt_priority=rt_priority)
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()
            rows.append(_loop_row(report, load))
    return {
        "rows": rows,
        "targets": {"miss_percent_by_rate": {str(k): v for k, v in TARGET_MISS_PERCENT.items()},
                    "jitter_p99_ms": TARGET_JITTER_P99_MS},
        "ticks": ticks,
        "warmup_ticks": warmup_ticks,
        "rt_priority": rt_priority,
        "machine": rundir.machine_info(MACHINE_PACKAGES),
    }


# ---------------------------------------------------------------------------- text tables


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_infer(d: dict[str, Any]) -> str:
    """`bench_infer`'s result as a text table plus the ONNX target line."""
    rows = [[name, _f(v["p50_ms"]), _f(v["p99_ms"]), _f(v["mean_ms"]),
             f"{d['speedup_p50_vs_sb3'][name]:.1f}x"] for name, v in d["backends"].items()]
    m = d["machine"]
    t = d["target"]
    onnx_p99 = d["backends"]["onnxruntime"]["p99_ms"]
    return "\n".join([
        f"Batch-1 inference, {d['n']} calls after {d['warmup']} warm-up, {d['threads']} thread, "
        f"image {tuple(d['image_shape'])} ({m['cpu']}, {m['cores']} cores)",
        _table(["runtime", "p50 ms", "p99 ms", "mean ms", "vs SB3"], rows),
        f"target ONNX p99 <= {t['onnx_p99_ms']} ms: {_f(onnx_p99)} ms -> "
        f"{'met' if t['met'] else 'NOT met'}",
    ])


def format_loop(d: dict[str, Any]) -> str:
    """`bench_loop`'s result as a text table plus the targets checked on each row."""
    rows = [[f"{r['rate_hz']:g}", r["load"], str(r["ticks"]),
             f"{r['deadline_misses']} (+{r['sim_reset_misses']})",
             _f(r["miss_percent"], 2), _f(r["jitter_p99_ms"]), _f(r["jitter_max_ms"]),
             _f(r["lateness_p99_ms"]), _f(r["latency_total_p99_ms"]),
             "met" if r["met"] else "NOT met"] for r in d["rows"]]
    m = d["machine"]
    targets = ", ".join(f"{float(k):g} Hz <= {v:g} % misses"
                        for k, v in d["targets"]["miss_percent_by_rate"].items())
    lines = [
        f"Control loop, {d['ticks']} measured ticks per run after {d['warmup_ticks']} warm-up "
        f"({m['cpu']}, {m['cores']} cores)",
        _table(["Hz", "load", "ticks", "misses (+reset)", "miss %", "jitter p99",
                "jitter max", "late p99", "sense->act p99", "targets"], rows),
        f"targets: {targets}; period jitter p99 <= {d['targets']['jitter_p99_ms']:g} ms "
        "(all times in ms)",
        "(+reset): misses on the tick after a simulator scene rebuild, not counted in miss %",
    ]
    if d.get("rt_priority") is not None:
        lines.insert(1, f"executor thread under SCHED_FIFO priority {d['rt_priority']}")
    if d["ticks"] < 10000:
        lines.append(f"note: the 20 Hz target is stated over 10,000 ticks; this run measured "
                     f"{d['ticks']}")
    return "\n".join(lines)
