"""Instance, semantic and panoptic inference on hand-built logits with known answers."""
import torch

from fastinst.postprocess import instance_inference, panoptic_inference, semantic_inference

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
