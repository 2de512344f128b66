"""Similarity join (incremental: new images against every stored image) and duplicate clusters."""

import dagster as dg
import numpy as np
import polars as pl
from duckdb import DuckDBPyConnection

from dedup_pipeline.defs import groups
from dedup_pipeline.defs.metadata import PREVIEW_ROWS, JoinProgressLog, plots, table_metadata, timed
from dedup_pipeline.defs.resources import DUCKDB_POOL, DedupConfig, StoreDatabase, store_of
from dedup_pipeline.lib.decisions.clustering import build_clusters
from dedup_pipeline.lib.decisions.overrides import apply_marks, effect_counts, merged_marks, read_marks
from dedup_pipeline.lib.decisions.splits import split_ranks
from dedup_pipeline.lib.reporting.histograms import histograms_of, limits_of
from dedup_pipeline.lib.search.criteria import MatchThresholds
from dedup_pipeline.lib.search.nearest_neighbours import neighbour_sample
from dedup_pipeline.lib.search.similar_pairs import JoinImages, JoinState, join, measured_pairs
from dedup_pipeline.lib.storage.database import (
    calibration_id,
    create_views,
    read_join_state,
    read_manifest,
    read_match_thresholds,
    read_pair_overrides,
    read_table,
    replace_table,
    table_names,
    transaction,
    write_first_join,
    write_join_state,
    write_table,
)
from dedup_pipeline.lib.storage.features import LiveImages


@dg.asset(
    group_name=groups.MATCHING,
    deps=["image_catalog", "match_thresholds"],
    description=(
        "Every pair of duplicate images. Candidates: identical file bytes or decoded pixels, a Hamming "
        "distance within the threshold on a configured hash, an embedding cosine similarity at or above "
        "the threshold and, when a pair verifier was trained, each image's nearest look-alikes and the "
        "pairs a geometric view matches. With a verifier, exact copies and the pairs it accepts are "
        "duplicates; without one, any criterion suffices. Incremental: images added since the last join "
        "are joined against every image, pairs of retired images are removed, and the result equals a "
        "from-scratch join with the same calibration (a new calibration joins from scratch, from the "
        "stored features). A person's marks (overrides_file, kept in table pair_overrides for every later "
        "run) then remove the pairs marked 'not duplicate' and add those marked 'duplicate', with evidence "
        "'override'. Table nearest_neighbours: a sample of images with the distance to their nearest image, "
        "plotted against the thresholds. Each pair once (image_id_a is the one whose path sorts first) with every "
        "distance, the verifier's probability, the evidence and the rules that nominated it (found_by). "
        "Contract views: duplicate_pairs, leaks."
    ),
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
)
def similar_pairs(context: dg.AssetExecutionContext, dedup: DedupConfig, duckdb: StoreDatabase) -> dg.MaterializeResult:
    metadata: dict[str, object] = {}
    with duckdb.get_connection() as connection:
        thresholds = read_match_thresholds(connection)
        calibration = calibration_id(connection)
        previous = read_join_state(connection, calibration)
        with timed(metadata, "read_seconds"):
            live = LiveImages.read(connection, store_of(duckdb.database))
            images = JoinImages.of(live, list(dedup.hash_algorithms), with_views=thresholds.verifier is not None)
        marks = read_pair_overrides(connection)
        if dedup.overrides_file:
            marks = merged_marks(marks, read_marks(dedup.overrides_file))
        if previous is None:
            context.log.info(f"joining {len(live.manifest):,} images from scratch (no join under this calibration yet)")
        with timed(metadata, "join_seconds"):
            state, report = join(images, thresholds, previous, JoinProgressLog(context.log))
        pairs, marks = apply_marks(
            state.pairs,
            marks,
            live.manifest,
            lambda positions: measured_pairs(images, thresholds, state, positions),
        )
        with timed(metadata, "neighbour_sample_seconds"):
            neighbours = _neighbour_sample(connection, images, thresholds, state, previous)
        with transaction(connection):
            write_join_state(connection, state, calibration)
            replace_table(connection, "similar_pairs", pairs)
            replace_table(connection, "pair_overrides", marks)
            replace_table(connection, "nearest_neighbours", neighbours)
            if thresholds.screen_cutoff is None or thresholds.copy_share is None:  # what the first join sets
                write_first_join(connection, state.screen_cutoff, state.operating_threshold, state.expected)
            create_views(connection, ["duplicate_pairs", "leaks"])
        named = connection.execute(f"SELECT * FROM duplicate_pairs LIMIT {PREVIEW_ROWS}").pl()
    if marks.height:
        described = ", ".join(f"{effect}: {count:,}" for effect, count in effect_counts(marks["effect"]).items())
        context.log.info(f"applied {marks.height:,} marks people made ({described})")
    context.log.info(
        f"joined {report.new_images:,} new images ({report.retired_images:,} retired): "
        f"{report.candidates_judged:,} candidates judged, {report.pairs_added:,} pairs added, "
        f"{report.pairs_removed:,} removed"
    )
    if images.signals.embeddings is None and thresholds.cosine is not None:
        context.log.warning("no embeddings were computed: the cosine threshold was not applied")
    verifier_threshold = _verifier_threshold(thresholds, state)
    evidence_counts = pairs["evidence"].str.split(",").explode().value_counts().sort("evidence")
    return dg.MaterializeResult(
        metadata={
            **table_metadata(named, duckdb.database, "similar_pairs (view duplicate_pairs)", row_count=pairs.height),
            "from_scratch": previous is None,
            "new_images": report.new_images,
            "retired_images": report.retired_images,
            "candidates_judged": report.candidates_judged,
            "pairs_added": report.pairs_added,
            "pairs_removed": report.pairs_removed,
            "hamming_thresholds": dg.MetadataValue.json(dict(thresholds.hamming)),
            "cosine_threshold": thresholds.cosine if thresholds.cosine is not None else "off",
            "verifier_threshold": "off" if verifier_threshold is None else verifier_threshold,
            "screen_cutoff": state.screen_cutoff if state.screen_cutoff is not None else "none",
            **_expected_metadata(state),
            "pairs_by_evidence": dg.MetadataValue.json(dict(evidence_counts.iter_rows())),
            "nearest_neighbours": plots(histograms_of(neighbours, limits_of(thresholds, verifier_threshold))),
            "person_marks": dg.MetadataValue.json(effect_counts(marks["effect"])),
            **metadata,
        }
    )


def _neighbour_sample(
    connection: DuckDBPyConnection,
    images: JoinImages,
    thresholds: MatchThresholds,
    state: JoinState,
    previous: JoinState | None,
) -> pl.DataFrame:
    """The nearest-neighbour sample, updated from the previous join's when there is one."""
    if previous is None or "nearest_neighbours" not in table_names(connection):
        return neighbour_sample(images, thresholds, state)
    new = ~np.isin(images.image_ids, previous.joined)
    return neighbour_sample(images, thresholds, state, read_table(connection, "nearest_neighbours"), new)


def _verifier_threshold(thresholds: MatchThresholds, state: JoinState) -> float | None:
    """The probability threshold the verifier applied (None without one)."""
    if thresholds.verifier is None:
        return None
    return state.operating_threshold if state.operating_threshold is not None else thresholds.verifier.threshold


def _expected_metadata(state: JoinState) -> dict[str, object]:
    """The first join's expected precision of the verifier's verdicts (see base_rate)."""
    if state.expected is None:
        return {}
    return {
        "expected_precision": state.expected.precision,
        "estimated_copy_share": state.expected.copy_share,
        "verifier_flagged": state.expected.flagged,
        "verifier_candidates": state.expected.candidates,
    }


@dg.asset(
    group_name=groups.MATCHING,
    deps=["similar_pairs"],
    description=(
        "Groups of duplicates with a bounded, reported radius (not connected components, which chain "
        "unrelated images). Star clusters of the images that do not leak, each around a representative "
        "they duplicate directly; an image that duplicates a higher-priority split joins that duplicate's "
        "cluster. Every member names the duplicate it joined through (linked_to) and its distance in links "
        "to the representative (hops_to_representative). The representative, chosen deterministically "
        "(highest-priority split, most duplicates, largest picture, path), is the image the dedup manifest keeps."
    ),
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
)
def duplicate_clusters(dedup: DedupConfig, duckdb: StoreDatabase) -> dg.MaterializeResult:
    timings: dict[str, object] = {}
    with duckdb.get_connection() as connection, timed(timings, "seconds"):
        manifest = read_manifest(connection)
        pairs = read_table(connection, "similar_pairs")
        clusters = build_clusters(manifest, pairs, split_ranks(manifest["split"], dedup.split_priority))
        write_table(connection, "duplicate_clusters", clusters)
    representatives = clusters.filter("is_representative")
    return dg.MaterializeResult(
        metadata={
            **table_metadata(clusters, duckdb.database, "duplicate_clusters"),
            **timings,
            "clusters": representatives.height,
            "largest_cluster": int(clusters["cluster_size"].max() or 0),
            "largest_hops_to_representative": int(clusters["max_hops"].max() or 0),
            "clusters_with_indirect_members": representatives.filter(representatives["max_hops"] > 1).height,
            "cross_split_clusters": representatives.filter(representatives["cluster_splits"].str.contains(",")).height,
        }
    )
