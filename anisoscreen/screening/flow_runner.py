"""Run a jobflow flow in this process so that a failing job reaches the caller with its cause.

``jobflow.run_locally`` logs a job's exception and carries on, so a command that looks only at
the responses can say no more than "the flow failed". :func:`run_flow_locally` stops at the
first failing job instead: a user error (:class:`~anisoscreen.errors.AnisoscreenError`, e.g.
a missing source or an unreachable store) propagates unchanged, and anything else becomes a
:class:`~anisoscreen.errors.StageError` naming the job and the exception.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from anisoscreen.errors import AnisoscreenError, StageError

__all__ = ["run_flow_locally"]

_STARTING = re.compile(r"Starting job - (?P<name>.+) \((?P<uuid>[0-9a-f-]+)")


class _CurrentJob(logging.Handler):
    """Remembers the name of the job jobflow started last."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.name: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        match = _STARTING.match(record.getMessage())
        if match:
            self.name = match["name"]


def run_flow_locally(
    flow: Any, store: Any, root_dir: Path | None = None
) -> dict[str, dict[int, Any]]:
    """``run_locally(flow, store)`` that raises at the first failing job, with its cause.

    With ``root_dir`` every job runs in its own folder under it (a campaign's local DFT).

    Raises
    ------
    AnisoscreenError
        A job failed on a user error (re-raised as it is).
    StageError
        A job failed on anything else; the message names the job and the exception.
    """
    from jobflow import run_locally

    job_logger = logging.getLogger("jobflow.core.job")
    current = _CurrentJob()
    level, disabled, disabled_below = (
        job_logger.level,
        job_logger.disabled,
        logging.root.manager.disable,
    )
    job_logger.addHandler(current)
    job_logger.setLevel(logging.INFO)
    # another library's logging.config (``disable_existing_loggers``) or ``logging.disable``
    # must not hide which job is running
    job_logger.disabled = False
    logging.disable(logging.NOTSET)
    try:
        return run_locally(
            flow,
            store=store,
            create_folders=root_dir is not None,
            root_dir=root_dir,
            log=False,
            raise_immediately=True,
        )
    except AnisoscreenError:
        raise
    except Exception as exc:
        cause = " ".join(str(exc).split()) or "no message"
        raise StageError(
            f"the '{current.name or 'unknown'}' stage failed: {type(exc).__name__}: {cause} "
            "(rerun with --debug for the traceback)"
        ) from exc
    finally:
        job_logger.removeHandler(current)
        job_logger.setLevel(level)
        job_logger.disabled = disabled
        logging.disable(disabled_below)
