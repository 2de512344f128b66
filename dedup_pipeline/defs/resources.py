"""Resources: the pipeline's configuration and the one DuckDB connection factory.

Every asset that connects to the database does so only through :data:`DUCKDB_RESOURCE_KEY`
(:class:`StoreDatabase`) and runs in the :data:`DUCKDB_POOL` concurrency pool (limit 1 in
``dagster_home/dagster.yaml``): DuckDB allows one writing process per database file. Across
Dagster instances and command-line runs, each connection also holds the store's write lock
(``lib/storage/write_lock``). Extraction of a drop does not connect: it writes the drop's Parquet
files into the store beside the database (:func:`store_of`).
"""

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from dedup_pipeline.defaults import (
    DEFAULT_DATABASE,
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_FILE_SECONDS,
    DEFAULT_TARGET_PRECISION,
)
from dedup_pipeline.lib.decisions.overrides import OverridesError, read_marks
from dedup_pipeline.lib.decisions.splits import DEFAULT_SPLIT_PRIORITY
from dedup_pipeline.lib.features.embedding import NO_EMBEDDING, embedder_problem, preferred_batch_size
from dedup_pipeline.lib.features.hashing import PERCEPTUAL_HASHES, validate_hash_settings
from dedup_pipeline.lib.features.image_work import ExtractionSettings
from dedup_pipeline.lib.runtime.parallel import available_cores
from dedup_pipeline.lib.search.criteria import EMBEDDING_EVIDENCE
from dedup_pipeline.lib.storage.store import Store
from dedup_pipeline.lib.storage.write_lock import DEFAULT_WAIT_SECONDS, connect, writer_lock

DUCKDB_POOL = "duckdb"
DUCKDB_RESOURCE_KEY = "duckdb"
# The settings a calibration depends on: when one changes, the next run calibrates again.
CALIBRATION_SETTINGS = (
    "hash_size",
    "hash_algorithms",
    "match_hashes",
    "mirror_hashes",
    "hamming_thresholds",
    "embedding_model",
    "match_embeddings",
    "cosine_threshold",
    "calibrate",
    "verify",
    "target_precision",
    "calibration_images",
    "calibration_transforms_per_image",
)
# Extraction settings a drop's images must share with the store's earlier drops.
STORE_SETTINGS = (
    "hash_size",
    "hash_algorithms",
    "mirrored_algorithms",
    "embedding_model",
    "max_pixels",
    "reduced_decoding",
)
PILLOW_BOMB_LIMIT = 2 * 89_478_485  # Pillow's own error threshold (twice MAX_IMAGE_PIXELS)


MIN_EMBEDDING_SIZE = 16  # pixels: the model's five stride-2 stages need a picture to halve


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
    match_hashes: list[str] = Field(
        default=["phash", "dhash"],
        description="Hashes that count as duplicate evidence (each with a calibrated threshold unless "
        "hamming_thresholds fixes it). Other computed hashes are stored and reported but do not match.",
    )
    mirror_hashes: bool = Field(
        default=True,
        description="Also hash each image mirrored left-right, so the matching hashes find flipped copies.",
    )
    hamming_thresholds: dict[str, int] = Field(
        default={},
        description="Fixed thresholds: hash -> largest Hamming distance that counts as a duplicate. "
        "Overrides calibration for that hash.",
    )
    embedding_model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="Embedding model: a registered name, 'none', or 'package.module:factory'.",
    )
    embedding_image_size: int | None = Field(
        default=None,
        description="Square model input size. None: chosen per dataset from the median shorter side of its "
        "images, between 64 and the model's default (224).",
    )
    match_embeddings: bool = Field(
        default=True,
        description="Embedding similarity counts as duplicate evidence (threshold calibrated unless cosine_threshold "
        "fixes it). Embeddings are computed and reported either way unless embedding_model is 'none'.",
    )
    cosine_threshold: float | None = Field(
        default=None,
        description="Fixed smallest embedding cosine similarity that counts as a duplicate; overrides calibration.",
    )
    calibrate: bool = Field(
        default=True,
        description="Choose thresholds not fixed above from the dataset itself: synthetic copies of sampled "
        "images versus their second-nearest images, tuned on one half of the images, reported on the other.",
    )
    verify: bool = Field(
        default=True,
        description="With calibration: train a pair verifier on the dataset's own synthetic copies and let it judge "
        "candidate pairs (each image's nearest look-alikes and the calibrated threshold matches) by aligning their "
        "thumbnails; exact copies always count.",
    )
    target_precision: float = Field(
        default=DEFAULT_TARGET_PRECISION, description="Precision the calibrated thresholds aim for."
    )
    calibration_images: int = Field(default=200, description="Images sampled per half for calibration.")
    calibration_transforms_per_image: int = Field(default=6, description="Synthetic copies per sampled image.")
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
    reduced_jpeg_decoding: bool = Field(
        default=True,
        description="Decode JPEGs at 1/2, 1/4 or 1/8 size (libjpeg DCT scaling) when every output (hashes, "
        "thumbnail, embedding input) stays at full resolution; much faster on camera photos. pixel_sha256 is "
        "then of the reduced decode, and the image's notes say so.",
    )
    recalibrate: bool = Field(
        default=False,
        description="Calibrate the thresholds and the verifier again on every stored image, and judge the stored "
        "images' candidate pairs again (from the stored features: nothing is decoded again). Otherwise a "
        "calibration is reused by later drops, so a drop cannot change the meaning of earlier results.",
    )
    thresholds_from: str | None = Field(
        default=None,
        description="Another database whose thresholds and pair verifier to apply instead of calibrating "
        "(a fixed gate across datasets).",
    )
    overrides_file: str | None = Field(
        default=None,
        description="A CSV of a person's marks on pairs (path_a, path_b, verdict[, note]; verdict 'duplicate', "
        "'not duplicate' or 'clear'), as the HTML report downloads them. They are merged into the marks the "
        "store keeps (table pair_overrides), which every later run applies too: marked pairs are removed or "
        "added whatever the thresholds say.",
    )
    settle_seconds: float = Field(
        default=60.0,
        description="The drop sensor registers a file once it has not been modified for this long, and a "
        "drops/<name>/ folder once it holds a _SUCCESS file or nothing in it was modified for this long.",
    )
    workers: int = Field(default=0, description="Decode/hash processes (0: one per CPU).")
    file_time_limit_seconds: float = Field(
        default=DEFAULT_FILE_SECONDS,
        description="Reading and decoding one file may take this long; a file that takes longer is recorded in "
        "image_errors with that reason and the run goes on (0: no limit).",
    )
    allowed_roots: list[str] = Field(
        default_factory=list,
        description="Folders a manifest's rows may point into besides the manifest's own folder; rows "
        "outside every allowed root are refused and recorded in image_errors.",
    )
    embedding_batch_size: int = Field(
        default=0, description="Images per embedding batch (0: chosen from the input size, as measured fastest)."
    )

    def problems(self) -> list[str]:
        """What makes these settings unusable, one message each (empty: none), found before any
        work starts: the command line prints them, and a Dagster run fails with them at its start."""
        found = []
        for check in (lambda: validate_hash_settings(self.hash_size, self.hash_algorithms), self.matching_hashes):
            try:
                check()
            except ValueError as error:
                found.append(str(error))
        bits = self.hash_size**2
        ranges = [
            *((f"hamming threshold of {name}", limit, 0, bits) for name, limit in self.hamming_thresholds.items()),
            ("cosine_threshold", self.cosine_threshold, -1.0, 1.0),
            ("max_leaked_fraction", self.max_leaked_fraction, 0.0, 1.0),
            ("max_failure_fraction", self.max_failure_fraction, 0.0, 1.0),
        ]
        found += [
            f"{name} must be between {low} and {high}, got {value}"
            for name, value, low, high in ranges
            if value is not None and not low <= value <= high
        ]
        if not 0 < self.target_precision < 1:
            found.append(f"target_precision must be above 0 and below 1, got {self.target_precision}")
        minimums = [
            ("calibration_images", self.calibration_images, 1),
            ("calibration_transforms_per_image", self.calibration_transforms_per_image, 1),
            ("max_image_pixels", self.max_image_pixels, 1),
            ("file_time_limit_seconds", self.file_time_limit_seconds, 0),
            ("settle_seconds", self.settle_seconds, 0),
            ("workers", self.workers, 0),
            ("embedding_batch_size", self.embedding_batch_size, 0),
            ("embedding_image_size", self.embedding_image_size, MIN_EMBEDDING_SIZE),
        ]
        found += [
            f"{name} must be at least {least}, got {value}"
            for name, value, least in minimums
            if value is not None and value < least
        ]
        found += [f"allowed root {root} is not a folder" for root in self.allowed_roots if not Path(root).is_dir()]
        if self.overrides_file:
            try:
                read_marks(self.overrides_file)
            except OverridesError as error:
                found.append(str(error))
        model = embedder_problem(self.embedding_model)
        return found + ([model] if model else [])

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A run with unusable settings fails before any asset does work."""
        problems = self.problems()
        if problems:
            raise ValueError("invalid dedup settings: " + "; ".join(problems))

    def extraction_settings(self, embedding_size: int | None) -> ExtractionSettings:
        validate_hash_settings(self.hash_size, self.hash_algorithms)
        if self.embedding_model == NO_EMBEDDING:  # an input size given with no model means nothing
            embedding_size = None
        return ExtractionSettings(
            hash_size=self.hash_size,
            hash_algorithms=tuple(self.hash_algorithms),
            mirrored_algorithms=tuple(self.matching_hashes()) if self.mirror_hashes else (),
            embedding_size=embedding_size,
            max_pixels=self.max_image_pixels,
            reduced_decoding=self.reduced_jpeg_decoding,
            embedding_model=self.embedding_model if embedding_size else None,
            embedding_batch_size=self.embedding_batch_size or preferred_batch_size(embedding_size or 64),
            view_hashes=self.calibrate and self.verify,  # only the pair verifier uses them
            file_seconds=self.file_time_limit_seconds or None,
        )

    def matching_hashes(self) -> list[str]:
        named = set(self.match_hashes) | set(self.hamming_thresholds)
        unknown = named - set(self.hash_algorithms)
        if unknown:
            raise ValueError(f"hashes named for matching are not computed: {sorted(unknown)}")
        return [name for name in self.hash_algorithms if name in named]

    def matching_evidence(self) -> list[str]:
        """Evidence types that can make a pair a duplicate, in a fixed order."""
        hashes = self.matching_hashes()
        embeddings = self.embedding_model != NO_EMBEDDING and (
            self.match_embeddings or self.cosine_threshold is not None
        )
        return hashes + ([EMBEDDING_EVIDENCE] if embeddings else [])

    def fixed_thresholds(self) -> dict[str, float]:
        fixed: dict[str, float] = {name: float(limit) for name, limit in self.hamming_thresholds.items()}
        if self.cosine_threshold is not None:
            fixed[EMBEDDING_EVIDENCE] = self.cosine_threshold
        return fixed

    def worker_count(self) -> int:
        return self.workers or available_cores()

    def calibration_fingerprint(self) -> str:
        """Changes when a setting that decides the calibration changes."""
        return config_fingerprint({name: getattr(self, name) for name in CALIBRATION_SETTINGS})

    def store_settings(self, store: Store, auto_embedding_size: Callable[[], int]) -> ExtractionSettings:
        """The extraction settings of every drop of ``store``: recorded by its first drop (the
        embedding input size chosen then by ``auto_embedding_size()`` unless configured), checked
        against this configuration by the later ones (an embedding depends on its input size and
        batch size, a hash on its settings: drops extracted otherwise would not compare)."""
        recorded = store.settings()
        if recorded is None:
            embeds = self.embedding_model != NO_EMBEDDING
            size = (self.embedding_image_size or auto_embedding_size()) if embeds else None
            settings = self.extraction_settings(size)
            recorded = store.fix_settings(settings.record())
        settings = replace(ExtractionSettings.from_record(recorded), file_seconds=self.file_time_limit_seconds or None)
        wanted = self.extraction_settings(self.embedding_image_size or settings.embedding_size)
        configured = [
            *(["embedding_size"] if self.embedding_image_size else []),
            *(["embedding_batch_size"] if self.embedding_batch_size else []),
        ]
        differing = [
            name for name in (*STORE_SETTINGS, *configured) if getattr(wanted, name) != getattr(settings, name)
        ]
        if differing:
            described = ", ".join(
                f"{name} {getattr(settings, name)!r} (asked: {getattr(wanted, name)!r})" for name in differing
            )
            raise ValueError(
                f"the store {store.folder} was built with {described}; every drop must be extracted alike. "
                "Use another database, or delete this one and its store to rebuild."
            )
        return settings


class StoreDatabase(DuckDBResource):
    """The DuckDB file of a store. Each connection is a writer's: it holds the store's write lock
    (waiting for another process's run to finish) and waits out readers that have the file open."""

    wait_seconds: float = Field(
        default=DEFAULT_WAIT_SECONDS,
        description="How long a step waits for another process writing or reading the database before failing.",
    )

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        log = dg.get_dagster_logger()
        with (
            writer_lock(store_of(self.database).lock_file, self.wait_seconds, waiting=log.info),
            closing(
                connect(self.database, wait_seconds=self.wait_seconds, config=self.connection_config)
            ) as connection,
        ):
            yield connection


def store_of(database: str) -> Store:
    """The store folder beside a database file."""
    return Store.beside(database)


def config_fingerprint(settings: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def default_database() -> str:
    return str(Path(os.environ.get("DEDUP_DB", DEFAULT_DATABASE)).expanduser().resolve())
