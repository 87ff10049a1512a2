"""Reads an offline W&B run file (``run-<id>.wandb``) back, so tests can check what W&B got.

The file is W&B's LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB blocks
of records, each ``crc32 (4) | length (2, LE) | type (1) | payload``, types FULL=1, FIRST=2,
MIDDLE=3, LAST=4; payloads are ``wandb_internal_pb2.Record`` protobufs.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
WAIT_S = 20.0  # a finished run's file is complete once its exit record is written
HEADER = 7


def _payloads(data: bytes):
    pos, pending = HEADER, b""
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # block trailer padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
            pending = b""


def read_offline_run(run_dir: Path) -> dict[str, Any]:
    """``{"run": Record.run, "history": [dict per log call], "config": {...}, "exit_code": int |
    None}`` of the single offline W&B run under ``run_dir/wandb``."""
    (path,) = Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")
    run = read_run_file(path)
    deadline = time.monotonic() + WAIT_S
    while run["exit_code"] is None and time.monotonic() < deadline:  # W&B's writer may lag
        time.sleep(0.2)
        run = read_run_file(path)
    return run


def read_offline_runs(run_dir: Path) -> list[dict[str, Any]]:
    """Every offline W&B run file under ``run_dir/wandb`` (a resumed run adds one), oldest first."""
    return [read_run_file(p) for p in sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))]


def read_run_file(path: Path) -> dict[str, Any]:
    """One ``run-<id>.wandb`` file, read as :func:`read_offline_run` describes."""
    out: dict[str, Any] = {
        "run": None, "history": [], "config": {}, "exit_code": None, "artifacts": []
    }  # fmt: skip
    for payload in _payloads(path.read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "run" and out["run"] is None:
            out["run"] = rec.run
            out["config"] = {i.key: json.loads(i.value_json) for i in rec.run.config.update}
        elif kind == "history":
            row: dict[str, Any] = {}
            for i in rec.history.item:  # a logged dict (a table's file record) comes flattened
                keys = [i.key] if i.key else list(i.nested_key)
                node = row
                for key in keys[:-1]:
                    node = node.setdefault(key, {})
                node[keys[-1]] = json.loads(i.value_json)
            out["history"].append(row)
        elif kind == "artifact":
            art = rec.artifact
            files = [entry.path for entry in art.manifest.contents]
            out["artifacts"].append({"name": art.name, "type": art.type, "files": files})
        elif kind == "exit":
            out["exit_code"] = rec.exit.exit_code
    return out
