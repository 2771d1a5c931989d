"""Point sampling: bilinear values at known coordinates and importance sampling's placement."""
import torch

from training.points import importance_points, point_sample


def test_point_sample_hits_pixel_centres_and_interpolates():
    maps = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    coords = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5], [0.5, 0.25]]])
    values = point_sample(maps, coords)
    assert values.shape == (1, 1, 5)
    assert torch.allclose(values[0, 0], torch.tensor([1.0, 2.0, 3.0, 2.5, 1.5]))


def test_point_sample_is_resolution_independent():
    """The same normalised point reads the same place in a 4x4 map and its 2x nearest upsampling."""
    small = torch.arange(16.0).view(1, 1, 4, 4)
    big = small.repeat_interleave(2, 2).repeat_interleave(2, 3)
    centres = (torch.tensor([[0.5, 1.5], [2.5, 3.5], [3.5, 0.5]]) / 4).unsqueeze(0)
    assert torch.allclose(point_sample(small, centres), point_sample(big, centres))


def test_importance_points_concentrate_on_uncertain_region():
    torch.manual_seed(0)
    logits = torch.full((2, 1, 16, 16), 10.0)
    logits[..., :8] = 0.0  # left half maximally uncertain
    pts = importance_points(logits, num_points=400, oversample_ratio=3.0, importance_ratio=1.0)
    assert pts.shape == (2, 400, 2)
    assert (pts[..., 0] < 0.5).all()
    mixed = importance_points(logits, num_points=400, oversample_ratio=3.0, importance_ratio=0.75)
    assert (mixed[:, :300, 0] < 0.5).all()  # the importance part
    assert (mixed[:, 300:, 0] >= 0.5).any()  # the uniform remainder reaches the confident side
    assert ((mixed >= 0) & (mixed <= 1)).all()
