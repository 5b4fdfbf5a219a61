"""What the root scripts share: checks before Hydra starts, and every failure as one line.

A user's mistake (a wrong value, a missing file, an interrupt) ends the stage with one line on
stderr that names the value and the fix, and a non-zero exit status; the traceback is shown only
with ``HYDRA_FULL_ERROR=1`` (Hydra's own switch). Anything else is left to Hydra, traceback and all.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import InstantiationException
from omegaconf.errors import OmegaConfBaseException

from deepcoder.core.errors import UserError
from deepcoder.run.checks import check_argv
from deepcoder.utils.quiet import quiet_third_party

USER_ERRORS = (ValueError, OSError, ImportError, OmegaConfBaseException, UserError)


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` (or of the error a Hydra ``_target_`` raised) on one line."""
    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, (ValueError, OmegaConfBaseException, UserError)) else f"{type(exc).__name__}: {text}"


def _stop(line: str, status: int) -> None:
    print(line, file=sys.stderr, flush=True)
    raise SystemExit(status)


def stage_errors(task: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps a Hydra task function: user errors and interrupts become one line and an exit status."""

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        quiet_third_party()
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            return task(*args, **kwargs)
        try:
            return task(*args, **kwargs)
        except KeyboardInterrupt:
            _stop("interrupted (Ctrl-C): what finished is saved; rerun with the same output_dir to continue", 130)
        except SystemExit as exc:  # training stopped by a signal at a step boundary (ours, or Lightning's)
            if type(exc).__name__ not in ("SignalStop", "SIGTERMException"):
                raise
            name = getattr(exc, "signame", "SIGTERM")
            hint = getattr(exc, "hint", "last.ckpt holds the last finished step: rerun with ckpt_path=last")
            _stop(f"stopped by {name}: {hint}", exc.code if isinstance(exc.code, int) else 143)
        except InstantiationException as exc:
            cause = exc.__cause__
            if cause is None or isinstance(cause, USER_ERRORS):
                _stop(f"error: {one_line(exc)}  (HYDRA_FULL_ERROR=1 for the traceback)", 1)
            raise
        except USER_ERRORS as exc:
            _stop(f"error: {one_line(exc)}  (HYDRA_FULL_ERROR=1 for the traceback)", 1)

    return wrapper


def preflight(stage: str) -> None:
    """Checks of the command line that must run before Hydra (missing extras, an output_dir Hydra
    itself would fail to create; a failure is one line and exit status 2), then points Hydra's run
    folder (``.hydra/``, the log) at an explicit ``output_dir`` so a run leaves nothing elsewhere."""
    argv = sys.argv[1:]
    problem = check_argv(stage, argv)
    if problem:
        _stop(f"error: {problem}", 2)
    sys.argv[1:] = hydra_run_dir(argv)


def hydra_run_dir(argv: list[str]) -> list[str]:
    """``argv`` plus ``hydra.run.dir=DIR`` when it sets ``output_dir=DIR`` on a single run (a sweep's
    jobs keep their own folders under the sweep directory)."""
    if {"-m", "--multirun"} & set(argv) or any(a.startswith("hydra.run.dir=") for a in argv):
        return argv
    values = [a.partition("=")[2] for a in argv if a.partition("=")[0].lstrip("+") == "output_dir"]
    if len(values) != 1 or not values[0] or "${" in values[0]:
        return argv
    return [*argv, f"hydra.run.dir={values[0]}"]
