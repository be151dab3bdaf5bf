"""The plugin object the registry loads: names, methods, config class, and `train`."""

from __future__ import annotations

from typing import ClassVar

import torch

from tunery.errors import InvalidArgument
from tunery_trainer.backends.base import Method, TrainingContext, TrainingResult
from tunery_trainer.backends.peft.config import PeftBackendConfig
from tunery_trainer.backends.peft.run import Run


class PeftBackend:
    name: ClassVar[str] = "peft"
    distributed: ClassVar[bool] = True
    description: ClassVar[str] = (
        "Plain PyTorch loop over a PEFT LoRA model: padding-free batches with per-example attention, vocabulary "
        "projection only on trained tokens; fastest on CPU."
    )
    methods: ClassVar[tuple[Method, ...]] = ("sft",)
    config_class: ClassVar[type] = PeftBackendConfig

    def train(self, ctx: TrainingContext, config: PeftBackendConfig | None = None) -> TrainingResult:
        config = config or PeftBackendConfig()
        if ctx.spec.method not in self.methods:
            raise InvalidArgument(
                f"the peft backend trains {', '.join(self.methods)} only, not {ctx.spec.method}; use the trl backend",
                code="unsupported_method",
                field="method",
            )
        threads = torch.get_num_threads()
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        try:
            return Run(ctx, config).run()
        finally:
            torch.set_num_threads(threads)
