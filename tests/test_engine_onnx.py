"""ONNX export round trip: the exported graph run by onnxruntime gives PyTorch's outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fastinst import build_model
from fastinst.official import convert_state_dict
from fastinst.onnx_export import OnnxModel, export_onnx
from fastinst.postprocess import MaskResize, instance_inference_lowres

from reference import case, official_state_dict

pytest.importorskip("onnxruntime")


def _compare(ort_out: dict, torch_out: dict) -> None:
    assert torch.equal(ort_out["query_indices"], torch_out["query_indices"])
    for key in ("pred_logits", "proposal_logits", "pred_masks"):
        torch.testing.assert_close(ort_out[key], torch_out[key], rtol=1e-4, atol=5e-4, msg=key)
    for mine, theirs in zip(ort_out["heads"], torch_out["heads"]):
        torch.testing.assert_close(mine["pred_masks"], theirs["pred_masks"], rtol=1e-4, atol=5e-4)


def test_tiny_round_trip_through_onnxruntime(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=3).eval()
    path = export_onnx(model, tmp_path / "tiny.onnx", height=96, width=128)
    runner = OnnxModel(path)
    image = torch.randint(0, 255, (3, 90, 128), dtype=torch.uint8)  # padded to 96x128 by preprocess
    batch, sizes = model.preprocess([image])
    with torch.no_grad():
        expected = model(batch)
    got = runner(batch)
    _compare(got, expected)
    resize = MaskResize.official((12, 16), (96, 128), sizes[0], (180, 256))
    a = instance_inference_lowres(got["pred_logits"][0], got["pred_masks"][0], resize, topk=20)
    b = instance_inference_lowres(expected["pred_logits"][0], expected["pred_masks"][0], resize, topk=20)
    assert torch.equal(a.query_indices, b.query_indices) and torch.equal(a.classes, b.classes)
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=2e-4)
    assert (a.masks != b.masks).float().mean() < 1e-4
    with pytest.raises(ValueError, match="takes 96x128 inputs"):
        runner(torch.zeros(1, 3, 128, 96))


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
