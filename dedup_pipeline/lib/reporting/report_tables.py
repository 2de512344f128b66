"""What the HTML report shows, read from a database the pipeline has written: the summary, every
leak (an evaluation image beside its duplicate in a higher-priority split), label conflicts and the
duplicate clusters within a split, each row with the image ids whose thumbnails it shows."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from dedup_pipeline.lib.reporting.histograms import Histogram, histograms_of, limits_of
from dedup_pipeline.lib.storage.database import (
    read_first_join,
    read_match_thresholds,
    read_pair_overrides,
    read_table,
    table_names,
)

# a pair's confidence, for ordering: exact copies first, then by the verifier's copy probability
_PAIRS = """
    SELECT a.image_id AS image_id_a, b.image_id AS image_id_b,
           a.path AS path_a, b.path AS path_b, a.split AS split_a, b.split AS split_b,
           a.label AS label_a, b.label AS label_b, a.drop_seq AS drop_seq_a, b.drop_seq AS drop_seq_b,
           p.hamming, p.cosine, p.verification_score, p.copy_probability, p.evidence,
           (p.content_equal OR p.pixels_equal) AS exact
    FROM similar_pairs p
    JOIN image_manifest a ON a.image_id = p.image_id_a
    JOIN image_manifest b ON b.image_id = p.image_id_b
"""


@dataclass
class ReportTables:
    counts: list[tuple[str, int]]  # (what, how many)
    leak_report: pl.DataFrame
    thresholds: pl.DataFrame
    verifier: dict[str, float | None] | None
    errors_by_reason: pl.DataFrame  # reason, images
    leaks: pl.DataFrame  # one row per leaked pair: the evaluation image is side a
    conflicts: pl.DataFrame  # one row per duplicate pair whose labels differ, with its cluster
    clusters: pl.DataFrame  # one row per member of a cluster within one split
    latest_drop: str | None  # the latest drop that brought images, when it is not the first
    latest_pairs: pl.DataFrame  # the duplicate pairs with an image of that drop (side a is one)
    marks: pl.DataFrame  # the marks people made on pairs (MARK_COLUMNS)
    neighbour_plots: list[Histogram]  # the sampled images' nearest-neighbour distances, with the thresholds

    def image_ids(self) -> set[int]:
        """Every image a page shows a thumbnail of."""
        ids = set(self.clusters["image_id"].to_list())
        for frame in (self.leaks, self.conflicts, self.latest_pairs, self.marks):
            ids.update(frame["image_id_a"].drop_nulls().to_list(), frame["image_id_b"].drop_nulls().to_list())
        return ids


def read_report_tables(connection: duckdb.DuckDBPyConnection) -> ReportTables:
    present = table_names(connection)
    if "dedup_decisions" not in present:
        raise ValueError("the database has no results yet: run the pipeline first")
    counts = [
        (name, connection.execute(query).fetchone()[0])
        for name, query in (
            ("images", "SELECT count(*) FROM image_manifest"),
            ("inputs that are not images (image_errors)", "SELECT count(*) FROM image_errors"),
            ("duplicate pairs", "SELECT count(*) FROM duplicate_pairs"),
            ("leaked pairs (across splits)", "SELECT count(*) FROM leaks"),
            ("label conflicts", "SELECT count(*) FROM label_conflicts"),
            ("images in duplicate clusters", "SELECT count(*) FROM duplicate_clusters"),
            ("images dropped by the dedup manifest", "SELECT count(*) FROM dedup_manifest WHERE NOT keep"),
        )
    ]
    if "pair_overrides" in present:
        counts.append(("pairs marked by a person (pair_overrides)", read_pair_overrides(connection).height))
    pairs = connection.execute(_PAIRS).pl()
    latest_drop, latest_pairs = _latest_drop(connection, pairs)
    directions = connection.execute("SELECT eval_split, reference_split FROM leak_report").pl()
    return ReportTables(
        counts=counts,
        leak_report=connection.execute("SELECT * FROM leak_report ORDER BY eval_split, reference_split").pl(),
        thresholds=connection.execute(
            "SELECT evidence, threshold, mirror_aware, source FROM match_thresholds ORDER BY evidence"
        ).pl(),
        verifier=read_first_join(connection) if "pair_verifier" in present else None,
        errors_by_reason=connection.execute(
            "SELECT reason, count(*) AS inputs FROM image_errors GROUP BY reason ORDER BY inputs DESC, reason"
        ).pl(),
        leaks=_leaks(pairs, directions),
        conflicts=_conflicts(connection, pairs),
        clusters=connection.execute(
            "SELECT cluster_id, image_id, path, split, label, is_representative, linked_to, cluster_size, "
            "link_hamming, link_cosine FROM duplicate_clusters WHERE cluster_id IN "
            "(SELECT cluster_id FROM duplicate_clusters GROUP BY cluster_id HAVING count(DISTINCT split) = 1) "
            "ORDER BY cluster_size DESC, cluster_id, NOT is_representative, path"
        ).pl(),
        latest_drop=latest_drop,
        latest_pairs=latest_pairs,
        marks=_marks(connection) if "pair_overrides" in present else pl.DataFrame(schema=MARK_COLUMNS),
        neighbour_plots=_neighbour_plots(connection) if "nearest_neighbours" in present else [],
    )


MARK_COLUMNS = {
    "image_id_a": pl.Int64,
    "image_id_b": pl.Int64,
    "path_a": pl.String,
    "path_b": pl.String,
    "verdict": pl.String,
    "effect": pl.String,
    "note": pl.String,
}


def _marks(connection: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The stored marks with their images' ids (null for an image that is not live)."""
    return connection.execute(
        "SELECT a.image_id AS image_id_a, b.image_id AS image_id_b, o.path_a, o.path_b, o.verdict, o.effect, o.note "
        "FROM pair_overrides o LEFT JOIN image_manifest a ON a.path = o.path_a "
        "LEFT JOIN image_manifest b ON b.path = o.path_b ORDER BY o.verdict, o.path_a, o.path_b"
    ).pl()


def _neighbour_plots(connection: duckdb.DuckDBPyConnection) -> list[Histogram]:
    thresholds = read_match_thresholds(connection)  # with the operating threshold the first join set
    verifier = thresholds.verifier.threshold if thresholds.verifier is not None else None
    return histograms_of(read_table(connection, "nearest_neighbours"), limits_of(thresholds, verifier))


def _by_confidence(pairs: pl.DataFrame) -> pl.DataFrame:
    order = ["exact", "copy_probability", "verification_score", "path_a", "path_b"]
    return pairs.sort(order, descending=[True, True, True, False, False], nulls_last=True)


def _leaks(pairs: pl.DataFrame, directions: pl.DataFrame) -> pl.DataFrame:
    """Cross-split pairs with the evaluation (lower-priority) image as side a."""
    a = [c for c in pairs.columns if c.endswith("_a")]
    swapped = pairs.rename({**{c: c[:-2] + "_b" for c in a}, **{c[:-2] + "_b": c for c in a}})
    both = pl.concat([pairs, swapped.select(pairs.columns)])
    leaks = both.join(
        directions, left_on=["split_a", "split_b"], right_on=["eval_split", "reference_split"], how="semi"
    )
    return _by_confidence(leaks)


def _latest_drop(connection: duckdb.DuckDBPyConnection, pairs: pl.DataFrame) -> tuple[str | None, pl.DataFrame]:
    """The latest drop that brought live images, if it is not the first one, and the pairs it made
    (its image as side a)."""
    row = connection.execute(
        "SELECT d.drop_key, d.drop_seq FROM drops d WHERE d.drop_seq = (SELECT max(drop_seq) FROM image_manifest) "
        "AND d.drop_seq > (SELECT min(drop_seq) FROM image_manifest)"
    ).fetchone()
    if row is None:
        return None, pairs.clear()
    key, sequence = row
    a = [c for c in pairs.columns if c.endswith("_a")]
    swapped = pairs.rename({**{c: c[:-2] + "_b" for c in a}, **{c[:-2] + "_b": c for c in a}}).select(pairs.columns)
    oriented = pl.concat(
        [pairs.filter(pl.col("drop_seq_a") == sequence), swapped.filter(pl.col("drop_seq_a") == sequence)]
    )
    return key, _by_confidence(oriented.unique(["image_id_a", "image_id_b"], maintain_order=True))


def _conflicts(connection: duckdb.DuckDBPyConnection, pairs: pl.DataFrame) -> pl.DataFrame:
    clusters = connection.execute("SELECT image_id, cluster_id FROM duplicate_clusters").pl()
    conflicting = pairs.filter(
        pl.col("label_a").is_not_null() & pl.col("label_b").is_not_null() & (pl.col("label_a") != pl.col("label_b"))
    )
    return _by_confidence(conflicting.join(clusters, left_on="image_id_a", right_on="image_id", how="left")).sort(
        "cluster_id", maintain_order=True
    )


def read_thumbnails(connection: duckdb.DuckDBPyConnection, image_ids: set[int]) -> dict[int, bytes]:
    """The stored thumbnails (raw side x side x 3 bytes) of ``image_ids``."""
    wanted = pl.DataFrame({"image_id": sorted(image_ids)}, schema={"image_id": pl.Int64}).to_arrow()
    connection.register("_wanted", wanted)
    try:
        rows = connection.execute(
            "SELECT t.image_id, t.thumbnail FROM image_thumbnails t JOIN _wanted USING (image_id)"
        ).fetchall()
    finally:
        connection.unregister("_wanted")
    return dict(rows)
