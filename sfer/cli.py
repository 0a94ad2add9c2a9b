"""The ``sfer`` command line: each subsystem registers its own sub-commands."""

from __future__ import annotations

import argparse
import importlib
import sys

from sfer import threads

# Sub-command modules, each with ``register(subparsers)`` adding parsers whose
# ``func`` default takes the parsed namespace and returns an exit code.
_COMMAND_MODULES = (
    "sfer.models.cli",
    "sfer.data.cli",
    "sfer.engine.cli",
    "sfer.explain.cli",
    "sfer.demo",
    "sfer.classroom.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sfer", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    threads.configure()  # before the sub-commands load torch, which reads the OpenMP wait policy once
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
