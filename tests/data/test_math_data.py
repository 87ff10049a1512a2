"""GSM8K and MATH from local JSONL files: loading, prompts, the verifier, malformed-file errors
naming file and line, the tiny model's tokenizer, and GRPO end to end on the fixture files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlexp.config.validate import validate
from rlexp.data.tasks import build_task
from rlexp.data.tasks.base import TEXT_ALPHABET
from rlexp.models.build import init_model
from rlexp.models.tokenizer import build_char_tokenizer
from rlexp.rollout.rewards import REWARDS
from rlexp.runtime.errors import ConfigError, DataError
from rlexp.train import main_guard, run
from rlexp.trainers.sft_base import sft_key
from tests.conftest import TINY, compose_cfg, read_jsonl

DATA = Path(__file__).resolve().parents[1] / "fixtures"
GSM8K = dict(train_file=str(DATA / "gsm8k_train.jsonl"), test_file=str(DATA / "gsm8k_test.jsonl"))
MATH = dict(train_file=str(DATA / "math_train.jsonl"), test_file=str(DATA / "math_test.jsonl"))


def _overrides(name: str, files: dict[str, str]) -> list[str]:
    return [f"task={name}", *(f"task.{k}={v}" for k, v in files.items())]


@pytest.fixture(scope="module")
def gsm8k():
    return build_task("gsm8k", **GSM8K)


@pytest.fixture(scope="module")
def math_task():
    return build_task("math", **MATH)


# --------------------------------------------------------------------------- loading, prompts


def test_gsm8k_loads_prompts_solutions_and_gold_answers(gsm8k) -> None:
    assert (len(gsm8k.train), len(gsm8k.test)) == (8, 4)
    rows = [json.loads(line) for line in Path(GSM8K["train_file"]).read_text().splitlines()]
    first = gsm8k.train[0]
    assert first.prompt == f"Question: {rows[0]['question']}\nAnswer:\n"
    assert first.solution == rows[0]["answer"]  # the worked answer is the SFT target as is
    assert [p.answer for p in gsm8k.train] == ["10", "23", "24", "210", "120", "1200", "260", "3"]
    assert first.id == "gsm8k/train/0" and gsm8k.test[-1].id == "gsm8k/test/3"


def test_math_loads_the_last_boxed_answer_normalised(math_task) -> None:
    assert (len(math_task.train), len(math_task.test)) == (6, 3)
    assert math_task.train[0].prompt.startswith("Problem: What is the value of $\\frac{1}{2}")
    assert math_task.train[0].prompt.endswith("\nSolution:\n")
    answers = [p.answer for p in math_task.train + math_task.test]
    assert answers == [
        "\\frac{5}{6}",
        "6",
        "10",
        "(3,\\frac{\\pi}{2})",  # \left( 3, ... \right) normalised
        "5",
        "\\{-3,3\\}",
        "\\frac{1}{2}",  # \dfrac
        "5",
        "10",
    ]


def test_limits_keep_the_first_problems_and_template_and_keys_are_configurable(
    tmp_path: Path,
) -> None:
    task = build_task("gsm8k", **GSM8K, n_train=3, n_test=1, prompt_template="Q: {question} A:")
    assert (len(task.train), len(task.test)) == (3, 1)
    assert task.train[2].answer == "24" and task.train[0].prompt.startswith("Q: Tom has")
    path = tmp_path / "renamed.jsonl"
    path.write_text(json.dumps({"q": "1+1?", "a": "1+1=2\n#### 2"}) + "\n")
    custom = build_task("gsm8k", train_file=path, test_file=path, question_key="q", answer_key="a")
    assert custom.train[0].prompt == "Question: 1+1?\nAnswer:\n" and custom.train[0].answer == "2"


# --------------------------------------------------------------------------- verifier


@pytest.mark.parametrize(
    ("completion", "correct", "well_formed"),
    [
        ("6*8=48 pencils.\n#### 48", True, True),
        ("#### 48.00", True, True),
        ("#### $48 pencils", True, True),
        ("first #### 12 then #### 48", True, True),  # the last marker counts
        ("#### 49", False, True),
        ("#### -48", False, True),
        ("The answer is 48", False, False),  # only '####' is parsed
        ("#### forty-eight", False, False),
        ("####", False, False),
        ("", False, False),
        ("é\\boxed{{#### \x00", False, False),
    ],
)
def test_gsm8k_verifier(gsm8k, completion: str, correct: bool, well_formed: bool) -> None:
    problem = gsm8k.test[0]  # 6 packs of 8 pencils: 48
    assert gsm8k.is_correct(completion, problem) is correct
    assert gsm8k.is_well_formed(completion) is well_formed
    assert REWARDS["exact_match"]([completion], [problem], gsm8k) == [float(correct)]
    assert REWARDS["format"]([completion], [problem], gsm8k) == [float(well_formed)]


@pytest.mark.parametrize(
    ("completion", "correct", "well_formed"),
    [
        ("so the answer is $\\boxed{\\frac{1}{2}}$.", True, True),
        ("$\\boxed{\\dfrac {1} {2}}$", True, True),
        ("\\boxed{\\frac{1}{3}} no wait \\boxed{\\frac{1}{2}}", True, True),
        ("\\boxed{0.5}", True, True),  # equivalent: math-verify compares the values
        ("\\boxed{\\frac{1}{2}", False, False),  # never closes
        ("#### 1/2", False, False),
        ("", False, False),
    ],
)
def test_math_verifier(math_task, completion: str, correct: bool, well_formed: bool) -> None:
    problem = math_task.test[0]  # \dfrac{1}{2}
    assert math_task.is_correct(completion, problem) is correct
    assert math_task.is_well_formed(completion) is well_formed
    assert REWARDS["exact_match"]([completion], [problem], math_task) == [float(correct)]


def test_every_fixture_solution_is_verified_correct(gsm8k, math_task) -> None:
    for task in (gsm8k, math_task):
        for p in task.train + task.test:
            assert task.is_correct(p.solution, p), p


# --------------------------------------------------------------------------- malformed files

GOOD = json.dumps({"question": "2+2?", "answer": "2+2=4\n#### 4"})


@pytest.mark.parametrize(
    ("bad_line", "needle"),
    [
        ('{"question": "2+2?", "answer": ', "not valid JSON"),
        ('["2+2?", "4"]', "expected a JSON object, got list"),
        (json.dumps({"question": "2+2?"}), "missing key 'answer' (task.answer_key)"),
        (json.dumps({"answer": "#### 4"}), "missing key 'question' (task.question_key)"),
        (json.dumps({"question": "2+2?", "answer": 4}), "'answer' must be a non-empty string"),
        (json.dumps({"question": "", "answer": "#### 4"}), "'question' must be a non-empty"),
        (json.dumps({"question": "2+2?", "answer": "it is 4"}), "no '####' final answer"),
        (json.dumps({"question": "2+2?", "answer": "#### four"}), "'four' after '####'"),
    ],
)
def test_a_bad_line_names_file_and_line(tmp_path: Path, bad_line: str, needle: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(f"{GOOD}\n\n{bad_line}\n{GOOD}\n")  # blank line 2 is skipped
    with pytest.raises(DataError) as err:
        build_task("gsm8k", train_file=path, test_file=GSM8K["test_file"])
    assert str(err.value).startswith(f"{path} line 3: ") and needle in str(err.value)


def test_math_line_without_boxed_answer(tmp_path: Path) -> None:
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps({"problem": "1+1?", "solution": "It is 2."}) + "\n")
    with pytest.raises(DataError, match=r"test\.jsonl line 1: no '\\\\boxed\{\}' final answer"):
        build_task("math", train_file=MATH["train_file"], test_file=path)


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(GOOD.encode() + b"\n\xff\xfe\n")
    with pytest.raises(DataError, match="line 2: not valid UTF-8"):
        build_task("gsm8k", train_file=path, test_file=GSM8K["test_file"])


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "test.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=f"task.test_file={path}: the file holds no problems"):
        build_task("gsm8k", train_file=GSM8K["train_file"], test_file=path)


def test_missing_file_names_path_and_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match=f"task.train_file={missing}: the file does not exist"):
        build_task("gsm8k", train_file=missing, test_file=GSM8K["test_file"])
    with pytest.raises(DataError, match="is a directory"):
        build_task("gsm8k", train_file=GSM8K["train_file"], test_file=tmp_path)


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        (dict(answer_format="latex"), "task.answer_format=latex is unknown"),
        (dict(prompt_template="Q:"), "has no {question} slot"),
        (dict(n_train=0), "task.n_train=0 must be >= 1"),
    ],
)
def test_bad_settings_are_config_errors(params: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        build_task("gsm8k", **GSM8K, **params)
    assert needle in str(err.value)


def test_validate_reads_the_files_before_any_compute(tmp_path: Path) -> None:
    validate(compose_cfg(["output_dir=/tmp/unused", *_overrides("gsm8k", GSM8K)]))
    with pytest.raises(ConfigError, match="task=math needs task.train_file=<file>"):
        validate(compose_cfg(["output_dir=/tmp/unused", "task=math"]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(GOOD + "\n{oops\n")
    cfg = compose_cfg(["output_dir=/tmp/unused", *_overrides("gsm8k", {**GSM8K, "test_file": bad})])
    with pytest.raises(DataError, match=f"{bad} line 2: not valid JSON"):
        validate(cfg)


def test_cli_prints_one_line_naming_file_and_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(GOOD + "\n" + json.dumps({"question": "3+3?"}) + "\n")
    cfg = compose_cfg(
        ["output_dir=/tmp/unused", *_overrides("gsm8k", {**GSM8K, "train_file": bad})]
    )
    with pytest.raises(SystemExit) as exit_:
        main_guard(run, cfg)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"rlexp: data error: {bad} line 2: missing key 'answer' (task.answer_key); "
        "keys: ['question']\n"
    )


# --------------------------------------------------------------------------- tiny model


def test_text_alphabet_covers_the_data_and_unknown_characters_do_not_crash(
    gsm8k, math_task
) -> None:
    tok = build_char_tokenizer(TEXT_ALPHABET)
    for p in gsm8k.train + gsm8k.test + math_task.train + math_task.test:
        for text in (p.prompt, p.solution):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert tok.unk_token_id not in ids and tok.decode(ids) == text
    ids = tok("π ≈ 3.14 é", add_special_tokens=False)["input_ids"]
    assert ids.count(tok.unk_token_id) == 3
    assert tok.decode(ids, skip_special_tokens=True) == "  3.14 "


def test_tiny_model_gets_the_text_alphabet_and_sft_key_tracks_file_contents(
    tmp_path: Path,
) -> None:
    import torch

    arith = compose_cfg(["output_dir=/tmp/unused", *TINY])
    _, tok = init_model(arith, torch.device("cpu"), torch.float32)
    assert len(tok) == 4 + 18  # arithmetic's tokenizer is unchanged
    train = tmp_path / "train.jsonl"
    train.write_text(Path(GSM8K["train_file"]).read_text())
    cfg = compose_cfg(
        ["output_dir=/tmp/unused", *TINY, *_overrides("gsm8k", {**GSM8K, "train_file": train})]
    )
    model, tok = init_model(cfg, torch.device("cpu"), torch.float32)
    assert len(tok) == 4 + len(TEXT_ALPHABET) == model.config.vocab_size
    before = sft_key(cfg)
    assert sft_key(cfg) == before
    train.write_text(GOOD + "\n")  # same path, other contents: another SFT base
    assert sft_key(cfg) != before


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize(("name", "files"), [("gsm8k", GSM8K), ("math", MATH)])
def test_grpo_end_to_end_on_jsonl_data(tmp_path: Path, name: str, files: dict) -> None:
    out = tmp_path / "run"
    cfg = compose_cfg(
        [
            *TINY,
            *_overrides(name, files),
            "steps=2",
            "eval_every=2",
            "save_every=2",
            "logger=none",
            "sft.steps=20",
            "sft.batch_size=16",
            "sft.eval_every=10",
            "algorithm=grpo",
            "algorithm.prompts_per_step=4",
            "algorithm.group_size=2",
            "algorithm.minibatch_size=8",
            "model.max_position_embeddings=512",  # a character per token: 256 are too few
            f"output_dir={out}",
            f"cache_dir={tmp_path / 'cache'}",
        ]
    )
    run(cfg)
    rows = read_jsonl(out / "metrics.jsonl")
    train_rows = [r for r in rows if "train/reward_mean" in r]
    assert [r["train/step"] for r in train_rows] == [0, 1]
    assert all(0.0 <= r["train/reward_mean"] <= 1.0 for r in train_rows)
    assert [r["train/step"] for r in rows if "eval/sampled_accuracy" in r] == [0, 2]
    sft = read_jsonl(out / "sft_metrics.jsonl")
    assert sft[-1]["sft/step"] == 20 and sft[-1]["sft/heldout_loss"] < sft[0]["sft/heldout_loss"]
    info = json.loads((out / "run_info.json").read_text())
    assert info["status"] == "finished" and f"tiny-{name}-" in info["base_checkpoint"]
