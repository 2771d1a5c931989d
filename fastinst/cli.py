"""Command line: ``python -m fastinst predict|stats``.

predict: images -> COCO results JSON + overlay PNGs, with a progress bar.
stats:   parameters and GFLOPs of each preset (``torch.utils.flop_counter``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from PIL import Image
from tqdm import tqdm

from .errors import FastInstError
from .images import IMAGE_SUFFIXES
from .presets import PRESETS, build_model



def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastinst", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_predict(sub, "fastinst")
    add_predict_folder(sub, "fastinst")
    _add_stats(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except FastInstError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def add_predict(sub, model: str) -> None:
    """The ``predict`` command for ``model`` (a key of :data:`engines.load.MODELS`); the same command
    serves every model (``python -m queryinst predict`` adds it with ``"queryinst"``)."""
    from engines.load import display_name, presets

    name = display_name(model)
    p = sub.add_parser("predict", help="segment images; write COCO results JSON and overlay PNGs")
    p.add_argument("images", nargs="+", help="image files or folders of images")
    p.add_argument("--weights", required=True, help=f"a FastInst Studio .safetensors checkpoint of {name}, or a "
                   "released .pth/.pkl")
    p.add_argument("--preset", choices=sorted(presets(model)), help="architecture of a released checkpoint "
                   f"(see python -m {model} stats)")
    p.add_argument("--class-names", help="JSON file with the class names of an official checkpoint (default: COCO's 80)")
    p.add_argument("--out", default="predictions", help="output folder (default: %(default)s)")
    p.add_argument("--score-threshold", type=_score, default=0.3,
                   help="minimum score for overlays and results (default: %(default)s; 0 keeps all)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    if model == "fastinst":
        _add_backend(p)
    p.add_argument("--no-overlays", action="store_true", help="write only the JSON")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist in --out")
    p.add_argument("--max-pixels", type=int, default=None, help="largest image accepted, in pixels (default 100 "
                   "million, or $FASTINST_MAX_PIXELS); larger ones are skipped with a message")
    p.set_defaults(func=_predict, model=model)


def add_predict_folder(sub, model: str) -> None:
    """The ``predict-folder`` command for ``model`` (one command for every model, as :func:`add_predict`)."""
    from engines.load import presets

    p = sub.add_parser("predict-folder", help="segment every image under a folder into one results JSON: batched, "
                       "resumable, sharded under torchrun (see fastinst.folder_predict)")
    p.add_argument("root", help="folder of images (searched recursively)")
    p.add_argument("--weights", required=True, help="as for predict")
    p.add_argument("--preset", choices=sorted(presets(model)), help="architecture of an official checkpoint")
    p.add_argument("--class-names", help="JSON file with the class names of an official checkpoint (default: COCO's 80)")
    p.add_argument("--out", required=True, help="merged results JSON (partial results go to OUT.parts/)")
    p.add_argument("--batch-size", type=_count(1), default=4)
    p.add_argument("--workers", type=_count(0), default=2, help="image-loading processes per rank (default: %(default)s)")
    p.add_argument("--score-threshold", type=_score, default=0.0, help="minimum score kept (default: keep all)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present; one GPU per torchrun rank), cpu, cuda")
    if model == "fastinst":
        _add_backend(p)
    p.add_argument("--overwrite", action="store_true", help="discard earlier (partial) results and start again")
    p.add_argument("--max-pixels", type=_count(1), default=None, help="largest image accepted, in pixels (default "
                   "100 million, or $FASTINST_MAX_PIXELS); larger ones are recorded under errors")
    p.set_defaults(func=_predict_folder, model=model)


def _score(text: str) -> float:
    """An argparse type: a score threshold, a number (``nan`` would keep every instance; above 1
    keeps none)."""
    value = float(text)
    if value != value:
        raise argparse.ArgumentTypeError(f"a score threshold is a number (scores are 0 to 1), not {text}")
    return value


def _count(least: int):
    """An argparse type: an integer of at least ``least``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"at least {least}, not {text}")
        return value
    return parse


def _add_backend(p) -> None:
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch",
                   help="run the network with PyTorch (default) or onnxruntime on the CPU (exported to ONNX on "
                   "first use per input size; needs the 'onnx' extra)")


def _predict_folder(args) -> int:
    from .folder_predict import close_distributed, init_distributed, list_images, predict_folder

    if not list_images(args.root):
        raise FastInstError(f"no images found under {args.root}")
    if args.max_pixels:   # read by the image loader, in this process and the loading workers
        os.environ["FASTINST_MAX_PIXELS"] = str(args.max_pixels)
    backend = getattr(args, "backend", "torch")
    shard, device = init_distributed("cpu" if backend == "onnxruntime" and args.device == "auto" else args.device)
    args.device = str(device)
    try:
        out = predict_folder(_load_predictor(args), args.root, args.out, batch_size=args.batch_size,
                             num_workers=args.workers, score_threshold=args.score_threshold, shard=shard,
                             overwrite=args.overwrite, run_options=_run_options(args))
    finally:
        close_distributed()
    if out is None:
        return 0
    print(f"results -> {out}")
    errors = json.loads(Path(out).read_text()).get("errors", [])
    for error in errors:  # the run went on; each unreadable image gets one line
        print(f"skipped {error['file_name']}: {error['error']}", file=sys.stderr)
    # exit 2 says some images were skipped; under torchrun that would read as a crashed rank, so 0 there
    return 2 if errors and shard.world_size == 1 else 0


def _run_options(args) -> dict:
    """What a resumed ``predict-folder`` must share with the stopped run: the weights (by content:
    the start of their SHA-256, so a copy or a moved file is the same weights and a file saved again
    with new weights is not), model, preset, backend."""
    digest = hashlib.sha256()
    with open(args.weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"weights": digest.hexdigest()[:12], "model": args.model, "preset": args.preset,
            "backend": getattr(args, "backend", "torch")}


def _add_stats(sub) -> None:
    p = sub.add_parser("stats", help="parameters and GFLOPs per preset")
    p.add_argument("--presets", nargs="*", default=[n for n in PRESETS], help="presets to measure (default: all)")
    p.add_argument("--height", type=int, default=None, help="input height (default: the preset's test size)")
    p.add_argument("--width", type=int, default=None, help="input width (default: 4:3 of the test size)")
    p.set_defaults(func=_stats)


def _load_predictor(args):
    """The predictor of ``--weights`` (through :func:`engines.load.load_predictor`, which refuses
    another model's weights with a message naming both)."""
    from engines.load import load_predictor, read_class_names

    backend = getattr(args, "backend", "torch")    # FastInst only (its onnxruntime path)
    if backend == "onnxruntime" and args.device not in ("auto", "cpu"):
        raise FastInstError(f"--backend onnxruntime runs on the CPU; drop --device {args.device} or use --device cpu")
    names = read_class_names(args.class_names) if args.class_names else None
    extra = {"backend": backend} if backend != "torch" else {}
    return load_predictor(args.weights, model=args.model, preset=args.preset, device=args.device,
                          class_names=names, **extra).predictor


def _predict(args) -> int:
    from .coco_results import to_coco_results
    from .images import load_image
    from .visualize import colour_for, overlay_instances

    files, root = expand_images(args.images)
    if not files:
        raise FastInstError("no images found in " + ", ".join(args.images))
    out_dir = Path(args.out)
    names = [path.relative_to(root).as_posix() for path in files]
    _refuse_overwrite(out_dir, names, args)
    predictor = _load_predictor(args)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, catalogue, failed = [], [], []
    for image_id, (path, name) in enumerate(zip(tqdm(files, desc="predict", unit="img"), names), start=1):
        try:
            rgb = load_image(path, limit=args.max_pixels)
        except FastInstError as exc:  # one clear line per bad file; the others go on
            failed.append(name)
            tqdm.write(f"skipped {name}: {exc}", file=sys.stderr)
            continue
        try:
            pred = predictor.predict(rgb, min_score=args.score_threshold)
        except (RuntimeError, ValueError, MemoryError, FastInstError) as exc:  # the model failed on this image only
            failed.append(name)
            reason = str(exc) if isinstance(exc, FastInstError) else f"the model failed on it: {type(exc).__name__}: {exc}"
            tqdm.write(f"skipped {name}: {reason}", file=sys.stderr)
            continue
        catalogue.append({"id": image_id, "file_name": name, "height": pred.image_size[0], "width": pred.image_size[1]})
        results += to_coco_results(pred.masks, pred.scores, pred.classes, image_id,
                                   list(range(1, len(predictor.class_names) + 1)))
        if not args.no_overlays:
            labels = [f"{predictor.class_names[c]} {s:.2f}" for c, s in zip(pred.classes, pred.scores)]
            target = out_dir / _overlay_name(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            colours = [colour_for(i) for i in range(len(pred.masks))]
            Image.fromarray(overlay_instances(rgb, pred.masks, colours, labels)).save(target)
    (out_dir / "results.json").write_text(json.dumps(results))
    (out_dir / "images.json").write_text(json.dumps({
        "images": catalogue,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(predictor.class_names)]}))
    print(f"{len(results)} instances on {len(catalogue)} images -> {out_dir}/results.json")
    if failed:
        print(f"error: {len(failed)} of {len(files)} images were skipped (listed above)", file=sys.stderr)
        return 2
    return 0


def _overlay_name(relative: str) -> str:
    """``a/b/x.jpg`` -> ``a/b/x.jpg.overlay.png``: the suffix is kept, so x.jpg and x.png never share one."""
    return f"{relative}.overlay.png"


def _refuse_overwrite(out_dir: Path, names: Sequence[str], args) -> None:
    """A finished run's outputs are not replaced without ``--overwrite``; the overlays of a run
    stopped before its results were written are (nothing else of it was kept)."""
    targets = [out_dir / "results.json", out_dir / "images.json"]
    if not args.no_overlays and any(t.exists() for t in targets):
        targets += [out_dir / _overlay_name(n) for n in names]
    existing = [t for t in targets if t.exists()]
    if existing and not args.overwrite:
        raise FastInstError(f"{existing[0]} exists ({len(existing)} outputs in all would be replaced); "
                            f"pass --overwrite or choose another --out")
    if out_dir.is_dir():  # every overlay of an earlier run (finished and overwritten, or stopped) goes:
        for stale in out_dir.rglob("*.overlay.png"):   # this run draws its own, or none with --no-overlays
            stale.unlink()


def expand_images(items: Sequence[str]) -> Tuple[List[Path], Path]:
    """Files as given and folders searched recursively for images (sorted), with the root that
    output names are relative to: the deepest folder holding every input. Each output is named
    from its input's path below that root, so two inputs never share an output."""
    files: List[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    unique = list(dict.fromkeys(p.resolve() for p in files))
    if not unique:
        return [], Path(".")
    folders = [str(p.parent) for p in unique]
    dirs = [str(Path(i).resolve()) for i in items if Path(i).is_dir()]
    root = Path(os.path.commonpath(folders + dirs))
    return unique, root


def count_flops(model: torch.nn.Module, height: int, width: int) -> float:
    """Multiply-adds of one forward pass on a ``height x width`` input, in G (the detectron2/fvcore
    convention the paper's GFLOPs use: one multiply-add = one FLOP). Deformable convolutions are
    counted as plain 3x3 convolutions of the same shape."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    images = [torch.zeros(3, height, width)]
    with torch.no_grad():
        batch, _ = model.preprocess(images)
        with FlopCounterMode(display=False) as counter:
            model(batch)
        extra = _deform_conv_flops(model, batch)
    return (counter.get_total_flops() / 2 + extra) / 1e9


def _deform_conv_flops(model: torch.nn.Module, batch: torch.Tensor) -> float:
    """Multiply-adds of the DCN layers (torchvision's op is invisible to the flop counter)."""
    from .backbones.resnet_d import DeformConv2d

    total = 0.0
    hooks = []

    def hook(module, inputs, output):
        nonlocal total
        _, cout, h, w = output.shape
        total += cout * h * w * module.weight[0].numel()

    for m in model.modules():
        if isinstance(m, DeformConv2d):
            hooks.append(m.register_forward_hook(hook))
    try:
        model(batch)
    finally:
        for h in hooks:
            h.remove()
    return total


def _stats(args) -> int:
    print(f"{'preset':18s} {'params (M)':>11s} {'input':>10s} {'GFLOPs':>8s}")
    for name in args.presets:
        model = build_model(name)
        spec = model.input_spec
        height = args.height or spec.min_size
        width = args.width or int(round(height * 4 / 3))
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name:18s} {params:11.2f} {f'{height}x{width}':>10s} {count_flops(model, height, width):8.1f}",
              flush=True)
    return 0


def coco_class_names() -> List[str]:
    """The 80 COCO thing classes in contiguous order (the official checkpoints' classes)."""
    return COCO_CLASSES.split(",")


COCO_CLASSES = (
    "person,bicycle,car,motorcycle,airplane,bus,train,truck,boat,traffic light,fire hydrant,stop sign,"
    "parking meter,bench,bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe,backpack,umbrella,handbag,"
    "tie,suitcase,frisbee,skis,snowboard,sports ball,kite,baseball bat,baseball glove,skateboard,surfboard,"
    "tennis racket,bottle,wine glass,cup,fork,knife,spoon,bowl,banana,apple,sandwich,orange,broccoli,carrot,"
    "hot dog,pizza,donut,cake,chair,couch,potted plant,bed,dining table,toilet,tv,laptop,mouse,remote,"
    "keyboard,cell phone,microwave,oven,toaster,sink,refrigerator,book,clock,vase,scissors,teddy bear,"
    "hair drier,toothbrush"
)

if __name__ == "__main__":
    sys.exit(main())
