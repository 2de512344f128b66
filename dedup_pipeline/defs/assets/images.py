"""Per-drop assets: manifest, perceptual hashes, thumbnails and embeddings of one data drop,
computed in one pass so each image is read and decoded once, and written as the drop's Parquet
files in the store (no database connection: drops can be extracted side by side)."""

import dagster as dg
import polars as pl

from dedup_pipeline.defs import groups
from dedup_pipeline.defs.metadata import ProgressLogger, preview, timed
from dedup_pipeline.defs.partitions import DROPS
from dedup_pipeline.defs.resources import DedupConfig, StoreDatabase, store_of
from dedup_pipeline.lib.features.extraction import choose_embedding_size
from dedup_pipeline.lib.storage.shards import drop_sources, extract_drop

DECODE_CHECK = "decode_failure_rate"


@dg.multi_asset(
    group_name=groups.EXTRACTION,
    specs=[
        dg.AssetSpec(
            "image_manifest",
            description=(
                "Every decodable input image: path (relative to the data root), split, label, bytes, "
                "width, height, format, mode, frames, SHA-256 of the file bytes and of the decoded pixels, "
                "and decode notes (EXIF orientation applied, bit depth scaled, animation). Inputs that "
                "cannot be used are in table image_failures (view image_errors) with the reason."
            ),
            kinds={"parquet"},
            partitions_def=DROPS,
        ),
        dg.AssetSpec(
            "image_hashes",
            description=(
                "pHash, dHash, aHash and wHash of each image, all from one 32 x 32 grayscale base of the "
                "canonical decode (pHash is imagehash's; the others match imagehash's on CIFAR-sized "
                "pictures and differ in about 1% of bits on larger ones), as 64-bit integers (lists of "
                "64-bit words when hash_size > 8)."
            ),
            kinds={"parquet"},
            partitions_def=DROPS,
        ),
        dg.AssetSpec(
            "image_thumbnails",
            description=(
                "A 32 x 32 RGB thumbnail of each image (the whole picture squashed to a square, raw bytes): "
                "the pixels the pair verifier aligns and compares; and view_phashes, the thumbnail's pHash "
                "as it is, mirrored and through 15 geometric views (zooms, corner crops, small rotations), "
                "which nominate cropped, padded and rotated copies."
            ),
            kinds={"parquet"},
            partitions_def=DROPS,
        ),
        dg.AssetSpec(
            "image_embeddings",
            description=(
                "L2-normalised embedding of each image from the configured torch model "
                "(default: EfficientNet-Lite0, ImageNet weights, offline)."
            ),
            kinds={"parquet", "pytorch"},
            partitions_def=DROPS,
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            DECODE_CHECK,
            asset="image_manifest",
            description="Fails when more than max_failure_fraction of a drop's inputs cannot be read or decoded.",
        )
    ],
    partitions_def=DROPS,
)
def image_features(context: dg.AssetExecutionContext, dedup: DedupConfig, duckdb: StoreDatabase):
    store = store_of(duckdb.database)
    drop = store.drop(context.partition_key)
    timings: dict[str, object] = {}

    def auto_embedding_size() -> int:
        from dedup_pipeline.lib.features.embedding import load_embedder

        embedder = load_embedder(dedup.embedding_model)
        return choose_embedding_size(drop_sources(store.events([drop]))[0], default=embedder.image_size)

    settings = dedup.store_settings(store, auto_embedding_size)
    context.log.info(f"drop {drop.key}: extracting with {dedup.worker_count()} workers into {store.shard_folder(drop)}")
    with timed(timings, "extract_seconds"):
        extracted_now = extract_drop(
            store, drop, settings, dedup.worker_count(), dedup.embedding_model, ProgressLogger(context.log)
        )
    if not extracted_now:
        context.log.info(f"drop {drop.key} was extracted already: its files stay as they are")
    manifest = pl.read_parquet(store.shard_file(drop, "manifest"))
    failures = pl.read_parquet(store.shard_file(drop, "failures"))
    yield dg.MaterializeResult(
        asset_key="image_manifest",
        metadata={
            "dagster/row_count": manifest.height,
            "drop": drop.key,
            "files": dg.MetadataValue.path(str(store.shard_folder(drop))),
            "preview": preview(manifest.drop("drop_seq")),
            "failures": failures.height,
            "failure_preview": preview(failures),
            "extracted_before": not extracted_now,
            **timings,
        },
    )
    yield dg.MaterializeResult(
        asset_key="image_hashes",
        metadata={
            "dagster/row_count": manifest.height,
            "hash_size": settings.hash_size,
            "algorithms": ", ".join(settings.hash_algorithms),
        },
    )
    yield dg.MaterializeResult(asset_key="image_thumbnails", metadata={"dagster/row_count": manifest.height})
    yield dg.MaterializeResult(
        asset_key="image_embeddings",
        metadata={
            "dagster/row_count": manifest.height if settings.embeds else 0,
            "model": settings.embedding_model or "none",
            "image_size": settings.embedding_size or 0,
        },
    )
    inputs = manifest.height + failures.height
    failure_fraction = failures.height / inputs if inputs else 0.0
    yield dg.AssetCheckResult(
        check_name=DECODE_CHECK,
        asset_key="image_manifest",
        passed=failure_fraction <= dedup.max_failure_fraction,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{failures.height:,} of {inputs:,} inputs ({failure_fraction:.2%}) could not be read or decoded; "
            f"the budget is {dedup.max_failure_fraction:.2%} (reasons in image_errors)"
        ),
        metadata={
            "inputs": inputs,
            "failures": failures.height,
            "failure_fraction": failure_fraction,
            "max_failure_fraction": dedup.max_failure_fraction,
        },
    )
