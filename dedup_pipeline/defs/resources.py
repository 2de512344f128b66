"""Resources: the pipeline's configuration and the one DuckDB connection factory.

Every asset reaches the database only through :data:`DUCKDB_RESOURCE_KEY` and runs in the
:data:`DUCKDB_POOL` concurrency pool (limit 1 in ``dagster_home/dagster.yaml``): DuckDB allows one
writing process per database file.
"""

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from dedup_pipeline.lib.extraction import ExtractionSettings, default_workers
from dedup_pipeline.lib.hashing import PERCEPTUAL_HASHES, validate_hash_settings
from dedup_pipeline.lib.pairs import MatchThresholds
from dedup_pipeline.lib.splits import DEFAULT_SPLIT_PRIORITY

DUCKDB_POOL = "duckdb"
DUCKDB_RESOURCE_KEY = "duckdb"
DEFAULT_DATABASE = "dedup.duckdb"
PILLOW_BOMB_LIMIT = 2 * 89_478_485  # Pillow's own error threshold (twice MAX_IMAGE_PIXELS)


class DedupConfig(dg.ConfigurableResource):
    """What to scan and how to decide that two images are duplicates."""

    data: str = Field(
        description="Dataset: a folder <root>/<split>/<label>/**/<image>, "
        "or a CSV/Parquet manifest with columns path, split[, label]."
    )
    hash_size: int = Field(
        default=8, description="Perceptual hash side; hashes have hash_size**2 bits (8 -> one 64-bit integer)."
    )
    hash_algorithms: list[str] = Field(
        default=list(PERCEPTUAL_HASHES),
        description="Perceptual hashes computed and stored: phash, dhash, ahash, whash.",
    )
    hamming_thresholds: dict[str, int] = Field(
        default={"phash": 8, "dhash": 8},
        description="Hash -> largest Hamming distance that counts as a duplicate. "
        "Hashes not listed are stored and reported but do not match.",
    )
    embedding_model: str = Field(
        default="efficientnet-lite0",
        description="Embedding model: a registered name, 'none', or 'package.module:factory'.",
    )
    embedding_image_size: int | None = Field(
        default=None,
        description="Square model input size. None: chosen per dataset from the median shorter side of its "
        "images, between 64 and the model's default (224).",
    )
    cosine_threshold: float | None = Field(
        default=0.85,
        description="Smallest embedding cosine similarity that counts as a duplicate (None: embeddings do not match).",
    )
    split_priority: list[str] = Field(
        default=list(DEFAULT_SPLIT_PRIORITY),
        description="Splits in the order they keep images: a duplicate is dropped from the later split. "
        "Unlisted splits come last, alphabetically.",
    )
    max_leaked_fraction: float = Field(
        default=0.0,
        description="Leak budget: the leak check fails when more than this fraction of an evaluation split "
        "has a duplicate in a higher-priority split.",
    )
    max_failure_fraction: float = Field(
        default=0.01,
        description="The decode check fails when more than this fraction of the inputs cannot be read or decoded.",
    )
    max_image_pixels: int = Field(
        default=PILLOW_BOMB_LIMIT, description="Images with more pixels are refused as decompression bombs."
    )
    workers: int = Field(default=0, description="Decode/hash processes (0: one per CPU).")
    embedding_batch_size: int = Field(default=64, description="Images per embedding batch.")

    def extraction_settings(self, embedding_size: int | None) -> ExtractionSettings:
        validate_hash_settings(self.hash_size, self.hash_algorithms)
        return ExtractionSettings(
            hash_size=self.hash_size,
            hash_algorithms=tuple(self.hash_algorithms),
            embedding_size=embedding_size,
            max_pixels=self.max_image_pixels,
        )

    def match_thresholds(self) -> MatchThresholds:
        unknown = set(self.hamming_thresholds) - set(self.hash_algorithms)
        if unknown:
            raise ValueError(f"hamming_thresholds names hashes that are not computed: {sorted(unknown)}")
        return MatchThresholds(hamming=dict(self.hamming_thresholds), cosine=self.cosine_threshold)

    def worker_count(self) -> int:
        return self.workers or default_workers()


def default_database() -> str:
    return str(Path(os.environ.get("DEDUP_DB", DEFAULT_DATABASE)).expanduser().resolve())
