"""Shared fixtures: a tiny BERT on disk (random weights, MiniLM's tokenizer) as a plugin
model preset, so end-to-end runs through the CLI take seconds."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("PEFTBENCH_PLUGINS", None)


@pytest.fixture(scope="session")
def tiny_plugins(tmp_path_factory) -> Path:
    """A plugin folder with models/tiny-bert.yaml and matrices/tiny.yaml."""
    from transformers import AutoTokenizer

    from suite.models.loading import resolve_source
    from tests.helpers import catalog, tiny_bert_backbone

    root = tmp_path_factory.mktemp("plugins")
    model_dir = root / "tiny-bert-weights"
    minilm_dir, _ = resolve_source(catalog().models.get("minilm-l6").spec)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir, local_files_only=True)
    tiny_bert_backbone(vocab=tokenizer.vocab_size).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (root / "models").mkdir()
    (root / "models" / "tiny-bert.yaml").write_text(
        textwrap.dedent(f"""\
        name: tiny-bert
        family: bert
        description: 2-layer BERT, hidden 32, random weights (tests only)
        source: {{path: {model_dir}}}
        pooling: mean
        target_modules:
          qv: [query, value]
          attention: [query, key, value, attention.output.dense]
        """)
    )
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
