"""The extraction's settings, parsed and checked once in the launcher into frozen dataclasses.

Stages take the parts they need in their constructors, so worker processes (multi-process
DirectRunner, PortableRunner, Dataflow) get exactly the launcher's settings when the DoFns are
unpickled; nothing is configured by mutating a class in the launcher.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, StandardOptions

from orca_beam.core.errors import UsageError
from orca_beam.core.registry import ModelSpec
from orca_beam.core.s3 import s3_settings
from orca_beam.extract.options import ExtractOptions, projector_kwargs


@dataclass(frozen=True)
class HlsRange:
    """HLS input: the UTC range to embed and the seconds of a folder one worker step decodes."""

    start: datetime
    end: datetime
    span_s: float


@dataclass(frozen=True)
class FileClock:
    """Files named by their recording time: the ``strptime`` format and the IANA zone."""

    format: str
    zone: str


@dataclass(frozen=True)
class CallsConfig:
    """Calls mode (``--annotations``): the table, its column mapping, pooling and negatives."""

    annotations: str
    annotations_config: str | None
    pooling: str
    negatives: int
    negative_s: float
    negatives_seed: int


@dataclass(frozen=True)
class ExtractConfig:
    """Every setting of one extraction run (units: seconds; channel: index, None = mono)."""

    inputs: tuple[str, ...]
    output: str
    specs: tuple[ModelSpec, ...]
    handles: dict = field(hash=False)  # model name -> handle
    channel: int | None = None
    chunk_s: float = 60.0
    pack_s: float = 60.0
    batch_windows: int = 32
    progress_interval_s: float = 30.0
    force: bool = False
    verify_content: bool = False
    plan: bool = False
    hls: HlsRange | None = None
    file_clock: FileClock | None = None
    calls: CallsConfig | None = None
    #: the projector's export settings without labels (``projector_point`` "none": no export)
    projector: dict = field(default_factory=dict, hash=False)
    label_table: str | None = None
    label_key: str | None = None
    #: --classifier / --scores: score the rows after embedding them
    classifier: str | None = None
    scores: str | None = None
    s3: dict = field(default_factory=dict, hash=False)
    template_location: str | None = None
    #: the runner's workers are this process (in-memory DirectRunner/FnApiRunner, no template):
    #: a model loaded here is theirs, and a Reshuffle would only add a stage
    in_process: bool = False

    @property
    def kind(self) -> str:
        """The input kind: ``calls``, ``hls`` or ``files``."""
        return "calls" if self.calls else "hls" if self.hls else "files"

    @property
    def model_names(self) -> list[str]:
        """The models' names, in order."""
        return [spec.name for spec in self.specs]

    @property
    def exports_projector(self) -> bool:
        """True unless ``--projector_point none``."""
        return self.projector.get("point", "frame") != "none"

    def projector_kwargs(self, labels=None) -> dict:
        """``export_projector`` keyword arguments with the LabelTable ``labels``."""
        return {**self.projector, "labels": labels}


#: Runners whose workers run inside the launching process (Beam's local runners, in memory).
IN_PROCESS_RUNNERS = {None, "DirectRunner", "SwitchingDirectRunner", "FnApiRunner",
                      "BundleBasedDirectRunner"}


def runner_name(options) -> str | None:
    """``--runner`` as a name (a runner object: its class name; None when not given)."""
    runner = options.view_as(StandardOptions).runner
    return runner if isinstance(runner, str) or runner is None else type(runner).__name__


def runs_in_process(options) -> bool:
    """True when the runner's workers are this process (DirectRunner in memory, no template
    being written), so a model loaded here is the one they use and a Reshuffle distributes
    nothing."""
    return (runner_name(options) in IN_PROCESS_RUNNERS
            and options.view_as(DirectOptions).direct_running_mode == "in_memory"
            and not options.view_as(GoogleCloudOptions).template_location)


def extract_config(options: ExtractOptions) -> ExtractConfig:
    """The checked ExtractConfig of parsed ``options``; UsageError naming the flag otherwise."""
    options.validate()
    hls = options.hls_range()
    clock = options.file_time()
    calls = None
    if options.annotations:
        calls = CallsConfig(options.annotations, options.annotations_config, options.pooling,
                            options.negatives, options.negative_s, options.negatives_seed)
    if options.plan and calls is not None:
        raise UsageError("--plan applies to files and HLS input (calls mode always runs in "
                         "full)")
    if options.classifier and (calls is not None or options.view_as(GoogleCloudOptions)
                               .template_location):
        raise UsageError("--classifier applies to file and HLS runs, not calls mode or a "
                         "template (run python -m pipelines.classify apply after those)")
    projector = projector_kwargs(options)
    projector.pop("labels")
    return ExtractConfig(
        inputs=tuple(options.input_patterns()), output=options.output.rstrip("/"),
        specs=tuple(options.model_specs()), handles=options.model_handles(),
        channel=options.channel, chunk_s=options.chunk_s, pack_s=options.pack_s,
        batch_windows=options.batch_windows, progress_interval_s=options.progress_interval_s,
        force=options.force, verify_content=options.verify_content, plan=options.plan,
        hls=HlsRange(*hls, options.span_s) if hls else None,
        file_clock=FileClock(*clock) if clock else None, calls=calls, projector=projector,
        label_table=options.label_table, label_key=options.label_key,
        classifier=options.classifier, scores=options.scores, s3=s3_settings(options),
        template_location=options.view_as(GoogleCloudOptions).template_location,
        in_process=runs_in_process(options))
