"""Per-image assets: manifest, perceptual hashes and embeddings, computed in one pass so each
image is read and decoded once."""

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from dedup_pipeline.defs.metadata import ProgressLogger, preview, table_metadata, timed
from dedup_pipeline.defs.resources import DUCKDB_POOL, DedupConfig
from dedup_pipeline.lib.features.embedding import load_embedder
from dedup_pipeline.lib.features.extraction import FAILURE_SCHEMA, choose_embedding_size, extract
from dedup_pipeline.lib.inputs.sources import discover
from dedup_pipeline.lib.storage.database import (
    create_views,
    embeddings_table,
    hashes_table,
    thumbnails_table,
    write_table,
)
from dedup_pipeline.lib.storage.stages import FIRST_STAGE, dataset_signature, record_stage

DECODE_CHECK = "decode_failure_rate"


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "image_manifest",
            description=(
                "Every decodable input image: path (relative to the data root), split, label, bytes, "
                "width, height, format, mode, frames, SHA-256 of the file bytes and of the decoded pixels, "
                "and decode notes (EXIF orientation applied, bit depth scaled, animation). Inputs that "
                "cannot be used are in table image_failures (view image_errors) with the reason."
            ),
            kinds={"duckdb"},
        ),
        dg.AssetSpec(
            "image_hashes",
            description=(
                "pHash, dHash, aHash and wHash of each image, all from one 32 x 32 grayscale base of the "
                "canonical decode (pHash is imagehash's; the others match imagehash's on CIFAR-sized "
                "pictures and differ in about 1% of bits on larger ones), as 64-bit integers (lists of "
                "64-bit words when hash_size > 8)."
            ),
            kinds={"duckdb"},
        ),
        dg.AssetSpec(
            "image_thumbnails",
            description=(
                "A 32 x 32 RGB thumbnail of each image (the whole picture squashed to a square, raw bytes): "
                "the pixels the pair verifier aligns and compares; and view_phashes, the thumbnail's pHash "
                "as it is, mirrored and through 15 geometric views (zooms, corner crops, small rotations), "
                "which nominate cropped, padded and rotated copies."
            ),
            kinds={"duckdb"},
        ),
        dg.AssetSpec(
            "image_embeddings",
            description=(
                "L2-normalised embedding of each image from the configured torch model "
                "(default: EfficientNet-Lite0, ImageNet weights, offline)."
            ),
            kinds={"duckdb", "pytorch"},
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            DECODE_CHECK,
            asset="image_manifest",
            description="Fails when more than max_failure_fraction of the inputs cannot be read or decoded.",
        )
    ],
    pool=DUCKDB_POOL,
)
def image_features(context: dg.AssetExecutionContext, dedup: DedupConfig, duckdb: DuckDBResource):
    timings: dict[str, object] = {}
    with timed(timings, "discover_seconds"):
        sources = discover(dedup.data)
    embedder = load_embedder(dedup.embedding_model, dedup.embedding_image_size)
    if embedder is not None and dedup.embedding_image_size is None:
        embedder.image_size = choose_embedding_size(sources.images, default=embedder.image_size)
    settings = dedup.extraction_settings(embedder.image_size if embedder else None)
    context.log.info(
        f"{len(sources.images):,} images to process from {sources.root} with {dedup.worker_count()} workers"
    )
    with timed(timings, "extract_seconds"):
        extracted = extract(
            sources.images, settings, workers=dedup.worker_count(), progress=ProgressLogger(context.log)
        )
    problems = pl.DataFrame(
        [{"path": p.path, "split": p.split, "label": p.label, "reason": p.reason} for p in sources.problems],
        schema=FAILURE_SCHEMA,
    )
    failures = pl.concat([problems, extracted.failures]).sort("path")
    model = embedder.name if embedder else "none"
    with duckdb.get_connection() as connection, timed(timings, "write_seconds"):
        write_table(connection, "image_manifest", extracted.manifest)
        write_table(connection, "image_failures", failures)
        write_table(connection, "image_hashes", hashes_table(extracted.manifest, extracted.hashes, dedup.hash_size))
        write_table(
            connection,
            "image_thumbnails",
            thumbnails_table(extracted.manifest, extracted.thumbnails, extracted.view_hashes),
        )
        write_table(
            connection,
            "image_embeddings",
            embeddings_table(extracted.manifest, extracted.embeddings, model, settings.embedding_size or 0),
        )
        create_views(connection, ["image_errors"])
        record_stage(connection, FIRST_STAGE, dedup.fingerprint(), dataset_signature(sources.images))

    inputs = extracted.manifest.height + failures.height
    yield dg.MaterializeResult(
        asset_key="image_manifest",
        metadata={
            **table_metadata(extracted.manifest, duckdb.database, "image_manifest"),
            "data_root": str(sources.root),
            "failures": failures.height,
            "failure_preview": preview(failures),
            **timings,
        },
    )
    yield dg.MaterializeResult(
        asset_key="image_hashes",
        metadata={
            "dagster/row_count": extracted.manifest.height,
            "hash_size": dedup.hash_size,
            "algorithms": ", ".join(dedup.hash_algorithms),
        },
    )
    yield dg.MaterializeResult(
        asset_key="image_thumbnails",
        metadata={"dagster/row_count": extracted.manifest.height, "side": int(extracted.thumbnails.shape[1])},
    )
    yield dg.MaterializeResult(
        asset_key="image_embeddings",
        metadata={
            "dagster/row_count": 0 if extracted.embeddings is None else extracted.embeddings.shape[0],
            "model": model,
            "image_size": settings.embedding_size or 0,
            "dimension": 0 if extracted.embeddings is None else int(extracted.embeddings.shape[1]),
        },
    )
    failure_fraction = failures.height / inputs if inputs else 0.0
    yield dg.AssetCheckResult(
        check_name=DECODE_CHECK,
        asset_key="image_manifest",
        passed=failure_fraction <= dedup.max_failure_fraction,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "inputs": inputs,
            "failures": failures.height,
            "failure_fraction": failure_fraction,
            "max_failure_fraction": dedup.max_failure_fraction,
        },
    )
