"""``mlcycle models``: registered versions with their aliases, model family, headline metrics
and gate verdicts, then the promotion history (every alias move, newest last)."""

from __future__ import annotations

import datetime as dt

from mlcycle.cli import command
from mlcycle.commands import _common

HEADLINE = ("roc_auc", "log_loss", "brier", "accuracy", "rmse", "mae", "r2")


@command
def main(argv: list[str]) -> int:
    parser = _common.parser("models", __doc__)
    parser.add_argument("--model", help="registered model name (default: registry.model_name)")
    parser.add_argument("--history", type=int, default=20, help="audit entries to show (default 20; 0 = all)")
    args = _common.parse(parser, argv)
    from mlcycle.config.load import compose
    from mlcycle.tracking import registry

    cfg = compose(args.overrides)
    client, _ = _common.connect(cfg)
    name = args.model or cfg.registry.model_name
    model = registry.registered_model(client, name)
    if model is None:
        names = [m.name for m in client.search_registered_models(max_results=1000)]
        if args.model or not names:
            print(f"no registered model {name!r}" + (f"; registered: {', '.join(names)}" if names else ""))
            return 2 if args.model else 0
        print(f"no registered model {name!r}; registered models: {', '.join(names)} (use --model NAME)")
        return 0
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    versions = sorted(client.search_model_versions(f"name = '{name}'", max_results=10000), key=lambda v: int(v.version))
    print(render_versions(name, versions, aliases))
    entries = registry.history(client, name)
    shown = entries if args.history == 0 else entries[-args.history :]
    print()
    print(render_history(shown, len(entries)))
    return 0


def render_versions(name: str, versions, aliases: dict[str, list[str]]) -> str:
    from mlcycle.tracking.registration import FAMILY_TAG
    from mlcycle.tracking.registry import TAG_GATE, TAG_ROOT_RUN

    metrics = [m for m in HEADLINE if any(f"test_{m}" in v.tags for v in versions)][:4]
    header = ["version", "aliases", "family", "created (UTC)", *metrics, "gate", "root run"]
    rows = []
    for v in versions:
        created = dt.datetime.fromtimestamp(v.creation_timestamp / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")
        rows.append(
            [
                str(v.version),
                ",".join(sorted(aliases.get(str(v.version), []))) or "-",
                v.tags.get(FAMILY_TAG, "-"),
                created,
                *[_num(v.tags.get(f"test_{m}")) for m in metrics],
                v.tags.get(TAG_GATE, "-"),
                (v.tags.get(TAG_ROOT_RUN) or "-")[:12],
            ]
        )
    return f"{name}: {len(versions)} version(s)\n" + _table(header, rows)


def render_history(entries: list[dict], total: int) -> str:
    if not entries:
        return "promotion history: none yet"
    header = ["when (UTC)", "user", "action", "alias", "from", "to", "reason"]
    rows = []
    for e in entries:
        when = str(e.get("at", "?"))[:19].replace("T", " ")
        to = str(e.get("to") or "-")
        if e.get("action") == "rejected":
            to = f"{to} (v{e.get('candidate')} rejected)"
        reason = str(e.get("reason", e.get("raw", "")))
        rows.append([when, str(e.get("user", "?")), str(e.get("action", "?")), str(e.get("alias", "-")),
                     str(e.get("from") or "-"), to, reason[:110] + ("..." if len(reason) > 110 else "")])
    title = f"promotion history (last {len(entries)} of {total}):" if len(entries) < total else "promotion history:"
    return title + "\n" + _table(header, rows)


def _num(value: str | None) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.4f}"
    except ValueError:
        return value


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])
