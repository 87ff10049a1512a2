"""Verifiable tasks: problems, prompts and a verifier, looked up by name in ``TASKS``."""

from rlexp.data.tasks import arithmetic as arithmetic  # registers "arithmetic"
from rlexp.data.tasks import jsonl as jsonl  # registers "gsm8k" and "math"
from rlexp.data.tasks.base import ANSWER_MARKER, CHAR_ALPHABETS, TASKS, Problem, Task, build_task

__all__ = ["ANSWER_MARKER", "CHAR_ALPHABETS", "TASKS", "Problem", "Task", "build_task"]
