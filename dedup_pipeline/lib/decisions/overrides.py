"""A person's verdicts on pairs, which outrank the machine's.

A mark says that two images (by path, as the manifest names them) are a ``duplicate`` or
``not duplicate``; ``clear`` forgets an earlier mark. Marks come as a CSV (``path_a, path_b,
verdict[, note]``: what the HTML report downloads) and are kept in the store, so every later join
applies them too, after new drops and after recalibrations, until a mark is cleared.

Marks are applied to the machine's pairs (the join's own, kept apart so that incremental joins stay
equal to from-scratch ones): a pair marked ``not duplicate`` is removed; a pair marked
``duplicate`` is kept with ``override`` added to its evidence, or added (measured like any other
pair, with evidence ``override``) when the machine did not find it. Clusters, the leak report, the
label conflicts and the dedup manifest are built from the result, so they respect the marks. Each
stored mark records what it did on the last join (``effect``), including marks whose images are
not (or no longer) in the dataset.
"""

from __future__ import annotations

import csv
import datetime
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import polars as pl

DUPLICATE, NOT_DUPLICATE, CLEAR = "duplicate", "not duplicate", "clear"
VERDICTS = (DUPLICATE, NOT_DUPLICATE, CLEAR)
OVERRIDE_EVIDENCE = "override"
REQUIRED_COLUMNS = ("path_a", "path_b", "verdict")
MARK_SCHEMA = {
    "path_a": pl.String,
    "path_b": pl.String,
    "verdict": pl.String,
    "note": pl.String,
    "source": pl.String,
    "marked_at": pl.Datetime("us"),
}
STORED_SCHEMA = {**MARK_SCHEMA, "effect": pl.String}
MAX_PROBLEMS_SHOWN = 10

# what a mark did on the last join
REMOVED, ADDED, CONFIRMED, AGREED, INACTIVE = (
    "removed the pair",
    "added the pair",
    "confirmed the pair",
    "agrees: the machine found no duplicate",
    "inactive: {} not among the live images",
)


class OverridesError(ValueError):
    """A marks file that cannot be applied, with every problem found in it."""


def verdict_of(text: str) -> str | None:
    """The verdict a cell names (case, ``_`` and ``-`` aside: ``not_duplicate`` works), or None."""
    normal = " ".join(text.strip().lower().replace("_", " ").replace("-", " ").split())
    return normal if normal in VERDICTS else None


def read_marks(path: str | Path, marked_at: datetime.datetime | None = None) -> pl.DataFrame:
    """The marks of a CSV file (``MARK_SCHEMA`` columns, one row per pair: a later row for the same
    pair replaces an earlier one), or :class:`OverridesError` naming every bad row."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets write a BOM
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in REQUIRED_COLUMNS if name not in header]
            if missing:
                raise OverridesError(
                    f"{path}: the header must name {', '.join(REQUIRED_COLUMNS)} (and optionally note); "
                    f"missing {', '.join(missing)}"
                )
            reader.fieldnames = header
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise OverridesError(f"{path}: cannot read the marks: {error}") from error
    marks, problems = {}, []
    for line, row in rows:
        path_a, path_b = (row.get(name) or "" for name in ("path_a", "path_b"))
        verdict = verdict_of(row.get("verdict") or "")
        if verdict is None:
            problems.append(f"line {line}: verdict {row.get('verdict')!r} is not one of {', '.join(VERDICTS)}")
        elif not path_a or not path_b:
            problems.append(f"line {line}: path_a and path_b must both be given")
        elif path_a == path_b:
            problems.append(f"line {line}: an image cannot be its own duplicate ({path_a!r})")
        else:
            marks[tuple(sorted((path_a, path_b)))] = (verdict, row.get("note") or None)
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN] + (
            [f"and {len(problems) - MAX_PROBLEMS_SHOWN} more"] * (len(problems) > MAX_PROBLEMS_SHOWN)
        )
        raise OverridesError(f"{path}: {len(problems)} bad rows: " + "; ".join(shown))
    when = marked_at or datetime.datetime.now()
    return pl.DataFrame(
        [(a, b, verdict, note, str(path), when) for (a, b), (verdict, note) in marks.items()],
        schema=MARK_SCHEMA,
        orient="row",
    )


def merged_marks(stored: pl.DataFrame, incoming: pl.DataFrame) -> pl.DataFrame:
    """The stored marks with ``incoming`` ones replacing those of the same pairs; ``clear`` marks
    remove the pair's mark. A mark given again as it is stored keeps its source and time (a file
    set in the configuration is read on every run). Sorted by pair."""
    columns, same = list(MARK_SCHEMA), ["path_a", "path_b", "verdict", "note"]
    repeated = incoming.join(stored.select(same), on=same, how="semi", nulls_equal=True)
    changed = incoming.join(repeated, on=["path_a", "path_b"], how="anti")
    kept = stored.select(columns).join(changed, on=["path_a", "path_b"], how="anti")
    merged = pl.concat([kept, changed.select(columns)]).filter(pl.col("verdict") != CLEAR)
    return merged.sort("path_a", "path_b")


def apply_marks(
    pairs: pl.DataFrame,
    marks: pl.DataFrame,
    manifest: pl.DataFrame,
    measure: Callable[[np.ndarray], pl.DataFrame],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The machine's ``pairs`` (by image id, ``image_id_a`` the one whose path sorts first) with the
    ``marks`` applied, and the marks with what each did (``effect``).

    ``manifest``: the live images (``image_id``, ``path``) in path order. ``measure``: every
    column of a pair for ``(n, 2)`` positions in that order (``i < j``), whatever its verdict;
    used for the pairs the machine did not find.
    """
    positions = manifest.select("path", "image_id").with_row_index("position")
    side = positions.select("path", pl.col("position").cast(pl.Int64), "image_id")
    located = marks.join(side.rename(lambda c: f"{c}_a" if c != "path" else "path_a"), on="path_a", how="left").join(
        side.rename(lambda c: f"{c}_b" if c != "path" else "path_b"), on="path_b", how="left"
    )
    # the pair as the join stores it: the image whose path sorts first (lower position) is a
    swap = pl.col("position_a") > pl.col("position_b")
    located = located.with_columns(
        pl.when(swap).then(pl.col("image_id_b")).otherwise(pl.col("image_id_a")).alias("id_a"),
        pl.when(swap).then(pl.col("image_id_a")).otherwise(pl.col("image_id_b")).alias("id_b"),
        pl.when(swap).then(pl.col("position_b")).otherwise(pl.col("position_a")).alias("first"),
        pl.when(swap).then(pl.col("position_a")).otherwise(pl.col("position_b")).alias("second"),
    )
    found = pairs.select(pl.col("image_id_a").alias("id_a"), pl.col("image_id_b").alias("id_b")).with_columns(
        pl.lit(True).alias("found")
    )
    located = located.join(found, on=["id_a", "id_b"], how="left").with_columns(pl.col("found").fill_null(False))
    live = pl.col("position_a").is_not_null() & pl.col("position_b").is_not_null()
    duplicate = pl.col("verdict") == DUPLICATE
    effect = (
        pl.when(~live)
        .then(_inactive_effect())
        .when(duplicate & pl.col("found"))
        .then(pl.lit(CONFIRMED))
        .when(duplicate)
        .then(pl.lit(ADDED))
        .when(pl.col("found"))
        .then(pl.lit(REMOVED))
        .otherwise(pl.lit(AGREED))
    )
    located = located.with_columns(effect.alias("effect"))

    def marked(effect_name: str) -> pl.DataFrame:
        return located.filter(pl.col("effect") == effect_name)

    removed, confirmed, added = marked(REMOVED), marked(CONFIRMED), marked(ADDED)
    result = pairs.join(
        removed.select(image_id_a="id_a", image_id_b="id_b"),
        on=["image_id_a", "image_id_b"],
        how="anti",
        maintain_order="left",
    )
    result = _with_override_evidence(result, confirmed.select(image_id_a="id_a", image_id_b="id_b"))
    if added.height:
        order = added.sort("first", "second")
        measured = measure(order.select("first", "second").to_numpy().astype(np.int64)).with_columns(
            pl.Series("image_id_a", order["id_a"]),
            pl.Series("image_id_b", order["id_b"]),
            pl.lit(OVERRIDE_EVIDENCE).alias("evidence"),
            pl.lit(OVERRIDE_EVIDENCE).alias("found_by"),
        )
        result = _in_path_order(pl.concat([result, measured], how="diagonal_relaxed"), side)
    return result, located.select(*STORED_SCHEMA).sort("path_a", "path_b")


def _inactive_effect() -> pl.Expr:
    missing = (
        pl.when(pl.col("position_a").is_null() & pl.col("position_b").is_null())
        .then(pl.lit("both images are"))
        .when(pl.col("position_a").is_null())
        .then(pl.lit("path_a is"))
        .otherwise(pl.lit("path_b is"))
    )
    head, tail = INACTIVE.split("{}")
    return pl.concat_str([pl.lit(head), missing, pl.lit(tail)])


def _with_override_evidence(pairs: pl.DataFrame, confirmed: pl.DataFrame) -> pl.DataFrame:
    """``override`` added to the evidence of the ``confirmed`` pairs."""
    if not confirmed.height:
        return pairs
    flagged = confirmed.with_columns(pl.lit(True).alias("_confirmed"))
    joined = pairs.join(flagged, on=["image_id_a", "image_id_b"], how="left", maintain_order="left")
    evidence = (
        pl.when(pl.col("_confirmed"))
        .then(pl.concat_str([pl.col("evidence"), pl.lit(OVERRIDE_EVIDENCE)], separator=",").str.strip_chars(","))
        .otherwise(pl.col("evidence"))
    )
    return joined.with_columns(evidence.alias("evidence")).drop("_confirmed")


def _in_path_order(pairs: pl.DataFrame, side: pl.DataFrame) -> pl.DataFrame:
    """Pairs sorted as the join sorts them: by the positions of image a, then of image b."""
    position = side.select("image_id", "position")
    return (
        pairs.join(position.rename({"image_id": "image_id_a", "position": "_a"}), on="image_id_a", how="left")
        .join(position.rename({"image_id": "image_id_b", "position": "_b"}), on="image_id_b", how="left")
        .sort("_a", "_b")
        .drop("_a", "_b")
    )


def effect_counts(marks: Iterable[str]) -> dict[str, int]:
    """How many marks had each effect (inactive ones counted together)."""
    counts: dict[str, int] = {}
    for effect in marks:
        key = "inactive" if effect.startswith("inactive") else effect
        counts[key] = counts.get(key, 0) + 1
    return counts
