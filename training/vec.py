"""Vectorised training envs: layout, seeding, wrappers and shutdown in one place.

Workers (one process per env with `subproc`) ignore Ctrl-C: the main process decides. After a
clean stop it closes them (`close`, bounded by `CLOSE_TIMEOUT_S`); when it is stopped at once
(a second Ctrl-C) or fails, `running` ends them without waiting (`WorkerVecEnv.kill`), since a
step interrupted half way leaves the pipes out of step and a polite close would wait forever.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator

import gymnasium as gym
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

import rundir
from envs.config import EnvConfig
from envs.wrappers import make_env

Wrapper = Callable[[gym.Env], gym.Env]


def _env_fn(env_cfg: EnvConfig, continuous: bool, monitor_path: str | None,
            wrapper: Wrapper | None, in_worker: bool) -> Callable[[], gym.Env]:
    def inner(env: gym.Env) -> gym.Env:
        if monitor_path is not None:
            # A new file starts with SB3's two header lines (`#{t_start, env_id}` and the
            # column names); a resumed run appends its rows to the file it already has.
            csv = f"{monitor_path}.{Monitor.EXT}"
            fresh = not os.path.exists(csv) or os.path.getsize(csv) == 0
            env = Monitor(env, monitor_path, info_keywords=rundir.MONITOR_INFO_KEYS,
                          override_existing=fresh)
        return env if wrapper is None else wrapper(env)

    def make() -> gym.Env:
        if in_worker:
            # Ctrl-C reaches the whole process group: the main process stops cleanly and
            # closes the workers, which must not die first and break the pipes under it.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        # The pybullet client is created here, inside the worker process; the frame stack of
        # env_cfg.observation is applied by the same pipeline evaluation and export use.
        return make_env(env_cfg, continuous, inner=inner)
    return make


def make_vec_env(env_cfg: EnvConfig, n_envs: int, seed: int, continuous: bool = False, *,
                 kind: str = "subproc", monitor_dir: str | None = None,
                 wrapper: Wrapper | None = None) -> VecEnv:
    """`n_envs` envs seeded `seed + i`; subproc runs each in its own process.

    Each env stacks `env_cfg.observation.frame_stack` frames. Monitor logs (one CSV per env)
    go to `monitor_dir` when given; `wrapper` sees single frames (before stacking).
    """
    fns = [_env_fn(env_cfg, continuous,
                   None if monitor_dir is None else f"{monitor_dir}/env{i}", wrapper,
                   kind == "subproc")
           for i in range(n_envs)]
    venv = WorkerVecEnv(fns, start_method="forkserver") if kind == "subproc" else DummyVecEnv(fns)
    venv.seed(seed)
    return venv


CLOSE_TIMEOUT_S = 5.0
"""How long a clean close waits for the workers before ending them."""


class WorkerVecEnv(SubprocVecEnv):
    """SB3's `SubprocVecEnv` whose shutdown never blocks: `close` waits at most
    `CLOSE_TIMEOUT_S` per worker, and `kill` ends the workers at once."""

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.waiting:  # a step in flight: collect its answers, if they come
                for remote in self.remotes:
                    if remote.poll(CLOSE_TIMEOUT_S):
                        remote.recv()
            for remote in self.remotes:
                remote.send(("close", None))
            for process in self.processes:
                process.join(CLOSE_TIMEOUT_S)
        except (OSError, EOFError):
            pass  # a worker already gone: kill() below ends the rest
        finally:
            self.kill()

    def kill(self) -> None:
        """End every worker now (SIGTERM, then SIGKILL after a second) and close the pipes."""
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join(1.0)
        for remote in self.remotes:
            with contextlib.suppress(OSError):
                remote.close()
        self.waiting = False
        self.closed = True


@contextlib.contextmanager
def running(venv: VecEnv) -> Iterator[VecEnv]:
    """Use `venv` in a `with` block: closed cleanly when the block ends, its workers ended
    at once when the block raises (a second Ctrl-C, or an error)."""
    try:
        yield venv
    except BaseException:
        if isinstance(venv, WorkerVecEnv):
            venv.kill()
        else:
            venv.close()
        raise
    venv.close()
