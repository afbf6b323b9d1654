"""What every run pays before and around its first window, on this machine, before and after a
change, in one run:

    python -m benchmarks.fixed_cost --before COMMIT --json benchmarks/results/fixed-cost-2core.json

Two checkouts side by side: ``--before`` (a git worktree of that commit, made here) and this
one, alternating, ``--repeats`` times each (best of). Cases, each a fresh process
(``python -m pipelines.extract --runner=DirectRunner`` as a user types it, projector off unless
the case says so):

* ``one_10s_file``: one 10 s WAV cut from a real hydrophone recording, YAMNet stand-in;
* ``noop_rerun``: the 3 real hydrophone files with the projector on, run once, then the same
  command again (nothing changed): the second run is measured.

Per run: the pipeline wall time (the job's own, from its first step to its summary), the process
wall time, and, from a probe that wraps Beam's own functions in the child process: the graph's
transforms (``len(p.to_runner_api().components.transforms)``), FnApiRunner's fused stages and
bundles, the seconds spent building the graph and in ``to_runner_api``, and whether any
projector stage was built.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Run in the child: wraps Beam's and the launcher's functions, runs pipelines.extract, and
#: writes what it counted to the path in sys.argv[1].
PROBE = r'''
import json, sys, time
out_path, argv = sys.argv[1], sys.argv[2:]
facts = {"to_runner_api_s": 0.0, "transforms": 0, "stages": 0, "bundles": 0, "build_s": 0.0,
         "projector_transforms": 0}
import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import fn_runner
to_api = beam.Pipeline.to_runner_api
def timed_to_api(self, *a, **k):
    started = time.perf_counter()
    proto = to_api(self, *a, **k)
    facts["to_runner_api_s"] += time.perf_counter() - started
    names = [t.unique_name for t in proto.components.transforms.values()]
    facts["transforms"] = max(facts["transforms"], len(names))
    facts["projector_transforms"] = max(facts["projector_transforms"],
                                        sum(n.startswith("Projector_") for n in names))
    return proto
beam.Pipeline.to_runner_api = timed_to_api
create = fn_runner.FnApiRunner.create_stages
def counted_create(self, proto):
    context, stages = create(self, proto)
    facts["stages"] += len(stages)
    return context, stages
fn_runner.FnApiRunner.create_stages = counted_create
bundle = fn_runner.BundleManager.process_bundle
def counted_bundle(self, *a, **k):
    facts["bundles"] += 1
    return bundle(self, *a, **k)
fn_runner.BundleManager.process_bundle = counted_bundle
from pipelines import extract
built = extract.build
def timed_build(*a, **k):
    started = time.perf_counter()
    result = built(*a, **k)
    facts["build_s"] += time.perf_counter() - started
    return result
extract.build = timed_build
summary = extract.run(argv)
facts["pipeline_wall_s"] = summary["wall_s"]
json.dump(facts, open(out_path, "w"))
'''


def one_run(checkout: Path, argv: list[str], work: Path) -> dict:
    """One fresh process of the probe in ``checkout``: its facts plus the process wall time."""
    facts_path = work / f"facts-{time.monotonic_ns()}.json"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, str(facts_path), *argv], cwd=checkout,
                          env=dict(os.environ, PYTHONPATH=str(checkout),
                                   TF_CPP_MIN_LOG_LEVEL="3"),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace")[-3000:])
    facts = json.loads(facts_path.read_text())
    return {**{k: round(v, 3) if isinstance(v, float) else v for k, v in facts.items()},
            "process_wall_s": round(wall, 3)}


def ten_second_file(work: Path, orca_calls: Path) -> Path:
    """A 10 s WAV cut from a real hydrophone recording."""
    import soundfile as sf

    samples, rate = sf.read(str(orca_calls / "hydrophone" / "someCalls.wav"), dtype="float32")
    path = work / "one" / "ten_s.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples[: 10 * rate], rate)
    return path


def cases(work: Path, orca_calls: Path, standin: Path) -> dict[str, dict]:
    """The measured cases: name -> {argv builder, warm-up runs before the measured one}."""
    handle = ["--model=yamnet", f"--model_handle=yamnet={standin}"]
    ten = ten_second_file(work, orca_calls)
    return {
        "one_10s_file": {"argv": lambda out: ["--runner=DirectRunner", f"--input={ten}",
                                              f"--output={out}", "--projector_point=none",
                                              *handle], "warm": 0},
        "noop_rerun": {"argv": lambda out: ["--runner=DirectRunner",
                                            f"--input={orca_calls / 'hydrophone'}/*.wav",
                                            f"--output={out}", *handle], "warm": 1},
    }


def measure(checkout: Path, case: dict, work: Path) -> dict:
    output = work / f"out-{time.monotonic_ns()}"
    for _ in range(case["warm"]):
        one_run(checkout, case["argv"](output), work)
    return one_run(checkout, case["argv"](output), work)


def main() -> None:
    """Builds the before-worktree, runs every case alternately, writes the JSON."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--before", required=True, help="The commit to compare against.")
    p.add_argument("--json", required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--orca_calls", default=str(REPO.parent / "shared" / "data" / "orca-calls"))
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    from orca_beam.testing.standins.build import ensure_standins

    standin = Path(ensure_standins()) / "yamnet"
    work = Path(tempfile.mkdtemp(prefix="fixed-cost-"))
    before = work / "before"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(before),
                    args.before], check=True, capture_output=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        results = {}
        for name, case in cases(work, Path(args.orca_calls), standin).items():
            runs = {"before": [], "after": []}
            for _ in range(args.repeats):
                for side, checkout in (("before", before), ("after", REPO)):
                    runs[side].append(measure(checkout, case, work))
                    print(name, side, json.dumps(runs[side][-1]), flush=True)
            best = {side: min(r, key=lambda x: x["pipeline_wall_s"]) for side, r in runs.items()}
            results[name] = {"best": best, "runs": runs,
                             "pipeline_wall_ratio": round(best["after"]["pipeline_wall_s"]
                                                          / best["before"]["pipeline_wall_s"], 3),
                             "process_wall_ratio": round(best["after"]["process_wall_s"]
                                                         / best["before"]["process_wall_s"], 3)}
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    doc = {"machine": {"cpus": len(os.sched_getaffinity(0)),
                       "python": platform.python_version()},
           "before": args.before, "after": commit, "repeats": args.repeats, "cases": results}
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    for name, result in results.items():
        b, a = result["best"]["before"], result["best"]["after"]
        print(f"{name}: pipeline {b['pipeline_wall_s']} -> {a['pipeline_wall_s']} s "
              f"(x{result['pipeline_wall_ratio']}), process {b['process_wall_s']} -> "
              f"{a['process_wall_s']} s, transforms {b['transforms']} -> {a['transforms']}, "
              f"stages {b['stages']} -> {a['stages']}, bundles {b['bundles']} -> "
              f"{a['bundles']}")


if __name__ == "__main__":
    main()
