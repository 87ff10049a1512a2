"""Math problems from data sets: GSM8K (``task=gsm8k``) and MATH (``task=math``).

The rows come from local files (``task.train_file``, ``task.test_file``: JSONL, Parquet, Arrow,
JSON, CSV) or from ``task.dataset_name`` (a ``save_to_disk`` folder, a Hub id in the local HF
cache, an in-memory dataset of the Python API) and its splits; ``rlexp.data.tasks.sources``
reads them. A row holds the question under ``question_key`` and the worked solution under
``answer_key`` (its other columns travel with the problem as ``Problem.extra``). The worked
solution is the SFT target as is; its final answer (``rlexp.data.tasks.answers``) is the gold
answer the verifier compares a completion's final answer with. The prompt is
``prompt_template`` with ``{question}`` replaced. ``n_train`` / ``n_test`` keep the first
problems of a split.

Every problem is checked when the task is built, before any model is loaded: a bad row raises
one ``DataError`` naming the file and line (or the data set and row).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rlexp.data.tasks.answers import ANSWER_FORMATS, AnswerFormat
from rlexp.data.tasks.base import CHAR_ALPHABETS, TASKS, TEXT_ALPHABET, Problem, Task
from rlexp.data.tasks.equivalence import VERIFIERS, math_equal
from rlexp.data.tasks.sources import Row, dataset_split_rows, file_rows
from rlexp.runtime.errors import ConfigError, DataError

GSM8K_TEMPLATE = "Question: {question}\nAnswer:\n"
MATH_TEMPLATE = "Problem: {question}\nSolution:\n"
QUESTION = "{question}"


@dataclass(frozen=True)
class Fields:
    """How a JSON line becomes a problem."""

    question_key: str
    answer_key: str
    prompt_template: str
    answer_format: AnswerFormat


@dataclass
class JsonlTask(Task):
    """Free-text solutions; the final answer is found and compared by ``answer_format``."""

    answer_format: AnswerFormat = ANSWER_FORMATS["hash_number"]
    verifier: str = "exact"  # exact: the canonical forms match | math_verify: also equivalent

    def normalize_answer(self, s: str) -> str:
        return self.answer_format.normalize(s) or " ".join(s.split())

    def extract_answer(self, completion: str) -> str | None:
        return self.answer_format.extract(completion)

    def is_correct(self, completion: str, problem: Problem) -> bool:
        """The canonical forms agree, or (``verifier=math_verify``) math-verify finds the two
        answers equivalent (``rlexp.data.tasks.equivalence``)."""
        answer = self.extract_answer(completion)
        if answer is None:
            return False
        gold = self.normalize_answer(problem.answer)
        return answer == gold or (self.verifier == "math_verify" and math_equal(gold, answer))


def parse_row(
    row: dict[str, Any], fields: Fields, where: str
) -> tuple[str, str, str, dict[str, Any]]:
    """(prompt, solution, gold answer, the row's other columns) of one row; DataError prefixed
    by ``where``."""
    values = []
    for key, name in ((fields.question_key, "question_key"), (fields.answer_key, "answer_key")):
        if key not in row:
            raise DataError(f"{where}: missing key {key!r} (task.{name}); keys: {sorted(row)}")
        if not isinstance(row[key], str) or not row[key].strip():
            raise DataError(f"{where}: {key!r} must be a non-empty string, got {row[key]!r}")
        values.append(row[key])
    question, solution = values
    fmt = fields.answer_format
    raw = fmt.locate(solution)
    if raw is None:
        raise DataError(f"{where}: no {fmt.marker!r} final answer in {fields.answer_key!r}")
    answer = fmt.normalize(raw)
    if answer is None:
        raise DataError(
            f"{where}: final answer {raw.strip()[:40]!r} after {fmt.marker!r} is not parsable "
            f"(answer format {fmt.name})"
        )
    extra = {k: v for k, v in row.items() if k not in (fields.question_key, fields.answer_key)}
    return fields.prompt_template.replace(QUESTION, question), solution, answer, extra


def load_split(
    rows: Iterator[Row], source: str, fields: Fields, limit: int | None, id_prefix: str
) -> list[Problem]:
    """The first ``limit`` problems (all when ``None``) of ``rows``, every one checked;
    ``source`` names the rows' origin (``task.train_file=...: the file``) for an empty one."""
    problems: list[Problem] = []
    for where, row in rows:
        if limit is not None and len(problems) >= limit:
            break
        prompt, solution, answer, extra = parse_row(row, fields, where)
        problems.append(
            Problem(f"{id_prefix}/{len(problems)}", prompt, solution, answer, where, extra=extra)
        )
    if not problems:
        raise DataError(f"{source} holds no problems (empty)")
    return problems


def split_rows(split: str, files: dict[str, str | None], dataset: dict[str, Any]) -> Iterator[Row]:
    """The rows of ``split`` (train | test): ``task.<split>_file``, else the split
    ``task.dataset_<split>_split`` of ``task.dataset_name``."""
    if files[split] is not None:
        return file_rows(files[split], f"task.{split}_file")
    return dataset_split_rows(dataset["name"], dataset["config"], dataset[f"{split}_split"])


def make_jsonl_task(
    name: str,
    question_key: str,
    answer_key: str,
    prompt_template: str,
    answer_format: str,
    train_file: str | None = None,
    test_file: str | None = None,
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    dataset_train_split: str = "train",
    dataset_test_split: str = "test",
    n_train: int | None = None,
    n_test: int | None = None,
    verifier: str = "exact",
) -> JsonlTask:
    """A task of a train and a test split, from two files or the splits of a data set (the
    names of TRL's script arguments), every row checked."""
    if (train_file is None) != (test_file is None) or (train_file is None) == (
        dataset_name is None
    ):
        raise ConfigError(
            f"task={name} reads its problems from task.train_file and task.test_file, or from "
            f"task.dataset_name (with task.dataset_train_split / dataset_test_split); got "
            f"train_file={train_file}, test_file={test_file}, dataset_name={dataset_name}"
        )
    if verifier not in VERIFIERS:
        raise ConfigError(f"task.verifier={verifier} is unknown; choose: {list(VERIFIERS)}")
    if answer_format not in ANSWER_FORMATS:
        raise ConfigError(
            f"task.answer_format={answer_format} is unknown; choose: {ANSWER_FORMATS.names()}"
        )
    if QUESTION not in prompt_template:
        raise ConfigError(f"task.prompt_template={prompt_template!r} has no {QUESTION} slot")
    for key, n in (("n_train", n_train), ("n_test", n_test)):
        if n is not None and n < 1:
            raise ConfigError(f"task.{key}={n} must be >= 1 (or null for the whole file)")
    fmt = ANSWER_FORMATS[answer_format]
    fields = Fields(question_key, answer_key, prompt_template, fmt)
    files = {"train": train_file, "test": test_file}
    limits = {"train": n_train, "test": n_test}
    dataset = dict(
        name=dataset_name,
        config=dataset_config,
        train_split=dataset_train_split,
        test_split=dataset_test_split,
    )
    params = dict(
        train_file=train_file,
        test_file=test_file,
        dataset_name=dataset_name,
        dataset_config=dataset_config,
        dataset_train_split=dataset_train_split,
        dataset_test_split=dataset_test_split,
        question_key=question_key,
        answer_key=answer_key,
        prompt_template=prompt_template,
        answer_format=answer_format,
        n_train=n_train,
        n_test=n_test,
        verifier=verifier,
    )
    splits = {
        split: load_split(
            split_rows(split, files, dataset),
            _source(split, files, dataset),
            fields,
            limits[split],
            f"{name}/{split}",
        )
        for split in ("train", "test")
    }
    return JsonlTask(
        name=name,
        train=splits["train"],
        test=splits["test"],
        params=params,
        marker=fmt.marker,
        answer_format=fmt,
        verifier=verifier,
    )


def _source(split: str, files: dict[str, str | None], dataset: dict[str, Any]) -> str:
    if files[split] is not None:
        return f"task.{split}_file={files[split]}: the file"
    return f"task.dataset_name={dataset['name']}: the split {dataset[f'{split}_split']!r}"


# The data sets' own field names, prompt and answer format; any of them can be overridden.
DATASET_DEFAULTS: dict[str, dict[str, str]] = {
    # GSM8K: {"question": ..., "answer": "<worked steps>\n#### 72"}; numeric answers
    "gsm8k": dict(
        question_key="question",
        answer_key="answer",
        prompt_template=GSM8K_TEMPLATE,
        answer_format="hash_number",
        verifier="exact",  # numbers: their canonical forms already match (1,000 = 1000.0)
    ),
    # MATH: {"problem": ..., "solution": "... $\boxed{\frac{1}{2}}$."}; LaTeX answers
    "math": dict(
        question_key="problem",
        answer_key="solution",
        prompt_template=MATH_TEMPLATE,
        answer_format="boxed",
        verifier="math_verify",  # 0.5 = \frac{1}{2}: LaTeX answers compared by their value
    ),
}


def _dataset_factory(name: str):
    def factory(**settings) -> JsonlTask:
        return make_jsonl_task(name, **(DATASET_DEFAULTS[name] | settings))

    factory.__doc__ = (
        f"task={name}: make_jsonl_task with {name}'s defaults ({DATASET_DEFAULTS[name]})."
    )
    return factory


for _name in DATASET_DEFAULTS:
    TASKS.register(_name)(_dataset_factory(_name))
    CHAR_ALPHABETS[_name] = TEXT_ALPHABET  # model=tiny: letters, LaTeX, punctuation
