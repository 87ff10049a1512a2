"""Verifiable tasks: problems, prompts and a verifier, looked up by name in ``TASKS``."""

from rlexp.tasks import arithmetic as arithmetic  # registers "arithmetic"
from rlexp.tasks.base import ANSWER_MARKER, TASKS, Problem, Task, build_task

__all__ = ["ANSWER_MARKER", "TASKS", "Problem", "Task", "build_task"]
