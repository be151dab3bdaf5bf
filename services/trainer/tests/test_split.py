"""The trainer's validation_split is `tunery.split`'s split (the one the dataset service makes): same examples, same
seed and fraction, same sides, whatever the example ids or the order of the upload."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tunery.runtime.artifacts import LocalArtifactStore
from tunery.split import split_examples, validation_count
from tunery_trainer.service import split_file


def examples() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(40):
        out.append(
            {"messages": [{"role": "user", "content": f"{i} doubled?"}, {"role": "assistant", "content": f"{2 * i}."}]}
        )
    out.append(dict(out[3]))  # an exact copy: copies are told apart, in the same way every time
    out.append({"messages": [{"role": "user", "content": " 5  doubled? "}, {"role": "assistant", "content": "10."}]})
    return out


def write(artifacts: LocalArtifactStore, base: str, rows: list[dict[str, object]]) -> list[bytes]:
    lines = [json.dumps(r).encode() for r in rows]
    artifacts.put_bytes(f"{base}/train.jsonl", b"".join(line + b"\n" for line in lines))
    return lines


@pytest.mark.parametrize(("fraction", "seed"), [(0.25, 0), (0.1, 7), (0.5, 123)])
def test_the_trainer_splits_a_file_as_tunery_split_does(tmp_path: Path, fraction: float, seed: int) -> None:
    artifacts = LocalArtifactStore(tmp_path)
    rows = examples()
    lines = write(artifacts, "jobs/a/data", rows)
    n_train, n_val = split_file(artifacts, "jobs/a/data", fraction, seed)
    train_idx, val_idx = split_examples(rows, fraction, seed)
    assert (n_train, n_val) == (len(train_idx), len(val_idx))
    assert n_val == validation_count(len(rows), fraction)
    assert artifacts.path("jobs/a/data/train.jsonl").read_bytes().splitlines() == [lines[i] for i in train_idx]
    assert artifacts.path("jobs/a/data/validation.jsonl").read_bytes().splitlines() == [lines[i] for i in val_idx]


def test_the_same_file_uploaded_again_in_another_order_splits_the_same(tmp_path: Path) -> None:
    artifacts = LocalArtifactStore(tmp_path)
    rows = examples()
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    write(artifacts, "jobs/a/data", rows)
    write(artifacts, "jobs/b/data", shuffled)
    split_file(artifacts, "jobs/a/data", 0.25, 3)
    split_file(artifacts, "jobs/b/data", 0.25, 3)

    def side(job: str, name: str) -> list[str]:
        return sorted(artifacts.path(f"jobs/{job}/data/{name}.jsonl").read_text().splitlines())

    assert side("a", "validation") == side("b", "validation")
    assert side("a", "train") == side("b", "train")
