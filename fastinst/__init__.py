"""FastInst in plain PyTorch: the engine behind FastInst Studio."""
from .checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from .errors import CheckpointError, FastInstError, ImageError, ImageTooLargeError
from .model import FastInst, InputSpec
from .predictor import Explanation, Prediction, Predictor, resolve_device
from .presets import PRESETS, build_model

__all__ = [
    "PRESETS", "build_model", "FastInst", "InputSpec", "load_checkpoint", "save_checkpoint", "CheckpointInfo",
    "FastInstError", "CheckpointError", "ImageError", "ImageTooLargeError", "Predictor", "Prediction", "Explanation", "resolve_device",
]
