"""The first-GPU speed check (issue 28): one command that measures what prunescope's CUDA path
does, writing everything under ``--out`` (``bench/gpu_check.sh`` passes ``$OUT``, default
``runs/gpu-check``).

Steps, each isolated (a subprocess with its own time limit, or caught), so a failing step never
stops the later ones; ``summary.json`` is rewritten after every step and says which ran, how
long, and which failed with what:

1. ``gpu_tests``: ``pytest -m gpu`` over ``tests/`` (JUnit counts kept);
2. ``throughput``: ``bench/throughput.py`` on ResNet-20/56/110 and the paper's LeNet (synthetic
   CIFAR/MNIST-shaped data made on the device): the naive baseline (one model, fp32, eager,
   batch 128) against the pack with every switch on (auto pack size), peak memory against
   ``auto_pack_size``'s estimate, and ``studies/paper.toml`` projected from the rates;
3. ``end_to_end``: ``prunescope run`` of a small study (:func:`study_toml`: ResNet-20 on the
   CIFAR-10 subset of ``bench/gpu_prepare.py``, a pack of 8, MP and UP at two ratios), per-phase
   wall times, accuracies and alpha, then the same study's model 0 trained alone (``pack_size =
   1``, the same job ids) for the pack-vs-solo check;
4. ``results`` (always): ``speed-gpu.json`` (the rows of ``docs/benchmarks/speed-gpu.json``)
   and ``speed-gpu.md`` (the table for ``docs/benchmarks/speed-gpu.md``), and
   ``gpu_check.tar.gz`` (the study files, stores, raw JSON, JUnit XML).

Files under ``--out`` (at most 8, as the device tool returns): ``gpu_check.log`` (every step's
output), ``summary.json``, ``speed-gpu.json``, ``speed-gpu.md``, ``gpu_check.tar.gz``.

``--cpu`` runs the same steps on the CPU with sizes cut to a minute or two (:data:`CPU`): the
subset is cut from the local CIFAR-10 into the work folder, and the files say ``device: cpu``.

    bench/gpu_check.sh                 # on the GPU machine (after bench/gpu_prepare.sh here)
    bench/gpu_check.sh --cpu           # here: the same steps, small
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parents[1]
#: the study the throughput step projects
PAPER = "studies/paper.toml"
#: the issue's targets, checked in speed-gpu.md
TARGET_SPEEDUP = {"resnet56": 20.0}
TARGET_PAPER_HOURS = 6.0
#: largest |pack - solo| test accuracy of model 0 that passes the pack-vs-solo check (small
#: ResNets with train-mode BatchNorm are chaotic: a pack differs from solo as seeds do, a little)
SOLO_TOLERANCE = 0.05


@dataclass(frozen=True)
class Profile:
    """The sizes of one check.

    ``tests``: paths of ``pytest -m gpu``; ``archs``, ``steps``, ``batch``, ``pack_size``: the
    throughput step's (``pack_size`` None: ``auto_pack_size``); ``models`` .. ``subset``: the
    end-to-end study's (all ``models`` in one pack; ``ratios`` of MP and UP; epochs of the
    ``[train]`` and ``[finetune]`` recipes); ``limits``: seconds per step."""

    device: str
    tests: tuple[str, ...]
    archs: tuple[str, ...]
    steps: int
    batch: int
    pack_size: int | None
    models: int
    ratios: tuple[int, ...]
    n_val: int
    train_epochs: int
    finetune_epochs: int
    max_steps_per_epoch: int | None
    study_batch: int | None  # the study's training batch size; None: the paper recipe's (128)
    gradient_batches: int
    subset: tuple[int, int] | None  # (train, test) images cut into the work folder when no
    #                                 --data is given; None: the subset must be given
    limits: dict[str, int] = field(default_factory=dict)


#: on one H100: ~8 minutes at most, in the steps' limits (the device tool's call is 10)
GPU = Profile(device="cuda", tests=("tests",),
              archs=("resnet20", "resnet56", "resnet110", "lenet5-shrinkbench"), steps=40,
              batch=128, pack_size=None, models=8, ratios=(4, 20), n_val=1000, train_epochs=10,
              finetune_epochs=3, max_steps_per_epoch=None, study_batch=None, gradient_batches=10,
              subset=None,
              limits={"gpu_tests": 90, "throughput": 210, "end_to_end": 180})
#: on 2 CPU cores: a minute or two
CPU = Profile(device="cpu", tests=("tests/train/test_fit.py", "tests/train/test_pack.py",
                                   "tests/data/test_device.py"), archs=("resnet20",), steps=2,
              batch=32, pack_size=2, models=2, ratios=(4, 20), n_val=100, train_epochs=2,
              finetune_epochs=1, max_steps_per_epoch=3, study_batch=32, gradient_batches=2,
              subset=(600, 300), limits={"gpu_tests": 120, "throughput": 120, "end_to_end": 300})


class Check:
    """One run of the check: the output and work folders, the log, each step's record."""

    def __init__(self, profile: Profile, out: Path, work: Path, data: Path | None) -> None:
        self.profile, self.out, self.work, self.data = profile, out, work, data
        out.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        self.log_path = out / "gpu_check.log"
        self.log_path.write_text("")
        self.steps: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {}
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def log(self, text: str) -> None:
        """Print ``text`` and append it to ``gpu_check.log``."""
        print(text, flush=True)
        with self.log_path.open("a") as fh:
            fh.write(text + "\n")

    def run(self, cmd: list[str], limit: float, env: dict[str, str] | None = None) -> int:
        """Run ``cmd`` in the repository root, its output streamed into the log; killed (with
        its process group) after ``limit`` seconds, then returns 124."""
        self.log(f"$ {' '.join(cmd)}   (limit {limit:.0f} s)")
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(limit, kill)
        timer.start()
        try:
            for line in proc.stdout:
                self.log(line.rstrip("\n"))
            proc.wait()
        finally:
            timer.cancel()
        if timed_out.is_set():
            self.log(f"(stopped after its limit of {limit:.0f} s)")
            return 124
        return proc.returncode

    def limit(self, step: str) -> float:
        return float(self.profile.limits.get(step, 600))

    def step(self, name: str, fn: Callable[[Check], dict[str, Any]]) -> None:
        """Run one step, recording ``{name, status (ok|failed), seconds, error?}``; its result
        dict goes into ``results[name]``."""
        self.log(f"\n==== step {name} ====")
        t0 = time.perf_counter()
        record: dict[str, Any] = {"name": name}
        try:
            self.results[name] = fn(self)
            record["status"] = "ok"
        except Exception as e:  # noqa: BLE001 -- a failing step must not stop the others
            self.log(traceback.format_exc())
            record.update(status="failed", error=f"{type(e).__name__}: {e}")
        record["seconds"] = round(time.perf_counter() - t0, 1)
        self.steps.append(record)
        self.log(f"==== step {name}: {record['status']} in {record['seconds']} s"
                 + (f" ({record['error']})" if "error" in record else ""))
        self.write_summary()

    def write_summary(self) -> None:
        """``summary.json``: the profile, each step's record and results so far."""
        summary = {"started": self.started, "python": platform.python_version(),
                   "profile": asdict(self.profile), "steps": self.steps,
                   "results": self.results}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))


class StepFailed(Exception):
    """A step ran but its result fails (e.g. a test failed); the message says what."""


# ---- step 1 ------------------------------------------------------------------------------
def gpu_tests(check: Check) -> dict[str, Any]:
    """``pytest -m gpu`` over the profile's test paths; counts from its JUnit XML."""
    xml = check.work / "pytest-gpu.xml"
    rc = check.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={xml}", *check.profile.tests], check.limit("gpu_tests"))
    counts: dict[str, Any] = {"returncode": rc}
    if xml.exists():
        suite = ElementTree.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        failed, errors = int(suite.get("failures", 0)), int(suite.get("errors", 0))
        counts.update(passed=tests - skipped - failed - errors, failed=failed, errors=errors,
                      skipped=skipped)
    if rc != 0:
        raise StepFailed(f"pytest -m gpu exited {rc}: {counts}")
    return counts


# ---- step 2 ------------------------------------------------------------------------------
def throughput(check: Check) -> dict[str, Any]:
    """``bench/throughput.py`` on the profile's architectures, projecting ``studies/paper.toml``;
    its JSON (written after every architecture) is kept whatever the exit status."""
    p = check.profile
    out = check.work / "throughput.json"
    cmd = [sys.executable, "bench/throughput.py", "--device", p.device, "--archs", *p.archs,
           "--steps", str(p.steps), "--batch", str(p.batch), "--project", PAPER,
           "--json", str(out)]
    if p.pack_size is not None:
        cmd += ["--pack-size", str(p.pack_size)]
    rc = check.run(cmd, check.limit("throughput"))
    data = json.loads(out.read_text()) if out.exists() else {"rows": []}
    check.results["throughput"] = data  # kept even when the step fails below
    measured = [r["arch"] for r in data["rows"]]
    if rc != 0 or measured != list(p.archs):
        raise StepFailed(f"bench/throughput.py exited {rc}; measured {measured or 'nothing'}")
    return data


# ---- step 3 ------------------------------------------------------------------------------
def study_toml(p: Profile, *, name: str, output: Path, models: int, pack_size: int,
               methods: tuple[str, ...]) -> str:
    """The end-to-end study: ResNet-20 on CIFAR-10 (the subset), ``models`` models, ``methods``
    at ``p.ratios`` (none: dense models only), ``p``'s short recipes, packs of ``pack_size``.
    Keys as in docs/studies.md."""
    lines = [f'name = "{name}"', "seed = 0", f"models = {models}", 'datasets = ["cifar10"]',
             'architectures = ["resnet20"]', f"methods = {json.dumps(list(methods))}"]
    if methods:
        lines.append(f"ratios = {json.dumps(list(p.ratios))}")
    steps = ("" if p.max_steps_per_epoch is None
             else f"\nmax_steps_per_epoch = {p.max_steps_per_epoch}")
    steps += "" if p.study_batch is None else f"\nbatch_size = {p.study_batch}"
    lines += [f'device = "{p.device}"', f"n_val = {p.n_val}", f'output = "{output}"',
              "", "[gradients]", 'mode = "batches"', f"n_batches = {p.gradient_batches}",
              "", "[train]", f"epochs = {p.train_epochs}{steps}",
              "", "[finetune]", f"epochs = {p.finetune_epochs}{steps}",
              "", "[executor]", f"pack_size = {pack_size}", ""]
    return "\n".join(lines)


def _phases(jobs: Any) -> list[dict[str, Any]]:
    """Per job kind: jobs done / planned, summed worker seconds, and the phase's wall time (first
    start to last finish), from a study's jobs frame."""
    out = []
    for kind, g in jobs.groupby("kind", sort=False):
        done = g[g["status"] == "done"]
        out.append({"kind": kind, "done": len(done), "planned": len(g),
                    "worker_s": float(done["wall_s"].sum()),
                    "wall_s": float(done["finished"].max() - done["started"].min())
                    if len(done) else None})
    return out


def end_to_end(check: Check) -> dict[str, Any]:
    """Run the study through ``prunescope run``, then model 0 alone; read both stores."""
    from prunescope.study import load_results
    from prunescope.study.results import read_predictions

    p = check.profile
    data = check.data
    if data is None and p.subset is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/gpu_prepare.py
        from gpu_prepare import cut_cifar10

        data = check.work / "data"
        cut_cifar10(data, *p.subset)
        check.log(f"cut a CIFAR-10 subset of {p.subset[0]} train / {p.subset[1]} test into "
                  f"{data}")
    if data is None or not (data / "cifar10" / "meta.json").exists():
        raise StepFailed(f"no CIFAR-10 subset in {data}: run bench/gpu_prepare.sh before the "
                         "call and carry .gpu-check")
    env = {"PRUNESCOPE_DATA": str(data.resolve())}
    pack_g = p.models
    files = {"pack": check.work / "study.toml", "solo": check.work / "solo.toml"}
    files["pack"].write_text(study_toml(p, name="gpu-check", output=check.work / "study",
                                        models=p.models, pack_size=pack_g,
                                        methods=("mp", "up")))
    files["solo"].write_text(study_toml(p, name="gpu-check-solo", output=check.work / "solo",
                                        models=1, pack_size=1, methods=()))
    result: dict[str, Any] = {"pack_size": pack_g}
    limit = check.limit("end_to_end")
    t0 = time.perf_counter()
    rc = check.run([sys.executable, "-m", "prunescope", "run", str(files["pack"])], limit, env)
    result["run_wall_s"] = round(time.perf_counter() - t0, 1)
    check.run([sys.executable, "-m", "prunescope", "status", str(files["pack"])], 30, env)
    res = load_results(str(files["pack"]))
    result["phases"] = _phases(res.jobs)
    check.results["end_to_end"] = result
    try:
        result.update(_scores(res.frame))
    except Exception as e:  # noqa: BLE001 -- a run stopped early has what it finished
        if rc == 0:
            raise
        result["scores_error"] = f"{type(e).__name__}: {e}"
    if rc != 0:
        raise StepFailed(f"prunescope run exited {rc}")
    rest = max(30.0, limit - (time.perf_counter() - t0))
    t1 = time.perf_counter()
    rc = check.run([sys.executable, "-m", "prunescope", "run", str(files["solo"])], rest, env)
    result["solo_wall_s"] = round(time.perf_counter() - t1, 1)
    solo = load_results(str(files["solo"]))
    if rc != 0:
        raise StepFailed(f"prunescope run (model 0 alone) exited {rc}")
    pairs = []
    for r in (res, solo):
        ev = r.jobs[(r.jobs["kind"] == "evaluate") & (r.jobs["method"] == "dense")
                    & (r.jobs["model"] == 0)].iloc[0]
        pairs.append(read_predictions(ev["artifacts"]["predictions"]))
    test_y = _test_labels(data)
    acc_pack, acc_solo = ((pred == test_y).mean() for pred in pairs)
    result["pack_vs_solo"] = {
        "model": 0, "accuracy_pack": round(float(acc_pack), 4),
        "accuracy_solo": round(float(acc_solo), 4),
        "prediction_agreement": round(float((pairs[0] == pairs[1]).mean()), 4),
        "tolerance": SOLO_TOLERANCE}
    if abs(acc_pack - acc_solo) > SOLO_TOLERANCE:
        raise StepFailed(f"model 0's test accuracy: pack {acc_pack:.4f}, alone {acc_solo:.4f}, "
                         f"more than {SOLO_TOLERANCE} apart")
    return result


def _scores(frame: Any) -> dict[str, Any]:
    """Test accuracy of every dense model, and per (method, ratio) the mean test accuracy and
    mean alpha (``prunescope.analysis.analyse``) of the pruned ones, from a results frame."""
    from prunescope.analysis import analyse

    dense = frame[frame["method"] == "dense"]
    acc = dense.groupby("model")[["correct", "support"]].sum()
    cells = analyse(frame).alphas.groupby(["method", "ratio"])[["alpha", "accuracy_after"]].mean()
    return {"dense_accuracy": (acc["correct"] / acc["support"]).round(4).tolist(),
            "pruned": [{"method": m, "ratio": r, "alpha": round(float(v["alpha"]), 4),
                        "accuracy": round(float(v["accuracy_after"]), 4)}
                       for (m, r), v in cells.iterrows()]}


def _test_labels(data: Path) -> Any:
    from prunescope.data import load

    return load("cifar10", "test", data).y


# ---- step 4 ------------------------------------------------------------------------------
def device_name(check: Check) -> str:
    """The GPU's name as the throughput rows give it, else the profile's device."""
    rows = check.results.get("throughput", {}).get("rows", [])
    return rows[0].get("gpu", rows[0]["device"]) if rows else check.profile.device


def speed_rows(check: Check) -> list[dict[str, Any]]:
    """The rows of docs/benchmarks/speed-gpu.json from the throughput step's rows."""
    dev = device_name(check)
    return [{"arch": r["arch"], "baseline_img_s": round(r["baseline_images_per_s"], 1),
             "pack_img_s": round(r["pack_images_per_s_total"], 1),
             "pack_img_s_per_model": round(r["pack_images_per_s_per_model"], 1),
             "speedup": round(r["speedup"], 2), "pack_size": r["pack_size"],
             "pack_sizes_tried": r.get("pack_sizes_tried"),
             "peak_mem_gib": None if r["pack_peak_mem_gib"] is None
             else round(r["pack_peak_mem_gib"], 2),
             "mem_estimate_gib": round(r["pack_mem_estimate_gib"], 2),
             "bf16_peak_fraction": r.get("pack_peak_fraction"),
             "device": dev} for r in check.results.get("throughput", {}).get("rows", [])]


def markdown(check: Check, rows: list[dict[str, Any]]) -> str:
    """speed-gpu.md: steps, throughput, projection, end-to-end study, targets."""
    tp = check.results.get("throughput", {})
    e2e = check.results.get("end_to_end", {})
    lines = [f"# GPU speed check ({device_name(check)}, {check.started})", "",
             "Written by `bench/gpu_check.sh` (issue 28; docs/speed.md). "
             f"Python {platform.python_version()}, torch {tp.get('torch', '?')}.", "",
             "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {s['name']} | {s['status']}{': ' + s['error'] if 'error' in s else ''} | "
              f"{s['seconds']} |" for s in check.steps]
    first = (tp.get("rows") or [None])[0]
    on = "not run" if first is None else \
        ", ".join(k for k, v in first["options"].items() if v) or "fp32, eager"
    lines += ["", "## Throughput (training images/s; baseline: one model, fp32, eager, batch "
              f"{check.profile.batch}; pack: {on})", "",
              "| arch | baseline | pack per model | pack summed | ratio | G (tried) | peak mem "
              "GiB | estimate GiB | bf16 peak fraction |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        frac = "n/a" if r["bf16_peak_fraction"] is None else f"{r['bf16_peak_fraction']:.2%}"
        peak = "n/a" if r["peak_mem_gib"] is None else f"{r['peak_mem_gib']:.2f}"
        lines.append(f"| {r['arch']} | {r['baseline_img_s']:,.0f} | "
                     f"{r['pack_img_s_per_model']:,.0f} | {r['pack_img_s']:,.0f} | "
                     f"{r['speedup']:.2f}x | {r['pack_size']} ({r['pack_sizes_tried']}) | "
                     f"{peak} | {r['mem_estimate_gib']:.2f} | {frac} |")
    proj = tp.get("projection") or []
    total = sum(x["hours"] for x in proj if "hours" in x)
    if proj:
        lines += ["", f"## Projected `{PAPER}` (hours; unmeasured architectures scaled by FLOPs "
                      "from the nearest measured one)", "",
                  "| arch | packed M passes | hours packed | hours solo | hours evaluating | "
                  "hours | hours if all solo |", "|---|---|---|---|---|---|---|"]
        for x in proj:
            name = x["arch"] + (f" (from {x['estimated_from']})" if x["estimated_from"] else "")
            lines.append(f"| {name} | {x['pack_M']:,.1f} | " + (" | ".join(
                f"{x[k]:.2f}" for k in ("hours_packed", "hours_solo", "hours_evaluating",
                                        "hours", "hours_all_solo"))
                if "hours" in x else "not measured | | | |") + " |")
        lines.append(f"| total | | | | | {total:.2f} | |")
    if e2e:
        lines += ["", f"## End to end (`prunescope run`, ResNet-20, CIFAR-10 subset, pack of "
                      f"{e2e['pack_size']}): {e2e['run_wall_s']} s", "",
                  "| phase | jobs done / planned | wall s | worker s |", "|---|---|---|---|"]
        lines += [f"| {ph['kind']} | {ph['done']} / {ph['planned']} | "
                  f"{'' if ph['wall_s'] is None else round(ph['wall_s'], 1)} | "
                  f"{ph['worker_s']:.1f} |" for ph in e2e.get("phases", [])]
        lines += ["", "dense test accuracy per model: "
                  + ", ".join(f"{a:.3f}" for a in e2e.get("dense_accuracy", [])), "",
                  "| method | ratio | mean test accuracy | mean alpha |", "|---|---|---|---|"]
        lines += [f"| {c['method']} | {c['ratio']:g} | {c['accuracy']:.3f} | {c['alpha']:.3f} |"
                  for c in e2e.get("pruned", [])]
        if "pack_vs_solo" in e2e:
            v = e2e["pack_vs_solo"]
            lines += ["", f"pack vs alone (model 0, dense): test accuracy {v['accuracy_pack']:.4f}"
                          f" vs {v['accuracy_solo']:.4f} (tolerance {v['tolerance']}), "
                          f"same prediction on {v['prediction_agreement']:.1%} of the test "
                          f"images; alone: {e2e['solo_wall_s']} s"]
    lines += ["", "## Targets (issue 28)", ""]
    by_arch = {r["arch"]: r for r in rows}
    for arch, want in TARGET_SPEEDUP.items():
        got = by_arch.get(arch, {}).get("speedup")
        lines.append(f"- {arch} pack >= {want:g}x the baseline: "
                     + ("not measured" if got is None else
                        f"{got:.1f}x, {'met' if got >= want else 'not met'}"))
    lines.append(f"- `{PAPER}` projected under {TARGET_PAPER_HOURS:g} h: "
                 + (f"{total:.2f} h, {'met' if total < TARGET_PAPER_HOURS else 'not met'}"
                    if proj and all("hours" in x for x in proj) else "not projected"))
    tests = check.results.get("gpu_tests")
    lines.append("- every CUDA test passes: " + (
        "not run" if tests is None else f"{tests.get('passed')} passed, "
        f"{tests.get('failed')} failed, {tests.get('errors')} errors, "
        f"{tests.get('skipped')} skipped"))
    return "\n".join(lines) + "\n"


def results(check: Check) -> dict[str, Any]:
    """speed-gpu.json, speed-gpu.md and gpu_check.tar.gz under the output folder."""
    rows = speed_rows(check)
    doc = {"command": "bench/gpu_check.sh" + (" --cpu" if check.profile.device == "cpu" else ""),
           "started": check.started, "device": device_name(check),
           "torch": check.results.get("throughput", {}).get("torch"),
           "steps": check.steps, "rows": rows,
           "projection": check.results.get("throughput", {}).get("projection"),
           "end_to_end": check.results.get("end_to_end")}
    (check.out / "speed-gpu.json").write_text(json.dumps(doc, indent=1) + "\n")
    (check.out / "speed-gpu.md").write_text(markdown(check, rows))
    with tarfile.open(check.out / "gpu_check.tar.gz", "w:gz") as tar:
        for path in sorted(check.work.rglob("*")):
            keep = path.suffix in (".toml", ".json", ".xml", ".sqlite") and "artifacts" not in \
                path.parts and "data" not in path.relative_to(check.work).parts[:1]
            if path.is_file() and keep:
                tar.add(path, arcname=str(path.relative_to(check.work)))
    return {"rows": len(rows)}


STEPS: tuple[tuple[str, Callable[[Check], dict[str, Any]]], ...] = (
    ("gpu_tests", gpu_tests), ("throughput", throughput), ("end_to_end", end_to_end))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="the same steps on the CPU, small")
    ap.add_argument("--out", default=os.environ.get("OUT", "runs/gpu-check"))
    ap.add_argument("--work", help="work folder (studies, stores); default: a new temporary one")
    ap.add_argument("--data", help="cache folder holding the CIFAR-10 subset (default: "
                    ".gpu-check/data, bench/gpu_prepare.sh's; --cpu cuts a small one into the "
                    "work folder unless this is given)")
    ap.add_argument("--steps", nargs="+", choices=[s for s, _ in STEPS],
                    help="run only these steps (results are always written)")
    ap.add_argument("--tests", nargs="+", metavar="PATH",
                    help="test paths of the gpu_tests step (default: tests/ on the GPU, the "
                         "files holding CUDA tests with --cpu)")
    ap.add_argument("--limit", nargs="+", default=[], metavar="STEP=SECONDS",
                    help="override a step's time limit, e.g. throughput=300")
    args = ap.parse_args(argv)
    profile = CPU if args.cpu else GPU
    limits = dict(profile.limits)
    for item in args.limit:
        step, _, seconds = item.partition("=")
        if step not in limits or not seconds.isdigit():
            ap.error(f"--limit {item}: expected STEP=SECONDS with STEP one of "
                     f"{', '.join(limits)}")
        limits[step] = int(seconds)
    profile = replace(profile, limits=limits, tests=tuple(args.tests or profile.tests))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    data = Path(args.data) if args.data else None if args.cpu else Path(".gpu-check/data")
    check = Check(profile, Path(args.out), work, data)
    check.log(f"gpu_check: device {profile.device}, out {args.out}, work {work}, python "
              f"{sys.executable} {platform.python_version()}")
    for name, fn in STEPS:
        if args.steps is None or name in args.steps:
            check.step(name, fn)
    check.step("results", results)
    failed = [s["name"] for s in check.steps if s["status"] != "ok"]
    check.log(f"\ngpu_check: {len(check.steps) - len(failed)} steps ok"
              + (f", failed: {', '.join(failed)}" if failed else "") + f"; files in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
