"""How many threads torch may use for a block of work.

Policies run one observation at a time (evaluation, videos, the deploy loop, the periodic
evaluation during training); that is why this lives beside the network rather than in any one
stage that runs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the block with `n` torch threads, then restore the previous count.

    A rollout runs the network on one observation at a time, where extra threads only add
    synchronisation; with OpenMP spin-waiting on a busy machine two threads made each small
    forward pass ~30x slower than one.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
