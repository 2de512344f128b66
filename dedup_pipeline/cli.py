"""``dedup-pipeline``: materialize every asset in-process and print a summary.

``dedup-pipeline run --data DIR [--db PATH]`` exits 0 when every check passed, 1 when a check
failed (for example the leak budget: the dedup manifest is still written), 2 on bad input.
``--resume`` skips the stages an earlier run into the same database finished with the same
settings and data (an interrupted run picks up where it stopped).
``dedup-pipeline demo`` builds the embedded demo dataset, runs, and compares planted leaks with
found ones.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from dedup_pipeline.defs import ASSETS
from dedup_pipeline.defs.resources import DUCKDB_RESOURCE_KEY, DedupConfig
from dedup_pipeline.lib.inputs.demo_dataset import build_demo_dataset
from dedup_pipeline.lib.inputs.sources import DatasetError, discover
from dedup_pipeline.lib.storage.stages import dataset_signature, done_stages, stages_to_run

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DEMO_DIR = Path("demo_data")


def _threshold(text: str) -> tuple[str, int]:
    name, _, value = text.partition("=")
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected HASH=DISTANCE (e.g. phash=8), got {text!r}")
    return name, int(value)


def _optional_float(text: str) -> float | str:
    return "off" if text.lower() in {"none", "off"} else float(text)


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    defaults = DedupConfig.model_fields
    parser.add_argument(
        "--db", default=os.environ.get("DEDUP_DB"), help="DuckDB file to write (default: dedup.duckdb, or DEDUP_DB)"
    )
    parser.add_argument(
        "--hamming",
        type=_threshold,
        action="append",
        metavar="HASH=DISTANCE",
        help="fixed Hamming threshold for a hash (overrides calibration); repeat for several",
    )
    parser.add_argument(
        "--cosine-threshold",
        type=_optional_float,
        default=None,
        help="fixed embedding cosine threshold (overrides calibration), or 'off' to not match on embeddings",
    )
    parser.add_argument(
        "--no-calibration", action="store_true", help="use fixed fallback thresholds instead of calibrating"
    )
    parser.add_argument(
        "--no-verification",
        action="store_true",
        help="match on the calibrated thresholds alone instead of training a pair verifier",
    )
    parser.add_argument(
        "--target-precision",
        type=float,
        default=defaults["target_precision"].default,
        help="precision calibrated thresholds aim for (default: %(default)s)",
    )
    parser.add_argument(
        "--embedding-model",
        default=defaults["embedding_model"].default,
        help="registered model name, 'none', or package.module:factory (default: %(default)s)",
    )
    parser.add_argument(
        "--embedding-image-size", type=int, default=None, help="model input size (default: the model's)"
    )
    parser.add_argument(
        "--split-priority",
        default=None,
        help="comma-separated splits in the order they keep images (default: train,val,...,test)",
    )
    parser.add_argument(
        "--max-leaked-fraction",
        type=float,
        default=defaults["max_leaked_fraction"].default,
        help="leak budget per evaluation split (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=0, help="decode processes (default: one per CPU)")


def _config_from_args(data: str, args: argparse.Namespace) -> DedupConfig:
    options: dict[str, object] = {
        "data": str(Path(data).expanduser().resolve()),
        "calibrate": not args.no_calibration,
        "verify": not args.no_verification,
        "target_precision": args.target_precision,
        "embedding_model": args.embedding_model,
        "embedding_image_size": args.embedding_image_size,
        "max_leaked_fraction": args.max_leaked_fraction,
        "workers": args.workers,
    }
    if args.hamming:
        options["hamming_thresholds"] = dict(args.hamming)
    if args.cosine_threshold == "off":
        options["match_embeddings"] = False
    elif args.cosine_threshold is not None:
        options["cosine_threshold"] = args.cosine_threshold
    if args.split_priority:
        options["split_priority"] = [split.strip() for split in args.split_priority.split(",") if split.strip()]
    return DedupConfig(**options)


def materialize(config: DedupConfig, database: Path, stages: Sequence[str] | None = None) -> dg.ExecuteInProcessResult:
    """Materialize every asset (and its checks) in this process, or only those of ``stages``."""
    from dagster_duckdb import DuckDBResource

    database.parent.mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    selected = [asset for asset in ASSETS if stages is None or asset.op.name in stages]
    return dg.materialize(
        ASSETS,
        selection=dg.AssetSelection.assets(*(key for asset in selected for key in asset.keys)),
        resources={"dedup": config, DUCKDB_RESOURCE_KEY: DuckDBResource(database=str(database))},
        instance=instance,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )


def unfinished_stages(config: DedupConfig, database: Path) -> list[str]:
    """The stages a resumed run must still materialize, upstream first."""
    order = [asset.op.name for asset in ASSETS]
    if not database.exists():
        return order
    signature = dataset_signature(discover(config.data).images)
    with duckdb.connect(str(database), read_only=True) as connection:
        return stages_to_run(order, done_stages(connection, config.fingerprint(), signature))


def _print_frame(title: str, frame: pl.DataFrame) -> None:
    print(f"\n{title}")
    with pl.Config(tbl_rows=50, tbl_cols=20, tbl_width_chars=160, fmt_str_lengths=60, tbl_hide_dataframe_shape=True):
        print(frame)


def summarize(result: dg.ExecuteInProcessResult | None, database: Path) -> int:
    """Print row counts, the leak report and check outcomes (``result`` None: nothing was run);
    return the exit code."""
    if result is not None and not result.success:
        failure = next((event for event in result.all_events if event.is_step_failure), None)
        error = failure.step_failure_data.error if failure else None
        while error is not None and error.cause is not None:  # Dagster wraps the user's exception
            error = error.cause
        print(f"\nrun failed: {error.message.strip() if error else 'see the log above'}", file=sys.stderr)
        return EXIT_BAD_INPUT
    with duckdb.connect(str(database), read_only=True) as connection:
        counts = [
            (name, connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
            for name in (
                "image_manifest",
                "image_errors",
                "duplicate_pairs",
                "leaks",
                "duplicate_clusters",
                "label_conflicts",
                "dedup_manifest",
            )
        ]
        report = connection.execute("SELECT * FROM leak_report").pl()
        kept = connection.execute(
            "SELECT split, count(*) FILTER (keep) AS kept, count(*) FILTER (NOT keep) AS dropped "
            "FROM dedup_manifest GROUP BY split ORDER BY split"
        ).pl()
    _print_frame("tables", pl.DataFrame(counts, schema=["table", "rows"], orient="row"))
    _print_frame("leak report", report)
    _print_frame("dedup manifest", kept)
    if result is None:
        print(f"\nevery stage was already done for these settings and data; results in {database}")
        return EXIT_OK
    checks = [
        (str(e.asset_key.to_user_string()), e.check_name, "passed" if e.passed else f"FAILED ({e.severity.value})")
        for e in result.get_asset_check_evaluations()
    ]
    _print_frame("checks", pl.DataFrame(checks, schema=["asset", "check", "outcome"], orient="row"))
    print(f"\nresults in {database} (views: duplicate_pairs, leaks, dedup_manifest, image_errors)")
    failed = [
        e for e in result.get_asset_check_evaluations() if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]
    return EXIT_CHECK_FAILED if failed else EXIT_OK


def compare_with_planted(database: Path, planted: Sequence[tuple[str, str, str]]) -> bool:
    """Print planted duplicate pairs against found ones; True when they are the same set."""
    with duckdb.connect(str(database), read_only=True) as connection:
        found = {
            tuple(sorted(row)) for row in connection.execute("SELECT path_a, path_b FROM duplicate_pairs").fetchall()
        }
    expected = {tuple(sorted((a, b))): kind for a, b, kind in planted}
    rows = [(a, b, kind, "found" if (a, b) in found else "MISSED") for (a, b), kind in sorted(expected.items())]
    rows += [(a, b, "(not planted)", "UNEXPECTED") for a, b in sorted(found - expected.keys())]
    _print_frame(
        "planted vs found duplicate pairs",
        pl.DataFrame(rows, schema=["path_a", "path_b", "planted", "result"], orient="row"),
    )
    return found == set(expected)


def _run(args: argparse.Namespace) -> int:
    database = Path(args.db or "dedup.duckdb").expanduser().resolve()
    try:
        config = _config_from_args(args.data, args)
        config.matching_evidence()
    except (ValueError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not Path(config.data).exists():
        print(f"error: dataset not found: {config.data}", file=sys.stderr)
        return EXIT_BAD_INPUT
    stages = None
    if args.resume:
        stages = unfinished_stages(config, database)
        skipped = [asset.op.name for asset in ASSETS if asset.op.name not in stages]
        print(f"resuming: {', '.join(skipped) or 'no stage'} already done")
        if not stages:
            return summarize(None, database)
    return summarize(materialize(config, database, stages), database)


def _demo(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve() / "images"
    database = Path(args.db or Path(args.dir) / "demo.duckdb").resolve()
    planted = build_demo_dataset(root)
    print(
        f"demo dataset: {root} ({sum(1 for p in root.rglob('*') if p.is_file())} images, "
        f"{len(planted)} planted duplicate pairs)"
    )
    code = summarize(materialize(_config_from_args(str(root), args), database), database)
    if code == EXIT_BAD_INPUT:
        return code
    if not compare_with_planted(database, planted):
        print("\ndemo: found pairs differ from the planted ones", file=sys.stderr)
        return EXIT_CHECK_FAILED
    print(
        "\ndemo: every planted duplicate was found and nothing else "
        "(the leak check fails on purpose: leaks were planted)"
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dedup-pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="scan a dataset and write the reports")
    run.add_argument(
        "--data", required=True, help="dataset folder <root>/<split>/<label>/... or a CSV/Parquet manifest"
    )
    _add_config_options(run)
    run.add_argument(
        "--resume",
        action="store_true",
        help="skip stages an earlier run into the same database finished with the same settings and data",
    )
    run.set_defaults(handler=_run)
    demo = commands.add_parser("demo", help="build the demo dataset, scan it, compare with the planted leaks")
    demo.add_argument("--dir", default=str(DEMO_DIR), help="where to build the demo (default: %(default)s)")
    _add_config_options(demo)
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
