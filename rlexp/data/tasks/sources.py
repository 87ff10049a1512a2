"""Where a data-set task's rows come from, as ``(where, row)`` pairs, ``where`` naming the row
for an error message:

- a ``.jsonl`` file, read line by line here (``<file> line 7``: blank lines skipped, each line
  one JSON object, UTF-8 checked);
- a ``.parquet``, ``.arrow``, ``.json`` or ``.csv`` file, read by ``datasets.load_dataset``
  (``<file> row 6``);
- ``task.dataset_name``: a folder written by ``Dataset(Dict).save_to_disk`` (``load_from_disk``),
  a folder of data files or a Hub dataset id resolved offline in the local HF cache
  (``load_dataset``, ``task.dataset_config`` its config), or a ``datasets.Dataset(Dict)`` the
  Python API passed in by name (``DATASETS``, run-scoped); one split per call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlexp.runtime.errors import DataError
from rlexp.runtime.hub import local_path
from rlexp.runtime.io import jsonl_objects
from rlexp.runtime.registry import Registry

Row = tuple[str, dict[str, Any]]
# datasets' builder per file suffix (a .jsonl file is read line by line instead)
BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".csv": "csv"}
# Datasets the Python API passes in: rlexp.run(cfg, datasets={"mine": DatasetDict(...)})
DATASETS: Registry[Any] = Registry("in-memory dataset (rlexp.run(..., datasets=...))")


def file_rows(path: str | Path, config_key: str) -> Iterator[Row]:
    """The rows of one data file (``config_key``: the config key that named it)."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise DataError(f"{config_key}={path}: the file {what}")
    if path.suffix == ".jsonl":
        yield from _jsonl_rows(path)
    elif path.suffix in BUILDERS:
        from datasets import load_dataset

        dataset = _loaded(lambda: load_dataset(BUILDERS[path.suffix], data_files=str(path)), path)
        yield from _dataset_rows(dataset["train"], str(path))
    else:
        raise DataError(
            f"{config_key}={path}: unknown file type {path.suffix!r}; use .jsonl or one of "
            f"{', '.join(BUILDERS)} (read by datasets)"
        )


def dataset_split_rows(name: str, config: str | None, split: str) -> Iterator[Row]:
    """The rows of split ``split`` of ``task.dataset_name=name``."""
    source = DATASETS.get(name) if name in DATASETS.names() else None
    where = f"task.dataset_name={name}"
    if source is None:
        folder = local_path(name, "task.dataset_name", repo_type="dataset")
        source = _loaded(lambda: _open_folder(folder, config), folder)
    if hasattr(source, "keys"):  # a DatasetDict: one split of it
        if split not in source:
            raise DataError(f"{where}: no split {split!r}; splits: {sorted(source.keys())}")
        source = source[split]
    yield from _dataset_rows(source, f"{name} [{split}]")


def dataset_digest(name: str) -> str | None:
    """What the SFT cache key holds of ``task.dataset_name``: the in-memory dataset's
    fingerprint(s), else the names and sizes of the resolved folder's files; None when the name
    does not resolve (validation reports that)."""
    if name in DATASETS.names():
        source = DATASETS.get(name)
        parts = [source[s]._fingerprint for s in sorted(source)] if hasattr(source, "keys") else []
        return "|".join(parts) or source._fingerprint
    try:
        folder = local_path(name, "task.dataset_name", repo_type="dataset")
    except Exception:
        return None
    stamps = sorted(
        (str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file()
    )
    return hashlib.sha256(repr(stamps).encode()).hexdigest()


def _open_folder(folder: Path, config: str | None):
    from datasets import load_dataset, load_from_disk

    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        return load_from_disk(str(folder))
    return load_dataset(str(folder), config)


def _loaded(load, where: Path):
    """``load()``; the errors of reading a data set become one DataError naming it."""
    try:
        return load()
    except DataError:
        raise
    except Exception as err:  # datasets raises many kinds (DatasetGenerationError, ValueError, ...)
        raise DataError(
            f"{where}: could not be read by datasets: {type(err).__name__}: {err}"
        ) from None


def _dataset_rows(dataset, where: str) -> Iterator[Row]:
    for i, row in enumerate(dataset):
        yield f"{where} row {i}", dict(row)


def _jsonl_rows(path: Path) -> Iterator[Row]:
    return jsonl_objects(path, lambda lineno: f"{path} line {lineno}")
