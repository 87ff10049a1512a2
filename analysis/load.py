"""Run, sweep, eval and study directories written by rlexp -> tidy pandas frames.

Never imports rlexp: the on-disk formats (config.yaml, run_info.json, metrics.jsonl,
samples.parquet, summary.json, study.json) are the only contract.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
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
class UnreadableRunFile(ValueError):
    """A run file that cannot be read; the message starts with the file's path."""


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


def _read(path: Path, read, kind: type) -> Any:
    """``read(path)``, which must give a ``kind`` (None for an empty file is allowed);
    UnreadableRunFile naming ``path`` otherwise."""
    try:
        value = read(path)
    except UnreadableRunFile:
        raise
    except (OSError, ValueError, yaml.YAMLError) as err:  # JSON, UTF-8 and YAML errors
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UnreadableRunFile(f"{path}: {reason}") from None
    if value is not None and not isinstance(value, kind):
        raise UnreadableRunFile(f"{path}: expected a {kind.__name__}, got {type(value).__name__}")
    return value


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# ------------------------------------------------------------------------------------ runs
def load_metrics(run_dir: str | Path, file: str = "metrics.jsonl") -> pd.DataFrame:
    """One row per logged line of ``<run_dir>/<file>``; "nan"/"inf" strings become floats.

    A truncated last line (a run still writing) is skipped. When a resumed run logged a step
    twice, the last line for that step wins. A missing or empty file gives an empty frame.
    """
    path = Path(run_dir) / file
    lines = _read(path, lambda p: p.read_text().splitlines(), list) if path.exists() else []
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise UnreadableRunFile(f"{path}:{i + 1}: not a JSON object") from None
        if not isinstance(row, dict):
            raise UnreadableRunFile(f"{path}:{i + 1}: not a JSON object")
        rows.append(row)
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
    """A run directory -> {"path", "config" (dotted keys), "info", "metrics", "sft_metrics"}.

    A file that cannot be read raises UnreadableRunFile naming it."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    config = _read(config_path, _yaml, dict) if config_path.exists() else {}
    info = _read(run_dir / "run_info.json", _read_json, dict)
    hydra_overrides = run_dir / ".hydra" / "overrides.yaml"
    if "overrides" not in info and hydra_overrides.exists():  # killed before run_info.json
        info["overrides"] = _read(hydra_overrides, _yaml, list) or []
    return {
        "path": run_dir,
        "config": flatten(config or {}),
        "info": info,
        "metrics": load_metrics(run_dir),
        "sft_metrics": load_metrics(run_dir, "sft_metrics.jsonl"),
    }


def load_members(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """`load_run` of every member of a multirun directory. A member with a file that cannot be
    read is skipped with a warning naming the file and kept as status "unreadable" (the file and
    the reason as its error, its overrides when .hydra/ still gives them): listed among the
    failed members, never averaged."""
    runs = []
    for member in member_dirs(Path(sweep_dir)):
        try:
            runs.append(load_run(member))
        except UnreadableRunFile as err:
            warnings.warn(f"skipping sweep member {member}: {err}", stacklevel=2)
            runs.append(_unreadable(member, str(err)))
    return runs


def _unreadable(member: Path, error: str) -> dict[str, Any]:
    """The stand-in of a member that does not load: its overrides and seed, where a readable
    run_info.json or .hydra/overrides.yaml still gives them, name its setting."""
    info: dict[str, Any] = {}
    with contextlib.suppress(UnreadableRunFile):
        saved = _read(member / "run_info.json", _read_json, dict)
        info = {k: saved[k] for k in ("overrides", "seed") if k in saved}
    hydra_overrides = member / ".hydra" / "overrides.yaml"
    if "overrides" not in info and hydra_overrides.exists():
        with contextlib.suppress(UnreadableRunFile):
            info["overrides"] = _read(hydra_overrides, _yaml, list) or []
    info |= {"status": "unreadable", "error": f"unreadable: {error}"}
    empty = pd.DataFrame()
    return {"path": member, "config": {}, "info": info, "metrics": empty, "sft_metrics": empty}


RUN_FILES = ("metrics.jsonl", "run_info.json", "config.yaml", ".hydra/overrides.yaml")


def is_run_dir(path: Path) -> bool:
    return any((path / f).exists() for f in RUN_FILES)


# ------------------------------------------------------------------------------------ sweeps
def member_dirs(sweep_dir: Path) -> list[Path]:
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
    return _drop_aliases(table[varying])


def _knob_rank(key: str) -> tuple[int, int]:
    """Which of several keys that vary together names the knob: the algorithm, then a config
    group's choice (``advantage.name``), then the shortest key."""
    top = 0 if key in ("algorithm", "algorithm.name") else 1 if key.endswith(".name") else 2
    return top, len(key)


def _drop_aliases(table: pd.DataFrame) -> pd.DataFrame:
    """Keep one key per way of splitting the members: keys that always change together (a
    config group's choice and the values it brings) are one knob, named by `_knob_rank`.
    The seed is always kept. ``table.attrs["aliases"]`` maps each kept key to those it stands for.
    """
    by_split: dict[tuple[int, ...], list[str]] = {}
    for key in table.columns.drop("seed", errors="ignore"):
        codes = tuple(pd.factorize(table[key].astype(str))[0])
        by_split.setdefault(codes, []).append(key)
    keep, aliases = {"seed"}, {}
    for keys in by_split.values():
        best = min(keys, key=_knob_rank)
        keep.add(best)
        if len(keys) > 1:
            aliases[best] = [k for k in keys if k != best]
    out = table[[k for k in table.columns if k in keep]]
    out.attrs["aliases"] = aliases
    return out


def sweep_members(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per member: run, status, error, seed and the swept knob values."""
    return members_table(load_members(sweep_dir))


def _seed(run: dict[str, Any]) -> Any:
    """The run's seed: run_info.json, else config.yaml, else its overrides."""
    for source in (run["info"], run["config"], parse_overrides(run["info"].get("overrides", []))):
        if source.get("seed") is not None:
            return source["seed"]
    return None


def members_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run dict (`load_run`'s keys; "name" overrides the directory name): run,
    status, error, seed and the swept knobs."""
    knobs = _knob_values(runs) if runs else pd.DataFrame()
    base = pd.DataFrame(
        {
            "run": [r.get("name") or r["path"].name for r in runs],
            # missing: no run_info.json (a member killed before its run started)
            "status": [r["info"].get("status", "missing") for r in runs],
            "error": [r["info"].get("error") for r in runs],
            "seed": [_seed(r) for r in runs],
        }
    )
    out = pd.concat([base, knobs.drop(columns=["seed"], errors="ignore")], axis=1)
    out.attrs["aliases"] = knobs.attrs.get("aliases", {})
    return out


def load_sweep(sweep_dir: str | Path) -> pd.DataFrame:
    """A multirun directory -> one row per member per logged step.

    Columns: run, status ("finished", "running", "failed", ...), seed, the swept knobs (keys
    whose values differ between members), then the metrics. Failed members are kept and
    flagged by status; a member that logged nothing keeps one row with NaN metrics.
    ``df.attrs["knobs"]`` names the swept keys.
    """
    sweep_dir = Path(sweep_dir)
    runs = load_members(sweep_dir)
    if not runs:
        raise ValueError(f"{sweep_dir} holds no run directories")
    return tidy_sweep(runs)


def tidy_sweep(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Run dicts (`load_run`'s keys) -> the tidy table of `load_sweep`."""
    members = members_table(runs)
    aliases = members.attrs["aliases"]
    members = members.drop(columns=["error"])
    frames = []
    for (_, member), run in zip(members.iterrows(), runs, strict=True):
        metrics = run["metrics"] if len(run["metrics"]) else pd.DataFrame({STEP: [math.nan]})
        frames.append(metrics.assign(**{c: member[c] for c in members.columns}))
    df = pd.concat(frames, ignore_index=True)
    df = df[[*members.columns, *[c for c in df.columns if c not in members.columns]]]
    df.attrs["knobs"] = [c for c in members.columns if c not in ("run", "status")]
    df.attrs["aliases"] = aliases
    return df


# ------------------------------------------------------------------------------------ W&B
def _unwrap(config: dict[str, Any]) -> dict[str, Any]:
    """A W&B config without its internal keys ("_wandb") and {"value": x} wrappers."""
    out = {}
    for k, v in config.items():
        if str(k).startswith("_"):
            continue
        if isinstance(v, dict) and set(v) <= {"value", "desc"} and "value" in v:
            v = v["value"]
        out[k] = _unwrap(v) if isinstance(v, dict) else v
    return out


def wandb_runs(entity: str, project: str, group: str | None = None, api: Any = None) -> list[dict]:
    """The runs of a W&B project (one group, or all) as run dicts like `analysis.load.load_run`.

    api: a ``wandb.Api()`` (made here when None); only ``api.runs(path, filters=...)`` and each
    run's ``id``, ``name``, ``state``, ``config`` and ``scan_history()`` are used. A run in state
    "failed" or "crashed" gets status "failed".
    """
    if api is None:
        import wandb  # slow import: only for users who sync

        api = wandb.Api()
    filters = {"group": group} if group else {}
    out = []
    for run in api.runs(f"{entity}/{project}", filters=filters):
        config = _unwrap(dict(run.config))
        rows = [
            {k: v for k, v in r.items() if not str(k).startswith("_")} for r in run.scan_history()
        ]
        state = str(run.state)
        status = "failed" if state in ("failed", "crashed") else state
        info = {"status": status, "seed": config.get("seed")}
        info["error"] = f"W&B run state {state!r}" if status == "failed" else None
        metrics = pd.DataFrame.from_records(rows)
        for col in metrics.columns:
            metrics[col] = pd.to_numeric(metrics[col], errors="coerce")
        if STEP in metrics:
            metrics = metrics.dropna(subset=[STEP]).drop_duplicates(STEP, keep="last")
        out.append(
            {
                "path": Path(str(run.id)),
                "name": str(run.name or run.id),
                "config": flatten(config),
                "info": info,
                "metrics": metrics.reset_index(drop=True),
            }
        )
    return out


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
    if (path / "multirun.yaml").exists() or (member_dirs(path) and not is_run_dir(path)):
        return "sweep"
    if is_run_dir(path):
        return "run"
    if (path / "samples.parquet").exists():
        return "eval"
    raise ValueError(f"{path} is not a run, sweep, eval or study directory")
