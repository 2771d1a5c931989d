"""ONNX export round trip: the exported graph run by onnxruntime gives PyTorch's outputs, and the
Predictor's onnxruntime backend gives the torch backend's predictions."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fastinst import Predictor, build_model
from fastinst.official import convert_state_dict
from fastinst.onnx_export import OnnxModel, export_onnx
from fastinst.postprocess import MaskResize, instance_inference_lowres

from reference import case, official_state_dict

pytest.importorskip("onnxruntime")

NAMES = ["a", "b", "c"]


def _compare(ort_out: dict, torch_out: dict) -> None:
    assert torch.equal(ort_out["query_indices"], torch_out["query_indices"])
    for key in ("pred_logits", "proposal_logits", "pred_masks"):
        torch.testing.assert_close(ort_out[key], torch_out[key], rtol=1e-4, atol=5e-4, msg=key)
    for mine, theirs in zip(ort_out["heads"], torch_out["heads"]):
        torch.testing.assert_close(mine["pred_masks"], theirs["pred_masks"], rtol=1e-4, atol=5e-4)


@pytest.fixture(scope="module")
def predictors():
    """A tiny model's torch and onnxruntime Predictors; the 240x320 test image is exported once
    (96x128 input) and shared by the tests below."""
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=3).eval()
    return (Predictor(model, NAMES, device="cpu"), Predictor(model, NAMES, device="auto", backend="onnxruntime"))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.full((240, 320, 3), 40, np.uint8)
    img[60:160, 80:200] = (200, 50, 50)
    img[150:220, 220:300] = (40, 160, 220)
    return np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)


def test_tiny_round_trip_through_onnxruntime(predictors, image):
    torch_predictor, ort_predictor = predictors
    batch, sizes = torch_predictor.model.preprocess([torch_predictor.prepare(image)[0]])
    assert tuple(batch.shape[-2:]) == (96, 128)
    with torch.no_grad():
        expected = torch_predictor.model(batch)
    got = ort_predictor.onnx(batch)
    _compare(got, expected)
    resize = MaskResize.official((12, 16), (96, 128), sizes[0], (180, 256))
    a = instance_inference_lowres(got["pred_logits"][0], got["pred_masks"][0], resize, topk=20)
    b = instance_inference_lowres(expected["pred_logits"][0], expected["pred_masks"][0], resize, topk=20)
    assert torch.equal(a.query_indices, b.query_indices) and torch.equal(a.classes, b.classes)
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=2e-4)
    assert (a.masks != b.masks).float().mean() < 1e-4
    runner = next(iter(ort_predictor.onnx.sessions.values()))
    with pytest.raises(ValueError, match="takes 96x128 inputs"):
        runner(torch.zeros(1, 3, 128, 96))


def test_onnxruntime_backend_predicts_what_torch_predicts(predictors, image):
    """Same instances (queries and classes), scores within 2e-4 (the reference tolerance), masks
    that differ on at most 1e-4 of the pixels, same explanation tensors within 5e-4."""
    torch_predictor, ort_predictor = predictors
    assert ort_predictor.device.type == "cpu" and ort_predictor.backend == "onnxruntime"
    a, b = torch_predictor.predict(image), ort_predictor.predict(image)
    assert len(a) == len(b) == 96  # 32 queries x 3 classes
    assert np.array_equal(a.query_indices, b.query_indices) and np.array_equal(a.classes, b.classes)
    np.testing.assert_allclose(b.scores, a.scores, rtol=0, atol=2e-4)
    assert (a.masks != b.masks).mean() < 1e-4
    torch.testing.assert_close(b.explanation.head_mask_logits, a.explanation.head_mask_logits, rtol=1e-4, atol=5e-4)
    kept = ort_predictor.predict(image, min_score=0.02)
    assert np.array_equal(kept.query_indices, b.filter(0.02).query_indices)
    assert len(ort_predictor.onnx.sessions) == 1  # one export for the one input size


def test_onnxruntime_keeps_few_sessions_open_over_many_sizes(predictors, image):
    """Images of several sizes: at most ``max_sessions`` sessions stay open (each holds the
    weights); a size seen before is reopened from its exported file with the same results."""
    torch_predictor, ort_predictor = predictors
    forward = ort_predictor.onnx
    first = ort_predictor.predict(image)
    for shape in ((240, 240, 3), (320, 240, 3)):            # two more padded input sizes
        ort_predictor.predict(np.ascontiguousarray(np.resize(image, shape)))
    assert len(forward.sessions) == forward.max_sessions == 2
    again = ort_predictor.predict(image)
    assert np.array_equal(again.query_indices, first.query_indices) and np.array_equal(again.masks, first.masks)
    assert len(list(forward.cache_dir.glob("*.onnx"))) == 3    # exported once each


def test_onnxruntime_backend_refuses_what_it_cannot_run():
    model = build_model("tiny", num_classes=3)
    with pytest.raises(ValueError, match="fast=True"):
        Predictor(model, NAMES, device="cpu", fast=False, backend="onnxruntime")
    with pytest.raises(ValueError, match="unknown backend"):
        Predictor(model, NAMES, backend="tensorrt")


def test_export_refuses_unpadded_sizes(tmp_path):
    with pytest.raises(ValueError, match="multiple of 32"):
        export_onnx(build_model("tiny", num_classes=3), tmp_path / "x.onnx", height=100, width=128)


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_d1_reference_cases_through_onnxruntime(index, tmp_path):
    config = "fastinst_R50_ppm-fpn_x1_576"
    ref = case(config, index)
    model = build_model("D1-R50-576").eval()
    model.load_state_dict(convert_state_dict(official_state_dict(config)), strict=True)
    batch, _ = model.preprocess([ref["image"]])
    path = export_onnx(model, tmp_path / "d1.onnx", height=batch.shape[-2], width=batch.shape[-1])
    out = OnnxModel(path)(batch)
    assert torch.equal(out["query_indices"], ref["proposal.topk_indices"])
    torch.testing.assert_close(out["proposal_logits"], ref["proposal.cls_logits"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["pred_logits"], ref["decoder.head1.pred_logits"], rtol=1e-4, atol=1e-4)
    for j, head in enumerate(out["heads"]):
        torch.testing.assert_close(head["pred_masks"], ref[f"decoder.head{j}.pred_masks"], rtol=1e-4, atol=5e-4)


def test_cli_backend_onnxruntime_refuses_a_gpu_in_one_line(tmp_path, image, capsys):
    from PIL import Image

    from fastinst.cli import main

    Image.fromarray(image).save(tmp_path / "a.png")
    code = main(["predict", str(tmp_path / "a.png"), "--weights", str(tmp_path / "m.safetensors"),
                 "--out", str(tmp_path / "out"), "--backend", "onnxruntime", "--device", "cuda"])
    assert code == 2 and "--backend onnxruntime runs on the CPU" in capsys.readouterr().err


def test_exports_of_a_killed_process_are_removed(predictors, tmp_path):
    """A process killed with its exported graphs in the temporary folder never cleaned them up: the
    next backend removes the folders of processes that no longer run, not those of live ones."""
    import subprocess
    import tempfile

    from fastinst.onnx_export import OnnxForward

    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = Path(tempfile.mkdtemp(prefix=f"fastinst-onnx-{dead.pid}-"))
    (orphan / "fastinst_b1_96x128.onnx").write_bytes(b"x" * 1000)
    alive = Path(tempfile.mkdtemp(prefix=f"fastinst-onnx-{os.getppid()}-"))
    try:
        OnnxForward(predictors[0].model)
        assert not orphan.exists() and alive.exists()
    finally:
        shutil.rmtree(alive, ignore_errors=True)
        shutil.rmtree(orphan, ignore_errors=True)
