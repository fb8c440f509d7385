"""Library notices a user cannot act on are not printed by a model load (e.g. bitsandbytes'
`Failed to load CPU gemm_4bit_forward from kernels-community`, which every load printed on AVX512-BF16 CPUs)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"

SCRIPT = textwrap.dedent("""
    import logging, sys
    from lmforge.config.schema import ModelConfig
    from lmforge.model.load import load_model
    from lmforge.model.task import TaskInfo

    bnb = logging.getLogger("bitsandbytes.backends.cpu.ops")
    notice = "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already `pip install kernels`"
    bnb.warning(notice, "No module named 'kernels'")  # as bitsandbytes logs it, before any lmforge load
    print("-- loading --", file=sys.stderr, flush=True)
    load_model(ModelConfig(name=sys.argv[1]), TaskInfo("causal_lm"))
    import bitsandbytes  # the real import: on an AVX512-BF16 CPU it logs the notice itself
    from lmforge.methods import build_method, get_method_spec
    build_method("qlora", get_method_spec("qlora").params(r=4))
    bnb.warning(notice, "No module named 'kernels'")
    bnb.warning("some other bitsandbytes warning")
    logging.getLogger("torchao").warning("Failed to load libtorchao_ops_aten.so")
""")


def test_a_model_load_silences_the_bitsandbytes_kernels_notice_only(tiny_llama_dir):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_llama_dir)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after = proc.stderr.split("-- loading --")
    assert NOTICE in before  # without lmforge's filter Python prints it (so this test can fail)
    assert NOTICE not in after, after[-2000:]
    assert "some other bitsandbytes warning" in after  # only that notice is dropped
    assert "libtorchao" not in after


def test_the_filter_is_installed_once():
    import logging

    from lmforge.model.quiet import BNB_CPU_LOGGER, silence_library_notices

    silence_library_notices()
    silence_library_notices()
    filters = [f for f in logging.getLogger(BNB_CPU_LOGGER).filters if f.name == "lmforge-quiet"]
    assert len(filters) == 1
    record = logging.LogRecord(BNB_CPU_LOGGER, logging.WARNING, __file__, 1, NOTICE + ": %s", ("x",), None)
    assert not filters[0].filter(record)
    assert filters[0].filter(logging.LogRecord(BNB_CPU_LOGGER, logging.WARNING, __file__, 1, "other", (), None))
