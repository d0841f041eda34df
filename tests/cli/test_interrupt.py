"""Ctrl-C that reaches the command line inside a library (issue 24's faster start-up lands it
while pydantic builds the spec's validators, which report it as their own SchemaError) is
still one 'interrupted' line, and a command's own exit after its own line is not a second."""
from __future__ import annotations

import typer
from pydantic_core import SchemaError

from prunescope.cli._app import _interrupt


def test_ctrl_c_inside_a_library_error_is_an_interrupt():
    assert _interrupt(KeyboardInterrupt())
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as e:
        assert _interrupt(e)
    assert not _interrupt(ValueError("a bad file"))
    # the message pydantic-core gave a Ctrl-C during `prunescope run`'s import of the spec
    assert _interrupt(SchemaError('Error building "default" validator:\n  SchemaError: Error '
                                  'building "literal" validator:\n  KeyboardInterrupt: '))
    assert not _interrupt(SchemaError('Error building "literal" validator: bad'))


def test_a_commands_own_exit_after_ctrl_c_is_not_another_interrupt():
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
    except typer.Exit as e:
        assert not _interrupt(e)
