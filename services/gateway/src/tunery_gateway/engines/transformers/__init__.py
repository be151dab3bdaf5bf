"""In-process inference with transformers (`TUNERY_GATEWAY_ENGINE=transformers`): the plugin, in one folder.

- `engine`: the plugin (`TransformersEngine`): loads each base model once and routes calls to its worker;
- `worker`: one thread per base model runs continuous batching over its calls (`BaseWorker`);
- `adapters`: the LoRA adapters of one base, LRU-bounded, mixed in one batch through PEFT's `adapter_names`;
- `prompt`: chat messages to prompt ids through `tunery.chatformat` (what the trainer trains on);
- `sampling`: temperature / top-p sampling of one row, in numpy.

Why not transformers' own continuous batching (`generate_batch` / `init_continuous_batching`)? It has no per-request
LoRA adapter, seed or stop strings, and the gateway needs all three; this loop is ~300 lines and measured in bench/.
"""

from tunery_gateway.engines.transformers.engine import TransformersEngine, load_worker
from tunery_gateway.engines.transformers.sampling import sample_row
from tunery_gateway.engines.transformers.worker import BaseWorker

__all__ = ["BaseWorker", "TransformersEngine", "load_worker", "sample_row"]
