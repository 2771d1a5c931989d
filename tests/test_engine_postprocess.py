"""Instance, semantic and panoptic inference on hand-built logits with known answers, and the fast
path's post-processing against the official one on random logits."""
import pytest
import torch
import torch.nn.functional as F

from fastinst.model import upsample_masks
from engines import contract
from fastinst.postprocess import (MaskResize, instance_inference, instance_inference_lowres, mask_scores_from_logits,
                                  panoptic_inference, semantic_inference)

BIG = 20.0


def _masks():
    """Three queries on a 4x6 image: left half, right half, everything."""
    m = torch.full((3, 4, 6), -BIG)
    m[0, :, :3] = BIG
    m[1, :, 3:] = BIG
    m[2] = BIG
    return m


def test_instance_inference_ranks_query_class_pairs():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 9.0]])  # 2 classes + no-object
    inst = instance_inference(logits, _masks(), topk=3)
    probs = torch.softmax(logits, -1)[:, :2]
    expected = sorted(((float(probs[q, c]), q, c) for q in range(3) for c in range(2)), reverse=True)[:3]
    assert [(int(q), int(c)) for q, c in zip(inst.query_indices, inst.classes)] == [(q, c) for _, q, c in expected]
    assert torch.allclose(inst.scores, torch.tensor([p for p, _, _ in expected]) * torch.sigmoid(torch.tensor(BIG)))
    assert inst.masks[0, :, :3].all() and not inst.masks[0, :, 3:].any()


def test_semantic_inference_sums_prob_times_sigmoid():
    logits = torch.tensor([[BIG, 0.0, 0.0], [0.0, BIG, 0.0], [0.0, 0.0, BIG]])
    sem = semantic_inference(logits, _masks())
    assert sem.shape == (2, 4, 6)
    assert torch.allclose(sem[0, :, :3], torch.ones(4, 3), atol=1e-4) and sem[0, :, 3:].max() < 1e-4
    assert torch.allclose(sem[1, :, 3:], torch.ones(4, 3), atol=1e-4)


def test_panoptic_drops_no_object_and_merges_stuff():
    # query 0: thing class 0 on the left; query 1: stuff class 1 on the right; query 2: no-object
    logits = torch.tensor([[BIG, 0.0, 0.0], [0.0, BIG, 0.0], [0.0, 0.0, BIG]])
    seg, info = panoptic_inference(logits, _masks(), thing_classes=[0])
    assert [s["category_id"] for s in info] == [0, 1] and [s["isthing"] for s in info] == [True, False]
    assert (seg[:, :3] == 1).all() and (seg[:, 3:] == 2).all()
    # a second stuff query of the same class is merged into the first segment
    logits2 = torch.cat([logits[:2], torch.tensor([[0.0, BIG, 0.0]])])
    masks2 = _masks()
    masks2[2] = -BIG
    masks2[2, 0, 5] = BIG
    seg2, info2 = panoptic_inference(logits2, masks2, thing_classes=[0], overlap_threshold=0.0)
    assert len(info2) == 2 and set(seg2.unique().tolist()) == {1, 2}


def test_panoptic_with_nothing_confident_is_empty():
    seg, info = panoptic_inference(torch.zeros(3, 3), _masks(), thing_classes=[0])
    assert info == [] and not seg.any()


# (low, padded, image, output) sizes (h, w): a 10x14 map shown at 75x110 inside an 80x112 input,
# output at 151x223 (both resizes non-trivial; one product per box), and a 64x80 map output at
# 480x600 (rows resized by bands, MaskResize.row_blocks)
SMALL = ((10, 14), (80, 112), (75, 110), (151, 223))
BANDED = ((64, 80), (512, 640), (500, 630), (480, 600))


def _random_case(seed: int, queries: int = 24, classes: int = 5, sizes=SMALL):
    """Class logits, smooth stride-8 mask logits (query 0 empty, query 1 a thin diagonal line,
    sparse inside its box), and the official resize for ``sizes``."""
    low, padded, image, output = sizes
    g = torch.Generator().manual_seed(seed)
    class_logits = torch.randn(queries, classes + 1, generator=g) * 3
    coarse = torch.randn(queries, 1, 4, 5, generator=g) * 4 - 2
    mask_logits = F.interpolate(coarse, size=low, mode="bilinear", align_corners=False)[:, 0]
    mask_logits[0] = -5.0  # a query with an empty mask
    rows, cols = torch.meshgrid(torch.arange(low[0]).float(), torch.arange(low[1]).float(), indexing="ij")
    mask_logits[1] = 0.5 - (rows - cols * low[0] / low[1]).abs()
    class_logits[1, 0] = 8.0  # selected
    return class_logits, mask_logits, MaskResize.official(*sizes)


def _official(class_logits, mask_logits, topk, sizes=SMALL):
    logits = upsample_masks(mask_logits, *sizes[1:])
    return instance_inference(class_logits, logits, topk=topk)


@pytest.mark.parametrize("sizes", [SMALL, BANDED], ids=["one product", "bands"])
@pytest.mark.parametrize("dense", [False, True], ids=["boxes (CPU)", "dense (GPU branch, run on CPU)"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lowres_inference_equals_the_official_post_processing(seed, dense, sizes):
    class_logits, mask_logits, resize = _random_case(seed, sizes=sizes)
    assert (resize.row_blocks is None) == (sizes is SMALL)
    expected = _official(class_logits, mask_logits, topk=60, sizes=sizes)
    got = instance_inference_lowres(class_logits, mask_logits, resize, topk=60, dense=dense)
    assert torch.equal(got.query_indices, expected.query_indices) and torch.equal(got.classes, expected.classes)
    torch.testing.assert_close(got.scores, expected.scores, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.mask_scores, expected.mask_scores, rtol=0, atol=1e-6)
    assert (got.masks != expected.masks).sum() <= 2  # pixels whose logit is 0 up to float rounding
    assert not got.masks[got.query_indices == 0].any() and (got.mask_scores[got.query_indices == 0] == 0).all()
    line = got.masks[got.query_indices == 1][0]
    rows, cols = line.any(1).nonzero(), line.any(0).nonzero()
    assert 0 < line.sum() < 0.25 * (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # sparse in its box
    if got.boxes is not None:  # the CPU path's boxes, taken from its crops, are the masks' boxes
        assert torch.equal(got.boxes, contract.mask_boxes(got.masks))
    else:
        assert dense


@pytest.mark.parametrize("sizes", [SMALL, BANDED], ids=["one product", "bands"])
def test_resize_inside_a_box_equals_the_whole_resize(sizes):
    _, mask_logits, resize = _random_case(4, queries=3, sizes=sizes)
    whole = resize(mask_logits)
    height, width = resize.output_size
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        y0, y1 = sorted(torch.randperm(height + 1, generator=g)[:2].tolist())
        x0, x1 = sorted(torch.randperm(width + 1, generator=g)[:2].tolist())
        buffer = torch.full((resize.box_buffer_size(y0, y1, x0, x1),), float("nan"))
        got = resize.resize_box(mask_logits[2], y0, y1, x0, x1, buffer)
        torch.testing.assert_close(got, whole[2, y0:y1, x0:x1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("min_score", [0.0, 0.02, 0.1, 0.3, 0.95])
def test_min_score_gives_exactly_the_filtered_full_result(min_score, dense):
    class_logits, mask_logits, resize = _random_case(3)
    full = instance_inference_lowres(class_logits, mask_logits, resize, topk=100, dense=dense)
    keep = full.scores >= min_score
    got = instance_inference_lowres(class_logits, mask_logits, resize, topk=100, min_score=min_score, dense=dense)
    assert 0 < int(keep.sum()) < len(full.scores) or min_score in (0.0, 0.95)
    assert torch.equal(got.query_indices, full.query_indices[keep]) and torch.equal(got.classes, full.classes[keep])
    assert torch.equal(got.scores, full.scores[keep]) and torch.equal(got.masks, full.masks[keep])


def test_mask_score_without_gathering_the_mask_pixels():
    logits = torch.tensor([[[0.0, 1e-8, -1e-8], [30.0, -30.0, 2.0]], [[-1.0, -2.0, 0.0], [-3.0, 0.0, -0.5]]])
    positive = logits > 0
    sig = logits.sigmoid()
    count = positive.flatten(1).sum(1)
    expected = (sig * positive).flatten(1).sum(1) / (count + 1e-6)
    got = mask_scores_from_logits(logits.clone(), count)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    assert got[1] == 0 and got[0] > 0.5


def test_masks_that_would_not_fit_in_memory_are_refused_with_their_size():
    """A 192 Mpx orthophoto's 96 instances would be 18 GB of bool masks: a clear error naming the
    size, not the process killed; what fits passes."""
    from fastinst.errors import FastInstError
    from fastinst.postprocess import _check_mask_memory

    _check_mask_memory(96 * 480 * 640, 96, 480, 640)
    with pytest.raises(FastInstError, match=r"96 instances on a 160000x120000 image would take 1716\.6 GiB"):
        _check_mask_memory(96 * 120000 * 160000, 96, 120000, 160000)
