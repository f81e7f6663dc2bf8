"""The model registry: every entry is checked (new entries get these tests for free)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from models.registry import (
    ModelCard,
    TransformersSegmenter,
    UnknownModelError,
    get_model_card,
    list_models,
    load_transformers_segmenter,
    models_for_target,
    transformers_local_card,
    weights_sha256,
)

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
    prov = card.provenance()
    assert {"name", "version", "license", "weights_sha256"} <= set(prov)
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
    assert [c.name for c in models_for_target("water")] == ["ndwi"]
    assert {c.name for c in models_for_target("cloud")} >= {"ukis-csmask-6b-l1c"}


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
    seg = load_transformers_segmenter(card)
    assert seg.labels == {0: "background", 1: "water"}
    rgb = np.random.default_rng(1).random((70, 90, 3)).astype(np.float32)
    pred = seg.predict(rgb)
    assert pred.shape == (70, 90)
    assert set(np.unique(pred)) <= {0, 1}
    # Tiling gives full coverage and the same shape.
    tiled = TransformersSegmenter(tiny_segformer, tile=32).predict(rgb)
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
