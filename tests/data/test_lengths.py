"""Texts longer than the model's context are a data error naming the file and line, before any
compute (issue 15, item 9: one 2 MB GSM8K line took a run to 11 GB and then asked for 4 TB)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rlexp.data.lengths import check_examples_fit, check_prompts_fit
from rlexp.data.prompts import prompt_token_ids
from rlexp.data.tasks import build_task
from rlexp.data.tasks.base import TEXT_ALPHABET
from rlexp.models.tokenizer import build_char_tokenizer
from rlexp.runtime.errors import DataError
from rlexp.train import run
from tests.conftest import TINY, compose_cfg

DATA = Path(__file__).parents[1] / "fixtures"


def _gsm8k_with_a_long_line(tmp_path: Path, question: str) -> tuple[Path, Path]:
    train = tmp_path / "train.jsonl"
    shutil.copy(DATA / "gsm8k_train.jsonl", train)
    with open(train, "a") as f:
        f.write(json.dumps({"question": question, "answer": "So 1+1=2.\n#### 2"}) + "\n")
    return train, DATA / "gsm8k_test.jsonl"


def _gsm8k(train: Path, test: Path):
    return build_task("gsm8k", train_file=str(train), test_file=str(test))


def test_a_long_prompt_names_its_file_and_line(tmp_path: Path) -> None:
    train, test = _gsm8k_with_a_long_line(tmp_path, "How many? " * 30)  # 300 characters
    task = _gsm8k(train, test)
    tokenizer = build_char_tokenizer(TEXT_ALPHABET)
    lines = len(train.read_text().splitlines())
    with pytest.raises(DataError) as err:
        check_prompts_fit(tokenizer, task.train, 256, 40, "rollout.max_new_tokens")
    message = str(err.value)
    assert f"{train} line {lines}: the prompt is" in message
    assert "rollout.max_new_tokens=40" in message and "the model's 256" in message
    check_prompts_fit(tokenizer, task.train, 1024, 40, "rollout.max_new_tokens")  # fits in 1024
    # the room for new tokens counts: n + 40 positions fit, n + 39 do not
    n = len(prompt_token_ids(tokenizer, [task.train[-1].prompt])[0])
    check_prompts_fit(tokenizer, task.train[-1:], n + 40, 40, "rollout.max_new_tokens")
    with pytest.raises(DataError, match="needs"):
        check_prompts_fit(tokenizer, task.train[-1:], n + 39, 40, "rollout.max_new_tokens")
    with pytest.raises(DataError, match=f"line {lines}: the SFT example"):
        check_examples_fit(tokenizer, task.train, 330)  # the fixture's own examples fit
    check_examples_fit(tokenizer, task.train, 1024)


def test_a_run_with_a_prompt_beyond_the_context_stops_before_sft(tmp_path: Path) -> None:
    """model=tiny has 256 positions; a 100 kB question stops the run before the SFT stage."""
    train, test = _gsm8k_with_a_long_line(tmp_path, "x" * 100_000)
    cfg = compose_cfg(
        [
            *TINY,
            "task=gsm8k",
            f"task.train_file={train}",
            f"task.test_file={test}",
            "task.n_train=null",
            "task.n_test=null",
            f"output_dir={tmp_path / 'run'}",
            f"cache_dir={tmp_path / 'cache'}",
            "logger=none",
            "model.max_position_embeddings=512",  # the fixture's examples fit in 512
        ]
    )
    with pytest.raises(DataError, match=r"the SFT example \(prompt, solution, EOS\) is 10\d{4}"):
        run(cfg)
    assert not any((tmp_path / "cache").rglob("*.safetensors"))  # no SFT base was trained
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["status"] == "failed" and "SFT example" in info["error"]
