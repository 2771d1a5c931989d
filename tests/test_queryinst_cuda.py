"""QueryInst's CUDA path gives the CPU's answers (runs only where a GPU is present; skipped elsewhere).
Not run on this project's CPU machine yet: no GPU was lent to the session that wrote it."""
import numpy as np
import pytest
import torch

from queryinst import Predictor, build_model
from queryinst.official import convert_state_dict

from queryinst_reference import case, case_utils, official_state_dict

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_reference_case_on_cuda_matches_the_official_outputs():
    config = "queryinst_r50_fpn_1x_coco"
    model = build_model("R50-1x").eval()
    model.load_state_dict(convert_state_dict(official_state_dict(config))[0], strict=True)
    model = model.cuda()
    ref = case(config, 0)
    with torch.no_grad():
        batch, sizes = model.preprocess([case_utils().resized_image(ref)])
        out = model(batch, sizes)
    last = out["stages"][-1]
    assert torch.allclose(last["boxes"][0].cpu(), ref["stage5.decoded_bboxes"], rtol=0, atol=5e-2)
    assert torch.allclose(last["class_logits"][0].cpu(), ref["stage5.cls_score"], rtol=1e-3, atol=2e-3)


def test_predictor_auto_picks_cuda_and_agrees_with_cpu():
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=3)
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    gpu = Predictor(model, ["a", "b", "c"], device="auto")
    assert gpu.device.type == "cuda"
    a = gpu.predict(image)
    b = Predictor(model.cpu(), ["a", "b", "c"], device="cpu").predict(image)
    assert np.abs(a.scores[:5] - b.scores[:5]).max() < 1e-3
    assert a.explanation.layer_masks(int(a.query_indices[0])).shape == (model.num_stages, 240, 320)
