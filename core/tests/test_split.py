"""The one split: a function of content, seed and fraction only."""

from __future__ import annotations

import re

import pytest

from tunery.split import content_hash, split_by_hash, split_examples, validation_count


def chat(i: int) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"a {i}"}]}


def test_split_depends_on_content_not_position() -> None:
    examples = [chat(i) for i in range(50)]
    train, val = split_examples(examples, 0.2, seed=7)
    assert len(val) == 10 and sorted(train + val) == list(range(50))
    assert (train, val) == split_examples(examples, 0.2, seed=7)
    assert split_examples(examples, 0.2, seed=8)[1] != val
    # the same examples in another order (another upload, other ids) put the same examples on each side
    reordered = list(reversed(examples))
    _, val_r = split_examples(reordered, 0.2, seed=7)
    assert sorted(content_hash(reordered[i]) for i in val_r) == sorted(content_hash(examples[i]) for i in val)


def test_reformatted_copies_split_alike_and_exact_copies_are_told_apart() -> None:
    user = [{"role": "user", "content": f"  question   {i} "} for i in range(20)]
    spaced = [{"messages": [u, {"role": "assistant", "content": f"a {i}"}]} for i, u in enumerate(user)]
    assert split_examples(spaced, 0.25, 3) == split_examples([chat(i) for i in range(20)], 0.25, 3)
    same = ["h"] * 10
    train, val = split_by_hash(same, 0.3, 0)
    assert len(val) == 3 and len(train) == 7
    assert (train, val) == split_by_hash(same, 0.3, 0)


def test_adding_examples_moves_few() -> None:
    hashes = [f"h{i}" for i in range(200)]
    _, val = split_by_hash(hashes, 0.1, 1)
    _, more = split_by_hash([*hashes, "x", "y", "z"], 0.1, 1)
    assert len(set(val) - set(more)) <= 1


@pytest.mark.parametrize(("n", "fraction", "want"), [(2, 0.01, 1), (10, 0.25, 2), (10, 0.26, 3), (2, 0.9, 1)])
def test_validation_count_bounds(n: int, fraction: float, want: int) -> None:
    assert validation_count(n, fraction) == want


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_bad_fraction_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        validation_count(10, fraction)


def test_too_few_examples_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 examples"):
        split_by_hash(["a"], 0.5, 0)


def test_content_hash_ignores_formatting_but_not_content_or_weight() -> None:
    a = {"messages": [{"role": "user", "content": "Hello  world"}, {"role": "assistant", "content": "Hi", "weight": 1}]}
    b = {
        "messages": [
            {"content": "  Hello\n\tworld ", "role": "user"},
            {"weight": 1.0, "role": "assistant", "content": "Hi\n"},
        ]
    }
    assert content_hash(a) == content_hash(b)
    nbsp = {
        "messages": [
            {"role": "user", "content": "Hello\u00a0\u3000world"},
            {"role": "assistant", "content": "Hi", "weight": 1},
        ]
    }
    assert content_hash(a) == content_hash(nbsp)
    assert re.fullmatch(r"[0-9a-f]{64}", content_hash(a))
    c = {"messages": [{"role": "user", "content": "Hello world"}, {"role": "assistant", "content": "Hi", "weight": 0}]}
    assert content_hash(a) != content_hash(c)
    d = {"messages": [{"role": "user", "content": "Hello world!"}, {"role": "assistant", "content": "Hi", "weight": 1}]}
    assert content_hash(a) != content_hash(d)


def test_both_sides_keep_input_order() -> None:
    train, val = split_by_hash([f"h{i}" for i in range(1000)], 0.1, 42)
    assert len(val) == 100 and train == sorted(train) and val == sorted(val)
    assert not set(train) & set(val)
