"""The plugin object: TRL's SFTTrainer or DPOTrainer set up from the job, run, and its adapter published."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from tunery.errors import InvalidArgument
from tunery_trainer.backends.base import Method, TrainingContext, TrainingResult
from tunery_trainer.backends.common import atomic_dir, encode_datasets, lora_targets, write_metadata
from tunery_trainer.backends.trl.callback import callback_class
from tunery_trainer.backends.trl.checkpoints import safe_checkpoints
from tunery_trainer.backends.trl.config import TrlBackendConfig, trl_fields
from tunery_trainer.data import preference_rows


class TrlBackend:
    name: ClassVar[str] = "trl"
    description: ClassVar[str] = (
        "TRL's SFTTrainer / DPOTrainer with a PEFT LoRA adapter: the Hugging Face reference, and preference tuning."
    )
    methods: ClassVar[tuple[Method, ...]] = ("sft", "dpo")
    config_class: ClassVar[type] = TrlBackendConfig

    def train(self, ctx: TrainingContext, config: TrlBackendConfig | None = None) -> TrainingResult:
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer

        config = config or TrlBackendConfig()
        spec = ctx.spec
        if spec.method not in self.methods:
            raise InvalidArgument(f"unknown method {spec.method}", code="unsupported_method", field="method")
        unknown = sorted(set(config.extra_args) - trl_fields()[spec.method])
        if unknown:
            raise InvalidArgument(
                f"extra_args {', '.join(unknown)} are not {spec.method.upper()}Config fields",
                code="invalid_backend_config",
                field=f"backend_config.extra_args.{unknown[0]}",
            )
        tok = AutoTokenizer.from_pretrained(str(ctx.model_dir))
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(str(ctx.model_dir), dtype=torch.float32)
        lora = spec.lora
        peft_config = LoraConfig(
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora_targets(model, lora.target_modules),
            task_type="CAUSAL_LM",
        )

        if spec.method == "sft":
            train_enc, valid_enc = encode_datasets(ctx, tok)
            train_ds = Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels} for e in train_enc.examples])
            valid_ds = (
                Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels} for e in valid_enc.examples])
                if valid_enc.examples
                else None
            )
        else:
            train_ds = Dataset.from_list(preference_rows(_preference_only(ctx.train_examples), tok))
            valid_rows = preference_rows(_preference_only(ctx.validation_examples), tok)
            valid_ds = Dataset.from_list(valid_rows) if valid_rows else None
        ckpt_dir = ctx.output_dir / "checkpoints"
        every = spec.checkpoint_every_steps
        common: dict[str, Any] = {
            "output_dir": str(ckpt_dir),
            "num_train_epochs": spec.n_epochs,
            "per_device_train_batch_size": spec.batch_size,
            "per_device_eval_batch_size": spec.batch_size,
            "gradient_accumulation_steps": spec.gradient_accumulation_steps,
            "learning_rate": spec.learning_rate,
            "weight_decay": spec.weight_decay,
            "warmup_steps": min(spec.warmup_ratio, 0.999999),  # a float below 1 is a ratio
            "lr_scheduler_type": config.lr_scheduler,
            "max_grad_norm": config.max_grad_norm,
            "seed": spec.seed,
            "logging_steps": max(spec.logging_steps, 1),
            "save_strategy": "steps" if every else "epoch",
            "save_steps": every or 500,
            "eval_strategy": ("steps" if spec.eval_every_steps else "epoch") if valid_ds is not None else "no",
            "eval_steps": spec.eval_every_steps or None,
            "max_length": spec.max_seq_length,
            "padding_free": config.padding_free,
            "report_to": [],
            "disable_tqdm": True,
            "save_only_model": False,
            "include_num_input_tokens_seen": "all" if (config.padding_free or config.packing) else "non_padding",
        }
        if not torch.cuda.is_available():
            common["bf16"] = False  # CPU autocast to bf16 is emulated (slow) on CPUs without AMX/AVX512-BF16
        bridge = callback_class()(ctx, valid_ds is not None)
        trainer: Any
        if spec.method == "sft":
            from trl import SFTConfig, SFTTrainer

            sft = {**common, "packing": config.packing}
            if config.padding_free and not config.packing:
                sft["max_length"] = None  # TRL refuses a max_length it can't enforce; encode_sft truncated already
            trainer = safe_checkpoints(SFTTrainer)(
                model=model,
                args=SFTConfig(**{**sft, **config.extra_args}),
                train_dataset=train_ds,
                eval_dataset=valid_ds,
                processing_class=tok,
                peft_config=peft_config,
                callbacks=[bridge],
            )
        else:
            from trl import DPOConfig, DPOTrainer

            trainer = safe_checkpoints(DPOTrainer)(
                model=model,
                args=DPOConfig(**{**common, "beta": config.dpo_beta, **config.extra_args}),
                train_dataset=train_ds,
                eval_dataset=valid_ds,
                processing_class=tok,
                peft_config=peft_config,
                callbacks=[bridge],
            )
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # progress goes to the Reporter, not stdout
        batches = math.ceil(len(trainer.train_dataset) / spec.batch_size)  # after packing, if any
        bridge.steps_per_epoch = max(math.ceil(batches / spec.gradient_accumulation_steps), 1)
        resume = str(ctx.resume_from) if ctx.resume_from is not None else None
        trainer.train(resume_from_checkpoint=resume)
        state = trainer.state

        metrics: dict[str, float] = {}
        if bridge.losses:
            metrics["train_loss"] = sum(bridge.losses) / len(bridge.losses)
        if bridge.last_eval is not None:
            metrics.update(valid_loss=bridge.last_eval.loss, valid_token_accuracy=bridge.last_eval.token_accuracy)
        adapter_dir = None
        if bridge.outcome == "completed":
            adapter_dir = ctx.output_dir / "adapter"
            with atomic_dir(adapter_dir) as tmp:
                trainer.model.save_pretrained(str(tmp), safe_serialization=True)
                write_metadata(tmp, ctx, "trl", config, {**metrics, "steps": state.global_step})
        return TrainingResult(
            bridge.outcome,
            state.global_step,
            state.max_steps,
            int(state.num_input_tokens_seen),
            adapter_dir,
            metrics,
        )


def _preference_only(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    bad = next((i for i, e in enumerate(examples) if "preferred_output" not in e), None)
    if bad is not None:
        raise InvalidArgument(
            f"example {bad + 1} is not a preference example; DPO needs input/preferred_output/non_preferred_output",
            code="invalid_example_format",
            field="training_file",
        )
    return examples
