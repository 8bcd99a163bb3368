"""No spec file system, whatever its shape, produces a traceback: links that loop, folders
that cannot be read and files that vanish during the scan are spec errors naming the file
(exit 2 from the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.errors import SpecError
from suite.registry import Catalog
from tests.support.spec_files import write_spec

LOOPS = {
    "self": [("a.yaml", "a.yaml")],
    "pair": [("a.yaml", "b.yaml"), ("b.yaml", "a.yaml")],
    "three": [("a.yaml", "b.yaml"), ("b.yaml", "c.yaml"), ("c.yaml", "a.yaml")],
}


def _loop(folder: Path, links) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in links:
        (folder / name).symlink_to(target)


@pytest.mark.parametrize("shape", sorted(LOOPS))
@pytest.mark.parametrize("place", ["matrices", "methods/fz"])
def test_validate_reports_a_symlink_loop_as_a_spec_error(fast_catalog, tmp_path, shape, place):
    from suite.validate import validate_paths

    _loop(tmp_path / place, LOOPS[shape])
    for target in (tmp_path, tmp_path / place / "a.yaml"):
        with pytest.raises(SpecError) as exc:
            validate_paths([target], [])
        assert any(
            "symlink loop" in i.message and i.file.endswith("a.yaml") for i in exc.value.issues
        )


def test_an_include_through_a_symlink_loop_is_a_spec_error(tmp_path):
    from suite.specs.load import load_with_includes

    _loop(tmp_path, LOOPS["pair"])
    (tmp_path / "task.yaml").write_text("include: a.yaml\nname: t\n")
    with pytest.raises(SpecError, match="symlink loop"):
        load_with_includes(tmp_path / "task.yaml")


@pytest.mark.parametrize("shape", sorted(LOOPS))
def test_a_looped_plugin_method_is_an_error_not_an_omission(tmp_path, shape):
    """`list methods --plugins DIR` with methods/<name>/method.yaml a loop: exit 2."""
    from typer.testing import CliRunner

    from suite.cli import app

    folder = tmp_path / "methods" / "looped"
    links = [(n.replace("a.yaml", "method.yaml"), t.replace("a.yaml", "method.yaml"))
             for n, t in LOOPS[shape]]  # fmt: skip
    _loop(folder, links)
    result = CliRunner().invoke(app, ["list", "methods", "--plugins", str(tmp_path)])
    assert result.exit_code == 2, result.output[-2000:]
    assert "symlink loop" in result.output and "looped" in result.output
    assert "Traceback" not in result.output


def _deny_reading(monkeypatch, folder: str) -> None:
    """os.scandir refuses every folder named `folder`, as for a folder without read rights."""
    import os

    real = os.scandir

    def scandir(path="."):
        if str(path).endswith(folder):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_a_plugin_folder_that_cannot_be_read_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "methods" / "m").mkdir(parents=True)
    _deny_reading(monkeypatch, "methods")
    with pytest.raises(SpecError, match="cannot read folder: Permission denied"):
        Catalog.discover([tmp_path], builtin=False)


def test_validate_on_a_folder_that_cannot_be_read_is_a_spec_error(tmp_path, monkeypatch):
    from suite.validate import validate_paths

    (tmp_path / "matrices").mkdir()
    _deny_reading(monkeypatch, "matrices")
    with pytest.raises(SpecError, match="cannot read folder: Permission denied"):
        validate_paths([tmp_path], [])


def test_a_file_that_vanishes_during_the_scan_is_a_spec_error(fast_catalog, tmp_path, monkeypatch):
    from suite import validate

    write_spec(tmp_path, "matrices/gone.yaml", b"name: gone\n")
    real = validate.yaml_files

    def scan_then_delete(paths):
        found = real(paths)
        for path in found:
            path.unlink()
        return found

    monkeypatch.setattr(validate, "yaml_files", scan_then_delete)
    with pytest.raises(SpecError) as exc:
        validate.validate_paths([tmp_path], [])
    assert any("cannot read file" in i.message and "gone.yaml" in i.file for i in exc.value.issues)
