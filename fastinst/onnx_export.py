"""ONNX export of a FastInst model, and an onnxruntime runner with the model's output dict.

One ONNX file serves one input size: the PPM's adaptive average pooling (bins 1, 2, 3, 6) has
bin edges that depend on the stride-32 map's size, so the exporter writes them as constants.
Export the padded sizes you serve (the Predictor's are those of the official resize, e.g. 576x768
for a 4:3 landscape image with ``D1-R50-576``).

The graph (exported with ``torch.onnx.export(..., dynamo=True)``, opset 18) is the fast path's
network (norms folded into the convolutions); its input and outputs:

=================  =======================  ====================================================
name               shape                    meaning
=================  =======================  ====================================================
``images``         (B,3,H,W) float32        RGB, ``(x - pixel_mean) / pixel_std``, zero-padded
                                            bottom/right to a multiple of 32
                                            (:meth:`fastinst.model.FastInst.preprocess`)
``pred_logits``    (B,Q,K+1) float32        final class logits, index K = no object
``pred_masks``     (B,Q,H/8,W/8) float32    final mask logits
``head_masks``     (L+1,B,Q,H/8,W/8)        mask logits of every head (the explanation's layers)
``proposal_logits`` (B,K+1,H/16,W/16)       IA-head class logits
``query_indices``  (B,Q) int64              selected positions, flat row-major in H/16 x W/16
=================  =======================  ====================================================

Post-processing (the official instance inference, as :mod:`fastinst.postprocess`): softmax over
K+1 classes, drop the last; top-100 of the Q*K (query, class) probabilities; each selected query's
mask logits resized bilinearly (``align_corners=False``) to H x W, cropped to the unpadded resized
image, resized to the original size; mask = logit > 0; score = probability x mean sigmoid inside
the mask. :class:`OnnxModel` returns the model's output dict, so
:func:`fastinst.postprocess.instance_inference_lowres` applies unchanged. :class:`OnnxForward` is
the Predictor's onnxruntime backend (``Predictor(..., backend="onnxruntime")``, ``--backend
onnxruntime``): it exports one graph per input shape on first use.
"""
from __future__ import annotations

from collections import OrderedDict

import logging
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .fast import optimize_for_inference
from .model import FastInst

OUTPUT_NAMES = ("pred_logits", "pred_masks", "head_masks", "proposal_logits", "query_indices")


class ExportedForward(nn.Module):
    """``images (B,3,H,W)`` -> the tuple of :data:`OUTPUT_NAMES` (the tensors of the output dict)."""

    def __init__(self, model: FastInst) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        out = self.model(images)
        heads = torch.stack([head["pred_masks"] for head in out["heads"]])
        return out["pred_logits"], out["pred_masks"], heads, out["proposal_logits"], out["query_indices"]


def export_onnx(model: FastInst, path: str | Path, *, height: int, width: int, batch: int = 1,
                opset: int = 18) -> Path:
    """Write ``model`` (through :func:`optimize_for_inference`, on CPU, contiguous layout) as ONNX
    for inputs ``(batch, 3, height, width)``; ``height`` and ``width`` must be multiples of the
    model's size divisibility (32). Returns the path. Raises ``ValueError`` on a bad size."""
    div = model.input_spec.size_divisibility
    if height % div or width % div:
        raise ValueError(f"input size {height}x{width} is not a multiple of {div}; pad it as FastInst.preprocess does")
    fast = optimize_for_inference(model, channels_last=False).cpu()
    wrapper = ExportedForward(fast).eval()
    example = torch.zeros(batch, 3, height, width)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # onnxscript warns once per Split node that it does not constant-fold ops with several outputs
    # (the graph is correct either way); a CLI run would print dozens of those lines
    folding = logging.getLogger("onnxscript.optimizer._constant_folding")
    level = folding.level
    folding.setLevel(logging.ERROR)
    try:
        with torch.no_grad():
            program = torch.onnx.export(wrapper, (example,), dynamo=True, opset_version=opset,
                                        input_names=["images"], output_names=list(OUTPUT_NAMES), verbose=False)
    finally:
        folding.setLevel(level)
    program.save(str(path))
    return path


class OnnxModel:
    """An exported model run by onnxruntime, returning the same output dict as :class:`FastInst`.

    ``OnnxModel(path)(images (B,3,H,W) float32 tensor or array)`` -> ``{"pred_logits",
    "pred_masks", "proposal_logits", "query_indices", "heads": [{"pred_masks"}, ...]}`` as CPU tensors.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape
        self.input_size = (int(shape[2]), int(shape[3]))

    def __call__(self, images: Tensor | np.ndarray) -> Dict[str, object]:
        array = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
        if tuple(array.shape[-2:]) != self.input_size:
            raise ValueError(f"this ONNX file takes {self.input_size[0]}x{self.input_size[1]} inputs, "
                             f"got {array.shape[-2]}x{array.shape[-1]}; export one for that size")
        values = self.session.run(list(OUTPUT_NAMES), {"images": np.ascontiguousarray(array, dtype=np.float32)})
        out = {name: torch.from_numpy(v) for name, v in zip(OUTPUT_NAMES, values)}
        heads: List[Dict[str, Tensor]] = [{"pred_masks": m} for m in out.pop("head_masks")]
        out["heads"] = heads
        return out


def _remove_orphaned_exports() -> None:
    """Remove the export folders of processes that no longer run (``fastinst-onnx-<pid>-*`` in the
    temporary folder): a killed process never runs its cleanup, and an R50 export is ~100 MB."""
    for folder in Path(tempfile.gettempdir()).glob("fastinst-onnx-*-*"):
        pid = folder.name.split("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:   # another user's running process
            continue


class OnnxForward:
    """The forward pass of ``model`` run by onnxruntime on CPU, with :class:`FastInst`'s output dict.

    ONNX graphs have fixed input sizes here (see the module docstring), so the graph of each input
    shape ``(B,3,H,W)`` is exported on its first use (seconds for the tiny preset, about a minute
    for R50 ones) into ``cache_dir`` (default: a temporary folder removed with this object); the
    ``max_sessions`` most recently used shapes keep an open session (each holds the weights and its
    buffers, ~40 MiB for the tiny preset), the others are reopened from their file when needed
    again. ``threads``: onnxruntime's intra-op threads (default: ``torch.get_num_threads()``,
    so both backends use the same cores). Outputs equal PyTorch's within float32 rounding
    (``tests/test_engine_onnx.py``: logits within 5e-4, same selected queries).
    """

    def __init__(self, model: FastInst, *, cache_dir: Optional[str | Path] = None,
                 threads: Optional[int] = None, max_sessions: int = 2) -> None:
        self.model = model
        self.threads = threads or torch.get_num_threads()
        if cache_dir is None:
            _remove_orphaned_exports()
            cache_dir = tempfile.mkdtemp(prefix=f"fastinst-onnx-{os.getpid()}-")
            weakref.finalize(self, shutil.rmtree, cache_dir, True)
        self.cache_dir = Path(cache_dir)
        self.max_sessions = max_sessions
        self.sessions: "OrderedDict[Tuple[int, int, int], OnnxModel]" = OrderedDict()

    def __call__(self, images: Tensor) -> Dict[str, object]:
        """``images (B,3,H,W)`` float32 (as :meth:`FastInst.preprocess` returns) -> output dict."""
        key = (int(images.shape[0]), int(images.shape[-2]), int(images.shape[-1]))
        if key not in self.sessions:
            batch, height, width = key
            path = self.cache_dir / f"fastinst_b{batch}_{height}x{width}.onnx"
            if not path.is_file():
                export_onnx(self.model, path, height=height, width=width, batch=batch)
            self.sessions[key] = OnnxModel(path, threads=self.threads)
            while len(self.sessions) > self.max_sessions:
                self.sessions.popitem(last=False)
        self.sessions.move_to_end(key)
        return self.sessions[key](images)
