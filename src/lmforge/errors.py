"""User-facing errors.

Anything the user can fix (a bad config, a malformed data file, an unknown model name) is raised
as :class:`UserError`. The CLI prints its message and exits with status 2, no traceback.
"""

from __future__ import annotations

import errno
import re


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


class StorageError(UserError):
    """The disk filled up (or a file-size limit was reached) while writing. Exit status 3.

    Raised where lmforge writes atomically (:mod:`lmforge.atomic`): the half-written temporary is
    removed, and the file or folder it would have replaced (e.g. the previous checkpoint) is intact.
    """

    exit_code = 3


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk is full or a file-size limit was hit (ENOSPC, EFBIG, EDQUOT).

    Also recognises libraries that wrap the OS error in their own exception text (safetensors
    raises ``SafetensorError('... I/O error: File too large (os error 27)')``). False for a
    :class:`StorageError` (already explained).
    """
    if isinstance(exc, StorageError):  # already explained (an inner atomic write)
        return False
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    found = re.search(r"os error (\d+)", str(exc))
    return bool(found) and int(found.group(1)) in DISK_FULL_ERRNOS


def disk_full_error(exc: BaseException, target: str | None) -> StorageError:
    """The :class:`StorageError` for disk-full ``exc`` raised while writing ``target`` (a path, or None)."""
    full = getattr(exc, "errno", None) == errno.ENOSPC or "os error 28" in str(exc)
    reason = "no space left on the disk" if full else f"the file system refused to write more ({exc})"
    return StorageError(f"{reason}; the unfinished write was removed", where=target,
                        hint="free disk space (or choose a folder on a larger disk) and run the command again; what "
                             "was there before is unchanged (an interrupted training run continues with --resume)")


def storage_error(exc: BaseException, target: str | None) -> StorageError | None:
    """The :class:`StorageError` to raise for ``exc`` met while writing ``target`` (a path), or None
    when ``exc`` is not about a full disk. An inner write's StorageError is re-aimed at ``target``
    (the folder the user knows, not a temporary inside it)."""
    cause = exc.__cause__ if isinstance(exc, StorageError) and exc.__cause__ is not None else exc
    if not is_disk_full(cause):
        return None
    error = disk_full_error(cause, target)
    error.__cause__ = cause
    return error
