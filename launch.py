"""Start FastInst Studio: ``python launch.py`` opens the demo project on http://127.0.0.1:7860.

    python launch.py                                   # demo: synthetic shapes + the shipped demo model
    python launch.py --images DIR [--coco JSON] --weights model.safetensors
    python launch.py --weights fastinst_R50.pth --preset D3-R50-640 --images DIR
    python launch.py --model queryinst --weights queryinst_r50_fpn_1x_coco_20210907_084916-5a8f1998.pth --images DIR
    python launch.py --weights fastinst.safetensors --compare queryinst.safetensors --images DIR   # side by side
    python launch.py --host 0.0.0.0 --auth alice:secret   # beyond loopback a login is required
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.config import ConfigError, StudioConfig, parse_auth


def build_parser() -> argparse.ArgumentParser:
    """The command line of the studio."""
    p = argparse.ArgumentParser(prog="launch.py", description="FastInst Studio: inspect, explain and "
                                "correct instance masks, export COCO JSON.")
    p.add_argument("--images", type=Path, help="folder of images to annotate (default: the demo project)")
    p.add_argument("--coco", type=Path, help="COCO JSON to import (file names relative to --images)")
    p.add_argument("--weights", type=Path, help="model checkpoint: ours (.safetensors) or official (.pth/.pkl)")
    p.add_argument("--model", choices=["fastinst", "queryinst"], help="the model --weights must hold (default: "
                   "whatever the file holds; a file of another model is refused with a message)")
    p.add_argument("--preset", help="architecture of an official checkpoint (e.g. D1-R50-576; QueryInst's is read "
                   "from the released file name); see python -m fastinst stats / python -m queryinst stats")
    p.add_argument("--compare", type=Path, help="weights of another model (e.g. QueryInst beside FastInst) to show "
                   "side by side with --weights on the Evaluate tab (registered as a model version)")
    p.add_argument("--db", help="annotation store URL (default: sqlite file in the project folder)")
    p.add_argument("--data-dir", type=Path, default=Path("studio-data"),
                   help="where projects, exports and fine-tuned models are kept (default: studio-data)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--auth", help="USER:PASSWORD or @FILE; required when --host is not loopback "
                   "(also read from $FASTINST_STUDIO_AUTH)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N")
    p.add_argument("--strict", action="store_true", help="refuse a --coco file with any fault instead of "
                   "repairing what can be repaired (every repair is reported either way)")
    p.add_argument("--max-pixels", type=int, help="largest image accepted, in pixels (default 100 million; "
                   "also $FASTINST_MAX_PIXELS)")
    return p


def config_from_args(argv: list[str] | None = None) -> StudioConfig:
    """Parse the command line into a validated StudioConfig (ConfigError on bad combinations)."""
    a = build_parser().parse_args(argv)
    config = StudioConfig(images=a.images, coco=a.coco, weights=a.weights, preset=a.preset, model=a.model, compare=a.compare, db=a.db,
                          host=a.host, port=a.port, auth=parse_auth(a.auth), device=a.device,
                          data_dir=a.data_dir, strict=a.strict)
    config.validate()
    if a.max_pixels:
        os.environ["FASTINST_MAX_PIXELS"] = str(a.max_pixels)  # read by fastinst.images, the one loader
    return config


def main(argv: list[str] | None = None) -> int:
    """Open the project (with console progress), build the UI and serve it until interrupted."""
    try:
        config = config_from_args(argv)
    except ConfigError as e:
        print(f"launch.py: {e}", file=sys.stderr)
        return 2
    from app.ui import serve  # heavy imports (torch, gradio) after the arguments are known good
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
