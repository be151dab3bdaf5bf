"""The import rules hold: import-linter's contracts in the workspace pyproject.toml ([tool.importlinter]).

No service package imports another's; core imports none; domain modules import neither grpc nor protobuf nor
generated code; the dataset service never imports torch, not even through core. A broken contract prints the
chain of imports that breaks it.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-4000:]
    assert f"Contracts: {len(contracts())} kept, 0 broken." in out.stdout, out.stdout[-4000:]


def test_every_service_package_is_covered() -> None:
    """A new service (services/<name>/src/tunery_<name>) joins the independence contract and the root packages."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    packages = {
        f"tunery_{p.parent.name}" for p in (ROOT / "services").glob("*/pyproject.toml")
        if (p.parent / "src" / f"tunery_{p.parent.name}").is_dir()
    }
    assert packages <= set(config["root_packages"]), f"add {sorted(packages - set(config['root_packages']))}"
    (independence,) = [c for c in contracts() if c["type"] == "independence"]
    assert packages == set(independence["modules"]), f"independence contract lists {independence['modules']}"
    torch = [c for c in contracts() if c.get("forbidden_modules") == ["torch"]]
    assert torch and torch[0]["source_modules"] == ["tunery_dataset"]
    assert config.get("include_external_packages") is True  # or torch and grpc could not be forbidden
