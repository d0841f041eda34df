"""The root ``prunescope`` Typer application; each command group registers itself on it, and
the options several commands share.

Errors: every command runs inside :class:`_Root.invoke`, the one place where an expected
operational error (:func:`explain`: a :class:`prunescope.errors.UserError`, permission denied,
a full disk) becomes one line on stderr (what, which file, the remedy) and an exit status,
instead of a traceback; ``prunescope --debug COMMAND`` (or ``PRUNESCOPE_DEBUG=1``) lets it
propagate with its traceback. Anything else is a bug and keeps its traceback.
"""
import errno
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from typer.core import TyperGroup

from prunescope.catalog import objectives
from prunescope.errors import UserError

_DEBUG = "prunescope.debug"


def explain(e: BaseException) -> tuple[int, str] | None:
    """``(exit status, one-line message)`` of an expected operational error, ``None`` for
    anything else (a bug: its traceback is shown)."""
    if isinstance(e, UserError):
        return e.exit_code, str(e)
    if isinstance(e, PermissionError):
        what = e.filename or str(e)
        return 1, (f"permission denied: {what}: this user may not write (or read) it; fix its "
                   "permissions (chmod/chown), or give the study another --output folder "
                   "(status, plan, export --out and report --out only read a study)")
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        where = f" writing {e.filename}" if e.filename else ""
        return 1, (f"no space left on the device{where}: free space (`df -h`), then run the "
                   "same command again; finished jobs are kept in the store")
    return None


def _interrupt(e: BaseException) -> bool:
    """Whether ``e`` is Ctrl-C: a ``KeyboardInterrupt``, one in its chain, or one that a library
    reported as its own error while it ran (pydantic building the spec's validators at import
    reports a ``SchemaError`` naming it)."""
    if isinstance(e, (click.exceptions.Exit, click.exceptions.Abort, typer.Exit)):
        return False  # a command's own exit (after its own Ctrl-C line, say)
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, KeyboardInterrupt) or (
                type(e).__name__ == "SchemaError" and "KeyboardInterrupt" in str(e)):
            return True
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return False


class _Root(TyperGroup):
    """The root command group: runs the command, turning an expected error into one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, Exception) as e:  # noqa: B014 -- Ctrl-C too
            # --debug is read now: the root callback sets it while the command runs
            debug = ctx.meta.get(_DEBUG) or os.environ.get("PRUNESCOPE_DEBUG")
            if _interrupt(e):  # Ctrl-C before a command handles it (imports, loading)
                if debug:
                    raise
                click.echo("interrupted: whatever finished is kept; run the same command again "
                           "to resume", err=True)
                raise typer.Exit(130) from e
            explained = explain(e) if isinstance(e, Exception) else None
            if explained is None or debug:
                raise
            code, line = explained
            click.echo(f"error: {line} (traceback: prunescope --debug ...)", err=True)
            raise typer.Exit(code) from e


app = typer.Typer(
    name="prunescope",
    help="What pruning does to a neural network beyond its test accuracy.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    cls=_Root,
)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show the traceback of an operational error (a bad file, a full "
                        "disk...) instead of its one-line message.")] = False,
) -> None:
    """What pruning does to a neural network beyond its test accuracy."""
    ctx.meta[_DEBUG] = debug


#: ``--data-dir``: the dataset cache of the data, train, prune and audit commands
DataDirOpt = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="Dataset cache (default: $PRUNESCOPE_DATA or ~/.cache/prunescope).")]
#: ``--device``: where train, prune and audit run (default ``choices.DEFAULT_DEVICE``, ``auto``,
#: as in a study spec)
DeviceOpt = Annotated[str, typer.Option(
    "--device", help="auto (CUDA when available, else the CPU), cpu, cuda or cuda:N.")]

#: ``--trust-pickle``: prune, audit and compare may unpickle a file that can run code
#: (docs/reliability.md)
ObjectiveOpt = Annotated[str, typer.Option(
    "--objective", help=f"Fine-tuning objective, one of: {', '.join(objectives.names())} "
                        "(docs/mitigation.md).")]
ObjectiveOptionOpt = Annotated[Optional[list[str]], typer.Option(
    "--objective-option", help="NAME=VALUE overriding an option of --objective (e.g. weight=0.5 "
                               "for kd); repeatable.")]
TrustPickleOpt = Annotated[bool, typer.Option(
    "--trust-pickle", help="Unpickle a .pt file fully (a whole module saved with torch.save(model), "
                           "Torch-Pruning's tp.state_dict), or the pickled module a checkpoint's "
                           "sidecar names (prunescope 0.1 audits). Unpickling runs any code the "
                           "file holds: only for files you trust. Default: weights only.")]


def invalid(option: str, value: Any, allowed: str) -> str:
    """The message of a refused option value: ``--ratio 1.0 is invalid; allowed: ...``, with the
    *allowed* text of :mod:`prunescope.choices` that a study spec's error shows too."""
    return f"{option} {value!r} is invalid; allowed: {allowed}"


def check(option: str, value: Any, error: str | None,
          fail: type[Exception] = typer.BadParameter) -> None:
    """Raise ``fail(invalid(...))`` when ``error`` (a :mod:`prunescope.choices` check's result)
    says ``value`` is not allowed."""
    if error is not None:
        raise fail(invalid(option, value, error))


class OutPathError(UserError, ValueError):
    """An ``--out`` path that cannot be written as asked (a folder for a file, a file for a
    folder, a missing folder)."""


def writable_out(option: str, path: Path, *, folder: bool) -> Path:
    """``path`` of an ``--out`` option checked before any work: a file to write (``folder``
    False: not a folder, in an existing folder) or a folder (``folder`` True: not a file, under
    no file; missing folders are created by the command). :class:`OutPathError` otherwise."""
    what = "folder" if folder else "file"
    if path.exists() and path.is_dir() != folder:
        raise OutPathError(f"{option} {path} is a {'file' if folder else 'folder'}; give the "
                           f"path of a {what} to write")
    for above in path.parents:
        if above.exists():
            if not above.is_dir():
                raise OutPathError(f"{option} {path}: {above} is a file, not a folder; give "
                                   f"a {what} path whose folders are folders")
            break
        if not folder:
            raise OutPathError(f"{option} {path}: the folder {path.parent} does not exist; "
                               f"create it (mkdir -p {path.parent}) or give another path")
    return path


def usable_device(device: str, fail: type[Exception] = typer.BadParameter) -> str:
    """``--device`` checked as a study checks ``device`` and resolved (``auto``: CUDA when
    available, else ``cpu``); a CUDA device on a machine without one is refused."""
    from prunescope import choices
    from prunescope.train.options import is_cuda

    check("--device", device, choices.device_error(device), fail)
    resolved = choices.resolve_device(device)
    if is_cuda(resolved):
        import torch

        if not torch.cuda.is_available():
            raise fail(f"--device {device}: no CUDA device is visible; use --device cpu or auto")
    return resolved
