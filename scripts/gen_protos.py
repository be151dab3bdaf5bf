"""Generate Python code from protos/ into core/src (the only way generated code changes).

`--check` regenerates into a temporary folder and fails when the committed files differ (stale or hand-edited).
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "core" / "src"
INIT = '"""Generated from protos/; do not edit."""\n'


def generate(out: Path) -> list[Path]:
    files = sorted(PROTOS.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(f) for f in files],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    produced: list[Path] = []
    for proto in files:
        pkg_dir = out / proto.parent.relative_to(PROTOS)
        # every folder between the root package and the generated module needs an __init__ to be a package
        d = pkg_dir
        while d != out / "tunery" and d != out:
            init = d / "__init__.py"
            if not init.exists():
                init.write_text(INIT)
            produced.append(init)
            d = d.parent
        stem = proto.stem
        produced += [pkg_dir / f"{stem}_pb2.py", pkg_dir / f"{stem}_pb2.pyi", pkg_dir / f"{stem}_pb2_grpc.py"]
    return sorted(set(produced))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="fail if committed generated code is stale")
    ns = ap.parse_args()
    if not ns.check:
        for path in generate(OUT):
            print(f"generated {path.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp)
        (tmp_out / "tunery").mkdir()
        stale = []
        for path in generate(tmp_out):
            committed = OUT / path.relative_to(tmp_out)
            if not committed.exists() or not filecmp.cmp(path, committed, shallow=False):
                stale.append(str(committed.relative_to(ROOT)))
        if stale:
            print("generated code is stale or hand-edited; run `make protos`:\n  " + "\n  ".join(stale))
            return 1
    print("generated code matches protos/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
