"""``python -m dedup_pipeline.stress`` (``make stress``): kill runs at random moments and resume
them, run writers and readers at once, and write what happened to stress/results.md.

Targets: 0 lost rows, 0 duplicated rows, 0 lock errors, 0 crashes on the bad-file corpus.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
from collections import Counter
from pathlib import Path

import polars as pl

from dedup_pipeline.evaluation.cifar import prepare_cifar
from dedup_pipeline.stress.commands import EVENT_KINDS, event_kinds
from dedup_pipeline.stress.dataset import CORPUS_FOLDERS, DROPS, corpus_inputs, stress_dataset
from dedup_pipeline.stress.scenarios import (
    RANDOM_SPAN,
    Attempt,
    ConcurrentOutcome,
    concurrent,
    instance_home,
    kill_and_resume,
    reference,
)
from dedup_pipeline.stress.tables import TableDifference, compare, read_tables


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(value) for value in row) + " |" for row in rows
    ]


def _differences_section(title: str, differences: dict[str, TableDifference]) -> list[str]:
    rows = [[name, d.reference_rows, d.rows, d.lost, d.extra, d.repeated] for name, d in differences.items()]
    totals = [sum(d.lost for d in differences.values()), sum(d.repeated + d.extra for d in differences.values())]
    return [
        f"### {title}: final tables against the reference",
        "",
        *_table(["table", "reference rows", "rows", "lost", "extra", "repeated"], rows),
        "",
        f"Lost rows: **{totals[0]}**; extra or repeated rows: **{totals[1]}**.",
        "",
    ]


def _corpus_accounting(tables: dict[str, pl.DataFrame], inputs: int) -> tuple[int, int, int]:
    """(recorded as images, recorded as errors, inputs with neither) of the bad-input corpus."""
    prefixes = tuple(f"{folder}/" for folder in CORPUS_FOLDERS)
    images = sum(path.startswith(prefixes) for path in tables["image_manifest"]["path"])
    errors = sum(path.startswith(prefixes) for path in tables["image_errors"]["path"])
    return images, errors, inputs - images - errors


def _attempts_section(attempts: list[Attempt]) -> list[str]:
    rows = [
        [
            attempt.stage,
            attempt.aim,
            f"{attempt.delay:.2f}" if attempt.aim != "none" else "",
            attempt.outcome,
            attempt.landed.replace("|", "/"),
            "yes" if attempt.after.database_opens else f"NO: {attempt.after.error}",
            attempt.after.repeated_images,
            f"{attempt.after.shards} / {attempt.after.drops}",
            attempt.after.incomplete_shards,
            attempt.after.temporaries,
        ]
        for attempt in attempts
    ]
    header = [
        "stage",
        "kill aimed",
        "delay (s)",
        "outcome",
        "where it was (last step logged)",
        "database opens after",
        "repeated images",
        "shards / drops",
        "incomplete shards",
        "temporaries left",
    ]
    return _table(header, rows)


def _concurrent_section(outcome: ConcurrentOutcome) -> list[str]:
    return [
        *_table(["process", "exit code"], [[what, code] for what, code in outcome.runs]),
        "",
        *_table(["check outcome", "count"], [[kind, count] for kind, count in sorted(outcome.checks.items())]),
        "",
    ]


def _events_section(events: Counter) -> list[str]:
    return _table(["what the logs say (every process)", "count"], [[kind, events[kind]] for kind in EVENT_KINDS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--random-kills", type=int, default=5, help="kills at random moments per stage")
    parser.add_argument("--seed", type=int, default=20261129)
    args = parser.parse_args()
    work = args.work.resolve()
    os.environ["DAGSTER_HOME"] = str(instance_home(work / "dagster_home"))  # the runs' instance, not the project's
    cifar = prepare_cifar(args.shared / "data" / "cifar10-jpeg.tar.gz", work / "cifar10")
    dataset = stress_dataset(cifar, args.shared / "data" / "odd-images")
    started = datetime.datetime.now()

    print("stress: reference runs", flush=True)
    base = reference(dataset, work)
    expected = read_tables(base.database)
    print("stress: kill and resume", flush=True)
    killed_database, attempts = kill_and_resume(dataset, work, base.seconds, args.random_kills, args.seed)
    killed = read_tables(killed_database)
    print("stress: concurrent runs and checks", flush=True)
    planted = sorted((work / "reference" / "data" / "test" / "planted").glob("*.jpg"))[:3]
    together = concurrent(dataset, work, planted)
    concurrent_tables = read_tables(together.database)

    inputs = corpus_inputs(work / "reference" / "data")
    kill_logs = sorted((work / "logs").glob("killed-*.log"))
    kill_events = sum((event_kinds(log.read_text(errors="replace")) for log in kill_logs), Counter())
    scenarios = {"reference": expected, "kill and resume": killed, "concurrent": concurrent_tables}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Stress: kill and resume, concurrent writers and readers",
        "",
        f"`make stress` at {commit}, {started:%Y-%m-%d %H:%M}, {os.cpu_count()} CPUs; "
        f"{(datetime.datetime.now() - started).total_seconds() / 60:.0f} minutes.",
        "",
        f"Dataset: {len(dataset.stages[0]):,} CIFAR-10 images (every 10th file of ../shared), then drops "
        f"{', '.join(DROPS)} of {len(dataset.stages[1]):,} each, 20 JPEG q50 copies of training images filed "
        f"under test per stage, and a corpus of {inputs} bad or awkward inputs (../shared/data/odd-images and "
        "generated: empty, random bytes, link loops, a dangling link, a FIFO, no read permission, a non-UTF-8 "
        "name, ...). Each scenario builds its own copy with the same relative paths.",
        "",
        f"Reference (uninterrupted) stage runs: {', '.join(f'{s:.0f} s' for s in base.seconds)}.",
        "",
        "## Kill and resume",
        "",
        "Each stage's `dedup-pipeline run` was sent SIGKILL (its whole process group, decode workers included) at "
        "aimed moments, in the order a run reaches them (a random delay after the log line that starts "
        "extraction, precedes a drop's shard write, starts calibration, or precedes the join's database write), "
        f"then {args.random_kills} times at a random moment within the first {RANDOM_SPAN:.0%} of the stage's "
        "reference duration. After each kill the store was inspected as a reader finds it; then the run was let "
        "finish. Each attempt resumes from what the killed ones left, so an attempt may finish before its kill "
        "comes (an aimed kill whose log line never comes, because that work was done, waits for the run to end).",
        "",
        *_attempts_section(attempts),
        "",
        *_differences_section("Kill and resume", compare(expected, killed)),
        *_events_section(kill_events),
        "",
        "## Concurrent writers and readers",
        "",
        "Stage 0: two command-line runs started together. Stages 1 and 2: a command-line run started together "
        "with the drop sensor's runs (the daemon's part emulated by `dedup_pipeline.stress.sensor_runs`: sensor "
        "ticks, each requested run under the multiprocess executor, every step in its own process). Meanwhile "
        "`dedup-pipeline check` of three planted copies ran again and again.",
        "",
        *_concurrent_section(together),
        *_differences_section("Concurrent", compare(expected, concurrent_tables)),
        *_events_section(together.events),
        "",
        "## The bad-input corpus",
        "",
        *_table(
            ["scenario", "inputs", "recorded as images", "recorded as errors", "neither (lost or crashed)"],
            [[name, inputs, *_corpus_accounting(tables, inputs)] for name, tables in scenarios.items()],
        ),
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
