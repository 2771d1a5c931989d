"""QueryInst (Fang et al., ICCV 2021) in plain PyTorch, beside FastInst in FastInst Studio.

    from queryinst import build_model, Predictor
    from queryinst.official import load_official
    model = build_model("R50-1x")
    load_official(model, "queryinst_r50_fpn_1x_coco_20210907_084916-5a8f1998.pth")
    pred = Predictor(model, class_names).predict("street.jpg")
    pred.masks, pred.scores, pred.classes, pred.boxes
    pred.explanation.layer_masks(int(pred.query_indices[0]))   # that query's mask after every stage
"""
from .checkpoint import load_checkpoint, save_checkpoint
from .model import QueryInst
from .predictor import Explanation, Prediction, Predictor
from .presets import PRESETS, build_model

__all__ = ["QueryInst", "PRESETS", "build_model", "Predictor", "Prediction", "Explanation", "load_checkpoint",
           "save_checkpoint"]
