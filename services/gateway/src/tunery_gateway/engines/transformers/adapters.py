"""The LoRA adapters loaded onto one base model: checked against its shapes, kept LRU-bounded, and applied per row.

Calls for different adapters of one base share a batch: PEFT's mixed-batch forward (`adapter_names`) applies each
row's adapter (rows of the base model skip the LoRA path); a batch whose rows all use one adapter, or none, takes
the plain forward, which costs less. Only the worker thread loads, evicts and runs adapters; `validate` may run on
any thread (it takes `modules_lock`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import warnings
from collections import OrderedDict
from typing import Any

from tunery.errors import FailedPrecondition
from tunery_gateway.engines.base import BASE_ADAPTER, AdapterRef, ServedBase

log = logging.getLogger("tunery.gateway.transformers")
# PEFT warns when the adapter it deems "active" is evicted; rows always name their adapter, so "active" means nothing.
warnings.filterwarnings("ignore", message=r"Adapter .* was active which is now deleted")


def internal_name(model_id: str) -> str:
    """PEFT adapter names become module keys, which cannot hold '.'; model ids can."""
    return "a" + hashlib.sha1(model_id.encode()).hexdigest()[:16]


class AdapterSet:
    """`counters` is the worker's: adapter loads and evictions are counted there, with its steps."""

    def __init__(self, model: Any, base: ServedBase, max_adapters: int, counters: dict[str, int]) -> None:
        self.model = model
        self.base = base
        self.max_adapters = max_adapters
        self.counters = counters
        self.peft: Any = None  # the PeftModel around `model`, once a first adapter is loaded
        self.loaded: OrderedDict[str, AdapterRef] = OrderedDict()
        self._layers = "on"  # whether PEFT's LoRA layers are enabled (they are when an adapter is first loaded)
        # Held while PEFT adds or removes adapter modules, so a shape check from another thread never sees half a tree.
        self.modules_lock = threading.Lock()

    def validate(self, adapter: AdapterRef) -> None:
        """Tensor shapes against the base's modules, so a mismatched folder is refused before it touches the model.

        Once, at registration (`check_adapter`); loading a registered adapter later trusts that check."""
        from safetensors import safe_open

        problems: list[str] = []
        with self.modules_lock, safe_open(str(adapter.path / "adapter_model.safetensors"), "pt") as f:
            for key in f.keys():
                for part, dim in ((".lora_A.weight", 1), (".lora_B.weight", 0)):
                    if not key.endswith(part):
                        continue
                    name = key.removeprefix("base_model.model.").removesuffix(part)
                    try:
                        module = self.model.get_submodule(name)
                    except AttributeError:
                        problems.append(f"{name} does not exist in {self.base.id}")
                        continue
                    module = getattr(module, "base_layer", module)
                    want = getattr(module, "in_features" if dim == 1 else "out_features", None)
                    got = f.get_slice(key).get_shape()[dim]
                    if want is not None and want != got:
                        problems.append(f"{name}: the adapter has {got} {'inputs' if dim == 1 else 'outputs'}, "
                                        f"{self.base.id} has {want}")
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise FailedPrecondition(f"{adapter.model_id}: the adapter in {adapter.path} does not fit base model "
                                     f"{self.base.id}: {'; '.join(problems[:3])}{more}",
                                     code="adapter_base_mismatch", field="model")

    def ensure(self, ref: AdapterRef | None, in_use: set[str]) -> str:
        """The internal name of `ref`'s adapter, loaded (evicting the least recently used one not in `in_use`)."""
        if ref is None:
            return BASE_ADAPTER
        name = internal_name(ref.model_id)
        if name in self.loaded:
            self.loaded.move_to_end(name)
            return name
        while len(self.loaded) >= self.max_adapters:
            victim = next((n for n in self.loaded if n not in in_use), None)
            if victim is None:  # every loaded adapter is in the running batch: exceed the limit until they finish
                break
            with self.modules_lock:
                self.peft.delete_adapter(victim)
            evicted = self.loaded.pop(victim)
            self.counters["adapter_evictions"] += 1
            log.info("evicted adapter %s from %s (least recently used)", evicted.model_id, self.base.id)
        from peft import PeftModel

        try:
            with self.modules_lock:
                if self.peft is None:
                    self.peft = PeftModel.from_pretrained(self.model, str(ref.path), adapter_name=name,
                                                          is_trainable=False)
                    self.peft.eval()
                else:
                    self.peft.load_adapter(str(ref.path), adapter_name=name, is_trainable=False)
        except Exception as err:
            if self.peft is not None and name in getattr(self.peft, "peft_config", {}):
                with contextlib.suppress(Exception):
                    self.peft.delete_adapter(name)
            raise FailedPrecondition(f"{ref.model_id}: cannot load the adapter in {ref.path}: {err}",
                                     code="invalid_adapter", field="model") from err
        self._layers = "unknown"  # loading may switch layers and the active adapter: set them again before use
        self.loaded[name] = ref
        self.counters["adapter_loads"] += 1
        log.info("loaded adapter %s onto %s (%d loaded)", ref.model_id, self.base.id, len(self.loaded))
        return name

    def forward(self, kw: dict[str, Any], names: list[str]) -> Any:
        """The model's forward for a batch whose row i uses adapter `names[i]` (BASE_ADAPTER: none)."""
        if self.peft is None:
            return self.model(**kw)
        if names.count(names[0]) == len(names):  # one adapter (or none) for the whole batch: the plain forward
            self._use(names[0])
            return self.peft(**kw)
        self._use(None)
        self.counters["mixed_steps"] += 1
        return self.peft(**kw, adapter_names=names)

    def _use(self, name: str | None) -> None:
        """Switch the LoRA layers only when the batch's adapter changes: toggling 200 modules per step would cost
        more than the adapter itself. `name` None: layers on for a mixed batch; BASE_ADAPTER: layers off."""
        want = "off" if name == BASE_ADAPTER else "on"
        if self._layers != want:
            if want == "off":
                self.peft.base_model.disable_adapter_layers()
            else:
                self.peft.base_model.enable_adapter_layers()
            self._layers = want
        if name not in (None, BASE_ADAPTER) and self.peft.active_adapter != name:
            self.peft.set_adapter(name)
