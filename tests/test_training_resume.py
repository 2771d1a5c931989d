"""Killing a run and resuming it gives bit-identical weights to an uninterrupted run (same seed),
both after a crash (SIGKILL: resume from the last periodic checkpoint) and after a graceful stop
(SIGTERM: checkpoint at the current iteration)."""
import json
import signal
import time

import pytest
import torch

from training.checkpoints import load_resume
from test_training_helpers import fast_args, run_train, start_train, tiny_dataset, weights

MAX_ITERS = 7


def iterations_logged(out):
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["iteration"] for line in path.read_text().splitlines() if "loss" in line]


def interrupt_then_resume(json_path, out, sig):
    proc = start_train(fast_args(json_path, out, MAX_ITERS))
    deadline = time.time() + 120
    while not any(it >= 3 for it in iterations_logged(out)):
        assert proc.poll() is None, "the run ended before it could be interrupted:\n" + proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    before = iterations_logged(out)
    assert max(before) < MAX_ITERS, "the interrupted run should not have finished"
    saved = load_resume(out / "last_checkpoint.pt")["iteration"]  # weights_only=True load
    result = run_train(fast_args(json_path, out, MAX_ITERS))
    assert result.returncode == 0, result.stderr
    after = iterations_logged(out)[len(before):]
    assert after[0] == saved + 1  # the second run resumed, it did not start over
    return saved, before


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    json_path = tiny_dataset(root / "data")
    result = run_train(fast_args(json_path, root / "straight", MAX_ITERS))
    assert result.returncode == 0, result.stderr
    return json_path, weights(root / "straight" / "model_final.safetensors"), root


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_sigkill_then_resume_matches_uninterrupted(uninterrupted):
    json_path, reference, root = uninterrupted
    saved, before = interrupt_then_resume(json_path, root / "killed", signal.SIGKILL)
    assert saved % 2 == 0 and saved < max(before) + 1  # the last periodic checkpoint
    assert_same(weights(root / "killed" / "model_final.safetensors"), reference)


def test_sigterm_saves_current_iteration_and_resume_matches(uninterrupted):
    json_path, reference, root = uninterrupted
    saved, before = interrupt_then_resume(json_path, root / "stopped", signal.SIGTERM)
    assert saved == max(before)  # graceful stop checkpoints the iteration it finished
    assert_same(weights(root / "stopped" / "model_final.safetensors"), reference)


def test_straight_run_differs_from_initial_weights(uninterrupted):
    from fastinst import build_model
    _, reference, _ = uninterrupted
    torch.manual_seed(42)
    init = build_model("tiny", num_classes=3).state_dict()
    assert any(not torch.equal(init[k], reference[k]) for k in reference if reference[k].is_floating_point())


def test_evaluate_cli_scores_the_trained_checkpoint(uninterrupted, tmp_path):
    import subprocess
    import sys

    from test_training_helpers import REPO, env
    json_path, _, root = uninterrupted
    out = tmp_path / "metrics.json"
    cmd = [sys.executable, "-m", "training.evaluate", "--checkpoint", str(root / "straight" / "model_final.safetensors"),
           "--json", str(json_path), "--image-root", str(json_path.parent / "images"), "--device", "cpu",
           "--max-images", "4", "--output", str(out), "--threads", "1"]
    result = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    assert 0.0 <= metrics["segm/AP"] <= 100.0 and "segm/AP-circle" in metrics
    assert json.loads(result.stdout) == metrics


def test_failed_iteration_is_saved_as_not_begun_and_resume_is_exact(tmp_path, monkeypatch):
    """A run that crashes inside an iteration resumes exactly as if it had never failed. The crash
    is an error training cannot go on from (the process runs out of memory while one of the
    iteration's images is read); an image that cannot be decoded is skipped instead, naming it
    (tests/test_coco_files.py)."""
    from training import TrainConfig, train
    from training.augment import AugmentConfig
    from training.data import CocoInstances, IterationBatchSampler
    from training.losses import LossConfig

    json_path = tiny_dataset(tmp_path / "data", num_images=6)
    threads = torch.get_num_threads()

    def config(out):
        return TrainConfig(train_json=str(json_path), image_root=str(json_path.parent / "images"), output_dir=str(out),
                           device="cpu", max_iters=6, batch_size=2, num_workers=0, num_threads=1, progress_bar=False,
                           augment=AugmentConfig(min_sizes=(96,), max_size=128, crop_prob=0.0),
                           loss=LossConfig(num_points=128), checkpoint_period=0, seed=3)
    try:
        reference = weights(train(config(tmp_path / "ref")))
        sampler = IterationBatchSampler(6, 2, seed=3, start_iter=0, max_iters=6)
        seen = {i for it in range(2) for i, _ in sampler.keys(it)}
        fail_it, victim = next((it, i) for it in range(2, 6) for i, _ in sampler.keys(it) if i not in seen)
        real_load = CocoInstances.load

        def load_out_of_memory(self, index):
            if index == victim:
                raise MemoryError(f"out of memory reading image {victim}")
            return real_load(self, index)

        monkeypatch.setattr(CocoInstances, "load", load_out_of_memory)
        with pytest.raises(MemoryError, match=f"image {victim}"):
            train(config(tmp_path / "crash"))
        assert load_resume(tmp_path / "crash" / "last_checkpoint.pt")["iteration"] == fail_it
        monkeypatch.setattr(CocoInstances, "load", real_load)
        assert_same(weights(train(config(tmp_path / "crash"))), reference)
    finally:
        torch.set_num_threads(threads)
