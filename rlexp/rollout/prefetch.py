"""``rollout.mode: async`` (docs/theory.md §11): one-step-off asynchronous RL. While the update of
step t runs, a worker thread has the engine (vLLM, in its own process) sample the rollouts of step
t + 1 with the weights of step t; the engine gets the new weights once both are done. Those are
the rollouts ``rollout.lag=1`` samples in sequence, so the two modes log the same numbers and
differ only in wall time (``time/generation_wait``: what the update did not hide).

The next step's prompts are drawn, and its sampling seeds taken from the rollout generator, when
its generation starts: in the order the synchronous loop takes them. A checkpoint written between
the steps holds the generated samples (``state_dict``), so a resumed run continues with them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from torch import Tensor

from rlexp.rollout.collect import Generated
from rlexp.rollout.sampler import Samples

MODES = ("sync", "async")


@dataclass
class Prefetched:
    """The next step's prompts (indices into the task's training set, group ids) and what the
    engine sampled for them."""

    drawn: list[int]
    group_ids: Tensor
    generated: Generated


class Prefetcher:
    """One generation at a time on a worker thread: ``start`` it, ``wait`` for it, ``take`` it."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlexp-rollout")
        self._future: Future[Generated] | None = None
        self._draw: tuple[list[int], Tensor] | None = None
        self._ready: Prefetched | None = None

    def start(self, drawn: list[int], group_ids: Tensor, generate: Callable[[], Generated]) -> None:
        if self._future is not None or self._ready is not None:
            raise RuntimeError("rollout.mode=async: a prefetched batch is still pending")
        self._draw = (drawn, group_ids)
        self._future = self._pool.submit(generate)

    def wait(self) -> float:
        """Seconds the caller waited for the running generation (0 when none runs)."""
        if self._future is None:
            return 0.0
        t0 = time.perf_counter()
        generated = self._future.result()  # an error in the worker is raised here
        assert self._draw is not None
        self._ready = Prefetched(*self._draw, generated)
        self._future, self._draw = None, None
        return time.perf_counter() - t0

    @property
    def ready(self) -> bool:
        """A batch is generated or generating for the step about to run."""
        return self._future is not None or self._ready is not None

    def take(self) -> Prefetched | None:
        self.wait()
        ready, self._ready = self._ready, None
        return ready

    def close(self) -> None:
        """Let a running generation finish (it cannot be interrupted) and stop the thread."""
        if self._future is not None:
            self._future.exception()
        self._pool.shutdown(wait=True)

    # ---- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The finished, not yet used batch (``{}`` when there is none)."""
        self.wait()
        if self._ready is None:
            return {}
        g = self._ready.generated
        return {
            "drawn": list(self._ready.drawn),
            "group_ids": self._ready.group_ids.cpu(),
            "prompt_ids": g.prompt_ids.cpu(),
            "prompt_mask": g.prompt_mask.cpu(),
            "completion_ids": g.samples.completion_ids.cpu(),
            "completion_mask": g.samples.completion_mask.cpu(),
            "logp": g.samples.logp.cpu(),
            "truncated": g.samples.truncated.cpu(),
            "seconds": float(g.seconds),
        }

    def load_state_dict(self, state: dict, device) -> None:
        if not state:
            return
        samples = Samples(
            completion_ids=state["completion_ids"].to(device),
            completion_mask=state["completion_mask"].to(device),
            logp=state["logp"].to(device),
            truncated=state["truncated"].to(device),
        )
        generated = Generated(
            state["prompt_ids"].to(device), state["prompt_mask"].to(device), samples,
            float(state["seconds"]),
        )  # fmt: skip
        self._ready = Prefetched(list(state["drawn"]), state["group_ids"], generated)
