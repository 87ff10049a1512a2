"""Run, sweep, eval and study directories written by rlexp -> tidy pandas frames.

Never imports rlexp: the on-disk formats (config.yaml, run_info.json, metrics.jsonl,
samples.parquet, summary.json, study.json) are the only contract.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

STEP = "train/step"
SFT_STEP = "sft/step"
# Keys that differ between sweep members without being experimental knobs.
_NOT_KNOBS = ("output_dir", "cache_dir", "resume", "threads", "device")
_NOT_KNOB_PREFIXES = ("logger.", "hydra.")
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "infinity": math.inf}


# ------------------------------------------------------------------------------------ helpers
def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": leaf}; lists stay as values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= flatten(value, f"{name}.")
        else:
            out[name] = value
    return out


def parse_value(text: str) -> Any:
    """A command-line override value -> int, float, bool, None or str (as Hydra reads it)."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    lowered = text.strip().lower()
    return {"true": True, "false": False, "null": None}.get(lowered, text)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """["a.b=1", "+c=x", "~d"] -> {"a.b": 1, "c": "x"} (deletions are skipped)."""
    out = {}
    for item in overrides:
        if "=" not in item or item.startswith("~"):
            continue
        key, value = item.split("=", 1)
        out[key.lstrip("+")] = parse_value(value)
    return out


def _finite_or_number(value: Any) -> Any:
    if isinstance(value, str):
        return _NON_FINITE.get(value.strip().lower(), value)
    return value


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


# ------------------------------------------------------------------------------------ runs
def load_metrics(run_dir: str | Path, file: str = "metrics.jsonl") -> pd.DataFrame:
    """One row per logged line of ``<run_dir>/<file>``; "nan"/"inf" strings become floats.

    A truncated last line (a run still writing) is skipped. When a resumed run logged a step
    twice, the last line for that step wins. A missing or empty file gives an empty frame.
    """
    path = Path(run_dir) / file
    lines = path.read_text().splitlines() if path.exists() else []
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON object") from None
    df = pd.DataFrame.from_records(rows)
    for col in df.columns:
        if pd.api.types.is_numeric_dtype(df[col]):
            continue
        converted = df[col].map(_finite_or_number)
        numeric = pd.to_numeric(converted, errors="coerce")
        if numeric.notna().sum() == converted.notna().sum():
            df[col] = numeric.astype(float)
    step = STEP if STEP in df else SFT_STEP if SFT_STEP in df else None
    if step is not None:
        df = df.drop_duplicates(step, keep="last").reset_index(drop=True)
    return df


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """A run directory -> {"path", "config" (dotted keys), "info", "metrics", "sft_metrics"}."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.exists() else {}
    return {
        "path": run_dir,
        "config": flatten(config or {}),
        "info": _read_json(run_dir / "run_info.json"),
        "metrics": load_metrics(run_dir),
        "sft_metrics": load_metrics(run_dir, "sft_metrics.jsonl"),
    }


def is_run_dir(path: Path) -> bool:
    return any((path / f).exists() for f in ("metrics.jsonl", "run_info.json", "config.yaml"))


# ------------------------------------------------------------------------------------ sweeps
def _member_dirs(sweep_dir: Path) -> list[Path]:
    """Member run directories, numbered ones in numeric order first."""
    dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and is_run_dir(p)]
    return sorted(dirs, key=lambda p: (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name))


def _knob_values(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per member, one column per swept key (keys whose values differ)."""
    overrides = [parse_overrides(r["info"].get("overrides", [])) for r in runs]
    if any(overrides):
        keys = list(dict.fromkeys(k for o in overrides for k in o))
        sources = [
            o | {k: c.get(k, c.get(f"{k}.name")) for k in keys if k not in o}
            for o, c in zip(overrides, (r["config"] for r in runs), strict=True)
        ]
    else:
        sources = [r["config"] for r in runs]
        keys = list(dict.fromkeys(k for s in sources for k in s))
    keys = [k for k in keys if k not in _NOT_KNOBS and not k.startswith(_NOT_KNOB_PREFIXES)]
    table = pd.DataFrame([{k: s.get(k) for k in keys} for s in sources], columns=keys)
    varying = [k for k in keys if table[k].astype(str).nunique(dropna=False) > 1]
    return table[varying]


def sweep_members(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per member: run, status, error, seed and the swept knob values."""
    runs = [load_run(p) for p in _member_dirs(Path(sweep_dir))]
    return _members_table(runs)


def _members_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    knobs = _knob_values(runs) if runs else pd.DataFrame()
    base = pd.DataFrame(
        {
            "run": [r["path"].name for r in runs],
            "status": [r["info"].get("status", "unknown") for r in runs],
            "error": [r["info"].get("error") for r in runs],
            "seed": [r["info"].get("seed", r["config"].get("seed")) for r in runs],
        }
    )
    return pd.concat([base, knobs.drop(columns=["seed"], errors="ignore")], axis=1)


def load_sweep(sweep_dir: str | Path) -> pd.DataFrame:
    """A multirun directory -> one row per member per logged step.

    Columns: run, status ("finished", "running", "failed", ...), seed, the swept knobs (keys
    whose values differ between members), then the metrics. Failed members are kept and
    flagged by status; a member that logged nothing keeps one row with NaN metrics.
    ``df.attrs["knobs"]`` names the swept keys.
    """
    sweep_dir = Path(sweep_dir)
    runs = [load_run(p) for p in _member_dirs(sweep_dir)]
    if not runs:
        raise ValueError(f"{sweep_dir} holds no run directories")
    members = _members_table(runs).drop(columns=["error"])
    frames = []
    for (_, member), run in zip(members.iterrows(), runs, strict=True):
        metrics = run["metrics"] if len(run["metrics"]) else pd.DataFrame({STEP: [math.nan]})
        frames.append(metrics.assign(**{c: member[c] for c in members.columns}))
    df = pd.concat(frames, ignore_index=True)
    df = df[[*members.columns, *[c for c in df.columns if c not in members.columns]]]
    df.attrs["knobs"] = [c for c in members.columns if c not in ("run", "status")]
    return df


# ------------------------------------------------------------------------------------ evals
def load_eval(eval_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """An eval directory -> (samples, one row per sample; summary.json as a dict)."""
    eval_dir = Path(eval_dir)
    samples = pd.read_parquet(eval_dir / "samples.parquet")
    samples["answer"] = samples["answer"].astype(object).where(samples["answer"].notna(), None)
    return samples, _read_json(eval_dir / "summary.json")


def detect_kind(path: str | Path) -> str:
    """ "study", "sweep", "run" or "eval" for a directory; ValueError for anything else."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory")
    if (path / "study.json").exists():
        return "study"
    if (path / "multirun.yaml").exists() or (_member_dirs(path) and not is_run_dir(path)):
        return "sweep"
    if is_run_dir(path):
        return "run"
    if (path / "samples.parquet").exists():
        return "eval"
    raise ValueError(f"{path} is not a run, sweep, eval or study directory")
