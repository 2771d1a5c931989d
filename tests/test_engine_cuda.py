"""The CUDA path gives the CPU's answers (runs only where a GPU is present; skipped elsewhere)."""
import numpy as np
import pytest
import torch

from fastinst import Predictor, build_model
from fastinst.official import convert_state_dict

from reference import case, official_state_dict

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_reference_case_on_cuda_matches_the_official_outputs():
    config = "fastinst_R50-vd-dcn_ppm-fpn_x3_640"  # DCN: the one op that changes kernel on CUDA
    model = build_model("D3-R50d-DCN-640").eval()
    model.load_state_dict(convert_state_dict(official_state_dict(config)), strict=True)
    model = model.cuda()
    ref = case(config, 0)
    with torch.no_grad():
        batch, _ = model.preprocess([ref["image"]])
        out = model(batch)
    assert torch.equal(out["query_indices"].cpu(), ref["proposal.topk_indices"])
    final = len(out["heads"]) - 1
    assert torch.allclose(out["pred_masks"].cpu(), ref[f"decoder.head{final}.pred_masks"], rtol=1e-3, atol=5e-3)


def test_predictor_auto_picks_cuda_and_agrees_with_cpu():
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=3)
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    gpu = Predictor(model, ["a", "b", "c"], device="auto")
    assert gpu.device.type == "cuda"
    a = gpu.predict(image)
    b = Predictor(model.cpu(), ["a", "b", "c"], device="cpu").predict(image)
    assert np.abs(a.scores[:5] - b.scores[:5]).max() < 1e-3


def test_gpu_fast_path_with_autocast_buckets_and_cuda_graphs_agrees_with_cpu():
    from fastinst.cuda import CudaConfig

    torch.manual_seed(0)
    model = build_model("tiny", num_classes=3)
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    cpu = Predictor(model, ["a", "b", "c"], device="cpu").predict(image)
    for amp in ("none", "bf16"):
        gpu = Predictor(model, ["a", "b", "c"], device="cuda", cuda=CudaConfig(amp=amp, buckets=((96, 128), (128, 128))))
        first, second = gpu.predict(image), gpu.predict(image)  # second call replays the CUDA graph
        assert np.array_equal(first.scores, second.scores)
        assert first.masks.shape == cpu.masks.shape
        assert np.abs(first.scores[:5] - cpu.scores[:5]).max() < (5e-2 if amp == "bf16" else 1e-2)
        padded = gpu.predict(np.ascontiguousarray(image[:80]))  # 80x128 runs in the 96x128 bucket
        assert padded.masks.shape[1:] == (80, 128) and padded.explanation.geometry.padded == (96, 128)
