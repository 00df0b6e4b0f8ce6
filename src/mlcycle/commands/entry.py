"""Adapter for the MLproject entry points of the registry commands.

``mlflow run`` passes every declared parameter, so an empty value means "not given" and
``--flag=true|false`` stands for a switch. ``python -m mlcycle.commands.entry <command> ...``
turns that into the command's ordinary options.
"""

from __future__ import annotations

import sys

SWITCHES = {"--force"}


def adapt(command: str, args: list[str]) -> list[str]:
    out: list[str] = []
    given = {a.split("=", 1)[0] for a in args if a.startswith("--") and "=" in a and a.split("=", 1)[1]}
    for arg in args:
        key, eq, value = arg.partition("=")
        if not (arg.startswith("--") and eq) or key == "--overrides":
            out.append(arg)
        elif key in SWITCHES:
            if value.strip().lower() in ("true", "1", "yes"):
                out.append(key)
        elif value == "":
            continue
        elif command == "promote" and key == "--alias" and "--version" in given:
            continue  # an explicit version wins over the default alias
        else:
            out.append(arg)
    return out


def main() -> int:
    from mlcycle.cli import main as cli_main

    command, rest = sys.argv[1], sys.argv[2:]
    return cli_main([command, *adapt(command, rest)])


if __name__ == "__main__":
    raise SystemExit(main())
