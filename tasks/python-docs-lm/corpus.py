"""The Python 3.11 documentation's reStructuredText sources, as Debian ships them.

Debian's `python3.11-doc` package (PSF License 2.0; `make corpus-deps` installs it)
puts the sources of docs.python.org beside the HTML, one `.rst.txt` file per page, under
/usr/share/doc/python3.11/html/_sources. Each file is one document. A document's split
is fixed by a hash of its path inside that folder (not by its order or by a random
draw), so validation and test are the same slices on every machine. The corpus is
checked against the SHA-256 the task declares, so a different package version fails
loudly instead of silently changing the benchmark.

`PEFTBENCH_DEBIAN_ROOT` names another root to read the same path under (a folder where
`dpkg-deb -x python3.11-doc_*.deb` was run, on a machine without apt); the checksum
still has to match.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from suite.specs.task import DataSpec
from suite.tasks.loaders import TaskDataError


def corpus_root(data: DataSpec) -> Path:
    root = Path(os.environ.get("PEFTBENCH_DEBIAN_ROOT", "/"))
    folder = root / str(data.options["folder"]).lstrip("/")
    if not folder.is_dir():
        raise TaskDataError(
            f"the corpus folder {folder} is missing: it ships in the Debian package "
            f"'{data.options['debian_package']}'; run `make corpus-deps` (apt-get install -y "
            f"{data.options['debian_package']}), or set PEFTBENCH_DEBIAN_ROOT to a folder "
            "where its .deb was unpacked with dpkg-deb -x"
        )
    return folder


def split_of(relative: str, validation_pct: int, test_pct: int) -> str:
    """A document's split from the first 8 hex digits of its path's SHA-256, mod 100."""
    bucket = int(hashlib.sha256(relative.encode()).hexdigest()[:8], 16) % 100
    if bucket < validation_pct:
        return "validation"
    if bucket < validation_pct + test_pct:
        return "test"
    return "train"


def load_documents(data: DataSpec, task_dir: Path) -> dict[str, pd.DataFrame]:
    """{train, validation, test}: frames of (path, text), documents in path order."""
    folder = corpus_root(data)
    files = sorted(folder.rglob(f"*{data.options.get('suffix', '.rst.txt')}"))
    digest = hashlib.sha256()
    rows = []
    for path in files:
        relative = path.relative_to(folder).as_posix()
        text = path.read_text(encoding="utf-8")
        digest.update(relative.encode() + b"\0" + text.encode() + b"\0")
        split = split_of(relative, data.options["validation_pct"], data.options["test_pct"])
        rows.append({"path": relative, "text": text, "split": split})
    expected = data.options.get("sha256")
    if expected and digest.hexdigest() != expected:
        raise TaskDataError(
            f"the corpus under {folder} ({len(files)} files) has SHA-256 {digest.hexdigest()}, "
            f"not the {expected} this task was defined on: another version of "
            f"{data.options['debian_package']} is installed. Define a new task (or a new "
            "checksum) rather than mixing its numbers with the old ones."
        )
    frame = pd.DataFrame(rows, columns=["path", "text", "split"])
    return {
        name: frame[frame["split"] == name].drop(columns="split").reset_index(drop=True)
        for name in ("train", "validation", "test")
    }
