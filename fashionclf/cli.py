"""Entry points: the stage wrapper shared by stages/*.py and the ``fashionclf`` command."""
from __future__ import annotations

import sys

from .params import ParamError


def stage_main(run) -> None:
    """Run a stage; a known failure prints one 'error:' line and exits 2 (outputs are written atomically)."""
    from .balance import DataError
    from .fetch import FetchError
    try:
        run()
    except (ParamError, DataError, FetchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
