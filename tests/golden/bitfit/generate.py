"""Golden fixture for BitFit: which parameters the official code trains.

Reference: benzakenelad/BitFit@7ead19a, glue_evaluator.py
(`GLUEvaluator._deactivate_relevant_gradients`, `convert_to_actual_components`, and
BIAS_TERMS_DICT), as run_glue.py calls it for `--fine-tune-type bitfit` with the default
`--bias-terms all`.

The reference module is imported from its checkout (its plotting and data imports,
matplotlib and seaborn, are stubbed: they are not used by the selection) and its
selection runs on a 2-layer BERT for sequence classification (hidden 32, random weights,
built from a config). The fixture lists the backbone parameters it leaves trainable
(without the `bert.` prefix), the head parameters, and the count.

Command (from a scratch folder, with the project's venv):
    python tests/golden/bitfit/generate.py /path/to/BitFit tests/golden/bitfit
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path


def main(repo: Path, out: Path) -> None:
    for name in ("matplotlib", "matplotlib.pyplot", "seaborn"):
        stub = types.ModuleType(name)
        stub.heatmap = None
        sys.modules[name] = stub
    import torch
    import transformers.optimization

    # transformers 5 dropped its AdamW, which the module imports (and the selection does
    # not use): point the name at torch's.
    transformers.optimization.AdamW = torch.optim.AdamW
    sys.path.insert(0, str(repo))
    import glue_evaluator
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, num_labels=3)  # fmt: skip
    model = BertForSequenceClassification(config)
    holder = types.SimpleNamespace(model=model)
    components = glue_evaluator.GLUEvaluator.convert_to_actual_components(["all"])
    glue_evaluator.GLUEvaluator._deactivate_relevant_gradients(holder, components)
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    backbone = sorted(n.removeprefix("bert.") for n in trained if n.startswith("bert."))
    head = sorted(n for n in trained if not n.startswith("bert."))
    commit = subprocess.check_output(["git", "-C", str(repo), "rev-parse", "HEAD"], text=True)
    meta = {
        "repo": "benzakenelad/BitFit",
        "commit": commit.strip(),
        "files": ["glue_evaluator.py", "run_glue.py"],
        "command": "python tests/golden/bitfit/generate.py <BitFit checkout> tests/golden/bitfit",
        "config": {
            "hidden": 32,
            "layers": 2,
            "heads": 4,
            "intermediate": 64,
            "bias_terms": ["all"],
        },
        "trained_backbone": backbone,
        "trained_head": head,
        "backbone_count": sum(
            p.numel()
            for n, p in model.named_parameters()
            if p.requires_grad and n.startswith("bert.")
        ),
        "notes": "matplotlib and seaborn stubbed, and transformers.optimization.AdamW "
        "pointed at torch's (transformers 5 removed it): neither is used by the selection.",
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
