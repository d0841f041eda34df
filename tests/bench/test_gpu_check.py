"""bench/gpu_check.py and bench/gpu_prepare.py, the first-GPU speed check (issue 28): its parts
here (fast), and the whole check in CPU mode (slow: `bench/gpu_check.sh --cpu`)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))  # gpu_check imports gpu_prepare as its neighbour


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


gpu_check = _module("gpu_check")
gpu_prepare = _module("gpu_prepare")
throughput = _module("throughput")


def _jobs(toml: str, path: Path):
    from prunescope.study import load_spec, make_plan

    path.write_text(toml)
    return make_plan(load_spec(path)).jobs


@pytest.mark.parametrize("profile", [gpu_check.GPU, gpu_check.CPU], ids=["gpu", "cpu"])
def test_study_files_plan_the_check_and_share_model_zero(profile, tmp_path):
    """The end-to-end study is a pack of `models` ResNet-20 with MP and UP at two ratios; the
    solo study's one training job is the pack study's model 0 (same id), which is what makes
    the pack-vs-solo comparison a comparison of one model trained two ways."""
    g = profile.models  # the study packs all its models together
    pack = _jobs(gpu_check.study_toml(profile, name="c", output=tmp_path / "s",
                                      models=profile.models, pack_size=g,
                                      methods=("mp", "up")), tmp_path / "pack.toml")
    solo = _jobs(gpu_check.study_toml(profile, name="c1", output=tmp_path / "o", models=1,
                                      pack_size=1, methods=()), tmp_path / "solo.toml")
    kinds = {k: [j for j in pack if j.kind == k] for k in {j.kind for j in pack}}
    m = profile.models
    assert {k: len(v) for k, v in kinds.items()} == {
        "train": m, "gradients": m, "prune_finetune": m * 2 * len(profile.ratios),
        "evaluate": m * (1 + 2 * len(profile.ratios))}
    assert {j.arch for j in pack} == {"resnet20"} and len(profile.ratios) == 2
    [solo_train] = [j for j in solo if j.kind == "train"]
    [pack_zero] = [j for j in kinds["train"] if j.model == 0]
    assert solo_train.id == pack_zero.id
    assert "pack_size = 8" in gpu_check.study_toml(gpu_check.GPU, name="c", output=tmp_path,
                                                   models=8, pack_size=8, methods=("mp",))


def _fake_cifar(root: Path, per_class: tuple[int, int]) -> None:
    """A cache of CIFAR-10's layout with `per_class` (train, test) images per class, sorted by
    class as the real cache is (the subset cut reads any such cache)."""
    from prunescope.data.registry import _write_cache
    from prunescope.data.sources import Decoded

    rng = np.random.default_rng(0)
    splits = {}
    for split, n in zip(("train", "test"), per_class):
        y = np.repeat(np.arange(10, dtype=np.int64), n)
        splits[split] = (rng.integers(0, 256, (len(y), 32, 32, 3), dtype=np.uint8), y)
    classes = tuple(f"c{i}" for i in range(10))
    _write_cache(root / "cifar10", "cifar10", Decoded(splits, "synthetic", classes), "test",
                 classes, {s: {"x": "-", "y": "-"} for s in splits})


def test_cut_cifar10_is_stratified_seeded_and_loadable(tmp_path):
    from prunescope.data import load

    _fake_cifar(tmp_path / "full", (30, 12))
    folder = gpu_prepare.cut_cifar10(tmp_path / "cut", 50, 20, seed=3, data_dir=tmp_path / "full")
    assert folder == tmp_path / "cut" / "cifar10"
    full = {s: load("cifar10", s, tmp_path / "full") for s in ("train", "test")}
    for split, n in (("train", 50), ("test", 20)):
        sub = load("cifar10", split, tmp_path / "cut")
        assert sub.x.shape == (n, 32, 32, 3) and np.bincount(sub.y).tolist() == [n // 10] * 10
        assert np.all(np.diff(sub.y) >= 0)  # the source's class order kept
        rows = {r.tobytes() for r in full[split].x}
        assert all(r.tobytes() in rows for r in sub.x)  # real rows, not made up
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["splits"]["train"]["n"] == 50 and "seed 3" in meta["origin"]
    again = gpu_prepare.cut_cifar10(tmp_path / "again", 50, 20, seed=3, data_dir=tmp_path / "full")
    assert (again / "train_x.npy").read_bytes() == (folder / "train_x.npy").read_bytes()
    other = gpu_prepare.cut_cifar10(tmp_path / "other", 50, 20, seed=4, data_dir=tmp_path / "full")
    assert (other / "train_x.npy").read_bytes() != (folder / "train_x.npy").read_bytes()


def test_travelling_bytes_counts_what_a_call_sends(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / ".gitignore").write_text("/.gpu-check/\n/big/\n")  # 19 bytes
    (tmp_path / "tracked.py").write_bytes(b"x" * 100)
    git("add", ".")
    (tmp_path / "untracked.txt").write_bytes(b"y" * 30)  # not ignored: travels
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "f").write_bytes(b"z" * 5000)  # ignored, not carried: stays
    (tmp_path / ".gpu-check" / "whl").mkdir(parents=True)
    (tmp_path / ".gpu-check" / "whl" / "a.whl").write_bytes(b"w" * 700)
    sizes = gpu_prepare.travelling_bytes(tmp_path, [".gpu-check"])
    assert sizes == {"tree": 19 + 100 + 30, ".gpu-check": 700}
    assert gpu_prepare.is_ignored(tmp_path, ".gpu-check")
    assert not gpu_prepare.is_ignored(tmp_path, "tracked.py")


def test_a_failing_step_is_recorded_and_the_next_still_runs(tmp_path):
    check = gpu_check.Check(gpu_check.CPU, tmp_path / "out", tmp_path / "work", None)

    def broken(_c):
        raise RuntimeError("no CUDA here")

    check.step("first", broken)
    check.step("second", lambda c: {"rc": c.run([sys.executable, "-c", "print('hello')"], 30)})
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [(s["name"], s["status"]) for s in summary["steps"]] == [("first", "failed"),
                                                                   ("second", "ok")]
    assert summary["steps"][0]["error"] == "RuntimeError: no CUDA here"
    assert summary["results"]["second"] == {"rc": 0}
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert "hello" in log and "RuntimeError: no CUDA here" in log


def test_a_step_past_its_limit_is_stopped(tmp_path):
    check = gpu_check.Check(gpu_check.CPU, tmp_path / "out", tmp_path / "work", None)
    rc = check.run([sys.executable, "-c", "import time; print('start', flush=True); "
                    "time.sleep(60)"], limit=2)
    assert rc == 124
    assert "(stopped after its limit of 2 s)" in (tmp_path / "out" / "gpu_check.log").read_text()


def _row(arch: str, base: float, per_model: float, g: int, flops: int) -> dict:
    return {"arch": arch, "device": "cuda:0", "gpu": "NVIDIA H100 80GB HBM3", "pack_size": g,
            "pack_sizes_tried": [g], "baseline_images_per_s": base,
            "pack_images_per_s_per_model": per_model, "pack_images_per_s_total": per_model * g,
            "speedup": per_model * g / base, "predict_images_per_s": 10 * base,
            "pack_peak_mem_gib": 30.0, "pack_mem_estimate_gib": 40.0,
            "pack_peak_fraction": 0.1, "train_flops_per_image": flops,
            "options": {"bf16": True, "channels_last": True, "compile": False}}


def test_result_files_say_what_was_met(tmp_path):
    """speed-gpu.json rows carry the issue's fields from the throughput rows; the Markdown
    judges the targets from the numbers."""
    check = gpu_check.Check(gpu_check.GPU, tmp_path / "out", tmp_path / "work", None)
    check.results["throughput"] = {"torch": "2.11", "rows": [
        _row("resnet56", 5000.0, 2000.0, 64, 3), _row("resnet110", 2500.0, 500.0, 32, 6)],
        "projection": [{"arch": "resnet56", "pack_M": 1218.0, "estimated_from": None,
                        "hours_packed": 2.0, "hours_solo": 0.5, "hours_evaluating": 0.1,
                        "hours": 2.6, "hours_all_solo": 70.0}]}
    check.steps.append({"name": "throughput", "status": "ok", "seconds": 1.0})
    gpu_check.results(check)
    doc = json.loads((tmp_path / "out" / "speed-gpu.json").read_text())
    first = doc["rows"][0]
    assert {k: first[k] for k in ("arch", "baseline_img_s", "pack_img_s", "speedup",
                                  "pack_size", "peak_mem_gib", "device")} == {
        "arch": "resnet56", "baseline_img_s": 5000.0, "pack_img_s": 128000.0, "speedup": 25.6,
        "pack_size": 64, "peak_mem_gib": 30.0, "device": "NVIDIA H100 80GB HBM3"}
    md = (tmp_path / "out" / "speed-gpu.md").read_text()
    assert "resnet56 pack >= 20x the baseline: 25.6x, met" in md
    assert "projected under 6 h: 2.60 h, met" in md
    assert "every CUDA test passes: not run" in md
    assert "pack: bf16, channels_last)" in md  # the switches the rows ran with
    check.results["throughput"]["rows"][0]["speedup"] = 12.0
    gpu_check.results(check)
    assert "12.0x, not met" in (tmp_path / "out" / "speed-gpu.md").read_text()


def test_unmeasured_architectures_are_scaled_by_flops():
    flops = {a: 3 * throughput.forward_flops(a) for a in ("resnet20", "resnet32", "resnet56")}
    rows = [_row("resnet20", 9000.0, 3000.0, 8, flops["resnet20"]),
            _row("resnet56", 5000.0, 2000.0, 8, flops["resnet56"])]
    est = throughput.estimated_row("resnet32", rows)
    assert est["estimated_from"] == "resnet20"  # nearer in FLOPs than resnet56
    scale = flops["resnet20"] / flops["resnet32"]
    assert est["pack_images_per_s_total"] == pytest.approx(24000.0 * scale)
    assert est["baseline_images_per_s"] == pytest.approx(9000.0 * scale)
    assert throughput.estimated_row("lenet5-shrinkbench", rows) is None  # no LeNet measured
    assert throughput.image_shape("lenet5-shrinkbench") == (28, 28, 1)


def _cifar10_available() -> bool:
    from prunescope.data import list_datasets
    from prunescope.data.sources import find_shared_cifar10

    cached = any(s.name == "cifar10" and s.cached for s in list_datasets())
    return cached or find_shared_cifar10() is not None


@pytest.mark.slow
@pytest.mark.skipif(not _cifar10_available(), reason="needs the real CIFAR-10 (docs/data.md)")
def test_cpu_mode_runs_every_step_and_writes_the_files(tmp_path):
    """`bench/gpu_check.sh --cpu`, as a user runs it: every step ok, the result files with
    `device: cpu`, every planned job of the study done, the pack-vs-solo check made."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out)}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu", "--work",
                           str(tmp_path / "work")], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "gpu_check.log", "gpu_check.tar.gz", "speed-gpu.json", "speed-gpu.md", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["name"], s["status"]) for s in summary["steps"]] == [
        ("gpu_tests", "ok"), ("throughput", "ok"), ("end_to_end", "ok"), ("results", "ok")]
    doc = json.loads((out / "speed-gpu.json").read_text())
    assert [r["arch"] for r in doc["rows"]] == list(gpu_check.CPU.archs)
    assert all(r["device"] == "cpu" and r["pack_img_s"] > 0 and r["peak_mem_gib"] is None
               for r in doc["rows"])
    e2e = doc["end_to_end"]
    assert all(ph["done"] == ph["planned"] > 0 for ph in e2e["phases"])
    assert len(e2e["dense_accuracy"]) == gpu_check.CPU.models
    assert {(c["method"], c["ratio"]) for c in e2e["pruned"]} == {
        (m, float(r)) for m in ("mp", "up") for r in gpu_check.CPU.ratios}
    assert 0.0 <= e2e["pack_vs_solo"]["prediction_agreement"] <= 1.0
    assert summary["results"]["gpu_tests"]["skipped"] >= 1  # the CUDA tests, skipped here
