"""Resume state without pickle, shared by the built-in backends: tensors as safetensors, everything else as JSON.

- optimizer: `optimizer.safetensors` (`<param index>.<state name>` -> tensor) + `optimizer.json` (param groups);
- scheduler: `scheduler.json` (LambdaLR keeps plain-function lambdas out of its state, so it is all JSON);
- random generators: `<stem>.safetensors` (torch CPU and CUDA states) + `<stem>.json` (Python's and NumPy's).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch


def save_optimizer(
    folder: Path, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor] | None = None
) -> None:
    """`tensors`: the state already flattened (e.g. gathered from shards); default: the optimizer's own."""
    from safetensors.torch import save_file

    opt = optimizer.state_dict()
    if tensors is None:
        tensors = {f"{i}.{k}": v for i, st in opt["state"].items() for k, v in st.items()}
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(folder / "optimizer.safetensors"))
    (folder / "optimizer.json").write_text(json.dumps({"param_groups": opt["param_groups"]}))


def read_optimizer(folder: Path) -> tuple[dict[int, dict[str, torch.Tensor]], list[dict[str, Any]]]:
    """(state by parameter index, param groups) as `Optimizer.load_state_dict` wants them."""
    from safetensors.torch import load_file

    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(str(folder / "optimizer.safetensors")).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = tensor
    groups = json.loads((folder / "optimizer.json").read_text())["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return state, groups


def save_scheduler(folder: Path, scheduler: Any) -> None:
    (folder / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))


def load_scheduler(folder: Path, scheduler: Any) -> None:
    scheduler.load_state_dict(json.loads((folder / "scheduler.json").read_text()))


def save_rng(folder: Path, stem: str) -> None:
    from safetensors.torch import save_file

    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(tensors, str(folder / f"{stem}.safetensors"))
    py = random.getstate()
    (folder / f"{stem}.json").write_text(json.dumps({"python": [py[0], list(py[1]), py[2]], "numpy": _numpy_state()}))


def load_rng(folder: Path, stem: str) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(folder / f"{stem}.safetensors"))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors)) if f"cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    js = json.loads((folder / f"{stem}.json").read_text())
    random.setstate((js["python"][0], tuple(js["python"][1]), js["python"][2]))
    _set_numpy_state(js.get("numpy"))


def _numpy_state() -> Any:
    try:
        import numpy as np
    except ImportError:
        return None
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    return [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(gauss)]


def _set_numpy_state(state: Any) -> None:
    if state is None:
        return
    import numpy as np

    kind, keys, pos, has_gauss, gauss = state
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
