"""Queries placed by a person (fastinst.placed_queries, Predictor.place_queries), on the shipped
demo model and its held-out scenes (trained weights: the masks are real objects, not noise)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from app.demo import demo_weights
from fastinst import Predictor
from fastinst.placed_queries import points_to_indices
from fastinst.predictor import Geometry, _query_points
from training.make_demo_model import DEMO_DATA
from training.synthetic import SceneConfig, make_scene


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.from_checkpoint(demo_weights(), device="cpu")


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    return [make_scene(DEMO_DATA.val_seed, i, DEMO_DATA.size, SceneConfig())[0] for i in range(4)]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def test_a_query_placed_at_a_selected_position_reproduces_that_query(predictor, scenes):
    """Same cell -> same feature and positional embedding, and (placed queries being attention
    queries only) the same keys in every layer: the same computation up to float rounding of
    matrix products with a different number of rows (~1e-6), which can flip only pixels whose
    logit is within ~1e-5 of 0. Hence IoU >= 0.99 asserted (1.0 observed), same arg-max class,
    score and per-layer masks within 1e-4."""
    checked = 0
    for image in scenes:
        pred = predictor.predict(image)
        exp = pred.explanation
        for k in range(5):
            q = int(pred.query_indices[k])
            if int(pred.classes[k]) != int(exp.class_logits[q, :-1].argmax()):
                continue  # a second-choice class of its query: the click gives the query's best class
            placed = predictor.place_queries(image, [tuple(exp.query_points[q])])
            assert len(placed) == 1 and placed.explanation.num_placed == 1
            assert int(placed.query_indices[0]) == predictor.model.decoder.num_queries
            assert int(placed.explanation.query_indices[-1]) == int(exp.query_indices[q])
            assert iou(placed.masks[0], pred.masks[k]) >= 0.99
            assert placed.classes[0] == pred.classes[k]
            assert placed.scores[0] == pytest.approx(pred.scores[k], abs=1e-4)
            torch.testing.assert_close(placed.explanation.head_mask_logits[:, -1], exp.head_mask_logits[:, q],
                                       atol=1e-4, rtol=0)
            checked += 1
    assert checked >= 10


def test_placed_queries_change_nothing_else_and_not_each_other(predictor, scenes):
    """Decoded jointly with the selected queries, but nothing attends to a placed query: the
    selected queries' per-layer masks and classes are those of the plain prediction, and each
    placed query's result does not depend on the other placed queries."""
    image = scenes[1]
    pred = predictor.predict(image)
    points = [(20.0, 30.0), (64.0, 64.0), (100.0, 90.0)]
    both = predictor.place_queries(image, points, with_selected=True)
    num_selected = predictor.model.decoder.num_queries
    torch.testing.assert_close(both.explanation.head_mask_logits[:, :num_selected],
                               pred.explanation.head_mask_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(both.explanation.class_logits[:num_selected], pred.explanation.class_logits,
                               atol=1e-5, rtol=0)
    together = predictor.place_queries(image, points)
    assert list(together.query_indices) == [num_selected, num_selected + 1, num_selected + 2]
    for k, point in enumerate(points):
        alone = predictor.place_queries(image, [point])
        torch.testing.assert_close(alone.explanation.head_mask_logits[:, -1],
                                   together.explanation.head_mask_logits[:, num_selected + k], atol=1e-4, rtol=0)
        assert alone.classes[0] == together.classes[k]
        assert alone.scores[0] == pytest.approx(together.scores[k], abs=1e-4)
    # per-layer masks of the placed queries come back at image size
    assert together.explanation.layer_masks(num_selected + 1).shape == (3, 128, 128)


def test_point_to_cell_inverts_the_shown_query_points():
    """On a resized, padded, non-square image every cell's shown point is inside the picture and
    maps back to that cell when the cell covers part of the picture (the last column, 320-336 of
    a 330-wide picture, included); a cell wholly in padding is shown at the picture's edge."""
    geometry = Geometry(padded=(256, 352), resized=(240, 330), original=(480, 660))
    map_size = (16, 22)
    indices = torch.arange(map_size[0] * map_size[1])
    points = _query_points(indices, map_size, geometry)
    assert (points >= 0).all() and (points[:, 0] < 660).all() and (points[:, 1] < 480).all()
    rows, cols = indices // map_size[1], indices % map_size[1]
    inside = ((rows * 16 < 240) & (cols * 16 < 330)).numpy()
    assert inside.sum() == 15 * 21
    got = points_to_indices([tuple(p) for p in points[inside]], geometry.original, geometry.resized,
                            geometry.padded, map_size)
    assert torch.equal(got, indices[torch.from_numpy(inside)])
    with pytest.raises(ValueError, match=r"placed query 1 at \(x=660, y=5\) is outside the 660x480 image"):
        points_to_indices([(3, 4), (660, 5)], geometry.original, geometry.resized, geometry.padded, map_size)


def test_feature_cache_is_bounded_and_a_miss_recomputes(scenes):
    predictor = Predictor.from_checkpoint(demo_weights(), device="cpu")
    predictor.feature_cache = 2
    for image in scenes[:3]:
        predictor.predict(image)
    assert len(predictor._features) == 2
    evicted = predictor.place_queries(scenes[0], [(64, 64)])  # not cached: predicted again
    cached = predictor.place_queries(scenes[0], [(64, 64)])
    assert np.array_equal(evicted.masks, cached.masks) and len(predictor._features) == 2
    with pytest.raises(ValueError, match="at least one"):
        predictor.place_queries(scenes[0], [])
