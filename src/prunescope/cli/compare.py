"""`prunescope compare`: what pruning a user already did changed, per class.

A thin wrapper over :func:`prunescope.audit.compare` (given pruned models) and
:func:`prunescope.audit.audit_channels` (``--channels``: channel-prune the dense model through
Torch-Pruning first). Every error is one line naming the file and the fix.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from prunescope._console import console as make_console, styled
from prunescope.cli._app import TrustPickleOpt, app


def _print(con: Console, res) -> None:  # noqa: ANN001 -- a CompareResult
    from prunescope import metrics

    nominal = res.alphas[res.alphas.distribution == metrics.NOMINAL]
    models = Table(title="Models (nominal test set; ratio counted from the tensors)")
    for col in ("model", "method", "read as", "params", "nonzero", "ratio", "accuracy",
                "agreement", "alpha [99 % CI]"):
        models.add_column(col, justify="right")
    agree = res.agreement[res.agreement.distribution == metrics.NOMINAL]
    iv = res.intervals[(res.intervals.distribution == metrics.NOMINAL)
                       & (res.intervals.statistic == "alpha")]
    for r in res.models.itertuples():
        a = ag = ""
        if r.role == "pruned":
            k = (r.method, r.ratio)
            al = nominal[(nominal.method == k[0]) & (nominal.ratio == k[1])].alpha.mean()
            ci = iv[(iv.method == k[0]) & (iv.ratio == k[1])]
            a = f"{al:.3f}" + (f" [{ci.ci_low.iloc[0]:.2f}, {ci.ci_high.iloc[0]:.2f}]"
                               if len(ci) else "")
            ag = f"{agree[(agree.method == k[0]) & (agree.ratio == k[1])].agreement.mean():.4f}"
        models.add_row(r.name, r.method, r.source, f"{r.params_total:,}",
                       f"{r.params_nonzero:,}", f"{r.achieved_ratio:.3f}", f"{r.accuracy:.4f}",
                       ag, a)
    con.print(models)
    if "latency_after_ms" in res.models:
        lat = Table(title="Channel pruning (CPU latency of a batch of 64, one thread, fastest of 20 passes)")
        for col in ("method", "requested", "achieved", "channels removed", "ms before",
                    "ms after"):
            lat.add_column(col, justify="right")
        for r in res.models[res.models.role == "pruned"].itertuples():
            lat.add_row(r.method, f"{r.requested_ratio:g}", f"{r.achieved_ratio:.3f}",
                        f"{r.channel_fraction:.1%}", f"{r.latency_before_ms:.1f}",
                        f"{r.latency_after_ms:.1f}")
        con.print(lat)
    worst = Table(title="Classes hurt most (recall change; Holm-corrected exact McNemar p)")
    for col in ("method", "ratio", "distribution", "class", "recall change [99 % CI]", "p"):
        worst.add_column(col)
    civ = res.class_intervals.set_index(["method", "ratio", "distribution", "cls"]) \
        if len(res.class_intervals) else None
    mc = res.mcnemar.set_index(["method", "ratio", "distribution", "cls"]) \
        if len(res.mcnemar) else None
    for r in res.worst_classes.itertuples():
        k = (r.method, r.ratio, r.distribution, r.cls)
        ci = f" [{civ.ci_low[k]:+.3f}, {civ.ci_high[k]:+.3f}]" if civ is not None else ""
        p = f"{mc.p_corrected[k]:.2g}" if mc is not None else ""
        worst.add_row(r.method, f"{r.ratio:g}", r.distribution, r.class_name,
                      f"{r.recall_change:+.3f}{ci}", p)
    con.print(worst)
    if len(res.prune_potential):
        pot = Table(title="Prune potential across the given models (largest ratio within "
                          "delta of the dense error)")
        for col in ("method", "distribution", "potential", "status"):
            pot.add_column(col)
        for r in res.prune_potential.itertuples():
            pot.add_row(r.method, r.distribution, f"{r.potential:g}", r.status)
        con.print(pot)
    con.print(f"uncertainty: {res.uncertainty}", highlight=False)


@app.command("compare")
def compare_cmd(
    dense: Annotated[Path, typer.Argument(help="The dense model: a state dict (.pt, .pth, "
                                               ".safetensors) or a prunescope checkpoint.")],
    pruned: Annotated[Optional[list[Path]], typer.Argument(
        help="Pruned versions of it: torch.nn.utils.prune state dicts, state dicts whose zeros "
             "are the pruning, or structurally pruned ones (narrower layers).")] = None,
    data: Annotated[Path, typer.Option(
        "--data", help="Test images: a folder with test/<class>/*.png|jpg (or <class>/ "
                       "folders alone) or test.npz; a train/ folder or train.npz beside it "
                       "feeds --channels taylor.")] = Path("."),
    model: Annotated[Optional[list[str]], typer.Option(
        "--model", help="package.module:callable building the architecture the state dicts "
                        "load into (imported from the current directory); once for every "
                        "file, or once per file (dense first).")] = None,
    methods: Annotated[Optional[str], typer.Option(
        "--methods", help="Comma-separated label per pruned model (same label: one "
                          "prune-potential curve).")] = None,
    channels: Annotated[Optional[str], typer.Option(
        "--channels", help="Instead of PRUNED: channel-prune DENSE with Torch-Pruning by these "
                           "importances (l1,taylor) at --ratios.")] = None,
    ratios: Annotated[str, typer.Option("--ratios", help="Parameter ratios for --channels.")] = "2,4",
    distributions: Annotated[str, typer.Option(
        "--distributions", help="Comma-separated test distributions, e.g. "
                                "nominal,gaussian_noise-3,noise-0.1.")] = "nominal",
    mean: Annotated[Optional[str], typer.Option(
        "--mean", help="The models' per-channel input mean on the 0..1 scale, comma-separated "
                       "(default: the test images').")] = None,
    std: Annotated[Optional[str], typer.Option("--std", help="Likewise the std.")] = None,
    trust_pickle: TrustPickleOpt = False,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the corruptions and the bootstrap.")] = 0,
    report: Annotated[bool, typer.Option("--report/--no-report",
                                         help="Also write report/report.html.")] = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for the CSV tables.")] = Path("runs/compare"),
) -> None:
    """Compare a dense model with pruned versions of it (no pruning, no fine-tuning): per-class
    recall changes, alpha, worst classes, agreement, changed images, prune potential, and the
    statistics of one model pair (exact McNemar per class, bootstrap 99 % intervals)."""
    from prunescope.audit import AuditError, audit_channels, compare
    from prunescope.cli.audit import _csv, import_factory
    from prunescope.data.folders import ImageFolderError

    err = make_console(stderr=True)
    try:
        builds = [import_factory(m) for m in (model or [])]
        build = builds[0] if len(builds) == 1 else builds or None
        floats = lambda v, o: None if v is None else _csv(v, float, o)  # noqa: E731
        common = dict(distributions=_csv(distributions, str, "--distributions"),
                      mean=floats(mean, "--mean"), std=floats(std, "--std"),
                      trust_pickle=trust_pickle, seed=seed, out_dir=out, report=report,
                      name=dense.stem)
        if channels is not None:
            if pruned:
                raise AuditError("--channels prunes DENSE itself: give no PRUNED files with it")
            if isinstance(build, list):
                raise AuditError("--channels takes one --model (the dense model's builder)")
            res = audit_channels(dense, data, ratios=_csv(ratios, float, "--ratios"),
                                 importances=_csv(channels, str, "--channels"), train_data=data,
                                 build=build, **common)
        else:
            if not pruned:
                raise AuditError("give the pruned model files after DENSE (or --channels l1,taylor "
                                 "to prune DENSE here)")
            res = compare(dense, list(pruned), data, build=build,
                          methods=None if methods is None else _csv(methods, str, "--methods"),
                          **common)
    except (AuditError, ImageFolderError) as e:
        err.print(styled("error:", "red", f" {e}"), highlight=False)
        raise typer.Exit(1) from e
    _print(make_console(), res)
    make_console().print(f"tables: {out}/*.csv" + (f"; report: {res.report}" if res.report
                                                    else ""), highlight=False)


__all__ = ["compare_cmd"]
