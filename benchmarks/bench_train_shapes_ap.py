"""Train the tiny preset from scratch on synthetic shapes on CPU; print held-out mask AP and time.

Uses the demo dataset and recipe of ``training.make_demo_model`` (generator seeds in
``DEMO_DATA``), so the figure printed is the one the shipped demo model reproduces. The baseline,
in the same process, is the AP of the same model before training (its random initialisation).

    .venv/bin/python benchmarks/bench_train_shapes_ap.py               # ~15 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_train_shapes_ap.py --iters 300   # quick look
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastinst import build_model  # noqa: E402
from training.evaluate import evaluate, evaluate_model  # noqa: E402
from training.make_demo_model import DEMO_DATA, demo_config, make_demo_dataset  # noqa: E402
from training.trainer import train  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=None, help="training iterations (default: the demo recipe's)")
    p.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (1 is fastest on a shared 2-core box)")
    p.add_argument("--work-dir", default=None, help="keep data and run here (default: a temporary folder)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    work = Path(a.work_dir) if a.work_dir else Path(tempfile.mkdtemp(prefix="bench_shapes_"))
    t0 = time.perf_counter()
    train_json, val_json = make_demo_dataset(work / "data")
    t_data = time.perf_counter() - t0
    kwargs = {} if a.iters is None else {"max_iters": a.iters}
    config = demo_config(train_json, val_json, work / "run", threads=a.threads, **kwargs)
    config.device, config.resume, config.val_json = "cpu", False, None  # evaluate once, below
    torch.manual_seed(config.seed)
    untrained = build_model("tiny", num_classes=3)
    base = evaluate_model(untrained, ["circle", "square", "triangle"], val_json, val_json.parent / "images", progress=False)
    t1 = time.perf_counter()
    final = train(config)
    t_train = time.perf_counter() - t1
    t2 = time.perf_counter()
    metrics = evaluate(final, val_json, val_json.parent / "images", device="cpu", batch_size=8, progress=False)
    t_eval = time.perf_counter() - t2
    total = t_data + t_train + t_eval
    print(f"data {DEMO_DATA.train_images}+{DEMO_DATA.val_images} images {DEMO_DATA.size}: {t_data / 60:.2f} min")
    print(f"train {config.max_iters} iterations x {config.batch_size} images: {t_train / 60:.2f} min "
          f"({config.max_iters * config.batch_size / t_train:.1f} images/s, {a.threads} thread(s))")
    print(f"evaluate {DEMO_DATA.val_images} held-out images: {t_eval / 60:.2f} min")
    print(f"held-out mask AP {metrics['segm/AP']:.1f} (AP50 {metrics['segm/AP50']:.1f}, AP75 {metrics['segm/AP75']:.1f}); "
          f"untrained baseline AP {base['segm/AP']:.2f}; total {total / 60:.2f} min")
    print(json.dumps({"ap": metrics, "baseline_ap": base["segm/AP"], "minutes_total": total / 60,
                      "minutes_train": t_train / 60}, indent=1))
    if not a.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
