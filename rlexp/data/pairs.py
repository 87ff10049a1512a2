"""Preference pairs for DPO: the JSONL file format, pairs built from verified samples, and their
token encoding.

File format: one JSON object per line with string fields ``prompt``, ``chosen`` and ``rejected``
(other fields are ignored; blank lines are skipped); ``chosen`` and ``rejected`` must differ.
Texts are plain: no BOS or EOS markup, which ``encode_pair`` adds exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rlexp.data.prompts import prompt_token_ids
from rlexp.runtime.io import jsonl_objects

FIELDS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class Pair:
    """One preference: ``chosen`` is preferred over ``rejected`` as a completion of ``prompt``."""

    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class EncodedPair:
    """Token ids of a pair: ``prompt`` = [BOS] prompt; ``chosen``/``rejected`` = completion [EOS]."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


class PairsFileError(ValueError):
    """A pairs file that cannot be read; the message names the file and the line."""


def load_pairs(path: str | Path) -> list[Pair]:
    """Every pair of a JSONL file; the first malformed line raises PairsFileError naming it."""
    path = Path(path)
    if not path.is_file():
        raise PairsFileError(f"pairs file {path} does not exist")
    pairs: list[Pair] = []
    lines = jsonl_objects(path, lambda n: f"pairs file {path}, line {n}", PairsFileError)
    for where, row in lines:
        missing = [k for k in FIELDS if k not in row]
        if missing:
            raise PairsFileError(f"{where}: missing field(s) {', '.join(missing)}")
        wrong = [k for k in FIELDS if not isinstance(row[k], str)]
        if wrong:
            raise PairsFileError(f"{where}: field(s) {', '.join(wrong)} must be strings")
        if row["chosen"] == row["rejected"]:  # no preference: a zero-gradient, useless pair
            raise PairsFileError(f"{where}: chosen and rejected are the same text")
        pairs.append(Pair(row["prompt"], row["chosen"], row["rejected"]))
    if not pairs:
        raise PairsFileError(f"pairs file {path} holds no pairs")
    return pairs


def write_pairs(pairs: Sequence[Pair], path: str | Path) -> None:
    """Write pairs in the format ``load_pairs`` reads (a built set can be reused as a file)."""
    with open(path, "w", encoding="utf-8") as f:
        for pair in pairs:
            f.write(json.dumps(asdict(pair)) + "\n")


def pairs_from_samples(
    prompt: str, completions: Sequence[str], correct: Sequence[bool], max_pairs: int
) -> list[Pair]:
    """Pairs of one prompt's samples: each distinct correct completion against a distinct
    incorrect one, in sample order, cycling the shorter list, at most ``max_pairs``; none when
    all samples agree."""
    right = list(dict.fromkeys(c for c, ok in zip(completions, correct, strict=True) if ok))
    wrong = list(dict.fromkeys(c for c, ok in zip(completions, correct, strict=True) if not ok))
    if not right or not wrong:
        return []
    n = min(max_pairs, max(len(right), len(wrong)))
    return [Pair(prompt, right[i % len(right)], wrong[i % len(wrong)]) for i in range(n)]


def _strip(ids: list[int], token: int | None, leading: bool) -> list[int]:
    """``ids`` without any copies of ``token`` at its start (``leading``) or end."""
    if token is None:
        return ids
    if leading:
        while ids and ids[0] == token:
            ids = ids[1:]
    else:
        while ids and ids[-1] == token:
            ids = ids[:-1]
    return ids


def encode_pair(tokenizer, pair: Pair) -> EncodedPair:
    """Ids with exactly one BOS (when the tokenizer has one) before the prompt and exactly one
    EOS after each completion, however the texts or the tokenizer's defaults are set: texts are
    tokenised without special tokens, and BOS/EOS already spelled out in them are dropped."""
    prompt, chosen, rejected = tokenizer(
        [pair.prompt, pair.chosen, pair.rejected], add_special_tokens=False
    )["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    head = [bos] if bos is not None else []
    if getattr(tokenizer, "chat_template", None):  # as in rollouts: one chat-template user turn
        prompt = prompt_token_ids(tokenizer, [pair.prompt])[0]
    else:
        prompt = head + _strip(prompt, bos, leading=True)
    return EncodedPair(
        prompt=prompt,
        chosen=_strip(chosen, eos, leading=False) + [eos],
        rejected=_strip(rejected, eos, leading=False) + [eos],
    )
