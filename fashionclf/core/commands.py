"""The ``fashionclf`` commands' shared error handling: a known failure (a bad parameter, unusable
data, a missing model or file) is one 'error:' line and exit code 2, never a traceback.

Not core/cli.py's ``stage_main``: a command returns its exit code to ``main`` (tests call it in
process), where a stage exits at once without the interpreter's teardown."""
from __future__ import annotations

import sys

from .errors import KNOWN_ERRORS

# beside the stages' known errors: a missing model, manifest or preset (FileNotFoundError, OSError),
# and invalid values met while reading inputs (ValueError, ParamError's base)
COMMAND_ERRORS = (*KNOWN_ERRORS, OSError, ValueError)


def run_command(run, args) -> int:
    try:
        return run(args)
    except COMMAND_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
