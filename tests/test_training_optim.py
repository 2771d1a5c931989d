"""Optimiser groups and the learning-rate schedule of the official recipe."""
import math

import torch
from torch import nn

from fastinst import build_model
from training.optim import build_optimizer, build_scheduler, lr_factor, param_groups


def test_backbone_lr_and_no_decay_on_norms_and_embeddings():
    model = build_model("tiny", num_classes=3)
    groups = param_groups(model, lr=1e-4, weight_decay=0.05, backbone_lr_multiplier=0.1)
    setting = {name: (g["lr"], g["weight_decay"]) for g in groups for name in g["param_names"]}
    assert len(setting) == sum(1 for p in model.parameters() if p.requires_grad)
    modules = dict(model.named_modules())
    for name, (lr, wd) in setting.items():
        module = modules[name.rsplit(".", 1)[0]]
        assert math.isclose(lr, 1e-5 if name.startswith("backbone.") else 1e-4)
        no_decay = isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.Embedding))
        assert wd == (0.0 if no_decay else 0.05), name
    assert setting["decoder.aux_query_features.weight"] == (1e-4, 0.0)
    assert setting["decoder.pos_embed"] == (1e-4, 0.05)  # a bare Parameter, decayed as in the official code


def test_lr_factor_steps_and_warmup_by_hand():
    assert lr_factor(0, [10, 20], 0.1, 0, 1.0) == 1.0
    assert math.isclose(lr_factor(10, [10, 20], 0.1, 0, 1.0), 0.1)
    assert math.isclose(lr_factor(25, [10, 20], 0.1, 0, 1.0), 0.01)
    assert math.isclose(lr_factor(0, [], 0.1, 4, 0.2), 0.2)
    assert math.isclose(lr_factor(2, [], 0.1, 4, 0.2), 0.6)  # halfway from 0.2 to 1
    assert lr_factor(3, [], 0.1, 10, 1.0) == 1.0  # the official factor 1.0: no warm-up at all


def test_scheduler_drives_every_group():
    model = build_model("tiny", num_classes=2)
    opt = build_optimizer(model, 1e-4, 0.05, 0.1)
    sched = build_scheduler(opt, [2], 0.1, 0, 1.0)
    for _ in range(2):
        opt.step()
        sched.step()
    lrs = sorted({round(g["lr"], 12) for g in opt.param_groups})
    assert lrs == [1e-6, 1e-5]
    assert isinstance(opt, torch.optim.AdamW)


def test_queryinst_recipe_decays_every_parameter_as_its_official_config():
    """mmdetection's ``queryinst_r50_fpn_1x_coco.py``: AdamW with weight decay 1e-4 and no paramwise
    exceptions but the backbone's lr multiplier, so norms and the proposal embeddings are decayed."""
    import queryinst
    from training.queryinst_trainer import official_config

    config = official_config(train_json="x.json", image_root=".")
    model = queryinst.build_model("tiny", num_classes=3)
    groups = param_groups(model, config.lr, config.weight_decay, config.backbone_lr_multiplier,
                          config.decay_norm_and_embedding)
    setting = {name: (g["lr"], g["weight_decay"]) for g in groups for name in g["param_names"]}
    assert len(setting) == sum(1 for p in model.parameters() if p.requires_grad)
    assert {wd for _, wd in setting.values()} == {1e-4}
    modules = dict(model.named_modules())
    decayed_types = {type(modules[name.rsplit(".", 1)[0]]) for name in setting}
    assert nn.Embedding in decayed_types and any(issubclass(t, (nn.LayerNorm, nn.GroupNorm)) for t in decayed_types)
    assert {lr for name, (lr, _) in setting.items() if name.startswith("backbone.")} == {1e-5}
