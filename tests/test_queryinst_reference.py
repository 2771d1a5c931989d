"""QueryInst against the official mmdetection 3.3.0 outputs in ../shared/reference/queryinst.

Every config and case: strict loading of the official-format weights, the test pipeline, then
every recorded stage within the tolerances the reference README derives from thread-count noise:
backbone and FPN maps, proposals, each stage's RoI levels (exactly), RoI features, attention and
object features, class logits, deltas, refined boxes and every stage's own mask logits, and the
final instances (flat indices exactly; masks exact outside the ambiguous pixels).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fastinst.official import check_compatible
from queryinst.official import convert_state_dict
from queryinst.postprocess import instance_inference
from queryinst.presets import build_model
from queryinst.roi import boxes_to_rois, multilevel_roi_align, roi_levels
from queryinst.transforms import resize_keep_ratio

from queryinst_reference import CONFIGS, case, case_utils, manifest, official_state_dict

# Case 1 (the portrait image) of each config runs with -m slow: a case costs ~40-80 s on the shared
# 2-core machine (R50 at 800x1088 plus six stages of mask heads), and the default suite has a budget.
CASES = [pytest.param(config, index, marks=[pytest.mark.slow] if index else [])
         for config in CONFIGS for index in (0, 1)]
ALL_CASES = [(config, index) for config in CONFIGS for index in (0, 1)]


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(config: str):
        if config not in cache:
            cache.clear()  # one 0.7 GB model at a time
            model = build_model(CONFIGS[config]).eval()
            state, unknown = convert_state_dict(official_state_dict(config))
            assert not unknown
            check_compatible(model, state, config)
            model.load_state_dict(state, strict=True)
            cache[config] = model
        return cache[config]

    return get


def _stats(x: torch.Tensor) -> torch.Tensor:
    """[sum, sum of squares] per row, float64 (how the reference made ``row_stats``)."""
    x = x.detach().double().flatten(1)
    return torch.stack([x.sum(1), (x * x).sum(1)], 1)


def _run(model, ref, full: bool) -> dict:
    """One forward of the reference case, reduced to what the reference stores.

    ``full=False`` (default suite): stages 0..S-2 run their mask heads on the first QW queries (all
    that ``class_mean``/``sel`` cover), the last stage on all N. ``full=True``: every stage on all N.
    """
    qw, qm = ref["meta"]["QW"], ref["meta"]["QM"]
    cu = case_utils()
    with torch.no_grad():
        batch, sizes = model.preprocess([cu.resized_image(ref)])
        maps = model.backbone(batch)
        out = model(batch, sizes, mask_stages="all" if full else "last")
        feats = out["features"]
        channels = ref["fpn.sub_channels"]
        got = {"batch": batch,
               "backbone": [(cu.chan_stats(maps[k]), maps[k][:, :1]) for k in ("res2", "res3", "res4", "res5")],
               "fpn": [(cu.chan_stats(x), x[:, channels]) for x in feats],
               "proposals": out["proposal_boxes"][0], "stages": []}
        del maps
        last = len(out["stages"]) - 1
        for s, st in enumerate(out["stages"]):
            rec = {k: st[k][0] for k in ("rois", "boxes", "class_logits", "deltas", "attn_feats", "object_feats")}
            box_feats = model.box_roi_features(feats, st["rois"])
            mask_rois = boxes_to_rois(st["boxes"])
            mask_feats = multilevel_roi_align(feats, mask_rois, model.strides, model.mask_roi_size)
            if "mask_logits" in st:
                logits = st["mask_logits"][0]
            else:
                logits = model.mask_forward(s, feats, mask_rois[:qw], st["attn_feats"][0, :qw])
            sample = int(ref[f"stage{s}.bbox_roi_feats.sample_idx"][0])
            sel_class = st["class_logits"][0, :qm].argmax(1)
            rec.update(
                roi_levels=roi_levels(boxes_to_rois(st["rois"]), 4), mask_roi_levels=roi_levels(mask_rois, 4),
                box_feats_mean=box_feats[:qw].mean(1), box_feats_stats=_stats(box_feats),
                box_feats_sample=box_feats[sample:sample + 1],
                mask_feats_mean=mask_feats[:qw].mean(1), mask_feats_stats=_stats(mask_feats),
                mask_class_mean=logits[:qw].mean((2, 3)), mask_stats=_stats(logits),
                sel_class=sel_class, sel=logits[torch.arange(qm), sel_class])
            got["stages"].append(rec)
        meta = ref["meta"]
        st = out["stages"][last]
        got["instances"] = instance_inference(
            st["class_logits"][0], st["boxes"][0], st["mask_logits"][0], tuple(meta["scale_factor"]),
            tuple(meta["ori_shape"]), max_per_img=model.num_proposals)
    return got


@pytest.fixture(scope="module")
def runs(models):
    """Each (config, case) runs once; the reduced outputs are kept (a few MB each)."""
    cache = {}

    def get(config: str, index: int, full: bool = False):
        key = (config, index, full)
        if key not in cache:
            # One thread: the README bounds 1-vs-2-thread differences within the tolerances used
            # here, and two spinning threads on the shared 2-core machine were several times slower.
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                ref = case(config, index)
                cache[key] = (ref, _run(models(config), ref, full))
            finally:
                torch.set_num_threads(before)
        return cache[key]

    return get


def close(actual, expected, rtol: float, atol: float, what: str) -> None:
    actual, expected = actual.float(), expected.float()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    err = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), f"{what}: max abs diff {err:.3g}"


def close_stats(actual: torch.Tensor, expected: torch.Tensor, count: int, what: str) -> None:
    """Compare [sum, sumsq] rows as mean (atol 1e-4) and rms (rtol 1e-5), the README's rule."""
    close(actual[:, 0] / count, expected[:, 0] / count, 0, 1e-4, f"{what} mean")
    close((actual[:, 1] / count).sqrt(), (expected[:, 1] / count).sqrt(), 1e-5, 1e-7, f"{what} rms")


@pytest.mark.parametrize("config", list(CONFIGS))
def test_parameter_count_and_strict_load(config, models):
    model = models(config)
    assert sum(p.numel() for p in model.parameters()) == manifest(config)["num_parameters"]
    assert sum(t.numel() for t in model.state_dict().values()) == manifest(config)["num_state_dict_elements"]


@pytest.mark.parametrize("index", [0, 1])
def test_test_pipeline_resize_and_input(index):
    """Our resize reproduces the official resized image bit for bit; preprocess gives the official input."""
    ref = case(next(iter(CONFIGS)), index)
    cu = case_utils()
    resized, scale = resize_keep_ratio(ref["image"].permute(1, 2, 0).numpy(), 800, 1333)
    assert np.array_equal(resized, cu.resized_image(ref).permute(1, 2, 0).numpy())
    assert scale == pytest.approx(tuple(ref["meta"]["scale_factor"]), abs=1e-12)
    model = build_model("tiny")  # same normalisation and padding as every preset
    batch, _ = model.preprocess([torch.from_numpy(resized).permute(2, 0, 1)])
    assert torch.equal(batch, cu.model_input(ref))


@pytest.mark.parametrize("config,index", CASES)
def test_backbone_fpn_and_proposals(config, index, runs):
    ref, got = runs(config, index)
    for level, (stats, ch0) in zip(range(2, 6), got["backbone"]):
        close_stats(stats, ref[f"backbone.c{level}.chan_stats"], ch0[0, 0].numel(), f"C{level}")
        close(ch0, ref[f"backbone.c{level}.ch0"], 1e-3, 4e-3, f"C{level} channel 0")
    for level, (stats, sub) in zip(range(2, 6), got["fpn"]):
        close_stats(stats, ref[f"fpn.p{level}.chan_stats"], sub[0, 0].numel(), f"P{level}")
        close(sub, ref[f"fpn.p{level}.sub"], 1e-3, 4e-3, f"P{level} channels")
    close(got["proposals"], ref["proposals.boxes"], 0, 5e-3, "proposal boxes")


def check_stages(ref: dict, got: dict) -> None:
    for s, st in enumerate(got["stages"]):
        p = f"stage{s}."
        qw = ref[p + "attn_feats"].shape[0]
        close(st["rois"], ref[p + "rois"], 0, 5e-3, p + "rois")
        assert torch.equal(st["roi_levels"], ref[p + "roi_levels"]), p + "roi_levels"
        close(st["box_feats_mean"], ref[p + "bbox_roi_feats.spatial_mean"], 1e-4, 1e-4, p + "box RoI features")
        close_stats(st["box_feats_stats"], ref[p + "bbox_roi_feats.row_stats"], 256 * 49, p + "box RoI rows")
        close(st["box_feats_sample"], ref[p + "bbox_roi_feats.sample"], 1e-4, 1e-4, p + "box RoI sample")
        for name in ("attn_feats", "object_feats"):
            close(st[name][:qw], ref[p + name], 1e-4, 1e-4, p + name)
            close_stats(_stats(st[name]), ref[p + name + ".row_stats"], 256, p + name + " rows")
        close(st["class_logits"], ref[p + "cls_score"], 1e-4, 2e-4, p + "class logits")
        close(st["deltas"], ref[p + "bbox_delta"], 1e-4, 2e-4, p + "deltas")
        close(st["boxes"], ref[p + "decoded_bboxes"], 0, 5e-3, p + "refined boxes")
        assert torch.equal(st["mask_roi_levels"], ref[p + "mask_roi_levels"]), p + "mask_roi_levels"
        close(st["mask_feats_mean"], ref[p + "mask_roi_feats.spatial_mean"], 1e-4, 1e-4, p + "mask RoI features")
        close_stats(st["mask_feats_stats"], ref[p + "mask_roi_feats.row_stats"], 256 * 196, p + "mask RoI rows")
        close(st["mask_class_mean"], ref[p + "mask_logits.class_mean"], 1e-4, 5e-4, p + "mask logits class mean")
        rows = st["mask_stats"].shape[0]  # QW or N queries (see _run)
        close_stats(st["mask_stats"], ref[p + "mask_logits.row_stats"][:rows], 80 * 784, p + "mask logit rows")
        assert torch.equal(st["sel_class"], ref[p + "mask_logits.sel_class"]), p + "sel_class"
        close(st["sel"], ref[p + "mask_logits.sel"], 1e-4, 5e-4, p + "mask logits")


@pytest.mark.parametrize("config,index", CASES)
def test_every_stage(config, index, runs):
    check_stages(*runs(config, index))


@pytest.mark.slow
@pytest.mark.parametrize("config,index", ALL_CASES)
def test_every_stage_mask_head_on_all_queries(config, index, runs):
    """Every stage's mask head on all N queries (the default test covers the first QW of stages 0..4)."""
    ref, got = runs(config, index, full=True)
    assert all(st["mask_stats"].shape[0] == ref["stage0.rois"].shape[0] for st in got["stages"])
    check_stages(ref, got)


@pytest.mark.parametrize("config,index", CASES)
def test_final_instances(config, index, runs):
    ref, got = runs(config, index)
    inst = got["instances"]
    mine = torch.argsort(inst.flat_indices)
    theirs = ref["instances.canonical_order"]
    assert torch.equal(inst.flat_indices[mine], ref["instances.flat_indices"][theirs])
    assert torch.equal(inst.classes[mine], ref["instances.labels"][theirs])
    assert torch.equal(inst.query_indices[mine], ref["instances.query_indices"][theirs])
    close(inst.scores[mine], ref["instances.scores"][theirs], 0, 1e-5, "scores")
    close(inst.boxes[mine], ref["instances.bboxes"][theirs], 0, 5e-3, "boxes")
    close(inst.mask_logits[mine], ref["instances.mask_logits"][theirs], 1e-4, 5e-4, "mask logits")
    cu = case_utils()
    expected, ambiguous = cu.unpack_masks(ref)[theirs.numpy()], cu.ambiguous_mask(ref)[theirs.numpy()]
    masks = inst.masks[mine].numpy()
    differ = masks != expected
    assert not (differ & ~ambiguous).any(), f"{int((differ & ~ambiguous).sum())} mask pixels differ outside the ambiguous ones"
    assert differ.sum() <= 50
