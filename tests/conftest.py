"""Shared fixtures: a tiny BERT on disk (random weights, MiniLM's tokenizer) as a plugin
model preset, so end-to-end runs through the CLI take seconds."""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("PEFTBENCH_PLUGINS", None)
# The leaderboard and report load the checkout's published datasets into the store they
# open; tests build their own stores and expect only their own rows there.
os.environ["PEFTBENCH_PUBLISHED"] = os.path.join(tempfile.mkdtemp(), "no-published")


@pytest.fixture(scope="session")
def tiny_plugins(tmp_path_factory) -> Path:
    """A plugin folder with models/tiny-bert.yaml and matrices/tiny.yaml."""
    from suite.conformance_bench import write_tiny_bert_plugin
    from tests.helpers import catalog

    root = write_tiny_bert_plugin(tmp_path_factory.mktemp("plugins"), catalog())
    (root / "matrices").mkdir()
    (root / "matrices" / "tiny.yaml").write_text(
        textwrap.dedent("""\
        name: tiny
        models: [tiny-bert]
        methods: [head, lora, bitfit]
        tasks: [drug-condition]
        seeds: [0]
        budget: {max_steps: 3, batch_size: 8}
        """)
    )
    return root


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A plugin folder of generated offline tasks, one per text task type."""
    from tests.support.generated_tasks import write_generated_tasks

    return write_generated_tasks(tmp_path_factory.mktemp("generated"))


@pytest.fixture()
def fast_catalog(monkeypatch) -> None:
    """`validate` discovers the built-in catalogue once for all the spec files it reads."""
    from tests.support.spec_files import reuse_builtin_catalog

    reuse_builtin_catalog(monkeypatch)


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu skip themselves where no CUDA device is present."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
