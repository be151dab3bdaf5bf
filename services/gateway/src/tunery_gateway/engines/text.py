"""Token ids to text, one token at a time: whole characters only, and never a byte of a stop sequence.

Decoding a window of recent tokens (TGI's prefix/read offsets) rather than the whole output keeps each step O(1);
a delta that ends inside a multi-byte character (U+FFFD) waits for the next token. Text that could be the start of
a stop sequence is held back until it is clear either way, so a streamed reply never shows half of a stop string.
"""

from __future__ import annotations

from typing import Any


class TextTracker:
    __slots__ = ("_emitted", "_prefix", "_read", "ids", "stop", "text", "tok")

    def __init__(self, tok: Any, stop: tuple[str, ...] = ()) -> None:
        self.tok = tok
        self.stop = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.text = ""
        self._prefix = 0
        self._read = 0
        self._emitted = 0

    def add(self, token_id: int) -> tuple[str, bool]:
        """Append a token; returns (text that may be shown now, whether a stop sequence ended the output)."""
        self.ids.append(token_id)
        prefix_text = self.tok.decode(self.ids[self._prefix:self._read], skip_special_tokens=True)
        new_text = self.tok.decode(self.ids[self._prefix:], skip_special_tokens=True)
        if len(new_text) <= len(prefix_text) or new_text.endswith("\ufffd"):
            return "", False
        self.text += new_text[len(prefix_text):]
        self._prefix, self._read = self._read, len(self.ids)
        if self.stop:
            start = max(0, self._emitted - max(len(s) for s in self.stop))
            hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
            if hits:
                self.text = self.text[:min(hits)]
                return self.flush(), True
            hold = self._held_back()
            out = self.text[self._emitted:len(self.text) - hold]
            self._emitted = max(self._emitted, len(self.text) - hold)
            return out, False
        return self.flush(), False

    def flush(self) -> str:
        out = self.text[self._emitted:]
        self._emitted = len(self.text)
        return out

    def _held_back(self) -> int:
        """Length of the longest end of the text that is a proper prefix of a stop sequence."""
        best = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), best, -1):
                if self.text.endswith(s[:k]):
                    best = k
                    break
        return best
