"""Reading a judge model's verdict: a score, a label or a pairwise winner, with its rationale.

Judges are asked for one JSON object (``{"score": …}``, ``{"label": …}``, ``{"winner": "A"|"B"|"tie"}``, each with
a ``"rationale"``). Models often wrap it in prose or a code fence, so the first JSON object found in the answer is
read; a few plain-text forms common in judge prompts are accepted too (``Score: 7``, a bare label, ``[[A]]``).
Anything else raises ``Unparseable`` with the reason; the grader turns it into ``error="unparseable_verdict"`` with
the raw answer kept as the rationale.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_DECODER = json.JSONDecoder()
_SCORE_TEXT = re.compile(r"(?i)\bscore\s*[:=]\s*\**\s*(-?\d+(?:\.\d+)?)")
_NUMBER = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*")
_BRACKETED = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_WINNERS = {"a": "a", "b": "b", "tie": "tie", "c": "tie", "draw": "tie"}


class Unparseable(ValueError):
    """The judge's answer holds no verdict in a form this grader reads."""


def json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (inside prose or a code fence), or None."""
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _rationale(obj: dict[str, Any] | None, text: str) -> str:
    if obj is not None:
        for key in ("rationale", "reasoning", "explanation", "steps"):
            if key in obj:
                value = obj[key]
                return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.strip()


def parse_score(text: str, low: float, high: float) -> tuple[float, str]:
    """(score, rationale); the score must lie in [low, high]."""
    obj = json_object(text)
    value: Any = None
    if obj is not None:
        value = next((obj[k] for k in ("score", "result", "rating") if k in obj), None)
    if value is None:
        m = _SCORE_TEXT.search(text) or _NUMBER.fullmatch(text)
        value = m.group(1) if m else None
    if isinstance(value, bool) or value is None:
        raise Unparseable("no score in the judge's answer")
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise Unparseable(f"the score {value!r} is not a number") from None
    if not math.isfinite(score) or not low <= score <= high:
        raise Unparseable(f"the score {score:g} is outside the range [{low:g}, {high:g}]")
    return score, _rationale(obj, text)


def parse_label(text: str, labels: list[str]) -> tuple[str, str]:
    """(label, rationale); the label must be one of ``labels`` (matched ignoring case)."""
    by_fold = {label.casefold(): label for label in labels}
    obj = json_object(text)
    if obj is not None and "label" in obj:
        got = str(obj["label"]).strip().casefold()
        if got not in by_fold:
            raise Unparseable(f"the label {obj['label']!r} is not one of {labels}")
        return by_fold[got], _rationale(obj, text)
    bare = text.strip().strip("\"'`*.").casefold()
    if bare in by_fold:
        return by_fold[bare], text.strip()
    found = [label for label in labels if re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text, re.IGNORECASE)]
    if len(found) == 1:
        return found[0], text.strip()
    if found:
        raise Unparseable(f"the answer names several labels: {found}")
    raise Unparseable(f"no label of {labels} in the judge's answer")


def parse_winner(text: str) -> tuple[str, str]:
    """("a" | "b" | "tie", rationale)."""
    obj = json_object(text)
    if obj is not None and "winner" in obj:
        got = str(obj["winner"]).strip().casefold()
        if got not in _WINNERS:
            raise Unparseable(f"the winner {obj['winner']!r} is not A, B or tie")
        return _WINNERS[got], _rationale(obj, text)
    marks = {_WINNERS[m.casefold()] for m in _BRACKETED.findall(text)}
    if len(marks) == 1:
        return marks.pop(), text.strip()
    bare = text.strip().strip("\"'`*.").casefold()
    if bare in _WINNERS:
        return _WINNERS[bare], text.strip()
    raise Unparseable("no winner (A, B or tie) in the judge's answer")


__all__ = ["Unparseable", "json_object", "parse_label", "parse_score", "parse_winner"]
