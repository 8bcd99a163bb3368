"""LoRA-SB: LoRA-XS's B R A structure, initialised from one approximate full-FT step.

Follows RaghavSinghal10/lora-sb: utils/gradient_utils.py
estimate_and_process_grads_torch (sum of per-batch gradients, each batch loss divided
by its size, then dW~ = -eta sign(G)), utils/initialization_utils.py
find_and_initialize_grad (rank-r SVD of dW~: B = U_r, R = diag(sigma_r), A = V_r^T;
only R trains) and train_glue.py (alpha = r, so s = 1; eta = lr / (warmup_ratio x total
steps), the learning rate of the first warmup step; num_samples = 2). W0 is not
compensated.
"""

from __future__ import annotations

import torch
from pydantic import PositiveFloat, PositiveInt

from suite.methods.adapters import TargetedParams, adapter_prepared
from suite.methods.api import Method, Prepared, TrainingPlan
from suite.methods.lowrank_common import FrozenFactorLinear, target_gradients, top_svd
from suite.methods.targets import find_targets, replace_module

# eta where a model is prepared but not trained (no TrainingPlan: conformance checks,
# counting); the structure is the same, only R's scale is arbitrary.
UNPLANNED_STEP = 1e-4


class LoRASBParams(TargetedParams):
    rank_fields = ("r",)
    r: PositiveInt = 8
    # eta of the approximate first step. None: the official lr / warmup steps
    # (train_glue.py:102, lr / (warmup_ratio * total_training_steps)). A number: a fixed
    # eta, which is not the official rule.
    init_step: PositiveFloat | None = None
    # train_glue.py:108 (the GLUE script) uses 2; train_arithmetic.py 50, train_cr.py 170.
    grad_samples: PositiveInt = 2


def update_step(p: LoRASBParams, training: TrainingPlan | None) -> float:
    """eta of dW~ = -eta sign(G): lr / warmup steps, as the official train_glue.py.

    With no warmup (where the official formula divides by zero) eta = lr: one step at
    the full rate, as a linear warmup over max(1, warmup) steps (HF's convention) has.
    With no training plan, UNPLANNED_STEP. A fixed `init_step` wins over both.
    """
    if p.init_step is not None:
        return p.init_step
    if training is None:
        return UNPLANNED_STEP
    return training.lr / max(1, training.warmup_steps)


class LoRASB(Method):
    Params = LoRASBParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        targets = find_targets(model.backbone, ctx.preset.resolve_targets(p.targets))
        grads = target_gradients(model, [lin for _, lin in targets], ctx, p.grad_samples)
        eta = update_step(p, ctx.training)
        for (name, lin), grad in zip(targets, grads, strict=True):
            approx_update = -eta * torch.sign(grad)
            u, s, vh = top_svd(approx_update, p.r)
            replace_module(model.backbone, name, FrozenFactorLinear(lin, u, torch.diag(s), vh))
        return adapter_prepared(model)

    def expected_trainable_params(self, shapes) -> int:
        return len(shapes) * self.params.r**2
