"""The root ``prunescope`` Typer application; each command group registers itself on it."""
import typer

app = typer.Typer(
    name="prunescope",
    help="What pruning does to a neural network beyond its test accuracy.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
