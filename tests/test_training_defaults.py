"""The one-click fine-tuning recipe (training.defaults): every field it sets is a TrainConfig
field, the warm-up covers the first tenth of the run, and each ablation undoes a part the recipe
turns on."""
from dataclasses import fields

from training.defaults import ABLATIONS, finetune_defaults
from training.trainer import TrainConfig


def test_recipe_fields_build_a_train_config_with_warm_up_and_copy_paste():
    d = finetune_defaults(20, "tiny")
    recipe = d.train_fields()
    names = {f.name for f in fields(TrainConfig)}
    assert set(recipe) <= names
    config = TrainConfig(train_json="t.json", image_root=".", **recipe)
    assert config.max_iters == d.max_iters and config.warmup_iters == d.max_iters // 10
    assert config.warmup_factor == 0.0 and 0 < config.copy_paste <= 1
    assert config.lr < 5e-4                                 # below the from-scratch rate of the tiny preset
    assert finetune_defaults(200, "tiny").epochs < d.epochs  # larger sets: fewer passes


def test_each_ablation_undoes_a_part_of_the_recipe():
    recipe = finetune_defaults(20, "tiny").train_fields()
    for name, undo in ABLATIONS.items():
        assert set(undo) <= {f.name for f in fields(TrainConfig)}, name
        assert any(recipe.get(k) != v for k, v in undo.items()), name
