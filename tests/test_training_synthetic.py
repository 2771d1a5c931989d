"""Synthetic shapes: deterministic from the seed, valid COCO, occlusion handled."""
import hashlib
import json

import numpy as np
from pycocotools import mask as mask_utils

from training.data import load_coco
from training.synthetic import SHAPE_CLASSES, make_shapes_dataset


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    make_shapes_dataset(tmp_path / "a", 12, seed=7, size=(64, 80))
    make_shapes_dataset(tmp_path / "b", 12, seed=7, size=(64, 80))
    make_shapes_dataset(tmp_path / "c", 12, seed=8, size=(64, 80))
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_annotations_are_valid_disjoint_visible_masks(tmp_path):
    path = make_shapes_dataset(tmp_path, 40, seed=1, size=(64, 64))
    coco = load_coco(path)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(SHAPE_CLASSES)
    assert coco.imgs[1]["height"] == 64 and coco.imgs[1]["width"] == 64
    classes, per_image = set(), []
    for image_id in coco.getImgIds():
        anns = coco.imgToAnns[image_id]
        masks = [mask_utils.decode(a["segmentation"]).astype(bool) for a in anns]
        per_image.append(len(masks))
        if masks:
            stack = np.stack(masks)
            assert stack.sum(0).max() <= 1  # visible parts never overlap
            assert all(m.sum() == a["area"] for m, a in zip(masks, anns))
        classes |= {a["category_id"] for a in anns}
    assert classes == {1, 2, 3}
    assert max(per_image) >= 3
    info = json.loads(path.read_text())["info"]
    assert info["seed"] == 1
