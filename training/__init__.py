"""Training FastInst: the official recipe (matcher, losses, augmentation, schedule), COCO data,
exact resume, torchrun/DDP, COCO evaluation and synthetic shape scenes.

    from training import TrainConfig, train
    from training.evaluate import evaluate
    path = train(TrainConfig(train_json=..., image_root=...), progress=cb, should_stop=flag)
    metrics = evaluate(path, val_json, val_image_root)
"""
from .trainer import TrainConfig, train

__all__ = ["TrainConfig", "train"]
