"""Shared helpers for the training tests: a tiny synthetic dataset and the CLI arguments of a
fast tiny-preset run (96-pixel images, few points, one thread)."""
import os
import subprocess
import sys
from pathlib import Path
from typing import List

from safetensors.torch import load_file

from training.synthetic import make_shapes_dataset

REPO = Path(__file__).resolve().parents[1]


def tiny_dataset(root: Path, num_images: int = 8, seed: int = 0) -> Path:
    """Synthetic shapes at 96x96 (the smallest size the tiny preset's 32 queries fit)."""
    return make_shapes_dataset(root, num_images, seed=seed, size=(96, 96))


def fast_args(json_path: Path, out: Path, max_iters: int, batch_size: int = 2) -> List[str]:
    """CLI arguments for a few-second tiny-preset run on CPU."""
    return ["--train-json", str(json_path), "--image-root", str(json_path.parent / "images"), "--output-dir", str(out),
            "--preset", "tiny", "--device", "cpu", "--max-iters", str(max_iters), "--batch-size", str(batch_size),
            "--aug-min-sizes", "96", "112", "--aug-max-size", "160", "--aug-crop-resize-sizes", "100", "120",
            "--aug-crop-range", "80", "110", "--num-points", "256", "--lr", "3e-4", "--num-workers", "0",
            "--threads", "1", "--log-period", "1", "--checkpoint-period", "2", "--no-progress-bar"]


def env() -> dict:
    e = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return e


def run_train(args: List[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.train", *args], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def start_train(args: List[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "training.train", *args], cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def weights(path: Path) -> dict:
    return load_file(str(path))
