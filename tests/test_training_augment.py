"""The official augmentation: resize arithmetic, crop ranges, image/mask alignment, flips."""
import numpy as np
import torch

from training.augment import AugmentConfig, augment, augment_for, crop_window, shortest_edge_shape


def test_shortest_edge_shape_matches_detectron2_rounding():
    assert shortest_edge_shape(480, 640, 416, 853) == (416, 555)  # 640 * 416/480 = 554.67
    assert shortest_edge_shape(100, 1000, 416, 853) == (85, 853)  # capped by the long side
    assert shortest_edge_shape(640, 480, 640, 853) == (853, 640)  # 853.3 -> capped at 853


def test_crop_window_stays_inside_and_in_range():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, ch, cw = crop_window(500, 700, (384, 600), rng)
        assert 384 <= ch <= 500 and 384 <= cw <= 600
        assert top >= 0 and left >= 0 and top + ch <= 500 and left + cw <= 700
    assert crop_window(100, 120, (384, 600), rng)[2:] == (100, 120)  # smaller than the range: whole image


def scene():
    masks = torch.zeros(2, 120, 160, dtype=torch.bool)
    masks[0, 10:60, 20:90] = True
    masks[1, 70:110, 100:150] = True
    image = torch.zeros(3, 120, 160, dtype=torch.uint8)
    image[0][masks[0]] = 255  # red channel paints mask 0, green mask 1
    image[1][masks[1]] = 255
    return image, masks


def test_augment_keeps_image_and_masks_aligned_and_sizes_official():
    config = AugmentConfig().scaled(0.25)
    image, masks = scene()
    shorts = set()
    for seed in range(40):
        out_img, out_masks = augment(image, masks, config, np.random.default_rng(seed))
        h, w = out_img.shape[-2:]
        assert out_masks.shape == (2, h, w) and out_masks.dtype == torch.bool
        shorts.add(min(h, w))
        assert max(h, w) <= config.max_size
        for c in range(2):
            agree = ((out_img[c] > 127) == out_masks[c]).float().mean().item()
            assert agree > 0.98
    assert shorts <= set(config.min_sizes) | {config.max_size} and len(shorts) > 3


def test_flip_only_mirrors_exactly():
    image, masks = scene()
    config = AugmentConfig(min_sizes=(120,), max_size=1000, crop_prob=0.0, flip_prob=1.0)
    out_img, out_masks = augment(image, masks, config, np.random.default_rng(0))
    assert torch.equal(out_img, image.flip(-1)) and torch.equal(out_masks, masks.flip(-1))


def test_crop_branch_can_remove_objects():
    image, masks = scene()
    config = AugmentConfig(min_sizes=(64,), max_size=1000, crop_prob=1.0, crop_resize_sizes=(120,),
                           crop_range=(30, 40), flip_prob=0.0)
    emptied = 0
    for seed in range(30):
        _, out_masks = augment(image, masks, config, np.random.default_rng(seed))
        emptied += int((~out_masks.flatten(1).any(1)).sum())
    assert emptied > 0


def test_augment_for_keeps_official_sizes_for_released_presets_and_scales_small_ones():
    assert augment_for(640) == AugmentConfig() and augment_for(576) == AugmentConfig()
    small = augment_for(128)
    assert small.min_sizes == (83, 90, 96, 102, 109, 115, 122, 128) and small.max_size == 171
    assert small.crop_range == (77, 120) and small.crop_resize_sizes == (80, 100, 120)


def test_copy_paste_keeps_masks_labels_and_pixels_consistent():
    """Pasted objects carry their source pixels and labels; the objects they cover lose exactly the
    covered pixels; an object wholly covered is dropped with its label; nothing overlaps."""
    from training.augment import copy_paste
    image, masks = scene()
    labels = torch.tensor([0, 1])
    source = torch.full((3, 100, 200), 7, dtype=torch.uint8)      # taller-than-wide mismatch: cut off at W=160
    source_masks = torch.zeros(3, 100, 200, dtype=torch.bool)
    source_masks[0, 0:80, 0:120] = True                            # covers all of object 0
    source_masks[1, 80:100, 150:170] = True                        # partly outside the image
    source_masks[2, 0:10, 170:200] = True                          # wholly outside: never pasted
    seen = set()
    for seed in range(30):
        out, out_masks, out_labels = copy_paste(image, masks, labels, source, source_masks, torch.tensor([2, 3, 4]),
                                                np.random.default_rng(seed))
        assert out_masks.shape[0] == out_labels.shape[0] and out_masks.shape[1:] == (120, 160)
        assert out_masks.flatten(1).any(1).all() and out_masks.sum(0).max() <= 1      # none empty, none overlap
        assert 4 not in out_labels.tolist()
        pasted = out_masks[[i for i, v in enumerate(out_labels.tolist()) if v in (2, 3)]].any(0)
        assert (out[:, pasted] == 7).all() and torch.equal(out[:, ~pasted], image[:, ~pasted])
        for k in (0, 1):
            if k in out_labels.tolist():
                assert torch.equal(out_masks[out_labels.tolist().index(k)], masks[k] & ~pasted)
            else:
                assert not (masks[k] & ~pasted).any()
        seen.add(tuple(sorted(out_labels.tolist())))
    assert {(0, 1, 3), (1, 2), (1, 2, 3)} <= seen                  # subsets differ by seed; object 0 dropped when covered
    untouched = copy_paste(image, masks, labels, source, torch.zeros(0, 100, 200, dtype=torch.bool),
                           torch.zeros(0, dtype=torch.int64), np.random.default_rng(0))
    assert torch.equal(untouched[0], image) and torch.equal(untouched[1], masks)
