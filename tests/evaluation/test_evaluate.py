"""rlexp-eval: one Parquet row per sample, scored by the verifier; resumes a partial evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from rlexp.config.schema import EvalJobConfig
from rlexp.evaluation.samples import COLUMNS, LOGP, job_from_run, run_eval
from rlexp.models.tiny import build_tiny_llama
from rlexp.models.tokenizer import build_char_tokenizer
from rlexp.runtime.errors import ConfigError


def _checkpoint(tmp_path: Path) -> Path:
    tok = build_char_tokenizer()
    path = tmp_path / "model"
    build_tiny_llama(tok, hidden_size=32, num_layers=1, num_heads=2).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _cfg(ckpt: Path, out: Path, **kw):
    base = dict(
        task={
            "name": "arithmetic",
            "n_terms": 2,
            "digits": 1,
            "ops": "+",
            "n_train": 20,
            "n_test": 7,
            "seed": 1,
        },
        checkpoint=str(ckpt),
        label="SFT",
        seed=3,
        split="test",
        n_problems=None,
        n_samples=4,
        temperature=1.0,
        top_p=1.0,
        greedy=False,
        max_new_tokens=6,
        batch_size=8,
        chunk_problems=3,
        output_dir=str(out),
        device="cpu",
        dtype="auto",
    )
    return OmegaConf.create(base | kw)


def test_eval_writes_one_row_per_sample_and_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    summary = run_eval(_cfg(_checkpoint(tmp_path), out))
    df = pd.read_parquet(out / "samples.parquet")
    assert list(df.columns) == [*COLUMNS, LOGP]
    assert (df[LOGP] <= 0).all() and (df[LOGP] < 0).any()  # log-probs of the sampled tokens
    assert len(df) == 7 * 4 and df.groupby("problem_id").size().eq(4).all()
    assert sorted(df["sample_idx"].unique()) == [0, 1, 2, 3]
    saved = json.loads((out / "summary.json").read_text())
    assert saved == summary and saved["model"] == "SFT" and saved["n_samples"] == 4
    assert saved["accuracy"] == df["correct"].mean()


def test_eval_resumes_a_partial_run_with_identical_rows(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path)
    out = tmp_path / "eval"
    run_eval(_cfg(ckpt, out))
    full = pd.read_parquet(out / "samples.parquet")
    parts = sorted((out / "parts").glob("part_*.parquet"))
    assert len(parts) == 3  # 7 problems in chunks of 3
    parts[-1].unlink()  # as if killed before the last chunk
    stamp = parts[0].stat().st_mtime_ns
    run_eval(_cfg(ckpt, out))
    assert parts[0].stat().st_mtime_ns == stamp  # finished chunks are not redone
    pd.testing.assert_frame_equal(pd.read_parquet(out / "samples.parquet"), full)


def test_greedy_eval_has_one_sample_per_problem(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    run_eval(_cfg(_checkpoint(tmp_path), out, greedy=True))
    assert len(pd.read_parquet(out / "samples.parquet")) == 7


def _job(**kw):
    job = OmegaConf.structured(EvalJobConfig)
    job.task = {"name": "arithmetic"}
    return OmegaConf.merge(job, {"output_dir": "unused"} | kw)


def test_a_run_is_evaluated_with_its_own_task_budget_and_final_policy(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints" / "step_000004" / "policy").mkdir(parents=True)
    (run / "checkpoints" / "step_000008" / "policy").mkdir(parents=True)
    task = {"name": "arithmetic", "n_terms": 4, "digits": 1}
    OmegaConf.save({"task": task, "rollout": {"max_new_tokens": 17}}, run / "config.yaml")
    job = job_from_run(_job(run_dir=str(run)), default_max_new_tokens=40)
    assert job.task == task and job.max_new_tokens == 17
    assert job.checkpoint == str(run / "checkpoints" / "step_000008" / "policy")
    (run / "final").mkdir()
    assert job_from_run(_job(run_dir=str(run)), 40).checkpoint == str(run / "final")
    explicit = job_from_run(_job(run_dir=str(run), checkpoint="x", max_new_tokens=5), 40)
    assert (explicit.checkpoint, explicit.max_new_tokens) == ("x", 5)
    # without a run: the schema's generation budget, the one training uses by default
    assert job_from_run(_job(checkpoint="x"), 40).max_new_tokens == 40


def test_eval_without_a_run_or_a_checkpoint_is_one_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs run_dir=<training run> or checkpoint="):
        job_from_run(_job(), 40)
    with pytest.raises(ConfigError, match="holds no config.yaml"):
        job_from_run(_job(run_dir=str(tmp_path)), 40)


def _saved_run(tmp_path: Path, task: dict, max_new_tokens: int = 17, **model) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints" / "step_000004" / "policy").mkdir(parents=True)
    (run / "final").mkdir()
    saved = {"task": task, "rollout": {"max_new_tokens": max_new_tokens}, "model": model}
    OmegaConf.save(saved, run / "config.yaml")
    (run / "run_info.json").write_text('{"status": "finished"}')
    return run


def test_a_checkpoint_of_a_run_is_evaluated_with_the_runs_settings(tmp_path: Path, caplog) -> None:
    """Issue 16 item 7: the saved config is the truth; only the command line's keys override."""
    task = {"name": "arithmetic", "n_terms": 4, "digits": 1}
    run = _saved_run(tmp_path, task, chat_template="false")
    ckpt = str(run / "checkpoints" / "step_000004" / "policy")
    with caplog.at_level("INFO"):
        job = job_from_run(_job(checkpoint=ckpt), 40, overrides=[f"checkpoint={ckpt}"])
    assert job.task == task and job.max_new_tokens == 17 and job.chat_template == "false"
    assert str(run / "config.yaml") in caplog.text and "overrides" not in caplog.text
    # a key on the command line wins, and the log line names it
    cli = _job(checkpoint=ckpt, max_new_tokens=9)
    cli.task.digits = 2
    caplog.clear()
    with caplog.at_level("INFO"):
        job = job_from_run(cli, 40, overrides=["task.digits=2", "max_new_tokens=9"])
    assert job.task == task | {"digits": 2} and job.max_new_tokens == 9
    assert "the command line overrides max_new_tokens, task.digits" in caplog.text
    # task=<option> replaces the whole task; run_dir= works the same way
    other = _job(run_dir=str(run))
    other.task = {"name": "gsm8k"}
    assert job_from_run(other, 40, overrides=["task=gsm8k"]).task == {"name": "gsm8k"}
    assert job_from_run(_job(run_dir=str(run)), 40).checkpoint == str(run / "final")


def test_a_model_from_elsewhere_keeps_the_command_lines_task(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    job = job_from_run(_job(checkpoint=str(tmp_path / "model")), 40, overrides=[])
    assert job.task == {"name": "arithmetic"} and job.max_new_tokens == 40
    assert job.chat_template == "auto"


def test_an_evaluation_and_a_study_are_wandb_runs_of_their_own_job_type(tmp_path: Path) -> None:
    """Issue 16 item 9: job_type per stage; rl and sft are checked by the training tests."""
    from rlexp.study import log_study
    from tests.wandb_offline import read_offline_run

    wandb_logger = {"name": "wandb", "project": "rlexp", "mode": "offline", "group": "g",
                    "run_name": None, "tags": [], "log_model": False}  # fmt: skip
    out = tmp_path / "eval"
    run_eval(_cfg(_checkpoint(tmp_path), out, logger=wandb_logger, log_samples=2))
    wb = read_offline_run(out)
    assert wb["run"].job_type == "eval" and wb["run"].run_group == "g"
    (table,) = [h["eval/samples"] for h in wb["history"] if "eval/samples" in h]
    assert table["_type"] == "table-file" and table["nrows"] == 2 * 4  # 2 problems x 4 samples
    study = tmp_path / "study"
    (study / "hard").mkdir(parents=True)
    pd.DataFrame({"model": ["SFT", "RL"], "pass@1": [0.4, 0.8]}).to_csv(
        study / "hard" / "passk_majk.csv", index=False
    )
    (study / "report.md").write_text("# verdict: reproduced\n")
    log_study(OmegaConf.create({"logger": wandb_logger, "x": 1}), study, ["hard"])
    wb = read_offline_run(study)
    assert wb["run"].job_type == "study"
    assert any("study/hard/passk_majk" in h for h in wb["history"])
