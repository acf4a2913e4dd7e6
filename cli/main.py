"""The ``archive`` command: a thin layer over the same services the web app uses.

Exit codes (one place, here): 0 ok, 1 a check found a problem, 2 bad input or usage,
3 refused by permission or rule. Errors reach the user as one line on stderr (or a
JSON object on stdout with ``--json``), never as a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from archive.errors import ArchiveError

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


class AppContext:
    """Lazily built settings shared by the subcommands of one invocation."""

    def __init__(self, config_file: str | None):
        self.config_file = config_file
        self._settings = None

    @property
    def settings(self):
        if self._settings is None:
            from archive.settings import load_settings

            self._settings = load_settings(self.config_file)
        return self._settings


def emit(data: Any, as_json: bool, human: Callable[[Any], None] | None = None) -> None:
    """Print ``data`` as JSON (machine output) or through ``human``."""
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    elif human is not None:
        human(data)
    else:
        click.echo(data)


def handle_errors(fn: Callable) -> Callable:
    """Map ``ArchiveError`` to a message and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ArchiveError as exc:
            as_json = kwargs.get("as_json", False)
            if as_json:
                click.echo(json.dumps(exc.to_dict(), ensure_ascii=False, indent=2))
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print machine-readable JSON on stdout.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_file", envvar="ARCHIVE_CONFIG", metavar="FILE",
              help="TOML settings file (default: $ARCHIVE_CONFIG, then built-in defaults).")
@click.version_option(package_name="kho-luu-tru-so", prog_name="archive")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Kho lưu trữ số: a digital archive for signed electronic documents.

    Exit codes: 0 ok, 1 a check found a problem, 2 bad input or usage,
    3 refused by permission or rule.
    """
    ctx.obj = AppContext(config_file)


# Each area owns one module exposing ``COMMANDS`` (click commands or groups).
_COMMAND_MODULES = ("cli.admin", "cli.bag", "cli.ingest", "cli.records", "cli.fixity",
                    "cli.storage", "cli.audit", "cli.agents")


def _register() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        module = importlib.import_module(name)
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="archive")


if __name__ == "__main__":
    main()
