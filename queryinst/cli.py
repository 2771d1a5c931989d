"""Command line: ``python -m queryinst predict|stats``.

predict: images -> COCO results JSON + overlay PNGs (the project's one predict command,
         :func:`fastinst.cli.add_predict`, here refusing weights of another model).
predict-folder: every image under a folder -> one results JSON, batched, resumable, sharded under
         torchrun (the same command as FastInst's, :mod:`fastinst.folder_predict`).
stats:   parameters and GFLOPs of each QueryInst preset, with FastInst's presets beside them.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

import torch

from fastinst.cli import add_predict, add_predict_folder
from fastinst.errors import FastInstError

from .presets import PRESETS, build_model


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m queryinst", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_predict(sub, "queryinst")
    add_predict_folder(sub, "queryinst")
    s = sub.add_parser("stats", help="parameters and GFLOPs per preset, beside FastInst's")
    s.add_argument("--presets", nargs="*", default=list(PRESETS), help="QueryInst presets (default: all)")
    s.add_argument("--no-fastinst", action="store_true", help="leave out the FastInst presets")
    s.set_defaults(func=_stats)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except FastInstError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def count_flops(model: torch.nn.Module, height: int, width: int) -> float:
    """Multiply-adds (G) of one inference forward on a ``height x width`` input (one multiply-add =
    one FLOP, the fvcore convention); RoIAlign and the paste are not counted (no flop formula)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad():
        batch, sizes = model.preprocess([torch.zeros(3, height, width)])
        with FlopCounterMode(display=False) as counter:
            model(batch, sizes)
    return counter.get_total_flops() / 2 / 1e9


def _stats(args) -> int:
    print(f"{'model':10s} {'preset':16s} {'params (M)':>11s} {'input':>10s} {'GFLOPs':>8s}")
    for name in args.presets:
        _stats_row("QueryInst", name, build_model(name), count_flops)
    if not args.no_fastinst:
        from fastinst.cli import count_flops as fastinst_flops
        from fastinst.presets import PRESETS as FASTINST_PRESETS, build_model as build_fastinst

        for name in FASTINST_PRESETS:
            _stats_row("FastInst", name, build_fastinst(name), fastinst_flops)
    return 0


def _stats_row(label: str, preset: str, model: torch.nn.Module,
               flops: Callable[[torch.nn.Module, int, int], float]) -> None:
    """One line: parameters and GFLOPs on a 4:3 input at the preset's test size."""
    height = model.input_spec.min_size
    width = min(int(round(height * 4 / 3)), model.input_spec.max_size)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{label:10s} {preset:16s} {params:11.2f} {f'{height}x{width}':>10s} "
          f"{flops(model, height, width):8.1f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
