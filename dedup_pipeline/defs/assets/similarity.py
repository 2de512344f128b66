"""Similarity join and duplicate clusters."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from dedup_pipeline.defs.metadata import PREVIEW_ROWS, table_metadata, timed
from dedup_pipeline.defs.resources import DUCKDB_POOL, DedupConfig
from dedup_pipeline.lib.decisions.clustering import build_clusters
from dedup_pipeline.lib.decisions.splits import split_ranks
from dedup_pipeline.lib.search.similar_pairs import find_similar_pairs
from dedup_pipeline.lib.storage.database import (
    create_views,
    read_embeddings,
    read_hashes,
    read_manifest,
    read_match_thresholds,
    read_table,
    read_thumbnails,
    read_view_hashes,
    write_table,
)
from dedup_pipeline.lib.storage.stages import record_stage


@dg.asset(
    deps=["image_manifest", "image_hashes", "image_thumbnails", "image_embeddings", "match_thresholds"],
    description=(
        "Every pair of duplicate images. Candidates: identical file bytes or decoded pixels, a Hamming "
        "distance within the threshold on a configured hash, an embedding cosine similarity at or above "
        "the threshold and, when a pair verifier was trained, each image's nearest look-alikes. With a "
        "verifier, exact copies and the pairs it accepts are duplicates; without one, any criterion "
        "suffices. Each pair once (image_id_a < image_id_b) with every distance, the verifier's "
        "probability and the evidence. Contract views: duplicate_pairs, leaks."
    ),
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
)
def similar_pairs(
    context: dg.AssetExecutionContext, dedup: DedupConfig, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    metadata: dict[str, object] = {}
    with duckdb.get_connection() as connection:
        thresholds = read_match_thresholds(connection)
        manifest = read_manifest(connection)
        hashes = read_hashes(connection, list(dedup.hash_algorithms))
        embeddings = read_embeddings(connection)
        verifies = thresholds.verifier is not None
        thumbnails = read_thumbnails(connection) if verifies else None
        view_hashes = read_view_hashes(connection) if verifies else None
        with timed(metadata, "join_seconds"):
            pairs = find_similar_pairs(manifest, hashes, embeddings, thresholds, thumbnails, view_hashes)
        write_table(connection, "similar_pairs", pairs)
        create_views(connection, ["duplicate_pairs", "leaks"])
        record_stage(connection, "similar_pairs", dedup.fingerprint())
        named = connection.execute(f"SELECT * FROM duplicate_pairs LIMIT {PREVIEW_ROWS}").pl()
    if embeddings is None and thresholds.cosine is not None:
        context.log.warning("no embeddings were computed: the cosine threshold was not applied")
    evidence_counts = pairs["evidence"].str.split(",").explode().value_counts().sort("evidence")
    return dg.MaterializeResult(
        metadata={
            **table_metadata(named, duckdb.database, "similar_pairs (view duplicate_pairs)", row_count=pairs.height),
            "hamming_thresholds": dg.MetadataValue.json(dict(thresholds.hamming)),
            "cosine_threshold": thresholds.cosine if thresholds.cosine is not None else "off",
            "verifier_threshold": thresholds.verifier.threshold if thresholds.verifier is not None else "off",
            "pairs_by_evidence": dg.MetadataValue.json(dict(evidence_counts.iter_rows())),
            **metadata,
        }
    )


@dg.asset(
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
def duplicate_clusters(dedup: DedupConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    timings: dict[str, object] = {}
    with duckdb.get_connection() as connection, timed(timings, "seconds"):
        manifest = read_manifest(connection)
        pairs = read_table(connection, "similar_pairs")
        clusters = build_clusters(manifest, pairs, split_ranks(manifest["split"], dedup.split_priority))
        write_table(connection, "duplicate_clusters", clusters)
        record_stage(connection, "duplicate_clusters", dedup.fingerprint())
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
