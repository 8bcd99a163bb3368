"""LoRA-SB: LoRA-XS's B R A structure, initialised from one approximate full-FT step.

Follows RaghavSinghal10/lora-sb: utils/gradient_utils.py
estimate_and_process_grads_torch (sum of per-batch gradients, each batch loss divided
by its size, then dW~ = -eta sign(G)), utils/initialization_utils.py
find_and_initialize_grad (rank-r SVD of dW~: B = U_r, R = diag(sigma_r), A = V_r^T;
only R trains) and train_glue.py (alpha = r, so s = 1). W0 is not compensated.
"""

from __future__ import annotations

import torch
from pydantic import PositiveFloat, PositiveInt

from suite.methods.adapters import adapter_prepared
from suite.methods.api import Method, MethodParams, Prepared
from suite.methods.lowrank_common import FrozenFactorLinear, target_gradients, top_svd
from suite.methods.targets import find_targets, replace_module


class LoRASBParams(MethodParams):
    r: PositiveInt = 8
    # eta of the approximate first step; the official scripts use
    # lr / (warmup_ratio * total_steps), which prepare() cannot know.
    init_step: PositiveFloat = 1e-4
    grad_samples: PositiveInt = 64
    targets: str | list[str] = "qv"


class LoRASB(Method):
    Params = LoRASBParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        targets = find_targets(model.backbone, ctx.preset.resolve_targets(p.targets))
        grads = target_gradients(model, [lin for _, lin in targets], ctx, p.grad_samples)
        for (name, lin), grad in zip(targets, grads, strict=True):
            approx_update = -p.init_step * torch.sign(grad)
            u, s, vh = top_svd(approx_update, p.r)
            replace_module(model.backbone, name, FrozenFactorLinear(lin, u, torch.diag(s), vh))
        return adapter_prepared(model)

    def expected_trainable_params(self, shapes) -> int:
        return len(shapes) * self.params.r**2
