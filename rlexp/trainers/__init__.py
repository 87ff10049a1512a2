"""The trainer kinds and their loops: online RL (``rl``, ``rl_setup``, ``update``), the SFT base
(``sft``, ``sft_base``) and the offline methods (``offline``, ``dpo``, ``rft``).

Importing this package registers every kind in ``rlexp.trainers.kinds.TRAINERS``.
"""

from rlexp.trainers import dpo, rft, rl_setup, sft_base  # noqa: F401  (registration)
from rlexp.trainers.kinds import TRAINERS, RunContext, TrainerKind

__all__ = ["TRAINERS", "RunContext", "TrainerKind"]
