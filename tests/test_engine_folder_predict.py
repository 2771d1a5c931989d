"""Folder prediction at scale: batched, resumable, and sharded under torchrun with one merged file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastinst import FastInstError, Predictor, build_model, save_checkpoint
from fastinst.folder_predict import Shard, list_images, parts_dir, predict_folder

REPO = Path(__file__).resolve().parents[1]
NAMES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("folder")
    torch.manual_seed(0)
    model = build_model("tiny", num_classes=3).eval()
    weights = tmp / "tiny.safetensors"
    save_checkpoint(weights, model, preset="tiny", class_names=NAMES)
    root = tmp / "images"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    sizes = [(96, 128)] * 4 + [(128, 96), (100, 150)]
    for i, (h, w) in enumerate(sizes):
        folder = root / "sub" if i == 5 else root
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    return model, weights, root


def _predictor(model):
    return Predictor(model, NAMES, device="cpu", topk=10)


def test_single_process_batches_resumes_and_refuses_overwrite(setup, tmp_path):
    model, _, root = setup
    assert list_images(root) == ["broken.jpg", "im0.png", "im1.png", "im2.png", "im3.png", "im4.png", "sub/im5.png"]
    out = tmp_path / "results.json"
    predict_folder(_predictor(model), root, out, batch_size=3, num_workers=0, progress=False)
    merged = json.loads(out.read_text())
    assert [im["file_name"] for im in merged["images"]] == list_images(root)[1:]
    assert merged["errors"][0]["file_name"] == "broken.jpg" and "broken.jpg" in merged["errors"][0]["error"]
    assert len(merged["annotations"]) == 6 * 10 and not parts_dir(out).exists()
    # batched results equal one-image predictions
    single = _predictor(model).predict(root / "im2.png")
    mine = [a for a in merged["annotations"] if a["image_id"] == 4]
    np.testing.assert_allclose([a["score"] for a in mine], single.scores, atol=1e-5)

    with pytest.raises(FastInstError, match="exists; pass --overwrite"):
        predict_folder(_predictor(model), root, out, num_workers=0, progress=False)

    # a crash after im0 was written (and in the middle of the next line): resume skips im0 only
    out.unlink()
    parts_dir(out).mkdir()
    marker = {"file_name": "im0.png", "height": 96, "width": 128, "annotations": []}
    (parts_dir(out) / "rank1.jsonl").write_text(json.dumps(marker) + "\n" + '{"file_name": "im1.p')
    predict_folder(_predictor(model), root, out, batch_size=2, num_workers=0, progress=False)
    resumed = json.loads(out.read_text())
    assert not [a for a in resumed["annotations"] if a["image_id"] == 2]  # im0: the record from before the crash
    assert len(resumed["annotations"]) == 5 * 10


def test_torchrun_two_cpu_processes_merge_to_the_single_process_output(setup, tmp_path):
    model, weights, root = setup
    single = tmp_path / "single.json"
    predict_folder(Predictor.from_checkpoint(weights, device="cpu"), root, single, batch_size=2, num_workers=0,
                   shard=Shard(), progress=False)
    sharded = tmp_path / "sharded.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "fastinst", "predict-folder", str(root), "--weights", str(weights), "--out", str(sharded),
           "--batch-size", "2", "--workers", "1", "--device", "cpu"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    a, b = json.loads(single.read_text()), json.loads(sharded.read_text())
    assert a["images"] == b["images"] and a["errors"] == b["errors"] and a["categories"] == b["categories"]
    assert len(a["annotations"]) == len(b["annotations"]) == 6 * 96  # 32 queries x 3 classes per image
    for x, y in zip(a["annotations"], b["annotations"]):
        assert (x["image_id"], x["category_id"], x["segmentation"]) == (y["image_id"], y["category_id"], y["segmentation"])
        assert abs(x["score"] - y["score"]) < 1e-5


def test_cli_names_an_empty_folder(tmp_path):
    run = subprocess.run([sys.executable, "-m", "fastinst", "predict-folder", str(tmp_path), "--weights", "x.safetensors",
                          "--out", str(tmp_path / "r.json"), "--device", "cpu"],
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "no images found under" in run.stderr


def test_cli_names_each_skipped_image_and_exits_2(setup, tmp_path, capsys):
    from fastinst.cli import main
    _, weights, root = setup
    code = main(["predict-folder", str(root), "--weights", str(weights), "--out", str(tmp_path / "r.json"),
                 "--workers", "0", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "skipped broken.jpg: " in err and (tmp_path / "r.json").is_file()


def test_queryinst_predicts_a_folder_with_the_same_command(setup, tmp_path):
    """``python -m queryinst predict-folder``: the same folder run as FastInst's, with QueryInst's own
    resize rule; every image's results equal its one-image prediction, and the broken file is named."""
    import queryinst
    from queryinst.cli import main

    _, _, root = setup
    torch.manual_seed(0)
    model = queryinst.build_model("tiny", num_classes=3).eval()
    weights = tmp_path / "queryinst_tiny.safetensors"
    queryinst.save_checkpoint(weights, model, preset="tiny", class_names=NAMES)
    out = tmp_path / "r.json"
    assert main(["predict-folder", str(root), "--weights", str(weights), "--out", str(out), "--batch-size", "3",
                 "--workers", "1", "--device", "cpu"]) == 2      # 2: broken.jpg was skipped
    merged = json.loads(out.read_text())
    assert [e["file_name"] for e in merged["errors"]] == ["broken.jpg"]
    assert [im["file_name"] for im in merged["images"]] == list_images(root)[1:]
    single = queryinst.Predictor.from_checkpoint(weights, device="cpu").predict(root / "sub" / "im5.png")
    mine = [a for a in merged["annotations"] if a["image_id"] == 7]
    assert len(mine) == len(single) > 0
    np.testing.assert_allclose([a["score"] for a in mine], single.scores, atol=1e-5)
    assert merged["images"][-1]["height"] == 100 and merged["images"][-1]["width"] == 150
