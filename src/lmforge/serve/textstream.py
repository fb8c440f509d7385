"""Incremental detokenization with stop strings, for streaming.

``TextTracker.add(token)`` returns the text that became final (never a partial UTF-8 character,
never a prefix of a stop string that may still complete) and whether a stop string was hit; the
stop string itself is not part of the output, as in the OpenAI API.
"""

from __future__ import annotations


class TextTracker:
    def __init__(self, tokenizer, stops: list[str]):
        self.tokenizer, self.stops = tokenizer, [s for s in stops if s]
        self.ids: list[int] = []
        self.text = ""  # final text emitted so far
        self.count = 0  # completion tokens
        self.offsets: list[int] = []  # each token's character offset in the decoded text
        self._decoded_chars = 0

    def _decoded(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def add(self, token: int) -> tuple[str, bool]:
        """Append one token; returns (new final text, stop string hit)."""
        self.ids.append(token)
        self.count += 1
        self.offsets.append(self._decoded_chars)
        full = self._decoded()
        self._decoded_chars = len(full.rstrip("\ufffd"))  # an incomplete character starts at the next token
        for stop in self.stops:
            at = full.find(stop)
            if at >= 0:
                return self._emit(full[:at]), True
        if full.endswith("\ufffd"):
            return "", False
        hold = 0
        for stop in self.stops:  # keep back a tail that could start a stop string
            for k in range(min(len(stop) - 1, len(full)), 0, -1):
                if full.endswith(stop[:k]):
                    hold = max(hold, k)
                    break
        return self._emit(full[: len(full) - hold]), False

    def flush(self) -> str:
        """Everything decoded that was held back (at the end of generation)."""
        return self._emit(self._decoded())

    def _emit(self, upto: str) -> str:
        # decoders rarely rewrite earlier text; emitted text is never taken back
        if len(upto) <= len(self.text):
            return ""
        delta = upto[len(self.text):]
        self.text = upto
        return delta
