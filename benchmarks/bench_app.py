"""Server time of the studio's interactive events on a 640x480 image.

    .venv/bin/python benchmarks/bench_app.py [--weights FILE] [--repeats 15]

For each event it times Gradio's own server-side processing of one request
(``Blocks.process_api``: preprocess, our handler with its render, PNG writing, postprocess), in
the view where the event matters, and then the round trip of the same event through
``gradio_client`` against the launched server (adds HTTP, queue and file download). The model's
forward pass is not part of these events: it ran once when the image was opened.

Events: select an instance (picker, and a click on the image), move the confidence slider.
(Switching the decoder head shown in Explain is no event: the browser has every head's panel.)
Target: each under 150 ms.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gradio as gr  # noqa: E402
from gradio.state_holder import SessionState as GradioSession  # noqa: E402

from app.config import StudioConfig  # noqa: E402
from app.demo import DEMO_WEIGHTS, demo_split  # noqa: E402
from app.inspect_view import visible_instances  # noqa: E402
from app.session import SessionState  # noqa: E402
from app.startup import open_project  # noqa: E402
from app.ui import build_app, start  # noqa: E402

TARGET_MS = 150.0


def make_project(folder: Path, weights: Path) -> Any:
    """A 640x480 synthetic-shapes project; the benchmark image is the one (of a few, all predicted
    once) where the model finds the most instances, first in the project's order."""
    from training.synthetic import make_shapes_dataset
    make_shapes_dataset(folder / "shapes", 6, demo_split()[1], size=(480, 640))
    config = StudioConfig(images=folder / "shapes" / "images", weights=weights, data_dir=folder / "data",
                          device="cpu")
    project = open_project(config, log=lambda m: None)
    counts = {e.id: project.predict(e.id) for e in project.images()}
    best = max(counts, key=counts.get)
    if counts[best] < 2:
        raise SystemExit("the model finds fewer than 2 instances on every benchmark image")
    return project, best


def fn_index(demo: gr.Blocks, api_name: str | None = None, trigger: tuple[str, str] | None = None) -> int:
    """Index of the event function by API name, or by (elem_id, event name) for private ones."""
    for index, fn in demo.fns.items():
        if api_name is not None and fn.api_name == api_name:
            return index
        if trigger is not None and any(
                getattr(demo.blocks.get(block_id), "elem_id", None) == trigger[0] and name == trigger[1]
                for block_id, name in fn.targets):
            return index
    raise KeyError(api_name or trigger)


def timed(repeats: int, call: Callable[[int], Any]) -> list[float]:
    """Milliseconds of ``call(k)`` for k in range(repeats), after one warm-up call."""
    call(-1)
    out = []
    for k in range(repeats):
        t0 = time.perf_counter()
        call(k)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def working_threshold(project: Any, image_id: int, count: int = 8) -> float:
    """0.3, or lower when fewer than ``count`` predictions reach it (an untrained model), so that a
    realistic number of masks is drawn."""
    scores = sorted((i.score or 0.0 for i in project.instances(image_id)), reverse=True)
    return min(0.3, scores[min(count, len(scores)) - 1]) if scores else 0.3


def server_times(project: Any, image_id: int, repeats: int) -> dict[str, list[float]]:
    """process_api timings of each event in its view."""
    demo = build_app(project, png_level=0)   # as launched on 127.0.0.1 (see app.ui.start)
    threshold = working_threshold(project, image_id)
    shown = visible_instances(project.instances(image_id), threshold)
    ids = [i.id for i in shown]
    print(f"{len(ids)} instances shown at confidence >= {threshold:.3f}")
    session = GradioSession(demo)
    state_block = next(b for b in demo.blocks.values() if isinstance(b, gr.State))
    session[state_block._id] = SessionState(image_id=image_id, min_score=threshold)
    state = session[state_block._id]
    loop = asyncio.new_event_loop()

    def run(index: int, inputs: list[Any], event_data: Any = None) -> None:
        loop.run_until_complete(demo.process_api(index, inputs, session, event_data=event_data))

    select = fn_index(demo, "select_instance")
    slider = fn_index(demo, "set_min_score")
    click = fn_index(demo, trigger=("inspect-image", "select"))
    click_block = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "inspect-image")
    points = []
    for inst in shown:
        ys, xs = inst.mask.nonzero()
        points.append([int(xs[len(xs) // 2]), int(ys[len(ys) // 2])])
    results: dict[str, list[float]] = {}
    for tab in ("inspect", "explain", "correct"):
        state.tab = tab
        results[f"select instance ({tab})"] = timed(repeats, lambda k: run(select, [None, ids[k % 2]]))
        results[f"confidence slider ({tab})"] = timed(
            repeats, lambda k: run(slider, [None, threshold + 0.001 * (k % 3)]))
    state.tab = "inspect"
    results["click on a mask (inspect)"] = timed(repeats, lambda k: run(click, [None], gr.EventData(
        click_block, {"x": points[k % 2][0], "y": points[k % 2][1], "tool": "select", "pick": ids[k % 2], "seq": k})))
    loop.close()
    return results


def client_times(project: Any, image_id: int, repeats: int) -> dict[str, list[float]]:
    """Round trips through gradio_client against the launched server (inspect view)."""
    from gradio_client import Client
    demo = start(project, port=None, block=False)
    try:
        client = Client(demo.local_url, verbose=False)
        threshold = working_threshold(project, image_id)
        client.predict(image_id, api_name="/open_image")
        client.predict(threshold, api_name="/set_min_score")
        ids = [i.id for i in visible_instances(project.instances(image_id), threshold)]
        return {
            "select instance (client round trip)": timed(
                repeats, lambda k: client.predict(ids[k % 2], api_name="/select_instance")),
            "confidence slider (client round trip)": timed(
                repeats, lambda k: client.predict(threshold + 0.001 * (k % 3), api_name="/set_min_score")),
        }
    finally:
        demo.close()


def report(results: dict[str, list[float]]) -> None:
    """Print median and 90th percentile per event."""
    print(f"{'event':42s} {'median ms':>10s} {'p90 ms':>8s}  under {TARGET_MS:.0f} ms")
    for name, values in results.items():
        values = sorted(values)
        median = statistics.median(values)
        p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
        print(f"{name:42s} {median:10.1f} {p90:8.1f}  {'yes' if median < TARGET_MS else 'NO'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEMO_WEIGHTS, help="model checkpoint (default: the demo model)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-client", action="store_true", help="skip the gradio_client round trips")
    args = parser.parse_args()
    import torch
    print(f"torch threads {torch.get_num_threads()}, image 640x480, weights {args.weights.name}")
    with tempfile.TemporaryDirectory() as tmp:
        project, image_id = make_project(Path(tmp), args.weights)
        results = server_times(project, image_id, args.repeats)
        if not args.no_client:
            results.update(client_times(project, image_id, args.repeats))
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
