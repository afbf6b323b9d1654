"""The main job: audio -> per-model embeddings (Parquet) + one outcome per input and model.

    python -m pipelines.extract --runner=DirectRunner --input 'recordings/*.wav' --output out/ \
        --model birdnet [--model yamnet --model_handle yamnet=/models/yamnet]

HLS folders as streams: ``--input <node>/hls/ --start ISO --end ISO``. Calls mode
(``--annotations``): one pooled embedding per annotated call, --input is the audio root.
``--help`` lists every option with its unit, grouped by input kind.

This module is the launcher: it parses and checks the config once, resolves each model's
version, builds the job for the input kind and prints the summary the job wrote.
"""

from __future__ import annotations

import logging
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from orca_beam.classify.apply import ApplySettings, refuse_another_version
from orca_beam.classify.linear import LinearClassifier
from orca_beam.core import s3
from orca_beam.core.errors import UsageError
from orca_beam.core.registry import get_model_spec
from orca_beam.extract.calls import build_calls, read_annotations
from orca_beam.extract.config import ExtractConfig, extract_config
from orca_beam.extract.options import ExtractOptions
from orca_beam.extract.overlap import run_with_graph_built_during, runs_on_fn_api_runner
from orca_beam.extract.pipeline import build, export_projectors, plan, source_for
from orca_beam.extract.summary import (
    format_segment_summary,
    format_summary,
    read_summary,
    set_launcher_facts,
)
from orca_beam.extract.versions import output_version
from orca_beam.labels import read_labels
from orca_beam.models.loading import ModelUnavailableError, cached_model, model_version
from orca_beam.models.runners import warm_up
from orca_beam.progress import Progress
from orca_beam.store.version import new_run_id
from pipelines.classify import score_version
from pipelines.cli import run_command

LOG = logging.getLogger("orca_beam.extract")


def resolve_versions(config: ExtractConfig) -> dict:
    """model name -> OutputVersion (the model is resolved and hashed here, in the launcher)."""
    mode, extra = "files", {}
    if config.calls:
        mode = "segments"
        extra = {"pooling": config.calls.pooling, "negative_s": config.calls.negative_s}
    versions = {}
    for spec in config.specs:
        try:
            version = model_version(config.handles[spec.name])
        except ModelUnavailableError as exc:
            raise UsageError(exc.message(spec.name)) from None
        versions[spec.name] = output_version(spec, version, channel=config.channel, mode=mode,
                                             extra=extra)
        LOG.info("model %s: %s -> %s%s", spec.name, version.label,
                 versions[spec.name].folder(config.output),
                 "  (STAND-IN: random weights, embeddings are not real)" if version.standin
                 else "")
    return versions


def preload_models(config: ExtractConfig, versions: dict) -> dict[str, float]:
    """Loads each model once in this process, before the pipeline starts, checking it holds
    the content its version was named from, and warms it up (one call on a window of silence:
    ``runners.warm_up``); returns model -> seconds taken (load and warm-up). The in-process
    runner's workers then reuse it (``loading.cached_model``), and a model that cannot be loaded
    stops the run here instead of after decoding."""
    taken = {}
    for name, version in versions.items():
        started = time.perf_counter()
        spec = get_model_spec(name)
        model, _ = cached_model(config.handles[name], version.content_sha256,
                                spec.embedding_tensor)
        warm = warm_up(spec, model)
        taken[name] = round(time.perf_counter() - started, 3)
        LOG.info("model %s loaded and warmed up in %.1f s (warm-up call %.2f s; the in-process "
                 "workers reuse it)", name, taken[name], warm)
    return taken


def counters(result) -> dict[str, int]:
    """Beam counters of a finished run, summed over steps: ``namespace:name`` -> value."""
    out: dict[str, int] = {}
    try:
        found = result.metrics().query()["counters"]
    except Exception:  # noqa: BLE001 - a runner without metrics support
        return out
    for counter in found:
        value = counter.committed if counter.committed is not None else counter.attempted
        key = f"{counter.key.metric.namespace}:{counter.key.metric.name}"
        out[key] = out.get(key, 0) + int(value or 0)
    return dict(sorted(out.items()))


def print_plan(planned: dict) -> None:
    """Prints what a run would do, per model."""
    for name, counts in planned.items():
        print(f"{name} {counts['version']}: new {counts['new']}, changed {counts['changed']},"
              f" retry {counts['retry']}, unchanged {counts['unchanged']}, deleted "
              f"{counts['deleted']}")
        for source in counts["deleted_sources"]:
            print(f"  deleted since the last run: {source}")


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Parses ``argv``, runs the job to completion and returns the summary it wrote, with the
    launcher's Beam ``counters`` added (``--plan``: returns the plan without running;
    ``--template_location``: writes the template)."""
    options = ExtractOptions(argv if argv is not None else sys.argv[1:])
    config = extract_config(options)
    s3.install()  # one shared (unsigned without credentials) S3 client per process
    FileSystems.set_options(options)  # s3:// settings for the launcher's own listing and reads
    Progress.configure(config.progress_interval_s)  # the launcher's own lines (in-process)
    annotations = read_annotations(config) if config.calls else None
    source = None if config.calls else source_for(config)
    if source is not None:
        source.check()
    labels = read_labels(config.label_table, config.label_key) if config.label_table else None
    if labels is not None:
        LOG.info("labels: %d rows, columns %s, key %s", len(labels.rows),
                 ", ".join(labels.columns), labels.key_column)
    versions = resolve_versions(config)
    if config.plan:
        planned = plan(options, config, source, versions)
        print_plan(planned)
        return {"plan": planned}
    scoring = classifier_target(config, versions) if config.classifier else None
    run_id = new_run_id()
    LOG.info("inputs %s (run %s)", list(config.inputs), run_id)

    def add_steps(pipeline: beam.Pipeline) -> None:
        if annotations is not None:
            build_calls(pipeline, config, versions, run_id, annotations, labels)
        else:
            build(pipeline, config, source, versions, run_id, labels)

    def load_models() -> None:
        set_launcher_facts(model_load_s=preload_models(config, versions)
                           if config.in_process else {})
        Progress.restart()

    if config.in_process and test_pipeline is None and runs_on_fn_api_runner(options):
        # the graph is built and converted in a thread while the models load
        result, _ = run_with_graph_built_during(options, add_steps, load_models)
    else:
        load_models()
        pipeline = test_pipeline or beam.Pipeline(options=options)
        add_steps(pipeline)
        result = pipeline.run()
    if config.template_location:  # a classic template was written instead of running a job
        LOG.info("Dataflow template written to %s", config.template_location)
        print(f"template: {config.template_location}")
        return {"template_location": config.template_location}
    result.wait_until_finish()
    summary = {**read_summary(config.output), "counters": counters(result)}
    if config.in_process and config.exports_projector and annotations is None:
        projector = export_projectors(options, config, versions, labels)
        summary["counters"].update(counters(projector["result"]) if projector["result"] else {})
        for name in projector["kept"]:  # the in-graph stage counted this; now the launcher
            summary["counters"][f"orca_beam:projector_kept_{name}"] = 1
        summary["projector"] = {k: projector[k] for k in ("kept", "rebuilt", "seconds")}
    print(format_segment_summary(summary) if annotations is not None
          else format_summary(summary))
    print(f"summary: {config.output}/summary.json")
    if scoring is not None:
        model, version = scoring
        folder = version.folder(config.output)
        scores = config.scores or f"{config.output}/scores/{model}"
        summary["classify"] = score_version(ApplySettings.of(config.classifier, folder, scores),
                                            options)
    return summary


def classifier_target(config: ExtractConfig, versions: dict) -> tuple[str, object]:
    """(model, OutputVersion) a ``--classifier`` scores; UsageError, before anything runs, when
    its model is not run here or its embedding version is not the one this run writes."""
    if not FileSystems.exists(config.classifier):
        raise UsageError(f"--classifier {config.classifier} does not exist")
    classifier = LinearClassifier.load(config.classifier)
    model = classifier.meta.get("embedding", {}).get("model")
    if model not in versions:
        raise UsageError(f"--classifier {config.classifier} scores {model} rows; add "
                         f"--model {model}")
    refuse_another_version(f"--classifier {config.classifier}", classifier,
                           versions[model].version_id,
                           f"{versions[model].label}, which this run writes")
    return model, versions[model]


#: The logger under which Beam's local runners repeat what their worker processes log.
WORKER_LOGS = "apache_beam.runners.portability.local_job_service"


def _ours_or_warnings(record: logging.LogRecord) -> bool:
    """Worker log lines worth showing: orca-beam's own (progress), and every warning."""
    return record.levelno >= logging.WARNING or "orca_beam" in record.getMessage()


def main() -> None:
    """The command line: a UsageError is one line on stderr and exit status 2; any other
    exception keeps its traceback. Worker processes' progress lines are shown (multi-process
    DirectRunner, PortableRunner); Beam's own chatter stays at warnings."""
    def show_worker_logs() -> None:
        workers = logging.getLogger(WORKER_LOGS)
        workers.setLevel(logging.INFO)
        workers.addFilter(_ours_or_warnings)

    run_command(run, show_worker_logs)


if __name__ == "__main__":
    main()
