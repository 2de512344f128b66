"""``dedup-pipeline``: find duplicate images, leaks and label conflicts in a dataset, and keep finding
them as it grows.

``dedup-pipeline run --data DIR [--db PATH]`` registers what changed in the dataset since the last
run as a drop, extracts only that, joins it against every stored image and brings the reports up to
date; it exits 0 when every check passed, 1 when a check failed (for example the leak budget: the
dedup manifest is still written), 2 on bad input. ``dedup-pipeline check PATH...`` prints each
image's duplicates already stored, without changing anything (exit 1 when any is found).
``dedup-pipeline demo`` builds the embedded demo dataset, runs, adds a second drop, runs again, and
compares planted leaks with found ones.

Dagster and torch are imported by the commands that need them, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg
    import duckdb
    import polars as pl

    from dedup_pipeline.defs.resources import DedupConfig
    from dedup_pipeline.lib.inputs.changes import Registration

from dedup_pipeline.defaults import (
    DEFAULT_DATABASE,
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_FILE_SECONDS,
    DEFAULT_TARGET_PRECISION,
    DEFAULT_WAIT_SECONDS,
)

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DEMO_DIR = Path("demo_data")


def _threshold(text: str) -> tuple[str, int]:
    name, _, value = text.partition("=")
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected HASH=DISTANCE (e.g. phash=8), got {text!r}")
    return name, int(value)


def _optional_float(text: str) -> float | str:
    return "off" if text.lower() in {"none", "off"} else float(text)


def _add_database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=os.environ.get("DEDUP_DB"),
        help=f"DuckDB file (default: {DEFAULT_DATABASE}, or DEDUP_DB); its store is the folder beside it",
    )
    parser.add_argument(
        "--wait-seconds",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        help="how long to wait for another run writing (or a check reading) the same database before "
        "giving up with exit 2 (default: %(default)s)",
    )


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    _add_database_option(parser)
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
        default=DEFAULT_TARGET_PRECISION,
        help="precision calibrated thresholds aim for (default: %(default)s)",
    )
    parser.add_argument(
        "--recalibrate",
        action="store_true",
        help="calibrate again on every stored image and judge the stored candidates again (nothing is decoded)",
    )
    parser.add_argument(
        "--thresholds-from",
        metavar="OTHER.duckdb",
        help="apply the thresholds and pair verifier stored in another database instead of calibrating",
    )
    parser.add_argument(
        "--embedding-model",
        default=DEFAULT_EMBEDDING_MODEL,
        help="registered model name, 'none', or package.module:factory (default: %(default)s)",
    )
    parser.add_argument(
        "--embedding-image-size", type=int, default=None, help="model input size (default: chosen per dataset)"
    )
    parser.add_argument(
        "--split-priority",
        default=None,
        help="comma-separated splits in the order they keep images (default: train,val,...,test)",
    )
    parser.add_argument(
        "--max-leaked-fraction",
        type=float,
        default=0.0,
        help="leak budget per evaluation split (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=0, help="decode processes (default: one per CPU)")
    parser.add_argument(
        "--file-time-limit",
        type=float,
        default=DEFAULT_FILE_SECONDS,
        metavar="SECONDS",
        help="record a file that takes longer to read and decode as an error and go on (0: no limit; "
        "default: %(default)s)",
    )
    parser.add_argument(
        "--allow-root",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder a manifest's rows may point into besides the manifest's own; repeat for several",
    )
    parser.add_argument(
        "--overrides",
        metavar="MARKS.csv",
        help="a person's marks on pairs (path_a,path_b,verdict[,note]; verdict duplicate, 'not duplicate' or "
        "clear), as the HTML report downloads them: kept in the database and applied by every later run",
    )


def _config_from_args(data: str, args: argparse.Namespace) -> DedupConfig:
    from dedup_pipeline.defs.resources import DedupConfig

    options: dict[str, object] = {
        "data": str(Path(data).expanduser().resolve()),
        "calibrate": not args.no_calibration,
        "verify": not args.no_verification,
        "target_precision": args.target_precision,
        "embedding_model": args.embedding_model,
        "embedding_image_size": args.embedding_image_size,
        "max_leaked_fraction": args.max_leaked_fraction,
        "workers": args.workers,
        "file_time_limit_seconds": args.file_time_limit,
        "allowed_roots": [str(Path(root).expanduser().resolve()) for root in args.allow_root],
        "recalibrate": args.recalibrate,
        "thresholds_from": str(Path(args.thresholds_from).expanduser().resolve()) if args.thresholds_from else None,
        "overrides_file": str(Path(args.overrides).expanduser().resolve()) if args.overrides else None,
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


def _database(args: argparse.Namespace) -> Path:
    return Path(args.db or DEFAULT_DATABASE).expanduser().resolve()


@dataclass
class PipelineRun:
    """The Dagster runs of one ``materialize``: one per drop extracted, then the global assets."""

    registration: Registration
    results: list[dg.ExecuteInProcessResult] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(result.success for result in self.results)

    def check_evaluations(self) -> list[dg.AssetCheckEvaluation]:
        return [evaluation for result in self.results for evaluation in result.get_asset_check_evaluations()]

    def metadata(self, asset: str) -> dict[str, object]:
        """The latest materialization metadata of ``asset`` in these runs (values unwrapped)."""
        found: dict[str, object] = {}
        for result in self.results:
            for event in result.get_asset_materialization_events():
                if event.asset_key.to_user_string() == asset:
                    found = {key: entry.value for key, entry in event.materialization.metadata.items()}
        return found

    def seconds(self) -> float:
        """The sum of every asset's recorded ``..._seconds``."""
        return sum(
            float(entry.value)
            for result in self.results
            for event in result.get_asset_materialization_events()
            for key, entry in event.materialization.metadata.items()
            if key.endswith("seconds")
        )


def materialize(config: DedupConfig, database: Path, wait_seconds: float = DEFAULT_WAIT_SECONDS) -> PipelineRun:
    """Register what changed in ``config.data`` as drops, extract every drop not extracted yet (one
    Dagster run each, a partition of the per-drop assets; the last one in the same run as the rest),
    and materialize the global assets (catalog, thresholds, join, clusters, reports) and their
    checks, all in this process, holding the store's write lock throughout (waiting up to
    ``wait_seconds`` for another writer)."""
    from dedup_pipeline.defs.resources import store_of
    from dedup_pipeline.lib.storage.write_lock import writer_lock

    def waiting(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with writer_lock(store_of(str(database)).lock_file, wait_seconds, waiting):
        return _materialize(config, database, wait_seconds)


def _materialize(config: DedupConfig, database: Path, wait_seconds: float) -> PipelineRun:
    import dagster as dg

    from dedup_pipeline.defs import ASSETS, GLOBAL_ASSETS, PER_DROP_ASSETS
    from dedup_pipeline.defs.partitions import DROPS
    from dedup_pipeline.defs.resources import DUCKDB_RESOURCE_KEY, StoreDatabase, store_of
    from dedup_pipeline.defs.run_owners import owner_tags, release_dead_runs
    from dedup_pipeline.lib.inputs.changes import register_changes

    database.parent.mkdir(parents=True, exist_ok=True)
    store = store_of(str(database))
    registration = register_changes(config.data, store, allowed_roots=config.allowed_roots)
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    for run_id in release_dead_runs(instance):
        print(f"released run {run_id}: its process was killed before it finished", file=sys.stderr)
    known = set(instance.get_dynamic_partitions(DROPS.name))
    drops = store.drops()
    instance.add_dynamic_partitions(DROPS.name, [drop.key for drop in drops if drop.key not in known])
    resources = {"dedup": config, DUCKDB_RESOURCE_KEY: StoreDatabase(database=str(database), wait_seconds=wait_seconds)}
    run = PipelineRun(registration)

    def materialized(assets: list, partition: str | None = None) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            ASSETS,
            selection=dg.AssetSelection.assets(*(key for asset in assets for key in asset.keys)),
            partition_key=partition,
            resources=resources,
            instance=instance,
            raise_on_error=False,
            tags={**owner_tags(), **({"dedup/drop": partition} if partition else {})},
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )

    pending = [drop.key for drop in drops if not store.is_extracted(drop)]
    for key in pending[:-1]:
        run.results.append(materialized(PER_DROP_ASSETS, key))
        if not run.success:
            return run
    # the last drop and the global assets in one run (a Dagster run costs about half a second)
    last = pending[-1:]
    run.results.append(materialized(PER_DROP_ASSETS + GLOBAL_ASSETS if last else GLOBAL_ASSETS, *last))
    return run


def _print_frame(title: str, frame: pl.DataFrame) -> None:
    import polars as pl

    print(f"\n{title}")
    with pl.Config(tbl_rows=50, tbl_cols=20, tbl_width_chars=160, fmt_str_lengths=100, tbl_hide_dataframe_shape=True):
        print(frame)


@contextmanager
def _reading(database: Path, wait_seconds: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection, waiting while another process has the database open."""
    from dedup_pipeline.lib.storage.write_lock import connect

    with closing(connect(database, read_only=True, wait_seconds=wait_seconds)) as connection:
        yield connection


def _leak_pairs(database: Path, wait_seconds: float) -> set[tuple[str, str]]:
    """The leaks a database holds now (empty when it has none yet)."""
    if not database.exists():
        return set()
    with _reading(database, wait_seconds) as connection:
        views = {name for (name,) in connection.execute("SELECT view_name FROM duckdb_views()").fetchall()}
        if "leaks" not in views:
            return set()
        return set(connection.execute("SELECT path_a, path_b FROM leaks").fetchall())


def _print_changes(run: PipelineRun, leaks_before: set[tuple[str, str]], database: Path, wait_seconds: float) -> None:
    """What this run changed: the drops it registered, what the join did, the new and gone leaks."""
    import polars as pl

    registration = run.registration
    if registration.drops:
        from dedup_pipeline.defs.resources import store_of

        events = store_of(str(database)).events(registration.drops)
        counts = events.group_by("sequence", "change").len().pivot("change", index="sequence", values="len")
        keys = pl.DataFrame(
            {"sequence": [d.sequence for d in registration.drops], "drop": [d.key for d in registration.drops]}
        )
        _print_frame("drops registered by this run", keys.join(counts, on="sequence").drop("sequence").fill_null(0))
    else:
        deferred = f", {registration.deferred} not settled" if registration.deferred else ""
        print(f"\nno new, rewritten or deleted files in {registration.root} ({registration.listed:,} listed{deferred})")
    join = run.metadata("similar_pairs")
    if join:
        scope = "from scratch" if join.get("from_scratch") else "incrementally"
        print(
            f"\njoined {scope}: {join['new_images']:,} new images against the store, {join['retired_images']:,} "
            f"retired; {join['candidates_judged']:,} candidate pairs judged, {join['pairs_added']:,} duplicate "
            f"pairs added, {join['pairs_removed']:,} removed"
        )
    after = _leak_pairs(database, wait_seconds)
    new, gone = sorted(after - leaks_before), sorted(leaks_before - after)
    if leaks_before and (new or gone):
        rows = [(a, b, "new") for a, b in new] + [(a, b, "gone") for a, b in gone]
        _print_frame("leaks changed by this run", pl.DataFrame(rows, schema=["path_a", "path_b", "leak"], orient="row"))


def summarize(run: PipelineRun, database: Path, leaks_before: set[tuple[str, str]], wait_seconds: float) -> int:
    """Print what changed, row counts, the leak report and check outcomes; return the exit code."""
    import dagster as dg
    import polars as pl

    from dedup_pipeline.lib.storage.database import table_name

    if not run.success:
        failed = next(result for result in run.results if not result.success)
        failure = next((event for event in failed.all_events if event.is_step_failure), None)
        error = failure.step_failure_data.error if failure else None
        while error is not None and error.cause is not None:  # Dagster wraps the user's exception
            error = error.cause
        print(f"\nrun failed: {error.message.strip() if error else 'see the log above'}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _print_changes(run, leaks_before, database, wait_seconds)
    with _reading(database, wait_seconds) as connection:
        counts = [
            (name, connection.execute(f"SELECT count(*) FROM {table_name(name)}").fetchone()[0])
            for name in (
                "image_manifest",
                "image_errors",
                "retired_images",
                "duplicate_pairs",
                "leaks",
                "duplicate_clusters",
                "label_conflicts",
                "dedup_manifest",
            )
        ]
        verifier = _verifier_line(connection)
        report = connection.execute("SELECT * FROM leak_report").pl()
        kept = connection.execute(
            "SELECT split, count(*) FILTER (keep) AS kept, count(*) FILTER (NOT keep) AS dropped "
            "FROM dedup_manifest GROUP BY split ORDER BY split"
        ).pl()
    _print_frame("tables", pl.DataFrame(counts, schema=["table", "rows"], orient="row"))
    if verifier:
        print(f"\n{verifier}")
    _print_frame("leak report", report)
    _print_frame("dedup manifest", kept)
    evaluations = run.check_evaluations()
    checks = [
        (
            e.asset_key.to_user_string(),
            e.check_name,
            "passed" if e.passed else f"FAILED ({e.severity.value})",
            e.description or "",
        )
        for e in evaluations
    ]
    _print_frame("checks", pl.DataFrame(checks, schema=["asset", "check", "outcome", "what it found"], orient="row"))
    print(f"\nresults in {database} (views: duplicate_pairs, leaks, dedup_manifest, image_errors)")
    report = run.metadata("html_report").get("report")
    if report:
        print(f"HTML report: {report}")
    failed = [e for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    return EXIT_CHECK_FAILED if failed else EXIT_OK


def _verifier_line(connection: object) -> str | None:
    """The pair verifier's threshold and the precision its first join expected of its flags."""
    from dedup_pipeline.lib.storage.database import read_first_join

    first_join = read_first_join(connection)
    if first_join is None or first_join["expected_precision"] is None:
        return None
    threshold, precision, share = (
        first_join[name] for name in ("operating_threshold", "expected_precision", "copy_share")
    )
    return (
        f"pair verifier: probability >= {threshold:.3g}; its first join expected {precision:.3f} of its flags to be "
        f"real copies (an estimated {share:.2%} of the candidates it judged are copies; column copy_probability)"
    )


def compare_with_planted(database: Path, planted: Sequence[tuple[str, str, str]], wait_seconds: float) -> bool:
    """Print planted duplicate pairs against found ones; True when they are the same set."""
    import polars as pl

    with _reading(database, wait_seconds) as connection:
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


def _validated_config(data: str, args: argparse.Namespace) -> DedupConfig | None:
    from dedup_pipeline.lib.inputs.sources import DatasetError

    try:
        config = _config_from_args(data, args)
    except (ValueError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    problems = config.problems()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return None
    if not Path(config.data).exists():
        print(f"error: dataset not found: {config.data}", file=sys.stderr)
        return None
    if config.thresholds_from and not Path(config.thresholds_from).is_file():
        print(f"error: --thresholds-from: no database at {config.thresholds_from}", file=sys.stderr)
        return None
    return config


def run_and_summarize(config: DedupConfig, database: Path, wait_seconds: float) -> int:
    from dedup_pipeline.lib.inputs.sources import DatasetError
    from dedup_pipeline.lib.storage.write_lock import StoreBusy

    try:
        leaks_before = _leak_pairs(database, wait_seconds)
        run = materialize(config, database, wait_seconds)
        return summarize(run, database, leaks_before, wait_seconds)
    except (DatasetError, StoreBusy) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _run(args: argparse.Namespace) -> int:
    config = _validated_config(args.data, args)
    if config is None:
        return EXIT_BAD_INPUT
    database = _database(args)
    if database.is_dir():
        print(f"error: --db {database} is a folder; name a database file in it instead", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_and_summarize(config, database, args.wait_seconds)


def _check(args: argparse.Namespace) -> int:
    from dedup_pipeline.lib.search.lookup import StoreNotReady, stored_duplicates
    from dedup_pipeline.lib.storage.write_lock import StoreBusy

    database = _database(args)
    paths = [Path(path) for path in args.paths]
    try:
        found = stored_duplicates(paths, database, workers=args.workers, wait_seconds=args.wait_seconds)
    except (StoreNotReady, StoreBusy) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if found.failures.height:
        _print_frame("images that could not be checked", found.failures)
    if found.duplicates.is_empty():
        print(f"\nno stored duplicate of the {len(args.paths)} checked image(s) in {database}")
        return EXIT_OK
    _print_frame("stored duplicates", found.duplicates)
    checked = found.duplicates["checked"].n_unique()
    print(f"\n{checked} of {len(args.paths)} checked image(s) have a duplicate in {database}")
    return EXIT_CHECK_FAILED


def _report(args: argparse.Namespace) -> int:
    import polars as pl

    from dedup_pipeline.lib.reporting.html_report import report_folder_of, report_from_database
    from dedup_pipeline.lib.storage.write_lock import StoreBusy

    database = _database(args)
    if not database.is_file():
        print(
            f"error: no database at {database}: run `dedup-pipeline run --data ... --db {database}` first",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    target = Path(args.html).expanduser().resolve() if args.html else report_folder_of(database)
    try:
        with _reading(database, args.wait_seconds) as connection:
            index, tables = report_from_database(connection, target, str(database))
    except (ValueError, StoreBusy) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _print_frame("counts", pl.DataFrame(tables.counts, schema=["what", "count"], orient="row"))
    _print_frame("leak report", tables.leak_report)
    print(f"\nHTML report: {index}")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from dedup_pipeline.lib.inputs.demo_dataset import build_demo_dataset, build_demo_drop

    root = Path(args.dir).resolve() / "images"
    database = Path(args.db or Path(args.dir) / "demo.duckdb").resolve()
    from dedup_pipeline.lib.storage.store import discard

    discard(database)  # the demo starts from nothing each time
    planted = build_demo_dataset(root)
    print(
        f"demo dataset: {root} ({sum(1 for p in root.rglob('*') if p.is_file())} images, "
        f"{len(planted)} planted duplicate pairs)"
    )
    config = _config_from_args(str(root), args)
    code = run_and_summarize(config, database, args.wait_seconds)
    if code == EXIT_BAD_INPUT:
        return code
    drop_planted = build_demo_drop(root)
    print(f"\ndemo: a second drop arrives in {root}/drops/ with {len(drop_planted)} planted leaks; running again")
    code = run_and_summarize(config, database, args.wait_seconds)
    if code == EXIT_BAD_INPUT:
        return code
    if not compare_with_planted(database, [*planted, *drop_planted], args.wait_seconds):
        print("\ndemo: found pairs differ from the planted ones", file=sys.stderr)
        return EXIT_CHECK_FAILED
    print(
        "\ndemo: every planted duplicate of both drops was found and nothing else "
        "(the leak check fails on purpose: leaks were planted)"
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dedup-pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="register what changed in a dataset, process only that, and bring the reports up to date"
    )
    run.add_argument(
        "--data", required=True, help="dataset folder <root>/<split>/<label>/... or a CSV/Parquet manifest"
    )
    _add_config_options(run)
    run.set_defaults(handler=_run)
    check = commands.add_parser(
        "check", help="print each image's duplicates already stored, without changing anything (exit 1 if any)"
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help="image files to check")
    _add_database_option(check)
    check.add_argument("--workers", type=int, default=0, help="decode processes (default: one per CPU)")
    check.set_defaults(handler=_check)
    report = commands.add_parser(
        "report", help="write the HTML report of a database (and print its summary) without running anything"
    )
    _add_database_option(report)
    report.add_argument("--html", help="report folder (default: beside the database, <name>.report/)")
    report.set_defaults(handler=_report)
    demo = commands.add_parser(
        "demo", help="build the demo dataset, scan it, add a second drop, scan again, compare with the planted leaks"
    )
    demo.add_argument("--dir", default=str(DEMO_DIR), help="where to build the demo (default: %(default)s)")
    _add_config_options(demo)
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
