"""Building the job's graph while the launcher loads the models, for in-process runs.

An in-process run pays, before its first window, for importing, loading the models (seconds:
restoring a SavedModel is mostly C++ and releases the GIL) and for building and converting the
graph (Python: each step pickled, ``Pipeline.to_runner_api``). The graph needs only the versions,
which exist before any model is loaded, so :func:`run_with_graph_built_during` builds and
converts it in a thread while the launcher loads, then runs the converted proto on FnApiRunner.

The runner that converts is FnApiRunner itself, stopped just before it would run: Beam's own
``Pipeline.run`` and ``FnApiRunner.run_pipeline`` apply every setting they apply to any run (the
GroupByKey visitor, the fn-API experiment, the default environment), so the proto that runs is the
one a plain ``pipeline.run()`` would have run.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from orca_beam.extract.config import runner_name

T = TypeVar("T")

#: ``--runner`` values whose in-memory run is FnApiRunner's for this graph (DirectRunner picks
#: FnApiRunner: Beam tries Prism only for graphs without ``with_exception_handling()``).
FN_API_RUNNERS = {None, "DirectRunner", "SwitchingDirectRunner", "FnApiRunner"}


class _ConvertOnlyRunner(FnApiRunner):
    """FnApiRunner whose ``run_pipeline`` stops at the converted proto and keeps it, unrun."""

    proto = None

    def run_via_runner_api(self, pipeline_proto, options):
        self.proto = pipeline_proto


def runs_on_fn_api_runner(options: PipelineOptions) -> bool:
    """True when ``--runner`` is one whose in-process run is FnApiRunner's (see
    ``FN_API_RUNNERS``); the caller has already checked the run is in process."""
    return runner_name(options) in FN_API_RUNNERS


def run_with_graph_built_during(options: PipelineOptions,
                                add_steps: Callable[[beam.Pipeline], None],
                                meanwhile: Callable[[], T]) -> tuple[object, T]:
    """Builds a pipeline with ``add_steps`` and converts it (``to_runner_api``) in a thread
    while ``meanwhile()`` runs in this one (the model load), then runs the proto on FnApiRunner
    in this thread. Returns (the run's PipelineResult, what ``meanwhile`` returned). An error in
    either is raised here after both have ended (the building one first)."""
    runner = _ConvertOnlyRunner()

    def convert() -> None:
        pipeline = beam.Pipeline(runner=runner, options=options)
        add_steps(pipeline)
        pipeline.run()

    with ThreadPoolExecutor(1, thread_name_prefix="orca-beam-graph") as pool:
        converted = pool.submit(convert)
        try:
            value = meanwhile()
        finally:
            converted.result()  # waits, and raises the building thread's error first
    return FnApiRunner.run_via_runner_api(runner, runner.proto, options), value
