"""Each PTransform alone on the Beam runner (no model needed)."""

from __future__ import annotations

import io

import apache_beam as beam
import numpy as np
import soundfile as sf
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from orca_beam.core.framing import num_frames
from orca_beam.core.registry import get_model_spec
from orca_beam.extract.outcomes import AccountOutcomes
from orca_beam.records import Failure, FileRecord
from orca_beam.sources.base import FileOutcomeRule
from orca_beam.sources.files import DecodeAndFrame, MatchFiles


def test_match_files_lists_each_distinct_file_once_with_size_and_mtime(tmp_path):
    for n, name in enumerate(("a.wav", "b.wav", "c.flac")):
        (tmp_path / name).write_bytes(b"x" * (10 + n))
    expected = [(str(tmp_path / name), 10 + n, (tmp_path / name).stat().st_mtime)
                for n, name in enumerate(("a.wav", "b.wav", "c.flac"))]
    with TestPipeline() as p:
        files = (p | MatchFiles([f"{tmp_path}/*.wav", f"{tmp_path}/a.wav", f"{tmp_path}/*"])
                 | beam.Map(lambda f: (f.path, f.size_bytes, f.mtime_s)))
        assert_that(files, equal_to(expected))


def test_decode_and_frame_emits_pieces_per_model_and_a_record(tmp_path):
    rate = 44100
    samples = np.random.default_rng(0).uniform(-0.2, 0.2, int(rate * 12.3)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="FLAC")
    (tmp_path / "x.flac").write_bytes(buffer.getvalue())
    (tmp_path / "bad.wav").write_bytes(b"RIFF" + b"\0" * 40)
    specs = [get_model_spec("vggish"), get_model_spec("humpback")]
    with TestPipeline() as p:
        out = (p | MatchFiles([f"{tmp_path}/*"])
               | DecodeAndFrame(specs, chunk_s=4.0))
        frames = {
            name: out[name] | f"Count{name}" >> beam.Map(lambda piece: piece.num_frames)
            | f"Sum{name}" >> beam.CombineGlobally(sum)
            for name in ("vggish", "humpback")}
        assert_that(frames["vggish"], equal_to([num_frames(specs[0], round(12.3 * 16000))]),
                    label="VggishFrames")
        assert_that(frames["humpback"], equal_to([num_frames(specs[1], round(12.3 * 10000))]),
                    label="HumpbackFrames")
        # a file that fails to decode still has a record (no format), so it gets its outcome
        assert_that(out["files"] | beam.Map(lambda r: (r.sample_rate_hz, r.channels, r.models)),
                    equal_to([(44100, 1, ("vggish", "humpback")), (None, None,
                                                                   ("vggish", "humpback"))]),
                    label="Records")
        assert_that(out["sources"] | beam.Map(lambda s: (s.size_bytes > 0,
                                                          s.fingerprint.startswith("crc32c:"))),
                    equal_to([(True, True), (True, True)]), label="Sources")
        assert_that(out["failures"] | beam.Map(lambda f: (f.stage, f.error_class)),
                    equal_to([("decode", "CorruptAudioError")]), label="Failures")


def test_account_outcomes_gives_exactly_one_outcome_per_file_and_model():
    records = [FileRecord("ok.wav", 3.0, 16000, 1, -1, {"vggish": 3, "yamnet": 6}),
               FileRecord("short.wav", 0.1, 16000, 1, -1, {"vggish": 0, "yamnet": 1}),
               FileRecord("partial.wav", 9.0, 16000, 1, -1, {"vggish": 9, "yamnet": 18})]
    failures = [Failure("bad.wav", "", "decode", "CorruptAudioError", "broken"),
                Failure("partial.wav", "yamnet", "inference", "ResourceExhaustedError", "oom")]
    counts = [(("ok.wav", "vggish"), 2), (("ok.wav", "vggish"), 1), (("ok.wav", "yamnet"), 6),
              (("short.wav", "yamnet"), 1), (("partial.wav", "vggish"), 5)]
    with TestPipeline() as p:
        outcomes = ({"files": p | "F" >> beam.Create(records),
                     "failures": p | "E" >> beam.Create(failures),
                     "counts": p | "C" >> beam.Create(counts)} | AccountOutcomes(
                         ["vggish", "yamnet"], FileOutcomeRule())).outcomes
        assert_that(outcomes | beam.Map(lambda o: (o.source, o.model, o.status, o.embeddings,
                                                   o.error_class)), equal_to([
            ("ok.wav", "vggish", "embedded", 3, ""),
            ("ok.wav", "yamnet", "embedded", 6, ""),
            ("short.wav", "vggish", "too_short", 0, ""),
            ("short.wav", "yamnet", "embedded", 1, ""),
            ("bad.wav", "vggish", "failed", 0, "CorruptAudioError"),
            ("bad.wav", "yamnet", "failed", 0, "CorruptAudioError"),
            ("partial.wav", "vggish", "failed", 5, "RowCountMismatch"),
            ("partial.wav", "yamnet", "failed", 0, "ResourceExhaustedError"),
        ]))
