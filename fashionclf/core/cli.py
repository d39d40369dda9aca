"""The stage wrapper shared by stages/*.py: one 'error:' line and exit code 2 for known failures."""
from __future__ import annotations

import argparse
import os
import sys

from .errors import KNOWN_ERRORS


def stage_main(run) -> None:
    """Run a stage; a known failure prints one 'error:' line and exits 2 (outputs are written atomically)."""
    try:
        run()
    except KNOWN_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    exit_without_teardown()


def exit_without_teardown() -> None:
    """Exit 0 at once. The interpreter's teardown after torch, torchvision and pandas are imported
    takes 0.8-2 s (measured), about 35 s of a `dvc repro`'s 23 stage processes. Every output is
    already written and closed (store's atomic writes); only the standard streams hold data."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def stage_args(doc: str, *options: str, model: bool = False) -> argparse.Namespace:
    """Parse a stage's command line: its paths (every one required, as dvc.yaml names them) and,
    for per-model stages, the model name first."""
    parser = argparse.ArgumentParser(description=doc)
    if model:
        parser.add_argument("model")
    for option in options:
        parser.add_argument(f"--{option}", required=True)
    return parser.parse_args()
