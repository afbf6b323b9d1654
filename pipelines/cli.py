"""What every entry point's ``main()`` does around its ``run()``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from orca_beam.core.errors import UsageError


def run_command(run: Callable[[], object], setup: Callable[[], None] | None = None) -> None:
    """INFO logging (Beam's own at warnings), ``setup()`` if given, then ``run()``. A
    UsageError is one line ``error: ...`` on stderr and exit status 2; any other exception
    keeps its traceback."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    if setup is not None:
        setup()
    try:
        run()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
