"""Methods that fail on purpose, each in one way the scheduler must isolate."""

from __future__ import annotations

import os
import signal
import time

import torch

from suite.methods.api import Method, MethodParams, Prepared, StepHooks


class Raises(Method):
    """An ordinary exception while preparing: status failed."""

    def prepare(self, model, ctx) -> Prepared:
        raise RuntimeError("deliberate failure from the test-raise method")


class _NanLoss(StepHooks):
    def extra_loss(self) -> torch.Tensor:
        return torch.tensor(float("nan"))


class NanLoss(Method):
    """A regulariser that is NaN from the first step: status nan, stopped early."""

    def prepare(self, model, ctx) -> Prepared:
        return Prepared(model=model, hooks=_NanLoss())


class SleepParams(MethodParams):
    seconds: float = 600.0


class Sleeps(Method):
    """Sleeps far past any test timeout: status timeout."""

    Params = SleepParams

    def prepare(self, model, ctx) -> Prepared:
        time.sleep(self.params.seconds)
        return Prepared(model=model)


class KillsWorker(Method):
    """Kills its own worker process mid-cell: retried, then status crashed."""

    def prepare(self, model, ctx) -> Prepared:
        os.kill(os.getpid(), signal.SIGKILL)
        return Prepared(model=model)
