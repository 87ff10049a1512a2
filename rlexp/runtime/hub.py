"""Hugging Face Hub ids resolved offline: a model or dataset id (``Qwen/Qwen2.5-0.5B``,
``openai/gsm8k``) names the snapshot already in the local HF cache (``local_files_only``; never a
download at run time), and an id that is not there is one ``ConfigError`` saying how to get it."""

from __future__ import annotations

import re
from pathlib import Path

from rlexp.runtime.errors import ConfigError

# owner/name, as the Hub spells repo ids (no leading dot or slash, no path beyond one slash)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_repo_id(value: str) -> bool:
    return bool(_REPO_ID.match(value)) and not value.startswith(("./", "../"))


def local_path(value: str, key: str, repo_type: str = "model") -> Path:
    """``value`` (config ``key``) as a local path: the path itself when it exists, else the
    local HF cache's snapshot of the Hub repo ``value`` (``repo_type`` model or dataset)."""
    path = Path(value).expanduser()
    if path.exists() or not is_repo_id(value):
        if not path.exists():
            raise ConfigError(f"{key}={value} does not exist")
        return path
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(value, repo_type=repo_type, local_files_only=True))
    except LocalEntryNotFoundError:
        kind = " --repo-type dataset" if repo_type == "dataset" else ""
        raise ConfigError(
            f"{key}={value}: no such local path, and the Hub {repo_type} {value} is not in the "
            f"local Hugging Face cache ({constants.HF_HUB_CACHE}); rlexp never downloads at run "
            f"time: fetch it first (`hf download {value}{kind}`) or give a local path"
        ) from None
