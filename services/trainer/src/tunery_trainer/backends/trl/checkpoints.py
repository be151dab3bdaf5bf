"""TRL trainers that write their resume state as safetensors + JSON instead of torch.save pickles."""

from __future__ import annotations

import os
from pathlib import Path

from tunery_trainer.backends import statefiles


def safe_checkpoints(trainer_class: type) -> type:
    """`trainer_class` writing its resume state as safetensors + JSON instead of torch.save pickles."""

    class SafeCheckpoints(trainer_class):  # type: ignore[misc, valid-type]
        def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
            if self.args.should_save:
                statefiles.save_optimizer(Path(output_dir), self.optimizer)
                statefiles.save_scheduler(Path(output_dir), self.lr_scheduler)

        def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
            if checkpoint is None or not (Path(checkpoint) / "optimizer.safetensors").is_file():
                return super()._load_optimizer_and_scheduler(checkpoint)
            state, groups = statefiles.read_optimizer(Path(checkpoint))
            self.optimizer.load_state_dict({"state": state, "param_groups": groups})
            statefiles.load_scheduler(Path(checkpoint), self.lr_scheduler)

        def _save_rng_state(self, output_dir: str) -> None:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            statefiles.save_rng(Path(output_dir), f"rng_state_{self.args.process_index}")

        def _load_rng_state(self, checkpoint: str | None) -> None:
            stem = f"rng_state_{self.args.process_index}"
            if checkpoint is None or not (Path(checkpoint) / f"{stem}.safetensors").is_file():
                return super()._load_rng_state(checkpoint)
            statefiles.load_rng(Path(checkpoint), stem)

        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            super()._save(output_dir, state_dict)
            out = output_dir if output_dir is not None else self.args.output_dir
            pickled = os.path.join(out, "training_args.bin")
            if self.args.should_save and os.path.exists(pickled):
                os.remove(pickled)
                with open(os.path.join(out, "training_args.json"), "w") as f:
                    f.write(self.args.to_json_string())

    SafeCheckpoints.__name__ = SafeCheckpoints.__qualname__ = f"Tunery{trainer_class.__name__}"
    return SafeCheckpoints
