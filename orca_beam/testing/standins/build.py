"""Stand-in SavedModels with the exact call surface of the three TF Hub models.

``build_standins(out_dir)`` writes ``out_dir/vggish``, ``out_dir/yamnet`` and ``out_dir/humpback``:
SavedModel directories that ``tensorflow_hub.load`` opens and that are called exactly like the real
models (see :mod:`orca_beam.core.registry`), with the published front ends and network stacks and
seeded random weights. Each carries ``assets/orca_beam_standin.json``, which is how the pipeline
knows to label its output ``standin``: these embeddings are NOT real model output.

``ensure_standins()`` builds them once into a cache keyed by the builder's own code and the seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from orca_beam.core.registry import (
    PATCH_FRAMES,
    YAMNET_PATCH_HOP_FRAMES,
    get_model_spec,
)
from orca_beam.models import frontends
from orca_beam.models.loading import STANDIN_MARKER
from orca_beam.testing.standins.networks import (
    Dense,
    HumpbackEmbedNetwork,
    VGGishNetwork,
    WeightMaker,
    YAMNetNetwork,
    count_parameters,
)

MODEL_NAMES = ("vggish", "yamnet", "humpback")
DEFAULT_SEED = 20261125

_VGGISH = get_model_spec("vggish")
_YAMNET = get_model_spec("yamnet")
_HUMPBACK = get_model_spec("humpback")


class VGGishStandin(tf.Module):
    """``model(waveform [None] float32 at 16 kHz) -> embeddings [N, 128]``; no signatures."""

    def __init__(self, seed: int):
        super().__init__(name="vggish_standin")
        self.network = VGGishNetwork(np.random.default_rng(seed))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="waveform")])
    def __call__(self, waveform):
        log_mel = frontends.log_mel(waveform, _VGGISH.front_end, _VGGISH.sample_rate_hz)
        patches = tf.signal.frame(log_mel, PATCH_FRAMES, PATCH_FRAMES, axis=0)
        return _on_nonempty_batch(self.network, patches, _VGGISH.embedding_dim)


def _on_nonempty_batch(network, batch: tf.Tensor, width: int) -> tf.Tensor:
    """``network(batch)``, or [0, width] zeros for an empty batch without running the network
    (oneDNN's convolutions reject a batch of 0 on some CPUs; the published models return an
    empty result for input shorter than one window)."""
    return tf.cond(tf.shape(batch)[0] > 0, lambda: network(batch),
                   lambda: tf.zeros([0, width], tf.float32))


def _yamnet_pad(waveform: tf.Tensor) -> tf.Tensor:
    """YAMNet's ``pad_waveform``: zeros at the end to 15600 + k * 7680 samples (k >= 0)."""
    min_samples = _YAMNET.window_samples
    hop = _YAMNET.hop_samples
    n = tf.shape(waveform)[0]
    after_first = tf.maximum(n, min_samples) - min_samples
    hops = (after_first + hop - 1) // hop
    target = min_samples + hops * hop
    return tf.pad(waveform, [[0, target - n]])


class YAMNetStandin(tf.Module):
    """``scores, embeddings, log_mel = model(waveform)`` and ``model.class_map_path()``."""

    def __init__(self, seed: int, class_map_csv: str):
        super().__init__(name="yamnet_standin")
        self.network = YAMNetNetwork(np.random.default_rng(seed))
        self.class_map = tf.saved_model.Asset(class_map_csv)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="waveform")])
    def __call__(self, waveform):
        log_mel = frontends.log_mel(_yamnet_pad(waveform), _YAMNET.front_end,
                                    _YAMNET.sample_rate_hz)
        patches = tf.signal.frame(log_mel, PATCH_FRAMES, YAMNET_PATCH_HOP_FRAMES, axis=0)
        embeddings = self.network.embed(patches)
        scores = tf.sigmoid(self.network.logits(embeddings))
        return [scores, embeddings, log_mel]

    @tf.function(input_signature=[])
    def class_map_path(self):
        return self.class_map.asset_path


class PCENFrontEnd(tf.Module):
    """``front_end(waveform [B, S, 1] at 10 kHz) -> PCEN [B, F, 64]``, F = 1 + (S - 1024) // 300."""

    def __init__(self):
        super().__init__(name="front_end")
        alpha, delta, root = frontends.default_pcen_parameters(_HUMPBACK.front_end.mel_bands)
        self.alpha = tf.Variable(alpha, name="pcen/alpha")
        self.delta = tf.Variable(delta, name="pcen/delta")
        self.root = tf.Variable(root, name="pcen/root")

    def energy(self, waveform):
        """square(mel(|STFT|)) of [B, S, 1] -> [B, F, 64] (the input of PCEN)."""
        return tf.square(frontends.mel_magnitude(waveform[:, :, 0], _HUMPBACK.front_end,
                                                 _HUMPBACK.sample_rate_hz))

    @tf.function(input_signature=[tf.TensorSpec([None, None, 1], tf.float32, name="waveform")])
    def __call__(self, waveform):
        return frontends.pcen_mel(waveform[:, :, 0], _HUMPBACK.front_end,
                                  _HUMPBACK.sample_rate_hz, self.alpha, self.delta, self.root)


class Features(tf.Module):
    """``features(PCEN [B, 128, 64]) -> [B, 2048]``."""

    def __init__(self, network: HumpbackEmbedNetwork):
        super().__init__(name="features")
        self.network = network

    @tf.function(input_signature=[tf.TensorSpec([None, 128, 64], tf.float32)])
    def __call__(self, x):
        return self.network(x)


class Logits(tf.Module):
    """``logits(PCEN [B, 128, 64]) -> [B, 1]`` log-odds."""

    def __init__(self, network: HumpbackEmbedNetwork, head: Dense):
        super().__init__(name="logits")
        self.network = network
        self.head = head

    @tf.function(input_signature=[tf.TensorSpec([None, 128, 64], tf.float32)])
    def __call__(self, x):
        return self.head(self.network(x))


class HumpbackStandin(tf.Module):
    """Root ``__call__([B, 39124, 1]) -> logits``, attributes front_end / features / logits,
    signatures ``score(waveform=[B, S, 1], context_step_samples=int64)`` and ``metadata()``."""

    def __init__(self, seed: int):
        super().__init__(name="humpback_standin")
        rng = np.random.default_rng(seed)
        network = HumpbackEmbedNetwork(rng)
        head = Dense(WeightMaker(rng), 2048, 1, name="dense")
        self.front_end = PCENFrontEnd()
        self.features = Features(network)
        self.logits = Logits(network, head)

    @tf.function(input_signature=[tf.TensorSpec([None, _HUMPBACK.window_samples, 1],
                                                tf.float32, name="waveform")])
    def __call__(self, waveform):
        return self.logits(self.front_end(waveform))

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, 1], tf.float32, name="waveform"),
        tf.TensorSpec([], tf.int64, name="context_step_samples")])
    def score(self, waveform, context_step_samples):
        energy = self.front_end.energy(waveform)
        step_frames = tf.cast(context_step_samples // _HUMPBACK.unit_hop_samples, tf.int32)
        windows = tf.signal.frame(energy, _HUMPBACK.window_units, step_frames, axis=1)
        batch, count = tf.shape(windows)[0], tf.shape(windows)[1]
        flat = tf.reshape(windows, [-1, _HUMPBACK.window_units, _HUMPBACK.front_end.mel_bands])
        normalised = frontends.pcen(flat, self.front_end.alpha, self.front_end.delta,
                                    self.front_end.root)
        scores = tf.sigmoid(_on_nonempty_batch(self.logits, normalised, 1))
        return {"scores": tf.reshape(scores, [batch, count, 1])}

    @tf.function(input_signature=[])
    def metadata(self):
        return {
            "input_sample_rate": tf.constant(_HUMPBACK.sample_rate_hz, tf.int64),
            "context_width_samples": tf.constant(_HUMPBACK.window_samples, tf.int64),
            "class_names": tf.constant(["Mn"]),
        }


def _write_class_map(path: Path) -> None:
    lines = ["index,mid,display_name"]
    lines += [f"{i},/standin/{i:03d},Stand-in class {i}" for i in range(521)]
    path.write_text("\n".join(lines) + "\n")


def _dir_size_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_standin(name: str, out_dir: str | os.PathLike, seed: int = DEFAULT_SEED) -> dict:
    """Builds the stand-in SavedModel for ``name`` into ``out_dir`` (created; must not exist).

    Returns {"model", "path", "parameters", "build_s", "size_bytes"}.
    """
    out = Path(out_dir)
    started = time.perf_counter()
    model_seed = seed + MODEL_NAMES.index(name)
    with tempfile.TemporaryDirectory() as scratch:
        if name == "vggish":
            module = VGGishStandin(model_seed)
            tf.saved_model.save(module, str(out), signatures={})
        elif name == "yamnet":
            csv = Path(scratch) / "yamnet_class_map.csv"
            _write_class_map(csv)
            module = YAMNetStandin(model_seed, str(csv))
            tf.saved_model.save(module, str(out))
        elif name == "humpback":
            module = HumpbackStandin(model_seed)
            tf.saved_model.save(module, str(out), signatures={
                "score": module.score.get_concrete_function(),
                "metadata": module.metadata.get_concrete_function(),
            })
        else:
            raise ValueError(f"unknown model {name!r}")
    parameters = count_parameters(module)
    (out / "assets").mkdir(exist_ok=True)
    (out / "assets" / STANDIN_MARKER).write_text(json.dumps({
        "standin": True, "model": name, "seed": model_seed, "parameters": parameters,
        "note": "orca-beam stand-in: published interface and architecture, RANDOM weights. "
                "Its embeddings are not real model output.",
    }, indent=2) + "\n")
    return {"model": name, "path": str(out), "parameters": parameters,
            "build_s": round(time.perf_counter() - started, 2),
            "size_bytes": _dir_size_bytes(out)}


def build_standins(out_dir: str | os.PathLike, seed: int = DEFAULT_SEED,
                   models: tuple[str, ...] = MODEL_NAMES) -> list[dict]:
    """Builds ``out_dir/<model>`` for each model; returns one report dict per model."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    reports = []
    for name in models:
        target = root / name
        if target.exists():
            shutil.rmtree(target)
        reports.append(build_standin(name, target, seed))
    return reports


def builder_key(seed: int = DEFAULT_SEED) -> str:
    """Hash of the builder's source code and the seed: the cache key of built stand-ins."""
    digest = hashlib.sha256(str(seed).encode())
    here = Path(__file__).resolve().parent
    package = here.parents[1]  # orca_beam/
    sources = sorted(here.glob("*.py")) + [package / "models" / "frontends.py",
                                           package / "core" / "registry.py"]
    for source in sources:
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    digest.update(tf.__version__.encode())
    return digest.hexdigest()[:16]


def default_cache_root() -> Path:
    """``$ORCA_BEAM_CACHE`` or ``~/.cache/orca-beam``."""
    return Path(os.environ.get("ORCA_BEAM_CACHE", Path.home() / ".cache" / "orca-beam"))


def ensure_standins(cache_root: str | os.PathLike | None = None,
                    seed: int = DEFAULT_SEED) -> Path:
    """Returns a directory holding all three stand-ins, building them once per builder key."""
    root = Path(cache_root) if cache_root else default_cache_root()
    target = root / "standins" / builder_key(seed)
    done = target / "BUILD_REPORT.json"
    if done.exists():
        return target
    root.joinpath("standins").mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="building-", dir=root / "standins"))
    try:
        reports = build_standins(scratch, seed)
        (scratch / "BUILD_REPORT.json").write_text(json.dumps(reports, indent=2) + "\n")
        try:
            scratch.rename(target)
        except OSError:
            if not done.exists():  # another process won the race only if its report exists
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return target
