"""What every entry point does around its run(): Beam options, counters, and main()."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from orca_beam.core import s3
from orca_beam.core.errors import UsageError


def beam_options(beam_args: list[str]) -> PipelineOptions:
    """Beam's own flags (default ``--runner=FnApiRunner``) as options, with the s3:// client and
    the filesystems (``--s3_endpoint_url``, ...) set up from them."""
    options = PipelineOptions(beam_args or ["--runner=FnApiRunner"])
    s3.install()
    FileSystems.set_options(options)
    return options


def counter_totals(result, names: Callable[[str], bool]) -> dict[str, int]:
    """A finished pipeline's counters whose name passes ``names``: name -> total over steps."""
    totals: dict[str, int] = {}
    for counter in result.metrics().query()["counters"]:
        name = counter.key.metric.name
        if names(name):
            totals[name] = totals.get(name, 0) + (counter.committed or counter.attempted or 0)
    return totals


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
