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
    (parts_dir(out) / "run.json").write_text(json.dumps({"score_threshold": 0.0, "class_names": NAMES}))
    from fastinst.folder_predict import _file_identity

    marker = {"file_name": "im0.png", "file": _file_identity(root / "im0.png"), "height": 96, "width": 128,
              "annotations": []}
    (parts_dir(out) / "rank1.jsonl").write_text(json.dumps(marker) + "\n" + '{"file_name": "im1.p')
    predict_folder(_predictor(model), root, out, batch_size=2, num_workers=0, progress=False)
    resumed = json.loads(out.read_text())
    assert not [a for a in resumed["annotations"] if a["image_id"] == 2]  # im0: the record from before the crash
    assert len(resumed["annotations"]) == 5 * 10


def _stopped_run(model, root: Path, out: Path, first: int, **options) -> None:
    """A run stopped (as by Ctrl+C) once ``first`` images are done: the run's own part files."""
    import shutil

    from fastinst.folder_predict import _file_identity

    done = root.parent / f"{out.stem}-done"
    shutil.copytree(root, done)
    for name in list_images(root)[first:]:
        (done / name).unlink()
    predict_folder(_predictor(model), done, out, num_workers=0, progress=False, **options)
    merged = json.loads(out.read_text())   # turn the finished run back into its part file
    parts_dir(out).mkdir()
    (parts_dir(out) / "run.json").write_text(json.dumps({"score_threshold": options.get("score_threshold", 0.0),
                                                          "class_names": NAMES}))
    by_id = {im["id"]: im for im in merged["images"]}
    with open(parts_dir(out) / "rank0.jsonl", "w") as part:
        for image_id, im in by_id.items():
            anns = [a for a in merged["annotations"] if a["image_id"] == image_id]
            part.write(json.dumps({"file_name": im["file_name"], "file": _file_identity(root / im["file_name"]),
                                   "height": im["height"], "width": im["width"], "annotations": anns}) + "\n")
    out.unlink()


def test_a_resume_after_the_folder_changed_keeps_each_result_on_its_image(setup, tmp_path):
    """Stopped after 3 images; a new photo that sorts first arrives; the resumed results give every
    annotation the id of the image it was predicted on, as a clean run does."""
    import shutil

    model, _, original = setup
    root = tmp_path / "images"
    shutil.copytree(original, root)
    out = tmp_path / "r.json"
    _stopped_run(model, root, out, 3)
    Image.fromarray(np.full((96, 128, 3), 200, np.uint8)).save(root / "a_new.png")
    predict_folder(_predictor(model), root, out, batch_size=2, num_workers=0, progress=False)
    clean = tmp_path / "clean.json"
    predict_folder(_predictor(model), root, clean, batch_size=2, num_workers=0, progress=False)
    got, expected = json.loads(out.read_text()), json.loads(clean.read_text())
    assert got["images"] == expected["images"]
    pairs = lambda d: sorted((a["image_id"], a["category_id"], a["segmentation"]["counts"]) for a in d["annotations"])
    assert pairs(got) == pairs(expected)


def test_a_photo_replaced_under_its_name_is_predicted_again_on_resume(setup, tmp_path):
    import shutil

    model, _, original = setup
    root = tmp_path / "images"
    shutil.copytree(original, root)
    out = tmp_path / "r.json"
    _stopped_run(model, root, out, 3)
    replaced = list_images(root)[1]                      # done before the stop
    Image.fromarray(np.full((130, 90, 3), 30, np.uint8)).save(root / replaced)
    predict_folder(_predictor(model), root, out, num_workers=0, progress=False)
    clean = tmp_path / "clean.json"
    predict_folder(_predictor(model), root, clean, num_workers=0, progress=False)
    got, expected = json.loads(out.read_text()), json.loads(clean.read_text())
    assert got["images"] == expected["images"]
    assert [im for im in got["images"] if im["file_name"] == replaced][0]["height"] == 130
    pairs = lambda d: sorted((a["image_id"], a["segmentation"]["counts"]) for a in d["annotations"])
    assert pairs(got) == pairs(expected)


def test_a_resume_with_other_options_is_refused(setup, tmp_path):
    model, _, root = setup
    out = tmp_path / "r.json"
    _stopped_run(model, root, out, 2, score_threshold=0.5)
    with pytest.raises(FastInstError, match=r"other options.*score_threshold 0.5 -> 0.0"):
        predict_folder(_predictor(model), root, out, num_workers=0, progress=False)
    predict_folder(_predictor(model), root, out, num_workers=0, progress=False, score_threshold=0.5)
    assert len(json.loads(out.read_text())["images"]) == 6


def test_scan_strips_and_panoramas_are_predicted(tmp_path):
    """Images whose resized stride-16 map is smaller than the query count (a 4:1 panorama and a
    17x1000 strip under the demo model's 96x128 input) or that shrink below one pixel (3x2000) are
    predicted, not failed: the input is padded until the queries fit."""
    from fastinst import load_checkpoint

    model, info = load_checkpoint(REPO / "app" / "assets" / "demo_model.safetensors")
    root = tmp_path / "odd"
    root.mkdir()
    for h, w in ((1000, 4000), (17, 1000), (3, 2000), (2000, 3)):
        Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(root / f"{h}x{w}.png")
    out = tmp_path / "r.json"
    predict_folder(Predictor(model, info.class_names, device="cpu"), root, out, num_workers=0, progress=False)
    merged = json.loads(out.read_text())
    assert merged["errors"] == [] and len(merged["images"]) == 4
    assert {(im["height"], im["width"]) for im in merged["images"]} == {(1000, 4000), (17, 1000), (3, 2000), (2000, 3)}


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


@pytest.mark.parametrize("extra,message", [
    (["--batch-size", "0"], "argument --batch-size: at least 1, not 0"),
    (["--workers", "-1"], "argument --workers: at least 0, not -1"),
    (["--score-threshold", "nan"], "argument --score-threshold: a score threshold is a number"),
    (["--device", "cuda"], "this machine has no CUDA device"),
    (["--max-pixels", "0"], "argument --max-pixels: at least 1, not 0"),
])
def test_cli_refuses_bad_options_in_one_line(setup, tmp_path, capsys, extra, message):
    from fastinst.cli import main

    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _, weights, root = setup
    try:
        code = main(["predict-folder", str(root), "--weights", str(weights), "--out", str(tmp_path / "r.json"), *extra])
    except SystemExit as exit:   # argparse's own refusal
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "r.json").exists()


def test_cli_max_pixels_applies_to_the_loading_workers(setup, tmp_path, capsys, monkeypatch):
    """``--max-pixels`` (the remedy the pixel-limit message names) works for predict-folder too,
    in its loading worker processes: every image over it is recorded, named, and the run ends."""
    from fastinst.cli import main

    monkeypatch.setenv("FASTINST_MAX_PIXELS", "")   # the default; restored after the CLI sets it
    _, weights, root = setup
    out = tmp_path / "r.json"
    code = main(["predict-folder", str(root), "--weights", str(weights), "--out", str(out), "--workers", "1",
                 "--device", "cpu", "--max-pixels", "10000"])
    errors = json.loads(out.read_text())["errors"]
    assert code == 2 and len(errors) == 7
    assert any("over the pixel limit of 10,000" in e["error"] and e["file_name"] == "im0.png" for e in errors)
