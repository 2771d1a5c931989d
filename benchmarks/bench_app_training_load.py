"""Studio round trips while a fine-tuning run trains in its worker process, against idle.

    .venv/bin/python benchmarks/bench_app_training_load.py [--rounds 15]

Opens a 5-image synthetic project with the demo model, times open image / move the slider /
select (through ``gradio_client``) idle, then starts a run from the Fine-tune view and times the
same while it trains; prints medians, p90 and the ratio (measured in the same process, so the
ratio stays meaningful on a shared machine).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gradio_client import Client  # noqa: E402

from test_app_support import make_project, served  # noqa: E402
from load_check import measure  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="cycles of three interactions per phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp), num_images=5, size=(240, 320))
        for entry in project.images():
            project.store.set_review_state(entry.id, "reviewed")
        with served(project) as url:
            times = measure(Client(url, verbose=False), project, rounds=args.rounds, iterations=2000)
    print(times.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
