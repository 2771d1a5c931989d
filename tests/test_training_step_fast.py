"""The faster training step gives the same losses and gradients: recorded values, frozen BatchNorm
folded into the convolution weights, channels-last vs contiguous, fused AdamW."""
from __future__ import annotations

import copy

import pytest
import torch

from fastinst import build_model
from fastinst.backbones import ResNet
from fastinst.fast import prepare_for_training
from fastinst.layers import Conv2dNorm, FrozenBatchNorm2d
from fastinst.presets import _assemble
from fastinst.model import InputSpec
from training.losses import FastInstCriterion, LossConfig

# The criterion's values on the fixed batch below, recorded before the step was sped up
# (commit 6f409b8, training/losses.py as of then): the speed-ups must not move them.
RECORDED = {
    "loss_proposal": 27.93326187133789,
    "loss_ce_head0": 2.7389323711395264,
    "loss_mask_head0": 3.1505849361419678,
    "loss_dice_head0": 3.8915867805480957,
    "loss_ce_head1": 2.7782647609710693,
    "loss_mask_head1": 3.418191909790039,
    "loss_dice_head1": 3.7600197792053223,
    "loss_ce": 2.6390175819396973,
    "loss_mask": 3.258603811264038,
    "loss_dice": 3.7233619689941406,
    "loss_ce_guided0": 2.769822835922241,
    "loss_mask_guided0": 3.5072021484375,
    "loss_dice_guided0": 3.7637875080108643,
    "loss_ce_guided1": 2.6333775520324707,
    "loss_mask_guided1": 3.16326904296875,
    "loss_dice_guided1": 3.762409210205078,
}


def _batch():
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=3).train()
    images = torch.randn(2, 3, 96, 128)
    masks = torch.zeros(2, 3, 96, 128, dtype=torch.bool)
    masks[0, 0, 10:50, 20:70] = True
    masks[0, 1, 40:90, 60:120] = True
    masks[1, 0, 5:40, 5:40] = True
    masks[1, 1, 50:95, 10:60] = True
    masks[1, 2, 20:70, 80:125] = True
    targets = [{"labels": torch.tensor([0, 2]), "masks": masks[0, :2]},
               {"labels": torch.tensor([1, 0, 2]), "masks": masks[1]}]
    return model, images, targets


def _losses(model, images, targets, seed=1):
    criterion = FastInstCriterion(3, LossConfig(num_points=1000))
    torch.manual_seed(seed)
    out = model(images, mask_guide=criterion.mask_guide(targets, model.decoder.num_aux_queries))
    losses = criterion(out, targets)
    return losses


def test_losses_equal_the_recorded_values():
    model, images, targets = _batch()
    losses = {k: float(v) for k, v in _losses(model, images, targets).items()}
    assert losses.keys() == RECORDED.keys()
    for key, value in RECORDED.items():
        assert losses[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key


def test_channels_last_step_gives_the_same_losses_and_gradients():
    model, images, targets = _batch()
    fast = prepare_for_training(copy.deepcopy(model), channels_last=True)
    assert fast.backbone.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    a, b = _losses(model, images, targets), _losses(fast, images, targets)
    for key in a:
        assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-4, abs=1e-5), key
    sum(a.values()).backward()
    sum(b.values()).backward()
    for (name, p), q in zip(model.named_parameters(), fast.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-4, msg=name)


def _frozen_bn_model():
    """A tiny-sized FastInst whose backbone has FrozenBatchNorm (as the R50 presets) with statistics
    far from the identity, so that folding them changes the arithmetic."""
    torch.manual_seed(0)
    backbone = ResNet(depths=(1, 1, 1, 1), block="basic", stem_width=32, widths=(32, 64, 128, 256), norm="FrozenBN")
    model = _assemble(backbone, 3, num_layers=2, input_spec=InputSpec(128, 128), dim=64, num_queries=32,
                      num_aux_queries=4, num_heads=4, ffn_dim=256).train()
    for norm in model.modules():
        if isinstance(norm, FrozenBatchNorm2d):
            c = norm.num_features
            norm.weight.uniform_(0.5, 1.5), norm.bias.normal_(0, 0.2)
            norm.running_mean.normal_(0, 0.3), norm.running_var.uniform_(0.5, 2.0)
    return model


def test_frozen_batch_norm_folded_in_training_gives_the_same_losses_and_gradients():
    model = _frozen_bn_model()
    _, images, targets = _batch()
    fast = prepare_for_training(copy.deepcopy(model))
    folded = [m for m in fast.modules() if isinstance(m, Conv2dNorm) and m.fold_frozen_norm]
    assert len(folded) == sum(isinstance(m, FrozenBatchNorm2d) for m in model.modules()) > 0
    a, b = _losses(model, images, targets), _losses(fast, images, targets)
    assert any(float(a[k]) != float(b[k]) for k in a)  # the arithmetic did change ...
    for key in a:  # ... within float32 rounding
        assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-4, abs=1e-5), key
    sum(a.values()).backward()
    sum(b.values()).backward()
    for (name, p), q in zip(model.named_parameters(), fast.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-4, msg=name)
    assert fast.state_dict().keys() == model.state_dict().keys()


def test_fused_adamw_makes_the_same_update():
    from training.optim import build_optimizer

    model = _frozen_bn_model()
    _, images, targets = _batch()
    sum(_losses(model, images, targets).values()).backward()
    fused = copy.deepcopy(model)
    for p, q in zip(model.parameters(), fused.parameters()):
        q.grad = None if p.grad is None else p.grad.clone()
    plain_opt, fused_opt = build_optimizer(model, 1e-3, 0.05, 0.1), build_optimizer(fused, 1e-3, 0.05, 0.1, fused=True)
    for _ in range(2):
        plain_opt.step(), fused_opt.step()
    for (name, p), q in zip(model.named_parameters(), fused.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
