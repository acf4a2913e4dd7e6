"""The ``archive`` command: a thin layer over the same services the web app uses.

Exit codes and error messages are mapped in one place, ``cli/context.py``.
"""

from __future__ import annotations

import click

from cli.context import AppContext


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
    ctx.call_on_close(ctx.obj.close)


# Each area owns one module exposing ``COMMANDS`` (click commands or groups).
_COMMAND_MODULES = ("cli.admin", "cli.bag", "cli.ingest", "cli.records", "cli.fixity",
                    "cli.storage", "cli.audit", "cli.agents", "cli.submissions",
                    "cli.signatures", "cli.keys", "cli.users",
                    # the record lifecycle (#5)
                    "cli.revocation", "cli.notifications", "cli.seals", "cli.renditions",
                    "cli.amendments", "cli.digitisation",
                    # preservation (#6)
                    "cli.backup", "cli.retention", "cli.destruction", "cli.jobs")


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
