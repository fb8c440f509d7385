"""Keep library chatter the user cannot act on quiet: transformers' load chatter (load reports,
progress bars, unused-weight notes) and notices other libraries log on import."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

# Loggers whose warnings are never the user's to act on, and the ERROR level they are raised to:
# peft imports torchao (qlora's int8/int4 backend) when installed; on a CPU build torchao logs that its
# CUDA kernels did not load, and torch logs enum-registration notices.
QUIET_LOGGERS = ("torchao", "torch.utils._pytree")
# bitsandbytes, on a CPU with AVX512-BF16, tries the `kernels` package (which downloads kernels from a
# hub at run time; lmforge never installs it) when it is imported and logs a warning without it. Its
# fallback is the kernel lmforge uses anyway. Only that one message is dropped: bnb's other warnings stay.
BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"


class _DropMessage(logging.Filter):
    """Drops records whose message template starts with ``prefix``."""

    def __init__(self, prefix: str):
        super().__init__(name="lmforge-quiet")
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def silence_library_notices() -> None:
    """Install the filters above (idempotent). Called by the CLI before any command and by
    :func:`lmforge.model.load.load_model` before transformers / peft import bitsandbytes; a notice
    logged before this runs (bitsandbytes imported earlier by the caller) has already been printed."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    bnb = logging.getLogger(BNB_CPU_LOGGER)
    if not any(isinstance(f, _DropMessage) for f in bnb.filters):
        bnb.addFilter(_DropMessage(BNB_KERNELS_NOTICE))


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' info/warning logs and progress bars; errors still raise and log."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()
