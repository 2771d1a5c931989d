"""The engine against the official FastInst outputs stored in ../shared/reference.

Every config and case, on both inference paths: strict loading of the official-format weights,
then each recorded stage within the tolerances the reference README derives from thread-count
noise. ``straight`` is the official computation as written; ``fast`` is the Predictor's fast path
(norms folded into the convolutions, channels-last, instance masks resized inside their boxes).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fastinst import build_model
from fastinst.fast import optimize_for_inference, prepare_batch
from fastinst.model import upsample_masks
from fastinst.official import check_compatible, convert_state_dict
from fastinst.postprocess import MaskResize, instance_inference, instance_inference_lowres
from fastinst.query_proposal import local_maximum, selection_scores

from reference import CONFIGS, case, manifest, official_state_dict

CASES = [(config, index) for config in CONFIGS for index in (0, 1)]
# "fast@1": the fast path with 1 thread (the others run with 2): results must not depend on the
# thread count beyond the tolerances
PATHS = ("straight", "fast", "fast@1")
RUNS = [(config, index, path) for config, index in CASES for path in PATHS if path != "fast@1" or index == 0]


@pytest.fixture(scope="module")
def models():
    """One loaded model per config, built lazily (the weight filler takes a few seconds)."""
    cache = {}

    def get(config: str, path: str = "straight"):
        if config not in cache:
            model = build_model(CONFIGS[config]).eval()
            state = convert_state_dict(official_state_dict(config))
            check_compatible(model, state, config)
            model.load_state_dict(state, strict=True)
            cache[config] = model
        if path != "straight" and (config, "fast") not in cache:
            cache[(config, "fast")] = optimize_for_inference(cache[config])
        return cache[config] if path == "straight" else cache[(config, "fast")]

    return get


@pytest.fixture(scope="module")
def runs(models):
    """Run each (config, case, path) once; the straight path also in train mode (for the virtual
    class logits, which the inference-only fast path does not compute)."""
    cache = {}

    def get(config: str, index: int, path: str):
        key = (config, index, path)
        if key not in cache:
            threads = torch.get_num_threads()
            torch.set_num_threads(1 if path == "fast@1" else 2)
            model, ref = models(config, path), case(config, index)
            train_out = None
            try:
                with torch.no_grad():
                    batch, sizes = model.preprocess([ref["image"]])
                    batch = prepare_batch(model, batch)
                    features = model.backbone(batch)
                    out = model(batch)
                    if path == "straight":
                        model.train()
                        try:
                            train_out = model(batch)
                        finally:
                            model.eval()
            finally:
                torch.set_num_threads(threads)
            cache[key] = (ref, batch, sizes, features, out, train_out)
        return cache[key]

    return get


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float, what: str) -> None:
    actual, expected = actual.float(), expected.float()
    assert actual.shape == expected.shape, what
    err = (actual - expected).abs().max().item()
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), f"{what}: max abs diff {err:.3g}"


@pytest.mark.parametrize("config", list(CONFIGS))
def test_parameter_count_and_strict_load(config, models):
    model = models(config)
    trainable = sum(p.numel() for p in model.parameters())
    assert trainable == manifest(config)["num_parameters"]


@pytest.mark.parametrize("config,index,path", RUNS)
def test_backbone_and_pixel_decoder(config, index, path, runs):
    ref, batch, _, features, out, _ = runs(config, index, path)
    assert tuple(batch.shape[-2:]) == tuple(ref["meta"]["padded_size"])
    for name in ("res2", "res3", "res4", "res5"):
        close(features[name], ref[f"backbone.{name}"], 1e-3, 2e-3, name)
    for i in range(3):
        close(out["features"][i], ref[f"pixel_decoder.out{i}"], 1e-4, 1e-4, f"pixel_decoder.out{i}")


@pytest.mark.parametrize("config,index,path", RUNS)
def test_query_proposal(config, index, path, runs):
    ref, _, _, _, out, _ = runs(config, index, path)
    logits = out["proposal_logits"]
    close(logits, ref["proposal.cls_logits"], 1e-4, 1e-4, "proposal logits")
    close(selection_scores(logits), ref["proposal.selection_score"], 1e-4, 1e-4, "selection score")
    probs = logits.softmax(1)[:, :-1]
    best = probs.argmax(1, keepdim=True)
    masked = torch.zeros_like(probs).scatter_(1, best, probs.gather(1, best))
    assert torch.equal(local_maximum(masked).gather(1, best)[:, 0], ref["proposal.local_max"])
    assert torch.equal(out["query_indices"], ref["proposal.topk_indices"])


@pytest.mark.parametrize("config,index,path", RUNS)
def test_decoder_layers_and_heads(config, index, path, runs):
    ref, _, _, _, out, train_out = runs(config, index, path)
    num_layers = len(out["heads"]) - 1
    for j, head in enumerate(out["heads"]):
        close(head["pred_masks"], ref[f"decoder.head{j}.pred_masks"], 1e-4, 5e-4, f"head {j} masks")
    for i, queries in enumerate(out["layer_queries"]):
        close(queries, ref[f"decoder.layer{i}.query_features"], 1e-4, 1e-4, f"layer {i} queries")
    close(out["pred_logits"], ref[f"decoder.head{num_layers}.pred_logits"], 1e-4, 1e-4, "final logits")
    for j in range(num_layers):
        assert out["heads"][j]["pred_logits"] is None  # the official eval path skips them
        if train_out is None:
            continue
        close(train_out["heads"][j]["pred_logits"], ref[f"decoder.head{j}.pred_logits_virtual"], 1e-4, 1e-4,
              f"head {j} training-mode logits")


@pytest.mark.parametrize("config,index,path", RUNS)
def test_instances(config, index, path, runs):
    ref, batch, sizes, _, out, _ = runs(config, index, path)
    meta = ref["meta"]
    output_size = tuple(meta["output_size"]) if meta["height_width_passed_to_model"] else None
    if path == "straight":
        logits = upsample_masks(out["pred_masks"][0], tuple(batch.shape[-2:]), sizes[0], output_size)
        inst = instance_inference(out["pred_logits"][0], logits, topk=100)
    else:
        resize = MaskResize.official(tuple(out["pred_masks"].shape[-2:]), tuple(batch.shape[-2:]), sizes[0], output_size)
        inst = instance_inference_lowres(out["pred_logits"][0], out["pred_masks"][0], resize, topk=100)
    flat = inst.query_indices * 80 + inst.classes
    mine = torch.argsort(flat)
    theirs = ref["instances.canonical_order"]
    assert torch.equal(flat[mine], ref["instances.flat_indices"][theirs])
    close(inst.scores[mine], ref["instances.scores"][theirs], 0.0, 2e-4, "instance scores")
    width = inst.masks.shape[-1]
    expected = np.unpackbits(ref["instances.pred_masks_packed"].numpy(), axis=-1, count=width).astype(bool)
    ambiguous = np.zeros(expected.size, dtype=bool)
    ambiguous[ref["instances.ambiguous_pixels"].numpy()] = True
    ambiguous = ambiguous.reshape(expected.shape)[theirs.numpy()]
    differ = inst.masks[mine].numpy() != expected[theirs.numpy()]
    assert not (differ & ~ambiguous).any(), f"{int((differ & ~ambiguous).sum())} mask pixels differ"
    assert scores_sorted(inst.scores)


def scores_sorted(scores: torch.Tensor) -> bool:
    return bool((scores[:-1] >= scores[1:]).all())
