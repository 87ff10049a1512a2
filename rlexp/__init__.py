"""rlexp: controlled experiments on reinforcement learning for language models."""

__version__ = "0.1.0"
__all__ = ["compose", "run"]


def __getattr__(name: str):
    """``rlexp.compose`` and ``rlexp.run`` (rlexp/api.py), imported on first use so that
    ``import rlexp.<module>`` stays light."""
    if name in __all__:
        from rlexp import api

        return getattr(api, name)
    raise AttributeError(f"module 'rlexp' has no attribute {name!r}")
