"""The speed benchmark's pipeline runs write the embeddings per-file direct calls give (b), on real
recordings, packed (many files per model call, the default) and unpacked (one piece per call),
compared by the benchmark's own functions."""

from __future__ import annotations

import pytest

from benchmarks import speed
from orca_beam.core.registry import get_model_spec
from orca_beam.models.loading import cached_model

pytestmark = pytest.mark.e2e
MODELS = ("yamnet", "vggish", "humpback")


@pytest.fixture(scope="module")
def short_files(orca_calls, tmp_path_factory):
    """13 real recordings (12 catalogue clips at every rate, one hydrophone excerpt), each
    linked twice under other names, as the benchmark's short-file set is."""
    work = tmp_path_factory.mktemp("bench")
    files = (sorted((orca_calls / "catalog").glob("*.wav"))[::12]
             + [orca_calls / "hydrophone" / "210825-1925_L-highlight.wav"])
    return work, files, speed.short_set(files, 2, work)


@pytest.fixture(scope="module")
def direct_rows(standin_dir, short_files):
    """model -> resolved path -> the notebook approach's embeddings of that file."""
    _, files, _ = short_files
    out = {}
    for model in MODELS:
        spec = get_model_spec(model)
        loaded, _ = cached_model(str(standin_dir / model))
        out[model] = {str(f.resolve()): speed.notebook_embed(spec, loaded, str(f)) for f in files}
    return out


@pytest.mark.parametrize("packing", ["packed", "unpacked"])
def test_pipeline_rows_equal_per_file_direct_calls(standin_dir, short_files, direct_rows,
                                                   packing):
    work, files, links = short_files
    extra = [] if packing == "packed" else ["--pack_s=0.5", "--batch_windows=1"]
    output = work / f"out-{packing}"
    summary = speed.run_pipeline(list(MODELS), {m: str(standin_dir / m) for m in MODELS},
                                 [f"{work}/short/c{k}/*.wav" for k in range(2)], output, extra)
    assert summary["files_matched"] == len(links) == 2 * len(files)
    assert summary["peak_rss_mib"] > 0 and summary["process_wall_s"] > summary["wall_s"]
    counters = summary["counters"]
    for model in MODELS:
        written = speed.pipeline_rows(output, model)
        result = speed.compare_with_direct(written, direct_rows[model])
        with_rows = sum(1 for rows in direct_rows[model].values() if rows.shape[0])
        assert result["sources_compared"] == len(written) == 2 * with_rows, result
        assert result["sources_not_direct"] == 0 and not result["shape_mismatches"], result
        assert result["files_with_direct_rows_but_none_written"] == 0, result
        assert result["rows_compared"] == 2 * sum(r.shape[0] for r in
                                                  direct_rows[model].values())
        assert result["max_rel_diff"] < 1e-5, (model, packing, result)
        computed = counters[f"orca_beam.{model}:frames_computed"]
        kept = counters[f"orca_beam.{model}:frames_kept"]
        assert kept == result["rows_compared"]
        if packing == "unpacked" or model == "humpback":
            assert computed == kept  # nothing thrown away
        else:
            # the windows straddling two packed files are computed and dropped
            assert computed > kept
            assert counters[f"orca_beam.{model}:model_calls"] < len(written)
