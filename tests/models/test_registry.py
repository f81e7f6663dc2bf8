"""The model registry: every entry is checked (new entries get these tests for free)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from models.cards import ModelInputError, ModelUnavailableError
from models.hf_segmentation import TransformersModel, TransformersSegmenter, load_model
from models.protocols import BandInput, Detections, Picture8, Segmenter
from models.registry import (
    ModelCard,
    ModelRegistry,
    UnknownModelError,
    get_model_card,
    list_models,
    transformers_local_card,
    weights_sha256,
)
from models.spectral import SpectralIndexSegmenter

KNOWN_BANDS = {"blue", "green", "red", "nir", "swir16", "swir22"}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("card", list_models(), ids=lambda c: c.name)
def test_every_card_is_complete(card: ModelCard) -> None:
    assert card.name and card.version and card.license and card.source
    assert card.targets and card.inputs
    assert set(card.inputs) <= KNOWN_BANDS
    assert card.limitations, "say what the model cannot do"
    dumped = json.loads(card.model_dump_json())
    assert dumped["name"] == card.name and "weights_sha256" in dumped
    segmenter: Segmenter = ModelRegistry().segmenter(card)
    assert segmenter.card is card and segmenter.purpose
    assert set(segmenter.bands_for(set(card.inputs))) <= set(card.inputs)
    if card.weights_path:
        path = Path(card.weights_path)
        assert path.is_file()
        assert card.weights_sha256 == _sha(path)
    else:
        assert card.weights_sha256 is None
    assert get_model_card(card.name) is card


def test_csmask_entries_come_from_the_installed_package() -> None:
    spec = importlib.util.find_spec("ukis_csmask")
    if spec is None or spec.origin is None:
        pytest.skip("ukis-csmask is not installed")
    folder = Path(spec.origin).parent
    metas = sorted(folder.glob("model_*b_*.json"))
    assert metas, "the package should ship its model metadata"
    for meta in metas:
        variant = meta.stem.removeprefix("model_").replace("_", "-")
        card = get_model_card(f"ukis-csmask-{variant}")
        info = json.loads(meta.read_text())
        assert card.version == info["model"]["version"]
        assert card.inputs == info["data"]["dataset_statistics"]["band_names"]
        assert card.license == "Apache-2.0"
        assert card.weights_path == str(meta.with_suffix(".onnx"))
        assert card.product_levels == [variant.split("-")[1]]


def test_spectral_entries_and_target_lookup() -> None:
    ndwi = get_model_card("ndwi")
    assert ndwi.inputs == ["green", "nir"] and ndwi.default_threshold == 0.0
    assert get_model_card("ndvi").default_threshold == pytest.approx(0.3)
    reg = ModelRegistry()
    assert [c.name for c in reg.find("segmentation", target="water")] == ["ndwi"]
    assert {c.name for c in reg.find("segmentation", target="cloud")} >= {"ukis-csmask-6b-l1c"}
    assert set(reg.targets()) >= {"water", "vegetation"}


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(UnknownModelError) as err:
        get_model_card("sam-huge")
    assert "ndwi" in str(err.value) and "sam-huge" in str(err.value)


# ---- transformers models in local folders ------------------------------------------------


@pytest.fixture(scope="module")
def tiny_segformer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised, tiny SegFormer saved like a downloaded model (no network)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("tiny-segformer")
    config = transformers.SegformerConfig(
        num_channels=3,
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 1],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=2,
        id2label={0: "background", 1: "Water"},
        label2id={"background": 0, "Water": 1},
    )
    transformers.SegformerForSemanticSegmentation(config).save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags: [test]\n---\n# tiny\n")
    return folder


def test_local_model_is_registered_only_when_configured(tiny_segformer: Path) -> None:
    assert "tiny-seg" not in {c.name for c in list_models()}
    cards = {c.name: c for c in list_models("segmentation", {"tiny-seg": tiny_segformer})}
    card = cards["tiny-seg"]
    assert card.kind == "transformers"
    assert card.targets == ["background", "water"]
    assert card.license == "apache-2.0"
    assert card.inputs == ["red", "green", "blue"]
    assert card.weights_sha256 == _sha(tiny_segformer / "model.safetensors")
    assert get_model_card("tiny-seg", {"tiny-seg": str(tiny_segformer)}).name == "tiny-seg"


def test_local_model_predicts_class_ids(tiny_segformer: Path) -> None:
    card = transformers_local_card("tiny-seg", tiny_segformer)
    seg = load_model(card)
    assert seg.labels == {0: "background", 1: "water"}
    rgb = np.random.default_rng(1).random((70, 90, 3)).astype(np.float32)
    pred = seg.predict(rgb)
    assert pred.shape == (70, 90)
    assert set(np.unique(pred)) <= {0, 1}
    # Tiling gives full coverage and the same shape.
    tiled = TransformersModel(tiny_segformer, tile=32).predict(rgb)
    assert tiled.shape == (70, 90) and set(np.unique(tiled)) <= {0, 1}
    with pytest.raises(ValueError):
        seg.predict(rgb[:, :, :2])


def test_folders_that_are_not_segmentation_models_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"config\.json"):
        transformers_local_card("x", tmp_path)
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertModel"]})
    )
    with pytest.raises(ValueError, match="segmentation"):
        transformers_local_card("x", tmp_path)


def test_folder_hash_of_several_weight_files(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(b"a")
    assert weights_sha256(tmp_path) == hashlib.sha256(b"a").hexdigest()
    (tmp_path / "b.bin").write_bytes(b"b")
    lines = f"a.safetensors {hashlib.sha256(b'a').hexdigest()}\nb.bin {hashlib.sha256(b'b').hexdigest()}\n"
    assert weights_sha256(tmp_path) == hashlib.sha256(lines.encode()).hexdigest()
    assert weights_sha256(tmp_path / "missing") is None


def test_local_model_runs_as_a_segmenter(tiny_segformer: Path) -> None:
    reg = ModelRegistry({"tiny-seg": tiny_segformer})
    assert "water" in reg.targets()
    # Built-in models rank first; the RGB folder is the one that fits RGB-only data.
    assert [c.name for c in reg.find("segmentation", target="water")] == ["ndwi", "tiny-seg"]
    rgb_only = reg.find("segmentation", target="water", bands={"red", "green", "blue"})
    assert [c.name for c in rgb_only] == ["tiny-seg"]
    segmenter = reg.segmenter(rgb_only[0])
    assert isinstance(segmenter, TransformersSegmenter) and segmenter.bands_for(set()) == (
        "red", "green", "blue",
    )  # fmt: skip
    bands = {b: np.full((20, 30), 0.05, np.float32) for b in ("red", "green", "blue")}
    valid = np.ones((20, 30), bool)
    valid[:, :5] = False
    data = BandInput(bands, valid, 10.0, True, "l2a", "surface reflectance")
    seg = segmenter.segment(data, "water")
    assert seg.mask.shape == (20, 30) and not seg.mask[:, :5].any()
    assert seg.card.name == "tiny-seg" and "argmax class 1 'water'" in seg.method
    assert any("stretched" in n for n in seg.notes)
    with pytest.raises(ModelInputError):
        segmenter.segment(data, "roads")


# ---- capability queries and the Segmenter protocol ----------------------------------------

S6 = {"blue", "green", "red", "nir", "swir16", "swir22"}


def test_find_ranks_by_bands_level_and_resolution() -> None:
    if not ModelRegistry().find("segmentation", target="cloud"):
        pytest.skip("ukis-csmask is not installed")
    reg = ModelRegistry()
    names = [c.name for c in reg.find("segmentation", target="cloud", bands=S6)]
    assert names[:2] == ["ukis-csmask-6b-l1c", "ukis-csmask-6b-l2a"]  # the SWIR model first
    four = reg.find("segmentation", target="cloud", bands=S6 - {"swir16"}, product_level="l2a")
    assert [c.name for c in four] == ["ukis-csmask-4b-l2a"]
    assert reg.find("segmentation", target="cloud", bands={"red", "green", "blue"}) == []
    assert reg.find("segmentation", target="water", bands={"green"}) == []
    assert reg.find("detection") == []  # no local detector ships


def test_spectral_segmenter_scores_and_thresholds() -> None:
    card = get_model_card("ndwi")
    seg_model = ModelRegistry().segmenter(card)
    assert isinstance(seg_model, SpectralIndexSegmenter)
    green = np.array([[0.3, 0.1], [0.2, np.nan]], np.float32)
    nir = np.array([[0.1, 0.3], [0.2, 0.2]], np.float32)
    data = BandInput({"green": green, "nir": nir}, np.ones((2, 2), bool), 10.0, True, "l1c", "x")
    seg = seg_model.segment(data, "water")
    assert seg.mask.tolist() == [[True, False], [False, False]]
    assert seg.valid.tolist() == [[True, True], [True, False]]
    assert seg.threshold == 0.0 and seg.scores is not None
    assert seg_model.segment(data, "water", threshold=-0.6).mask.sum() == 3
    assert "McFeeters" in seg.method


def test_cloud_segmenter_picks_its_variant_from_the_data() -> None:
    reg = ModelRegistry()
    cards = reg.find("segmentation", target="cloud", bands=S6)
    if not cards:
        pytest.skip("ukis-csmask is not installed")
    rng = np.random.default_rng(0)
    bands = {b: rng.random((40, 40), dtype=np.float32) * 0.3 for b in sorted(S6)}
    data = BandInput(bands, np.ones((40, 40), bool), 30.0, True, "l2a", "surface reflectance")
    family = reg.segmenter(cards[0], exact=False, threads=1)
    seg = family.segment(data, "cloud_shadow")
    assert seg.card.name == "ukis-csmask-6b-l2a" and not seg.notes  # the data's level
    assert set(seg.classes) == {"cloud", "cloud_shadow"}
    assert (seg.mask == seg.classes["cloud_shadow"]).all()
    exact = reg.segmenter(get_model_card("ukis-csmask-6b-l1c"), threads=1)
    seg = exact.segment(data, "cloud", threshold=0.5)
    assert seg.card.name == "ukis-csmask-6b-l1c"
    assert any("expects l1c" in n for n in seg.notes) and any("threshold" in n for n in seg.notes)
    with pytest.raises(ModelInputError, match="reflectance"):
        family.segment(BandInput(bands, data.valid, 30.0, False, None, "8-bit"), "cloud")
    with pytest.raises(ModelInputError, match="blue, green, red, nir"):
        family.bands_for({"red", "green", "blue"})


class _FakeDetector:
    name = "fake-owl"

    def detect(self, picture: Picture8, query: str) -> Detections:
        return Detections(detections=[], model=self.name, seconds=0.0)


def test_a_detector_registers_by_capability() -> None:
    reg = ModelRegistry()
    card = ModelCard(
        name="fake-owl", version="1", task="detection", kind="transformers", targets=["object"],
        license="apache-2.0", source="test", inputs=["red", "green", "blue"], builtin=False,
    )  # fmt: skip
    with pytest.raises(ModelUnavailableError):
        reg.detector(card)  # not registered: no adapter runs it
    reg.register(card, lambda c: _FakeDetector())
    assert [c.name for c in reg.find("detection")] == ["fake-owl"]
    assert reg.find("segmentation", target="object") == []
    found = reg.detector(reg.find("detection")[0])
    assert found.detect(Picture8(b"", 1, 1), "ships").model == "fake-owl"
