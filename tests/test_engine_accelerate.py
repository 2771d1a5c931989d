"""The GPU options of the fast path, on CPU: size buckets, padding, fallbacks (fastinst.cuda)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fastinst import Predictor, build_model
from fastinst.cuda import AcceleratedForward, CudaConfig, bucket_for, pad_to, to_device
from fastinst.fast import optimize_for_inference, prepare_batch

NAMES = ["a", "b", "c"]


def test_bucket_is_the_smallest_that_holds_the_batch():
    buckets = [(576, 768), (768, 576), (576, 576), (800, 800)]
    assert bucket_for((576, 768), buckets) == (576, 768)
    assert bucket_for((544, 544), buckets) == (576, 576)
    assert bucket_for((608, 576), buckets) == (768, 576)
    assert bucket_for((608, 608), buckets) == (800, 800)
    assert bucket_for((832, 32), buckets) is None


def test_pad_to_zero_pads_bottom_right_and_keeps_channels_last():
    batch = torch.randn(2, 3, 64, 96).contiguous(memory_format=torch.channels_last)
    padded = pad_to(batch, (96, 128))
    assert padded.shape == (2, 3, 96, 128) and padded.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(padded[..., :64, :96], batch) and padded[..., 64:, :].abs().sum() == 0
    assert pad_to(batch, (64, 96)) is batch
    with pytest.raises(ValueError, match="cannot pad"):
        pad_to(batch, (32, 96))


def test_config_is_validated():
    with pytest.raises(ValueError, match="amp must be one of"):
        CudaConfig(amp="int8")
    with pytest.raises(ValueError, match="not a multiple of 32"):
        CudaConfig(buckets=((100, 128),))


def test_on_cpu_every_option_falls_back_to_the_plain_fast_path():
    torch.manual_seed(0)
    model = optimize_for_inference(build_model("tiny", num_classes=3))
    accelerated = AcceleratedForward(model, CudaConfig(amp="fp16", compile=True, buckets=((128, 160),)))
    assert accelerated.dtype is None and accelerated.padded_size((96, 128)) == (96, 128)
    assert not hasattr(model.backbone, "_orig_mod")  # not compiled on CPU
    batch, _ = model.preprocess([torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)])
    with torch.no_grad():
        out, size = accelerated(batch)
        plain = model(prepare_batch(model, batch))
    assert size == (96, 128) and torch.equal(out["pred_masks"], plain["pred_masks"])
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    assert to_device(image, torch.device("cpu")) is image


def test_predictor_with_gpu_options_on_cpu_gives_the_same_prediction():
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=3)
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    a = Predictor(model, NAMES, device="cpu", cuda=CudaConfig(buckets=((128, 160),))).predict(image)
    b = Predictor(model, NAMES, device="cpu").predict(image)
    assert np.array_equal(a.masks, b.masks) and np.array_equal(a.scores, b.scores)
