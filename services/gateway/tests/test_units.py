"""Pieces with exact answers: top-p sampling, incremental detokenization with stop sequences, name checks."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from tunery.errors import InvalidArgument
from tunery_gateway.engines.text import TextTracker
from tunery_gateway.engines.transformers.sampling import sample_row
from tunery_gateway.registry import check_model_name


def test_sample_row_nucleus() -> None:
    rng = np.random.default_rng(0)
    logits = np.array([5.0, 4.0, 1.0, 0.0, -3.0] + [-10.0] * 3000)
    counts = Counter(sample_row(logits, 1.0, 0.8, rng) for _ in range(1500))
    assert set(counts) == {0, 1}  # p = .72, .26: the nucleus of 0.8 is exactly these two
    assert 0.66 < counts[0] / 1500 < 0.79
    assert Counter(sample_row(logits, 1.0, 0.5, rng) for _ in range(200)) == {0: 200}
    a = [sample_row(logits, 1.0, 1.0, np.random.default_rng([7, 0])) for _ in range(5)]
    assert len(set(a)) == 1  # same seed, same draw
    many = Counter(sample_row(logits, 2.0, 1.0, rng) for _ in range(500))
    assert len(many) > 3  # a higher temperature flattens the distribution


class FakeTok:
    """Token i decodes to pieces[i]; multi-byte characters split over two tokens decode to U+FFFD alone."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> Any:
        text = "".join(self.pieces[i] for i in ids)
        return text.replace("\x01\x02", "é").replace("\x01", "\ufffd").replace("\x02", "")


def run(pieces: list[str], stop: tuple[str, ...]) -> tuple[list[str], bool]:
    tracker = TextTracker(FakeTok(pieces), stop)
    out, hit = [], False
    for i in range(len(pieces)):
        text, hit = tracker.add(i)
        out.append(text)
        if hit:
            break
    if not hit:
        out.append(tracker.flush())
    return out, hit


def test_text_tracker_holds_back_stop_prefixes() -> None:
    out, hit = run(["Hello", " wor", "ld", " END", "X", " more"], ("ENDX",))
    assert hit and "".join(out) == "Hello world "
    assert out[3] == " "  # "END" could start the stop sequence: held back
    out, hit = run(["a", "E", "N", "b"], ("ENDX",))
    assert not hit and "".join(out) == "aENb"  # released once it cannot be a stop any more


def test_text_tracker_waits_for_whole_characters() -> None:
    out, _ = run(["caf", "\x01", "\x02", "!"], ())
    assert out[1] == "" and "".join(out) == "café!"


@pytest.mark.parametrize("name", ["ft:a:b:c", "smollm2-135m-instruct", "org/name", "x..y"])
def test_model_names_accepted(name: str) -> None:
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", ["", "../x", "a/../b", "/etc/passwd", "a\x00b", "a\nb", "x" * 601, "a\\..\\b"])
def test_model_names_refused(name: str) -> None:
    with pytest.raises(InvalidArgument):
        check_model_name(name)
