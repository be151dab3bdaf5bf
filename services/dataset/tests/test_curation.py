"""Tests for tunery_dataset.curation: example text, MinHash, duplicates, token stats, epochs."""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasketch import MinHash

from tunery.split import content_hash
from tunery_dataset import curation
from tunery_dataset.curation import (
    DuplicateGroup,
    TokenStats,
    auto_epochs,
    example_text,
    find_duplicates,
    token_stats,
)
from tunery_dataset.curation import minhash as mh

SRC = Path(__file__).resolve().parents[1] / "src"
VOCAB = [f"{a}{b}" for a in ("alpha", "bravo", "delta", "echo", "kilo", "lima", "oscar", "tango") for b in range(400)]


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def chat(user: str, assistant: str, system: str | None = None) -> dict[str, Any]:
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return {"messages": messages}


def change_word(text: str, index: int, new: str = "CHANGED") -> str:
    parts = text.split()
    parts[index] = new
    return " ".join(parts)


def unrelated(n: int, seed: int = 7, prefix: str = "u") -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    return [(f"{prefix}{i}", chat(words(rng, 40), words(rng, 30))) for i in range(n)]


def all_ids(groups: list[DuplicateGroup]) -> list[str]:
    return [i for g in groups for i in g.ids]


# ---------------------------------------------------------------- example_text


def test_example_text_chat_with_tool_calls_and_parts() -> None:
    data = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather"}, {"type": "image_url", "image_url": {}}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "assistant", "content": "It is sunny.", "weight": 1},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
    }
    assert example_text(data).splitlines() == [
        "system: Be brief.",
        "user: Weather",
        'assistant: get_weather({"city":"Oslo"})',
        "tool: sunny",
        "assistant: It is sunny.",
    ]


def test_example_text_legacy_and_preference() -> None:
    assert example_text({"prompt": "2+2=", "completion": " 4"}) == "user: 2+2=\nassistant:  4"
    pref = {
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello!"}],
        "non_preferred_output": [{"role": "assistant", "content": "What?"}],
    }
    assert example_text(pref) == "user: Hi\npreferred assistant: Hello!\nnon_preferred assistant: What?"
    assert example_text({"something": "else"}) == ""


# ---------------------------------------------------------------- find_duplicates


def test_exact_duplicates_with_reformatted_whitespace_keep_first() -> None:
    items = unrelated(5)
    original = items[1][1]
    reformatted = {"messages": [{k: f"  {v}\n" for k, v in m.items()} for m in original["messages"]]}
    items.append(("copy", reformatted))
    groups = find_duplicates(items)
    assert groups == [DuplicateGroup("exact", ("u1", "copy"), 1.0)]


def test_near_duplicate_one_word_changed_in_60_word_message() -> None:
    rng = random.Random(1)
    user = words(rng, 60)
    answer = words(rng, 30)
    items = [*unrelated(10), ("orig", chat(user, answer)), ("edit", chat(change_word(user, 30), answer))]
    groups = find_duplicates(items, threshold=0.85)
    assert len(groups) == 1
    group = groups[0]
    assert group.kind == "near"
    assert group.ids == ("orig", "edit")
    assert 0.85 < group.similarity < 1.0


def test_bigger_edits_and_stricter_thresholds_are_not_near_duplicates() -> None:
    rng = random.Random(2)
    user = words(rng, 60)
    answer = words(rng, 30)
    parts = user.split()
    for i in range(0, 60, 3):
        parts[i] = f"new{i}"
    items = [("a", chat(user, answer)), ("b", chat(" ".join(parts), answer))]
    assert find_duplicates(items) == []  # every third word changed
    edited = [("a", chat(user, answer)), ("b", chat(change_word(user, 30), answer))]
    assert find_duplicates(edited, threshold=0.99) == []
    punctuated = chat(user.replace(" ", ", ", 5).upper(), answer + "!")  # same words, same shingles
    assert find_duplicates([*edited, ("c", punctuated)], threshold=1.0) == [DuplicateGroup("near", ("a", "c"), 1.0)]
    assert find_duplicates(edited, threshold=0.5)[0].ids == ("a", "b")


def test_unrelated_examples_are_not_grouped() -> None:
    assert find_duplicates(unrelated(300)) == []


def test_each_item_in_at_most_one_group_and_exact_copies_follow_their_representative() -> None:
    rng = random.Random(3)
    user = words(rng, 60)
    answer = words(rng, 40)
    base = chat(user, answer)
    edit = chat(change_word(user, 20), answer)
    edit_copy = {"messages": [dict(m, content=m["content"] + "  ") for m in edit["messages"]]}
    other = chat(words(rng, 50), words(rng, 20))
    items = [
        ("other", other),
        ("base", base),
        ("other-copy", other),
        ("edit", edit),
        ("edit-copy", edit_copy),
        ("base-copy", base),
        *unrelated(20),
    ]
    groups = find_duplicates(items)
    ids = all_ids(groups)
    assert len(ids) == len(set(ids))
    assert groups[0] == DuplicateGroup("exact", ("other", "other-copy"), 1.0)
    assert groups[1].kind == "near"
    assert groups[1].ids == ("base", "edit", "edit-copy", "base-copy")
    assert 0.85 <= groups[1].similarity < 1.0
    assert len(groups) == 2


def test_groups_are_stars_around_the_first_example() -> None:
    # a -> b -> c drift one word at a time; each is near the previous one,
    # but c is only kept out if it is near a itself.
    rng = random.Random(4)
    text = words(rng, 60)
    steps = [text]
    for i in range(12):
        steps.append(change_word(steps[-1], 4 * i + 2, f"drift{i}"))
    items = [(f"s{i}", chat(t, "ok")) for i, t in enumerate(steps)]
    groups = find_duplicates(items)
    ids = all_ids(groups)
    assert len(ids) == len(set(ids))
    texts = dict(items)
    for group in groups:
        kept = mh.minhash([example_text(texts[group.ids[0]])])[0][0]
        for member in group.ids[1:]:
            sig = mh.minhash([example_text(texts[member])])[0][0]
            assert (sig == kept).mean() >= 0.85
    assert groups[0].ids[0] == "s0"


def test_shared_system_prompt_is_not_similarity() -> None:
    # 150-word system prompt in every example: full-text Jaccard of two
    # unrelated short examples is ~0.85, so without dropping boilerplate
    # shingles everything would be one big near-duplicate group.
    rng = random.Random(5)
    system = words(rng, 150)
    items = [(f"c{i}", chat(words(rng, 12), rng.choice(["yes", "no"]), system)) for i in range(200)]
    user, answer = words(rng, 60), words(rng, 30)
    items.append(("dup-a", chat(user, answer, system)))
    items.append(("dup-b", chat(change_word(user, 30), answer, system)))
    groups = find_duplicates(items)
    assert [g.ids for g in groups] == [("dup-a", "dup-b")]
    assert 0.85 <= groups[0].similarity < 1.0


def test_near_false_and_edge_inputs() -> None:
    rng = random.Random(6)
    user = words(rng, 60)
    items = [("a", chat(user, "x")), ("b", chat(change_word(user, 30), "x")), ("c", chat(user, "x"))]
    assert find_duplicates(items, near=False) == [DuplicateGroup("exact", ("a", "c"), 1.0)]
    assert find_duplicates([]) == []
    empty = [("e1", {"messages": []}), ("e2", {"messages": [{"role": "user", "content": None}]}), ("e3", {})]
    assert find_duplicates(empty) == []
    with pytest.raises(ValueError, match="duplicate example id 'a'"):
        find_duplicates([("a", chat("x", "y")), ("a", chat("z", "w"))])
    for bad in (0.0, 1.5, -1):
        with pytest.raises(ValueError, match="threshold"):
            find_duplicates(items, threshold=bad)


def _sample_dataset() -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(8)
    items: list[tuple[str, dict[str, Any]]] = []
    for i in range(400):
        if items and i % 7 == 0:
            src = items[rng.randrange(len(items))][1]
            user, answer = src["messages"][0]["content"], src["messages"][1]["content"]
            items.append((f"n{i}", chat(change_word(user, rng.randrange(60)), answer)))
        elif items and i % 11 == 0:
            items.append((f"n{i}", items[rng.randrange(len(items))][1]))
        else:
            items.append((f"n{i}", chat(words(rng, 60), words(rng, rng.randint(1, 40)))))
    return items


def test_deterministic_within_a_process() -> None:
    items = _sample_dataset()
    first = find_duplicates(items)
    assert any(g.kind == "near" for g in first) and any(g.kind == "exact" for g in first)
    assert find_duplicates(iter(items)) == first
    ids = all_ids(first)
    assert len(ids) == len(set(ids))
    order = {item_id: i for i, (item_id, _) in enumerate(items)}
    for group in first:
        assert [order[i] for i in group.ids] == sorted(order[i] for i in group.ids)
    assert [order[g.ids[0]] for g in first] == sorted(order[g.ids[0]] for g in first)


def test_deterministic_across_hash_seeds() -> None:
    # A subprocess with another PYTHONHASHSEED (this one's is random unless
    # set) must produce the same groups: nothing may depend on str hashing
    # or set iteration order.
    items = _sample_dataset()
    script = (
        "import json, sys\n"
        "from tunery_dataset.curation import find_duplicates\n"
        "items = [tuple(x) for x in json.load(sys.stdin)]\n"
        "print(repr(find_duplicates(items)))\n"
    )
    seed = str(int(os.environ.get("PYTHONHASHSEED") or "0") + 1)
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(items),
        env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == repr(find_duplicates(items))


def test_signatures_match_datasketch_and_words_match_regex() -> None:
    rng = random.Random(9)
    alphabet = list("abcXYZ_09 \n\t.,;-éß日本İ—“")
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))) for _ in range(60)]
    texts += [words(rng, 80), "one", "", "Hello, World! hello world"]
    word_hashes, word_counts = mh._word_hashes(texts)
    seen: dict[str, int] = {}
    offset = 0
    for text, count in zip(texts, word_counts, strict=True):
        expected = re.findall(r"\w+", text.lower())
        assert count == len(expected)
        for word, value in zip(expected, word_hashes[offset : offset + count].tolist(), strict=True):
            assert seen.setdefault(word, value) == value  # same word, same hash, wherever it is
        offset += count
    assert len(set(seen.values())) == len(seen)

    hashes, counts = mh._shingle_hashes(texts)
    sig = mh._signatures(hashes, counts)
    offset = 0
    for row, count in enumerate(counts.tolist()):
        values = hashes[offset : offset + count].tolist()
        offset += count
        reference = MinHash(num_perm=mh.NUM_PERM, seed=mh.MINHASH_SEED, hashfunc=int)
        reference.update_batch(values)
        assert np.array_equal(reference.hashvalues, sig[row])


def test_chunking_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    items = _sample_dataset()
    expected = find_duplicates(items)
    monkeypatch.setattr(mh, "_CHUNK_CHARS", 200)  # most texts get a chunk of their own
    monkeypatch.setattr(mh, "_BLOCK_SHINGLES", 7)
    assert find_duplicates(items) == expected


def test_lone_surrogates_and_odd_content_do_not_crash() -> None:
    bad = chat("broken \ud800 text " + "word " * 40, "ok")
    odd = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, "there", 5]}, "junk"]}
    assert len(content_hash(bad)) == 64
    assert find_duplicates([("a", bad), ("b", dict(bad)), ("c", odd), ("d", chat("x", "y"))]) == [
        DuplicateGroup("exact", ("a", "b"), 1.0)
    ]


@pytest.mark.skipif(not os.environ.get("TUNERY_BENCH"), reason="benchmark; set TUNERY_BENCH=1")
def test_find_duplicates_100k_benchmark() -> None:
    rng = random.Random(0)
    system = words(rng, 80)
    items: list[tuple[str, dict[str, Any]]] = []
    for i in range(100_000):
        roll = rng.random()
        if items and roll < 0.05:
            items.append((f"id{i}", items[rng.randrange(len(items))][1]))
        elif items and roll < 0.10:
            src = items[rng.randrange(len(items))][1]["messages"]
            items.append((f"id{i}", chat(src[1]["content"], change_word(src[2]["content"], 10), system)))
        else:
            items.append((f"id{i}", chat(words(rng, rng.randint(10, 60)), words(rng, rng.randint(20, 120)), system)))
    start, cpu = time.perf_counter(), time.process_time()
    groups = find_duplicates(items)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"\nfind_duplicates(100k): {wall:.1f}s wall, {cpu:.1f}s CPU, {len(groups)} groups")
    assert wall < 60


# ---------------------------------------------------------------- token_stats


def test_token_stats_known_input() -> None:
    counts = [(10, 4), (20, 0), (30, 15), (40, 40), (100, 50)]
    stats = token_stats(iter(counts), n_epochs=3, context_length=35)
    assert stats == TokenStats(
        examples=5,
        total_tokens=200,
        min_tokens=10,
        mean_tokens=40.0,
        max_tokens=100,
        p50_tokens=30,
        p95_tokens=100,
        trained_tokens=109,
        over_context=2,
        n_epochs=3,
        estimated_training_tokens=600,
    )
    assert token_stats(counts, n_epochs=1, context_length=None).over_context == 0


def test_token_stats_percentiles_on_1_to_100() -> None:
    stats = token_stats(((n, 0) for n in range(100, 0, -1)), n_epochs=2, context_length=90)
    assert (stats.p50_tokens, stats.p95_tokens, stats.over_context) == (50, 95, 10)
    assert stats.estimated_training_tokens == 2 * 5050


def test_token_stats_empty_and_invalid() -> None:
    assert token_stats([], n_epochs=4, context_length=10) == TokenStats(0, 0, 0, 0.0, 0, 0, 0, 0, 0, 4, 0)
    with pytest.raises(ValueError, match="trained <= tokens"):
        token_stats([(5, 6)], n_epochs=1, context_length=None)
    with pytest.raises(ValueError, match="n_epochs"):
        token_stats([(5, 1)], n_epochs=0, context_length=None)


# ---------------------------------------------------------------- auto_epochs


@pytest.mark.parametrize(
    ("n", "epochs"),
    [
        (1, 25),
        (4, 25),
        (5, 20),
        (30, 4),
        (33, 4),
        (34, 3),
        (1000, 3),
        (8333, 3),
        (8334, 2),
        (12_500, 2),
        (12_501, 1),
        (1_000_000, 1),
    ],
)
def test_auto_epochs(n: int, epochs: int) -> None:
    assert auto_epochs(n) == epochs


def test_auto_epochs_rule_matches_docstring() -> None:
    for n in range(1, 30_000, 7):
        expected = 3
        if 3 * n < curation.MIN_TARGET_EXAMPLES:
            expected = min(25, math.ceil(curation.MIN_TARGET_EXAMPLES / n))
        elif 3 * n > curation.MAX_TARGET_EXAMPLES:
            expected = max(1, curation.MAX_TARGET_EXAMPLES // n)
        assert auto_epochs(n) == expected
    with pytest.raises(ValueError, match="n_examples"):
        auto_epochs(0)
