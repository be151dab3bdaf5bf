"""The dataset service installs on its own, without torch (its dependency graph never reaches it)."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, requires


def _deps(dist: str) -> list[str]:
    try:
        reqs = requires(dist) or []
    except PackageNotFoundError:
        return []
    out = []
    for r in reqs:
        if "extra ==" in r:
            continue
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)", r)
        if m:
            out.append(m.group(1).lower().replace("_", "-"))
    return out


def test_dataset_service_does_not_pull_torch() -> None:
    seen: set[str] = set()
    todo = ["tunery-dataset"]
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        todo += _deps(d)
    assert "tunery" in seen and "transformers" in seen
    assert "torch" not in seen, "the dataset service must not depend on torch"
