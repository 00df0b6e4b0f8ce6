"""``mlcycle rollback``: move ``champion`` back to the version it replaced (or ``--to``).

Repeated rollbacks walk back through the promotion history. Recorded in the audit trail.
"""

from __future__ import annotations

from mlcycle.cli import command
from mlcycle.commands import _common


@command
def main(argv: list[str]) -> int:
    parser = _common.parser("rollback", __doc__)
    parser.add_argument("--model", help="registered model name (default: registry.model_name)")
    parser.add_argument("--to", dest="to_version", help="version to make champion (default: the previous champion)")
    parser.add_argument("--reason", help="why, for the audit trail")
    args = _common.parse(parser, argv)
    from mlcycle.config.load import compose
    from mlcycle.tracking import registry

    cfg = compose(args.overrides)
    client, _ = _common.connect(cfg)
    reg = cfg.registry
    name = args.model or reg.model_name
    entry = registry.rollback(client, name, reg.lock, champion_alias=reg.champion_alias,
                              to_version=args.to_version, reason=args.reason)
    print(f"rolled back {name}@{reg.champion_alias}: version {entry['from']} -> {entry['to']} ({entry['reason']})")
    return 0
