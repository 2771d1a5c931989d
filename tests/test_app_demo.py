"""The demo a newcomer gets from ``python launch.py``: the held-out shapes and the shipped demo
model, whose predictions must be meaningful at first sight (mask AP >= 50 on those images)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from gradio_client import Client

from app.demo import DEMO_WEIGHTS, demo_dataset, demo_split
from test_app_launch import ROOT, stop, wait_for_http
from test_app_support import as_dict, free_port


def test_demo_model_reaches_50_mask_ap_on_the_demo_images(tmp_path: Path) -> None:
    from training.evaluate import evaluate
    assert DEMO_WEIGHTS.is_file(), f"the demo model {DEMO_WEIGHTS} is not in this checkout"
    images, gt, regenerated = demo_dataset(tmp_path, log=lambda message: None)
    assert regenerated and not demo_dataset(tmp_path, log=lambda message: None)[2]
    count, _, (height, width) = demo_split()
    assert len(list(images.glob("*.png"))) == count
    metrics = evaluate(DEMO_WEIGHTS, gt, images, device="cpu", progress=False)
    assert metrics["segm/AP"] >= 50.0, metrics


def test_launch_without_arguments_serves_the_demo(tmp_path: Path) -> None:
    assert DEMO_WEIGHTS.is_file(), f"the demo model {DEMO_WEIGHTS} is not in this checkout"
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), "--port", str(port),
                             "--data-dir", str(tmp_path), "--device", "cpu"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_http(url, proc)
        client = Client(url, verbose=False)
        opened = as_dict(client.predict(1, api_name="/open_image"))
        assert "000000.png" in opened["review_state"]
        predicted = as_dict(client.predict(api_name="/predict"))
        assert "proposals from demo_model@" in predicted["status"]
        rows = as_dict(client.predict(0.5, api_name="/set_min_score"))["instance_table"]["data"]
        assert rows, "the demo model finds shapes above 0.5 on the first demo image"
    finally:
        output = stop(proc)
    assert "held-out demo images" in output


@pytest.fixture(autouse=True)
def _quiet_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")
