"""The model registry: one frozen record per model, looked up in one place.

Numbers here are the published facts of the TF Hub models (see README "Models" and
``shared/reference/tfhub_models.md``): handles, sample rates, front-end parameters, the sample grid
of their embeddings and how each is called. Derived values are properties.

The grid of every model is expressed in *units*: a unit is one input sample for VGGish and YAMNet
(their windows are cut from the waveform) and one STFT frame of the front end for humpback (its
windows are cut from the PCEN spectrogram). One embedding covers ``window_units`` consecutive units
and embeddings advance by ``hop_units`` units.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Interface = Literal["vggish", "yamnet", "humpback"]
Tail = Literal["drop", "pad"]


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
    #: How the loaded object is called (see ``orca_beam.inference``):
    #:  vggish:   ``embeddings = model(waveform[None] float32)``           -> [N, 128]
    #:  yamnet:   ``scores, embeddings, log_mel = model(waveform)``        -> [N, 1024]
    #:  humpback: ``pcen = model.front_end([1, S, 1])``; ``model.features([B, 128, 64])`` -> [B, 2048]
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
    #: completed with zeros (YAMNet pads the waveform; the humpback notebook pads the PCEN).
    tail: Tail
    #: Whether ``hop_units`` may be changed by the user (only the humpback windows).
    hop_adjustable: bool = False

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
            raise ValueError(f"hop for {self.name!r} must be 1..{self.window_units} frames, "
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
    """Returns the registry record for ``name`` (vggish, yamnet or humpback); ValueError otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
