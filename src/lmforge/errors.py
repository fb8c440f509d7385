"""User-facing errors.

Anything the user can fix (a bad config, a malformed data file, an unknown model name) is raised
as :class:`UserError`. The CLI prints its message and exits with status 2, no traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message says where and what to do."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.where = where
        self.hint = hint
        text = f"{where}: {message}" if where else message
        if hint:
            text = f"{text}\n  hint: {hint}"
        super().__init__(text)
