"""The run folder a training run writes into: claimed once, before anything is written.

Rules (see :mod:`lmforge.outputs`): the folder is new, empty, or a run folder lmforge wrote; it is
apart from every input of the run; one that already holds checkpoints is continued only with
``--resume``, which first removes the temporaries a killed write left in it.
"""

from __future__ import annotations

from pathlib import Path

from lmforge.atomic import remove_temporaries
from lmforge.config.inputs import input_paths, run_dir_setting
from lmforge.config.schema import RunConfig
from lmforge.errors import UserError
from lmforge.outputs import claim_output_dir


def open_run_folder(config: RunConfig, resume: bool) -> Path:
    """Create (or check) ``config.run.dir`` for training; UserError naming the conflict otherwise."""
    where = run_dir_setting(config)
    run_dir = claim_output_dir(config.run.dir, "run", inputs=input_paths(config), where=where)
    checkpoints = run_dir / "checkpoints"
    if not resume and any((checkpoints / name).exists() for name in ("last", ".last.old")):
        raise UserError("this run folder already holds checkpoints", where=str(run_dir),
                        hint="continue it with --resume, or pick another run.name / run.output_dir")
    if resume:
        remove_temporaries(run_dir)
    return run_dir
