"""COCO mask AP of any of the project's models with pycocotools, and the ``python -m training.evaluate`` CLI.

Inference is the model's own Predictor (:mod:`engines.contract`; the official test pipeline of
FastInst or QueryInst) without its explanation. Under ``torchrun`` every process predicts its
share of the images and rank 0 scores the gathered results.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from pycocotools.coco import COCO
from tqdm import tqdm

from annotations.coco_parse import load_json, read_coco, read_results
from annotations.errors import AnnotationError
from engines.contract import same_size_groups
from engines.load import load_predictor, predictor_for
from fastinst import FastInstError
from fastinst.coco_results import to_coco_results

from . import distributed
from .bootstrap import evaluated
from .data import CocoInstances, coco_from_parsed

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def category_ids_for(class_names: Sequence[str], dataset: CocoInstances) -> List[int]:
    """COCO category id of each model class: by name when every name is a dataset category, else
    by position (the dataset's categories sorted by id)."""
    by_name = {dataset.coco.cats[c]["name"]: c for c in dataset.category_ids}
    if all(n in by_name for n in class_names):
        return [by_name[n] for n in class_names]
    if len(class_names) != len(dataset.category_ids):
        raise ValueError(f"the model has {len(class_names)} classes {list(class_names)} but the dataset has "
                         f"{len(dataset.category_ids)} categories {dataset.class_names}")
    return list(dataset.category_ids)


def collect_results(model: torch.nn.Module | object, dataset: CocoInstances, category_ids: Sequence[int], *,
                    batch_size: int = 4, max_images: Optional[int] = None, rank: int = 0, world_size: int = 1,
                    progress: bool = True) -> List[Dict[str, object]]:
    """COCO result dicts for this process's share (every ``world_size``-th image) of the dataset.

    ``model``: a network of any of the project's models (run by its Predictor, on the network's
    device, in eval mode) or a Predictor (:class:`engines.contract.Predictor`)."""
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    mine = list(range(rank, count, world_size))
    predictor = model if not isinstance(model, torch.nn.Module) else predictor_for(
        model, [str(k) for k in range(model.num_classes)], device=_device_of(model), explain=False)
    results: List[Dict[str, object]] = []
    bar = tqdm(total=len(mine), desc="evaluate", disable=not progress or rank != 0, leave=False)
    for start in range(0, len(mine), batch_size):
        chunk = mine[start:start + batch_size]
        prepared = [predictor.prepare(dataset.load_image(i).permute(1, 2, 0).numpy()) for i in chunk]
        for group in same_size_groups(prepared):   # AP must not depend on batch_size
            preds = predictor.predict_prepared([prepared[k] for k in group])
            for k, pred in zip(group, preds):
                results += to_coco_results(pred.masks, pred.scores, pred.classes, dataset.image_ids[chunk[k]],
                                           category_ids)
        bar.update(len(chunk))
    bar.close()
    return results


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def coco_mask_metrics(coco: COCO, results: List[Dict[str, object]], image_ids: Sequence[int],
                      verbose: bool = False) -> Dict[str, Optional[float]]:
    """pycocotools ``segm`` evaluation on ``image_ids`` -> ``{"segm/AP": 0..100, "segm/AP50", ...,
    "segm/AP-<category name>"}`` (detectron2's naming and scale; None where undefined).
    No results -> all zeros. ``coco`` is the ground truth as the one reader gives it
    (:func:`training.data.coco_from_parsed`: ``area`` and ``iscrowd`` present)."""
    gt = coco
    if not results:
        return {f"segm/{n}": 0.0 for n in METRIC_NAMES}
    ev = evaluated(gt, results, image_ids)
    with contextlib.redirect_stdout(sys.stdout if verbose else io.StringIO()):
        ev.accumulate()
        ev.summarize()
    # pycocotools reports -1 where a metric is undefined (e.g. no large objects): None here
    metrics = {f"segm/{n}": float(100.0 * ev.stats[i]) if ev.stats[i] >= 0 else None for i, n in enumerate(METRIC_NAMES)}
    precision = ev.eval["precision"]  # (iou, recall, class, area, maxdets)
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        name = gt.cats[cat_id]["name"]
        metrics[f"segm/AP-{name}"] = float(100.0 * p[p > -1].mean()) if (p > -1).any() else None
    return metrics


def evaluate_model(model: torch.nn.Module | object, class_names: Sequence[str], json_path: str | Path,
                   image_root: str | Path, *, batch_size: int = 4, max_images: Optional[int] = None,
                   progress: bool = True, verbose: bool = False, strict: bool = False) -> Dict[str, Optional[float]]:
    """Mask AP of ``model`` (a FastInst or QueryInst network, left in its train/eval mode, or a
    Predictor) on a COCO dataset. Call on every process under torchrun; every process gets the
    metrics (computed on rank 0)."""
    dataset = CocoInstances(json_path, image_root, keep_empty=True, strict=strict)
    network = model if isinstance(model, torch.nn.Module) else None
    was_training = network is not None and network.training
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if torch.distributed.is_initialized() else (0, 1)
    mine = collect_results(model, dataset, category_ids_for(class_names, dataset), batch_size=batch_size,
                           max_images=max_images, rank=rank, world_size=world, progress=progress)
    if network is not None:
        network.train(was_training)
    gathered = distributed.gather_objects(mine)
    metrics: Dict[str, Optional[float]] = {}
    if rank == 0:
        count = len(dataset) if max_images is None else min(max_images, len(dataset))
        results = [r for part in gathered for r in part]
        metrics = coco_mask_metrics(dataset.coco, results, dataset.image_ids[:count], verbose)
    return distributed.broadcast_object(metrics)


def evaluate(checkpoint: str | Path | torch.nn.Module, json_path: str | Path, image_root: str | Path, *,
             class_names: Optional[Sequence[str]] = None, device: str = "auto", batch_size: int = 4,
             max_images: Optional[int] = None, progress: bool = True, verbose: bool = False,
             strict: bool = False) -> Dict[str, Optional[float]]:
    """Mask AP of a checkpoint (our ``.safetensors`` of either model) or a network (then pass ``class_names``)."""
    dev = distributed.resolve_device(device)
    if isinstance(checkpoint, (str, Path)):
        model = load_predictor(checkpoint, device=str(dev), explain=False).predictor
        class_names = model.class_names
    else:
        model = checkpoint.to(dev)
        if class_names is None:
            raise ValueError("class_names are required when evaluating a model object")
    return evaluate_model(model, class_names, json_path, image_root, batch_size=batch_size, max_images=max_images,
                          progress=progress, verbose=verbose, strict=strict)


def evaluate_results(gt_json: str | Path, results_json: str | Path, image_root: str | Path | None = None, *,
                     strict: bool = False) -> Dict[str, object]:
    """Mask AP of a COCO results file (a JSON list, e.g. ``python -m fastinst predict``'s) against a
    ground-truth file; both go through the one COCO reader, so string image ids and faulty
    polygons are handled as everywhere else. When an ``images.json`` lies beside the results (as
    ``predict`` writes it, with its own image ids), results are matched to the ground truth by
    file name. An empty results file scores 0; a file none of whose results match raises
    ``CocoFormatError``.

    Returns:
        the metrics of :func:`coco_mask_metrics` plus ``"report"``: the reader's finding lines
        for both files.
    """
    parsed = read_coco(gt_json, image_root, strict=strict)
    catalogue = Path(results_json).with_name("images.json")
    names = None
    if catalogue.is_file():
        listed = load_json(catalogue)
        listed = listed.get("images", []) if isinstance(listed, dict) else []
        names = {i["id"]: i["file_name"] for i in listed if isinstance(i, dict) and "id" in i and "file_name" in i}
    results, report = read_results(results_json, parsed, strict=strict, image_names=names)
    gt = coco_from_parsed(parsed)
    metrics: Dict[str, object] = dict(coco_mask_metrics(gt, results, [i.coco_id for i in parsed.images]))
    metrics["report"] = parsed.report.lines() + report.lines()
    return metrics


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description="COCO mask AP (pycocotools) of a FastInst Studio checkpoint on a COCO-format dataset. "
                    "Runs on one process, or on several under torchrun (each predicts a share of the images).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="our checkpoint (.safetensors, from training.train or the studio)")
    source.add_argument("--results", help="a COCO results JSON to score instead of a model (e.g. from python -m fastinst predict)")
    p.add_argument("--json", required=True, help="COCO annotation file of the evaluation set")
    p.add_argument("--image-root", required=True, help="folder the file_name entries of --json are relative to")
    p.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default 4)")
    p.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images (default: all)")
    p.add_argument("--output", default=None, help="also write the metrics to this JSON file")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's choice)")
    p.add_argument("--verbose", action="store_true", help="print pycocotools' full summary table")
    p.add_argument("--strict", action="store_true", help="refuse a COCO file with any fault instead of repairing it")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.results:
            metrics = evaluate_results(args.json, args.results, args.image_root, strict=args.strict)
            for line in metrics.pop("report"):
                print(line, file=sys.stderr)
            _write_metrics(metrics, args.output)
            return 0
        info = distributed.setup(args.device)
        try:
            metrics = evaluate(args.checkpoint, args.json, args.image_root, device=str(info.device),
                               batch_size=args.batch_size, max_images=args.max_images, verbose=args.verbose,
                               strict=args.strict)
        finally:
            distributed.cleanup()
    except (AnnotationError, FastInstError, FileNotFoundError, ValueError) as error:  # bad input: one line
        print(f"error: {error}", file=sys.stderr)
        return 2
    if info.is_main:
        _write_metrics(metrics, args.output)
    return 0


def _write_metrics(metrics: Dict[str, object], output: Optional[str]) -> None:
    """Print the metrics as JSON, and write them to ``output`` (``--output``) when given."""
    text = json.dumps(metrics, indent=2)
    print(text)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)


if __name__ == "__main__":
    sys.exit(main())
