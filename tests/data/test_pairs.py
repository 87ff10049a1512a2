"""DPO pairs files (rlexp.data.pairs): a pair without a preference is a file error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlexp.config.validate import validate
from rlexp.data.pairs import PairsFileError, load_pairs
from rlexp.runtime.errors import ConfigError
from tests.conftest import compose_cfg


def _pairs_file(path: Path) -> Path:
    ok = {"prompt": "1+2=", "chosen": "1+2=3####3", "rejected": "####4"}
    same = {"prompt": "1+2=", "chosen": "####3", "rejected": "####3"}
    path.write_text(json.dumps(ok) + "\n\n" + json.dumps(same) + "\n")
    return path


def test_a_pair_whose_chosen_equals_rejected_names_file_and_line(tmp_path: Path) -> None:
    """It was loaded silently: a pair with a zero DPO gradient, counted as training data."""
    path = _pairs_file(tmp_path / "pairs.jsonl")
    with pytest.raises(PairsFileError) as err:
        load_pairs(path)
    assert f"pairs file {path}, line 3: chosen and rejected are the same text" in str(err.value)


def test_the_same_pair_stops_a_dpo_run_before_any_model(tmp_path: Path) -> None:
    path = _pairs_file(tmp_path / "pairs.jsonl")
    cfg = compose_cfg(["algorithm=dpo", f"algorithm.dpo.pairs_file={path}"])
    with pytest.raises(ConfigError, match="line 3: chosen and rejected are the same text"):
        validate(cfg)


def test_a_non_utf8_pairs_file_names_file_and_line(tmp_path: Path) -> None:
    """It was a bare UnicodeDecodeError naming neither."""
    path = tmp_path / "pairs.jsonl"
    ok = json.dumps({"prompt": "1+2=", "chosen": "1+2=3####3", "rejected": "####4"})
    path.write_bytes(ok.encode() + b"\n" + b'{"prompt": "\xff\xfe"}\n')
    with pytest.raises(PairsFileError, match=f"pairs file {path}, line 2: not valid UTF-8"):
        load_pairs(path)
