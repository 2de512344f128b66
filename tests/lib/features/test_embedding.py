import subprocess
import sys

import numpy as np
import pytest
import torch

from dedup_pipeline.lib.features.embedding import (
    EfficientNetLite0,
    folded_for_inference,
    load_embedder,
    preferred_batch_size,
    pretrained_lite0,
)
from tests.conftest import smooth_picture


@pytest.fixture(scope="module")
def model():
    return load_embedder("efficientnet-lite0", image_size=96)


def test_default_model_loads_offline_and_gives_unit_vectors(model) -> None:
    pictures = np.stack([np.asarray(smooth_picture(seed, size=(96, 96))) for seed in range(3)])
    vectors = model.embed(pictures)
    assert vectors.shape == (3, model.dimension) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_copies_are_closer_than_different_pictures(model) -> None:
    original = np.asarray(smooth_picture(10, size=(96, 96)))
    brighter = np.clip(original.astype(int) + 20, 0, 255).astype(np.uint8)
    other = np.asarray(smooth_picture(11, size=(96, 96)))
    a, b, c = model.embed(np.stack([original, brighter, other]))
    assert a @ b > a @ c


def test_unknown_and_disabled_models() -> None:
    assert load_embedder("none") is None
    with pytest.raises(ValueError, match="unknown embedding model"):
        load_embedder("resnet-9000")


def test_import_path_plugs_in_a_model() -> None:
    embedder = load_embedder("tests.lib.features.test_extraction:plugin_factory")
    assert embedder.name == "mean-colour"


def test_embedding_does_not_depend_on_the_batch(model) -> None:
    pictures = np.stack([np.asarray(smooth_picture(seed, size=(96, 96))) for seed in range(5)])
    together = model.embed(pictures)
    alone = np.concatenate([model.embed(pictures[k : k + 1]) for k in range(5)])
    assert np.allclose(together, alone, atol=1e-4)


def test_preferred_batch_size_shrinks_with_the_input() -> None:
    assert [preferred_batch_size(side) for side in (32, 64, 224, 1024)] == [128, 64, 8, 1]


def test_folding_batch_norms_and_padding_keeps_the_network_s_output() -> None:
    original = pretrained_lite0()
    folded = folded_for_inference(pretrained_lite0())
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in folded.modules())
    batch = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, 72, 72)).astype(np.float32))
    with torch.inference_mode():
        expected, found = (model.extract_features(batch) for model in (original, folded))
    assert torch.allclose(found, expected, atol=1e-3, rtol=1e-3)


def test_the_exported_network_computes_what_its_torch_definition_does(model) -> None:
    if model.low_precision:
        pytest.skip("this CPU runs the model in bfloat16 in torch, not the exported float32 network")
    pictures = np.stack([np.asarray(smooth_picture(seed, size=(96, 96))) for seed in range(3)])
    network = folded_for_inference(pretrained_lite0())
    batch = (torch.from_numpy(pictures).permute(0, 3, 1, 2).float() - 127.0) / 128.0
    with torch.inference_mode():
        expected = network.extract_features(batch).mean(dim=(2, 3)).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(model.embed(pictures), expected, atol=1e-5)


def test_the_model_is_exported_once_and_then_loaded_without_torch(model_cache) -> None:
    EfficientNetLite0(64, precision="float32")
    exported = sorted(model_cache.glob("efficientnet-lite0-*.onnx"))
    assert len(exported) == 1
    script = "import sys; from dedup_pipeline.lib.features.embedding import EfficientNetLite0; "
    script += "EfficientNetLite0(64, precision='float32'); print('torch' in sys.modules)"
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert finished.stdout.strip() == "False"
    assert sorted(model_cache.glob("efficientnet-lite0-*.onnx")) == exported
