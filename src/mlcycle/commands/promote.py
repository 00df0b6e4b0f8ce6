"""``mlcycle promote``: move ``champion`` to a version through the same gate as the pipeline.

Both the candidate and the current champion are scored on the candidate's test split (the
version's ``test_data_uri`` tag, written by the pipeline) or on ``--data``. ``--force`` skips
the gate and says so in the audit trail; the model must still load safely (skops, trusted
types). Exit codes: 0 promoted (or already champion), 3 the gate said no, 2 bad input.
"""

from __future__ import annotations

from mlcycle.cli import command
from mlcycle.commands import _common

GATE_FAILED = 3


@command
def main(argv: list[str]) -> int:
    parser = _common.parser("promote", __doc__)
    parser.add_argument("--version", help="version number to promote (wins over --alias)")
    parser.add_argument("--alias", help="promote the version this alias points at (e.g. challenger)")
    parser.add_argument("--model", help="registered model name (default: registry.model_name)")
    parser.add_argument("--force", action="store_true", help="skip the gate (recorded in the audit trail)")
    parser.add_argument("--reason", help="why, for the audit trail")
    parser.add_argument("--data", help="labelled CSV/Parquet to compare on instead of the version's test split")
    args = _common.parse(parser, argv)
    if not (args.version or args.alias):
        parser.error("one of the arguments --version --alias is required")
    from mlcycle.config.load import compose
    from mlcycle.tracking import model_io, registry

    cfg = compose(args.overrides)
    client, _ = _common.connect(cfg)
    reg = cfg.registry
    name = args.model or reg.model_name
    # an explicit version wins: an MLproject entry point always passes the default alias too
    version = registry.resolve_version(client, name, args.version or args.alias)
    if registry.alias_version(client, name, reg.champion_alias) == version:
        print(f"{name} version {version} is already {reg.champion_alias}; nothing to do")
        return 0
    loaded = model_io.load_model(f"models:/{name}/{version}")  # refuses unsafe models, even with --force
    test = _evaluation_frame(client, name, version, loaded, args.data)
    metrics = model_io.score(loaded, test, loaded.target)
    tags = client.get_model_version(name, version).tags
    candidate = registry.Candidate(
        version, loaded.task, metrics, test, loaded.target, tags.get(registry.TAG_PRIMARY_METRIC) or None,
        notes={"evaluated_on": args.data or test_split_uri(client, name, version), "rows": len(test)},
    )
    outcome = registry.promote(client, name, candidate, reg.gate, reg.lock, champion_alias=reg.champion_alias,
                               force=args.force, reason=args.reason)
    if outcome.verdict == "already-champion":
        print(f"{name} version {version} is already {reg.champion_alias}; nothing to do")
        return 0
    was = f" (was version {outcome.previous_champion})" if outcome.previous_champion else ""
    if outcome.promoted:
        print(f"promoted {name} version {version} to {reg.champion_alias}{was}: {outcome.summary}")
        return 0
    print(f"NOT promoted: {name} version {version} stays off {reg.champion_alias}{was}: {outcome.summary}")
    return GATE_FAILED


def test_split_uri(client, name: str, version: str) -> str:
    """Where a version's test split is: in the run that holds its pipeline's splits (followed
    through a cache hit, so versions whose ingest reused an earlier run work too); versions
    made outside a pipeline name it in their ``test_data_uri`` tag."""
    from mlcycle.stages import ingest
    from mlcycle.tracking.registry import TAG_ROOT_RUN, TAG_TEST_DATA, RegistryError
    from mlcycle.tracking.runs import stage_outputs

    tags = client.get_model_version(name, version).tags
    if (root := tags.get(TAG_ROOT_RUN)) and (data := stage_outputs(client, root, ingest.STAGE.name)):
        return f"runs:/{data.info.run_id}/{ingest.SPLITS_DIR}/test.parquet"
    if uri := tags.get(TAG_TEST_DATA):
        return uri
    raise RegistryError(f"{name} version {version} names no test split; pass --data FILE (labelled CSV/Parquet)")


def _evaluation_frame(client, name, version, loaded, data_path):
    from mlcycle.core import tables
    from mlcycle.errors import DataError
    from mlcycle.tracking.artifacts import read_frame
    from mlcycle.tracking.registry import RegistryError

    if data_path:
        frame, source = tables.read_table(tables.resolve_path(data_path)), data_path
    else:
        uri = test_split_uri(client, name, version)
        try:
            frame, source = read_frame(uri), uri
        except Exception as exc:
            raise RegistryError(f"cannot read the test split {uri} of {name} version {version}: {exc}") from None
    needed = [c for c, _, required in loaded.inputs if required] + [loaded.target]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)} needed to score {name} version {version}")
    return frame
