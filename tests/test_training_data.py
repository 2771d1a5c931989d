"""COCO dataset: every segmentation encoding, iscrowd, non-contiguous ids, negatives, missing
images; the deterministic sampler; target padding."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from training.augment import AugmentConfig
from training.data import CocoInstances, IterationBatchSampler, pad_targets

H, W = 20, 30


def rle_uncompressed(mask):
    """Column-major run lengths starting with zeros (COCO's uncompressed RLE)."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return {"size": [H, W], "counts": counts}


@pytest.fixture()
def coco_dir(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(np.full((H, W, 3), 80, np.uint8)).save(tmp_path / name)
    m_rle = np.zeros((H, W), bool)
    m_rle[5:9, 3:12] = True
    m_str = np.zeros((H, W), bool)
    m_str[12:18, 20:28] = True
    m_str[0:2, 0:2] = True  # two parts
    enc = mask_utils.encode(np.asfortranarray(m_str.astype(np.uint8)))
    enc["counts"] = enc["counts"].decode()
    anns = [
        # polygon in two parts: [x0,y0, x1,y0, x1,y1, x0,y1] rectangles
        {"id": 1, "image_id": 10, "category_id": 7, "iscrowd": 0,
         "segmentation": [[2, 2, 8, 2, 8, 6, 2, 6], [20, 10, 26, 10, 26, 16, 20, 16]]},
        {"id": 2, "image_id": 10, "category_id": 3, "iscrowd": 0, "segmentation": rle_uncompressed(m_rle)},
        {"id": 3, "image_id": 10, "category_id": 12, "iscrowd": 0, "segmentation": enc},
        {"id": 4, "image_id": 10, "category_id": 3, "iscrowd": 1, "segmentation": rle_uncompressed(m_rle)},
        {"id": 5, "image_id": 20, "category_id": 3, "iscrowd": 1, "segmentation": rle_uncompressed(m_rle)},
    ]
    coco = {"images": [{"id": 10, "file_name": "a.png", "height": H, "width": W},
                       {"id": 20, "file_name": "b.png", "height": H, "width": W},
                       {"id": 30, "file_name": "c.png", "height": H, "width": W}],
            "annotations": anns,
            "categories": [{"id": 12, "name": "twelve"}, {"id": 3, "name": "three"}, {"id": 7, "name": "seven"}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    return tmp_path, m_rle, m_str


def test_decodes_polygons_rles_and_maps_category_ids(coco_dir):
    root, m_rle, m_str = coco_dir
    ds = CocoInstances(root / "ann.json", root, keep_empty=True)
    assert ds.class_names == ["three", "seven", "twelve"]  # sorted by category id 3 < 7 < 12
    sample = ds.load(0)
    assert sample["image"].shape == (3, H, W) and sample["image"].dtype == torch.uint8
    assert sample["labels"].tolist() == [1, 0, 2]  # crowd object not trained on
    masks = sample["masks"].numpy()
    assert masks.shape == (3, H, W)
    assert np.array_equal(masks[1], m_rle) and np.array_equal(masks[2], m_str)
    poly = masks[0]
    assert poly[3, 4] and poly[12, 22] and not poly[8, 15]  # both polygon parts, nothing between
    assert 2 * 30 <= poly.sum() <= 2 * 49  # each part ~6x4 px, up to 7x7 with boundary pixels


def test_empty_images_are_negatives_only_when_asked(coco_dir):
    """Image 30 has no annotation (a negative when asked); image 20 only a crowd region, which is
    objects, not background: never a negative (detectron2's filter_empty_annotations)."""
    root, _, _ = coco_dir
    keep = CocoInstances(root / "ann.json", root, keep_empty=True)
    drop = CocoInstances(root / "ann.json", root, keep_empty=False)
    assert keep.image_ids == [10, 30] and drop.image_ids == [10]
    negative = keep.load(1)  # image 30
    assert negative["labels"].numel() == 0 and negative["masks"].shape == (0, H, W)


def test_missing_image_is_left_out_and_named_in_the_report(coco_dir):
    root, _, _ = coco_dir
    (root / "b.png").unlink()
    ds = CocoInstances(root / "ann.json", root)
    assert 20 not in ds.image_ids and len(ds) >= 1
    assert any("image id" not in line and "(id 20) 'b.png'" in line and "image not found" in line
               for line in ds.report.lines()), ds.report.lines()


def test_augmented_samples_are_deterministic_per_position(coco_dir):
    root, _, _ = coco_dir
    ds = CocoInstances(root / "ann.json", root, augment_config=AugmentConfig().scaled(0.05), seed=5)
    a, b = ds[(0, 17)], ds[(0, 17)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["masks"], b["masks"])
    sizes = {tuple(ds[(0, p)]["image"].shape) for p in range(12)}
    assert len(sizes) > 1
    assert all(s["masks"].flatten(1).any(1).all() for s in (ds[(0, p)] for p in range(12)))


def test_sampler_partitions_ranks_covers_epochs_and_resumes():
    n, local, world = 10, 2, 2
    ranks = [IterationBatchSampler(n, local, seed=3, start_iter=0, max_iters=5, rank=r, world_size=world) for r in range(world)]
    batches = [list(s) for s in ranks]
    stream = [key for it in range(5) for r in range(world) for key in batches[r][it]]
    assert [p for _, p in stream] == list(range(20))
    assert sorted(i for i, _ in stream[:10]) == list(range(10))  # epoch 0 is a permutation
    assert sorted(i for i, _ in stream[10:]) == list(range(10))
    assert [i for i, _ in stream[:10]] != [i for i, _ in stream[10:]]  # reshuffled each epoch
    resumed = list(IterationBatchSampler(n, local, seed=3, start_iter=3, max_iters=5, rank=1, world_size=world))
    assert resumed == batches[1][3:]


def test_pad_targets_pads_bottom_right():
    s = {"labels": torch.tensor([2]), "masks": torch.ones(1, 3, 5, dtype=torch.bool)}
    (t,) = pad_targets([s], (8, 8), torch.device("cpu"))
    assert t["masks"].shape == (1, 8, 8) and t["masks"].sum() == 15 and t["masks"][0, :3, :5].all()


def test_copy_paste_adds_another_images_objects_reproducibly(tmp_path):
    """With copy_paste 1 every augmented sample also holds objects of another image; the same key
    gives the same sample; masks stay non-empty and disjoint."""
    from training.synthetic import make_shapes_dataset
    path = make_shapes_dataset(tmp_path / "d", 4, seed=3, size=(96, 96))
    config = AugmentConfig(min_sizes=(96,), max_size=96, crop_prob=0.0, flip_prob=0.0)
    plain = CocoInstances(path, path.parent / "images", augment_config=config)
    pasted = CocoInstances(path, path.parent / "images", augment_config=config, copy_paste=1.0)
    grew = 0
    for position in range(8):
        key = (position % 4, position)
        a, b = pasted[key], pasted[key]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["masks"], b["masks"])
        assert a["masks"].shape[0] == a["labels"].shape[0] and a["masks"].flatten(1).any(1).all()
        assert a["masks"].sum(0).max() <= 1
        grew += a["labels"].numel() > plain[key]["labels"].numel() or not torch.equal(a["image"], plain[key]["image"])
    assert grew == 8
