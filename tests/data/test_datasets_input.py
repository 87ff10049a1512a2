"""Data sets through ``datasets`` (issue 16, item 6): Parquet files, ``save_to_disk`` folders,
Hub ids resolved offline from the local HF cache, in-memory datasets of the Python API; the same
problems as the JSONL fixtures, and one error naming the row or the missing id."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from datasets import Dataset, DatasetDict
from huggingface_hub import constants

import rlexp.api
from rlexp.data.tasks import build_task
from rlexp.data.tasks.sources import DATASETS
from rlexp.models.build import init_model
from rlexp.models.load import load_policy
from rlexp.runtime.errors import ConfigError, DataError
from rlexp.runtime.hub import is_repo_id, local_path
from rlexp.trainers.sft_base import sft_key
from tests.conftest import compose_cfg

DATA = Path(__file__).resolve().parents[1] / "fixtures"
SPLITS = {"train": DATA / "gsm8k_train.jsonl", "test": DATA / "gsm8k_test.jsonl"}


def _rows(split: str) -> list[dict]:
    return [json.loads(line) for line in SPLITS[split].read_text().splitlines() if line.strip()]


def _as_jsonl() -> tuple:
    task = build_task("gsm8k", train_file=str(SPLITS["train"]), test_file=str(SPLITS["test"]))
    return [(p.prompt, p.solution, p.answer) for p in task.train + task.test]


def _problems(task) -> list:
    return [(p.prompt, p.solution, p.answer) for p in task.train + task.test]


def _dataset_dict(extra: bool = True) -> DatasetDict:
    splits = {}
    for split in SPLITS:
        rows = _rows(split)
        if extra:
            rows = [r | {"level": i} for i, r in enumerate(rows)]
        splits[split] = Dataset.from_list(rows)
    return DatasetDict(splits)


def test_parquet_files_give_the_problems_of_the_jsonl_files(tmp_path: Path) -> None:
    files = {}
    for split in SPLITS:
        files[f"{split}_file"] = str(tmp_path / f"{split}.parquet")
        pd.DataFrame([r | {"level": 3} for r in _rows(split)]).to_parquet(files[f"{split}_file"])
    task = build_task("gsm8k", **files)
    assert _problems(task) == _as_jsonl()
    assert task.train[1].extra == {"level": 3}  # the row's other columns reach the rewards
    assert task.train[1].source == f"{files['train_file']} row 1"


def test_a_bad_row_is_one_error_naming_the_file_and_row(tmp_path: Path) -> None:
    rows = _rows("train")
    rows[2] = {"question": "What?", "answer": "no final answer here"}
    path = tmp_path / "train.parquet"
    pd.DataFrame(rows).to_parquet(path)
    with pytest.raises(DataError, match=rf"{path} row 2: no '####' final answer"):
        build_task("gsm8k", train_file=str(path), test_file=str(path))
    odd = tmp_path / "train.txt"
    odd.write_text("x")
    with pytest.raises(DataError, match=r"unknown file type '\.txt'"):
        build_task("gsm8k", train_file=str(odd), test_file=str(odd))


def test_a_save_to_disk_folder_and_its_splits(tmp_path: Path) -> None:
    _dataset_dict().save_to_disk(tmp_path / "gsm8k")
    task = build_task("gsm8k", dataset_name=str(tmp_path / "gsm8k"))
    assert _problems(task) == _as_jsonl() and task.test[0].extra == {"level": 0}
    with pytest.raises(DataError, match=r"no split 'validation'; splits: \['test', 'train'\]"):
        build_task("gsm8k", dataset_name=str(tmp_path / "gsm8k"), dataset_test_split="validation")
    with pytest.raises(ConfigError, match="from task.train_file and task.test_file, or from"):
        build_task("gsm8k", dataset_name=str(tmp_path / "gsm8k"), train_file="x.jsonl")


def _fake_hub_snapshot(cache: Path, repo: str, kind: str) -> Path:
    """The local HF cache's layout for ``repo``: refs/main naming a snapshot folder."""
    folder = cache / f"{kind}s--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123abcd")
    return snapshot


def test_a_hub_dataset_id_resolves_offline_from_the_local_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = _fake_hub_snapshot(tmp_path / "hub", "someone/gsm8k", "dataset")
    (snapshot / "data").mkdir()
    for split in SPLITS:
        pd.DataFrame(_rows(split)).to_parquet(snapshot / "data" / f"{split}-00000.parquet")
    task = build_task("gsm8k", dataset_name="someone/gsm8k")
    assert _problems(task) == _as_jsonl()
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache .*hf download"):
        build_task("gsm8k", dataset_name="someone/absent")
    assert is_repo_id("Qwen/Qwen2.5-0.5B") and not is_repo_id("./data/x") and not is_repo_id("a")


def test_a_hub_model_id_resolves_offline_from_the_local_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = _fake_hub_snapshot(tmp_path / "hub", "someone/tiny", "model")
    cfg = compose_cfg(["model.hidden_size=32", "model.num_layers=1", "output_dir=x"])
    model, tokenizer = init_model(cfg, torch.device("cpu"), torch.float32)
    model.save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    model, _ = load_policy("someone/tiny", torch.device("cpu"), torch.float32)
    assert model.config.hidden_size == 32
    assert local_path("someone/tiny", "model.path") == snapshot
    hf = compose_cfg(["model=hf", "model.path=someone/tiny", "output_dir=x"])
    assert hf.model.path == "someone/tiny"
    with pytest.raises(ConfigError, match="model.path=someone/absent: no such local path"):
        local_path("someone/absent", "model.path")
    with pytest.raises(ConfigError, match="model.path=/no/such/dir does not exist"):
        local_path("/no/such/dir", "model.path")


def test_the_python_api_passes_a_dataset_by_name(tmp_path, monkeypatch) -> None:
    seen = {}

    def fake_run(cfg) -> None:  # what rlexp.train.run would build first
        task = build_task(cfg.task.name, **{k: v for k, v in cfg.task.items() if k != "name"})
        seen["problems"] = _problems(task)
        seen["key"] = sft_key(cfg)
        (Path(cfg.output_dir) / "run_info.json").write_text('{"final": {"x": 1.0}}')

    monkeypatch.setattr(rlexp.api, "run_config", fake_run)
    out = tmp_path / "run"
    out.mkdir()
    cfg = rlexp.api.compose(["task=gsm8k", "task.dataset_name=mine"], output_dir=out)
    assert rlexp.api.run(cfg, datasets={"mine": _dataset_dict(extra=False)}) == {"x": 1.0}
    assert seen["problems"] == _as_jsonl()
    assert "mine" not in DATASETS.names()  # known to that run only
    # a different dataset under the same name trains another SFT base
    other = _dataset_dict(extra=True)
    rlexp.api.run(cfg, datasets={"mine": other})
    first_key = seen["key"]
    rlexp.api.run(cfg, datasets={"mine": _dataset_dict(extra=False)})
    assert seen["key"] != first_key


def test_an_evaluation_of_a_rewritten_dataset_is_another_job(tmp_path: Path) -> None:
    """rlexp-eval's fingerprint covers task.dataset_name's files, as it covers task.*_file's."""
    from omegaconf import OmegaConf

    from rlexp.evaluation.samples import fingerprint

    _dataset_dict().save_to_disk(tmp_path / "data")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    task = {"name": "gsm8k", "dataset_name": str(tmp_path / "data")}
    job = OmegaConf.create({"checkpoint": str(tmp_path / "model"), "task": task})
    before = fingerprint(job)["task.dataset_name:contents"]
    DatasetDict({s: Dataset.from_list(_rows(s)[:2]) for s in SPLITS}).save_to_disk(
        tmp_path / "data"
    )
    assert fingerprint(job)["task.dataset_name:contents"] != before
