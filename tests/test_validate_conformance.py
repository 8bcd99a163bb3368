"""`peftbench validate --conformance DIR` on user method folders created in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from rich.console import Console

from suite.conformance_bench import conformance_command, methods_under

REPO = Path(__file__).resolve().parents[1]

# A user method whose formula is off by one: the count check must catch it.
BAD_IMPL = textwrap.dedent("""\
    import torch
    from torch import nn

    from suite.methods.adapters import AdapterLinear, adapter_prepared, wrap_targets
    from suite.methods.api import Method, MethodParams


    class Shift(AdapterLinear):
        def __init__(self, base):
            super().__init__(base)
            self.shift = nn.Parameter(torch.zeros(base.out_features))

        def update(self, x):
            return self.shift.expand(*x.shape[:-1], -1)


    class Params(MethodParams):
        targets: str = "qv"


    class OffByOne(Method):
        Params = Params

        def prepare(self, model, ctx):
            patterns = ctx.preset.resolve_targets(self.params.targets)
            wrap_targets(model, patterns, lambda name, linear: Shift(linear))
            return adapter_prepared(model, mergeable=False)

        def expected_trainable_params(self, shapes):
            return sum(d_out for d_out, _ in shapes) + 1
    """)


def write(folder: Path, name: str, yaml: str, impl: str | None = None) -> None:
    (folder / name).mkdir(parents=True)
    (folder / name / "method.yaml").write_text(yaml)
    if impl:
        (folder / name / "impl.py").write_text(impl)


def test_cli_runs_every_check_on_a_user_lora_folder(tmp_path: Path):
    write(tmp_path / "methods", "my-lora", "name: my-lora\nkind: lora\nparams: {r: 2}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "suite.cli", "validate", "--conformance", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for check in ("param count", "identity at init", "merge", "gradients", "reload", "training"):
        line = next(row for row in proc.stdout.splitlines() if check in row)
        assert "my-lora" in line and "pass" in line
    assert "every check passed" in proc.stdout


def test_a_failing_check_is_reported_and_exits_1(tmp_path: Path):
    write(
        tmp_path,
        "off-by-one",
        "name: off-by-one\nimplementation: impl.py:OffByOne\nfidelity: reconstructed\nversion: 1\n",
        BAD_IMPL,
    )
    _, names = methods_under(tmp_path, [])
    assert names == ["off-by-one"]
    console = Console(record=True, width=200)
    assert conformance_command(tmp_path, [], console) == 1
    text = console.export_text()
    count = next(row for row in text.splitlines() if "param count" in row)
    assert "FAIL" in count and "formula" in count
    merge = next(row for row in text.splitlines() if "merge" in row)
    assert "skip" in merge
    assert "failed: off-by-one" in text
