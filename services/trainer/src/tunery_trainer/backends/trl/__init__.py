"""The `trl` backend (entry point `tunery_trainer.backends.trl:TrlBackend`): TRL's SFTTrainer (and DPOTrainer for
preference data) with a PEFT LoRA adapter.

The reference implementation: what the Hugging Face ecosystem does by default, plus DPO. SFT examples are tokenized
by `tunery.chatformat` (the same labels as the peft backend: assistant turns through end-of-turn, `weight: 0`
honoured) and handed to TRL pre-tokenized with a `labels` column, which TRL keeps as is. A TrainerCallback
(`callback`) bridges the HF Trainer's events to the Reporter and its control flags to `reporter.control()`.

Checkpoints hold no pickle (`checkpoints`): the Trainer's optimizer, scheduler, RNG and training-arguments files
(torch.save pickles) are written as safetensors and JSON instead, and read back from them on resume.
"""

from tunery_trainer.backends.trl.backend import TrlBackend
from tunery_trainer.backends.trl.config import TrlBackendConfig

__all__ = ["TrlBackend", "TrlBackendConfig"]
