"""The thresholds the similarity join uses: fixed by config, calibrated on the dataset, or
fallbacks when the dataset is too small to calibrate."""

from dataclasses import dataclass, field

import dagster as dg
import duckdb
import numpy as np
import polars as pl

from dedup_pipeline.defs import groups
from dedup_pipeline.defs.metadata import plots, table_metadata, timed
from dedup_pipeline.defs.resources import DUCKDB_POOL, DedupConfig, StoreDatabase, store_of
from dedup_pipeline.lib.calibration.thresholds import (
    SyntheticCopies,
    calibrate,
    choose_mirroring,
    choose_negatives,
    decode_sample,
    labels_usable,
    sample_ids,
    score_sample,
    select_variants,
    synthesize_copies,
    with_negatives,
)
from dedup_pipeline.lib.calibration.verifier_training import RECALL_BUDGET, calibrate_verifier
from dedup_pipeline.lib.features.embedding import load_embedder
from dedup_pipeline.lib.features.hashing import mirror_key
from dedup_pipeline.lib.inputs.sources import data_root
from dedup_pipeline.lib.reporting.histograms import Histogram, calibration_histograms
from dedup_pipeline.lib.search.criteria import EMBEDDING_EVIDENCE, VERIFIED_EVIDENCE
from dedup_pipeline.lib.search.look_alikes import LookAlikeSpace, fit_space
from dedup_pipeline.lib.storage.database import (
    copy_calibration,
    read_calibration,
    read_table,
    record_calibration,
    replace_table,
    transaction,
    write_verifier,
)
from dedup_pipeline.lib.storage.features import LiveImages
from dedup_pipeline.lib.verification.pair_features import ImageSignals
from dedup_pipeline.lib.verification.pair_scorer import PairScorer

# Used when calibration is off or the dataset is too small to calibrate.
FALLBACK_THRESHOLDS: dict[str, float] = {"phash": 8, "dhash": 8, "ahash": 4, "whash": 4, EMBEDDING_EVIDENCE: 0.85}
MIN_CALIBRATION_IMAGES = 50  # per half
TOO_FEW = f"fallback: fewer than {MIN_CALIBRATION_IMAGES} images per half to calibrate on"
THRESHOLD_SCHEMA = {
    "evidence": pl.String,
    "threshold": pl.Float64,
    "mirror_aware": pl.Boolean,
    "source": pl.String,
    "target_precision": pl.Float64,
    "tune_precision": pl.Float64,
    "tune_recall": pl.Float64,
    "holdout_precision": pl.Float64,
    "holdout_recall": pl.Float64,
}


def _row(
    evidence: str, threshold: float | None, mirror: bool, source: str, target: float, *estimates: float | None
) -> dict:
    values = list(estimates) + [None] * (4 - len(estimates))
    return dict(zip(THRESHOLD_SCHEMA, [evidence, threshold, mirror, source, target, *values], strict=True))


def _mirrors(dedup: DedupConfig, evidence: str) -> bool:
    """Fixed and fallback thresholds match mirror-aware whenever mirror hashes are computed."""
    return dedup.mirror_hashes and evidence != EMBEDDING_EVIDENCE


@dataclass
class Calibrated:
    """What a calibration gives: rows of match_thresholds, the verifier and its look-alike space
    (when one was trained), and plots of the held-out copies against the negatives."""

    rows: list[dict]
    verifier: PairScorer | None = None
    space: LookAlikeSpace | None = None
    plots: list[Histogram] = field(default_factory=list)


def _calibrated_rows(
    dedup: DedupConfig, live: LiveImages, evidences: list[str], log: dg.DagsterLogManager
) -> Calibrated:
    manifest = live.manifest
    tune_ids, holdout_ids = sample_ids(manifest["path"].to_list(), dedup.calibration_images)
    if min(len(tune_ids), len(holdout_ids)) < MIN_CALIBRATION_IMAGES:
        rows = [_row(e, FALLBACK_THRESHOLDS[e], _mirrors(dedup, e), TOO_FEW, dedup.target_precision) for e in evidences]
        return Calibrated(rows)

    hash_names = [e for e in evidences if e != EMBEDDING_EVIDENCE]
    hashes = live.hashes(hash_names) if hash_names else {}
    embeddings = live.embeddings() if EMBEDDING_EVIDENCE in evidences else None
    embeddings = None if embeddings is None else np.asarray(embeddings)  # calibration reads them all
    embedder = None
    if embeddings is not None:
        embedder = load_embedder(dedup.embedding_model, int(live.store.settings()["embedding_size"]))
    root = data_root(dedup.data)
    exact_keys = manifest["pixel_sha256"].to_numpy()
    labels = manifest["label"].to_numpy() if labels_usable(manifest["label"].to_list()) else None
    paths = manifest["path"].to_list()
    with_mirror = [name for name in hash_names if mirror_key(name) in hashes]

    def sampled(ids: np.ndarray) -> tuple[np.ndarray, SyntheticCopies]:
        ids, pictures = decode_sample(root, paths, ids, dedup.max_image_pixels)
        copies = synthesize_copies(
            ids, pictures, hash_names, with_mirror, dedup.hash_size, embedder, dedup.calibration_transforms_per_image
        )
        return ids, copies

    log.info(f"calibrating {evidences} on {len(tune_ids)} + {len(holdout_ids)} sampled images")
    tune_sample, holdout_sample = sampled(tune_ids), sampled(holdout_ids)
    tune = score_sample(*tune_sample, hashes, embeddings, exact_keys, labels)
    rule, share = choose_negatives({name: tune[name] for name in evidences})
    tune = with_negatives(tune, rule)
    holdout = with_negatives(score_sample(*holdout_sample, hashes, embeddings, exact_keys, labels), rule)
    mirrored = choose_mirroring(tune, evidences, dedup.target_precision)
    held_out = select_variants(holdout, mirrored)
    results, (union_precision, union_recall) = calibrate(
        select_variants(tune, mirrored), held_out, evidences, dedup.target_precision
    )
    plots = calibration_histograms(
        {name: held_out[name].positives for name in evidences},
        {name: held_out[name].negatives for name in evidences},
        {r.evidence: r.threshold for r in results},
    )
    negatives = f"negatives: {rule}; {share:.0%} of sampled images have a copy-like second-nearest image"
    rows = [
        _row(
            r.evidence,
            r.threshold,
            r.evidence in mirrored,
            f"calibrated ({negatives})"
            if r.threshold is not None
            else f"calibrated: target precision unreachable, not used ({negatives})",
            dedup.target_precision,
            r.tune_precision,
            r.tune_recall,
            r.holdout_precision,
            r.holdout_recall,
        )
        for r in results
    ]
    rows.append(
        _row(
            "combined",
            None,
            None,
            "held-out estimate of the thresholds' union",
            dedup.target_precision,
            None,
            None,
            union_precision,
            union_recall,
        )
    )
    if not dedup.verify:
        return Calibrated(rows, plots=plots)
    log.info("training the pair verifier")
    signals = ImageSignals(np.asarray(live.thumbnails()), hashes, embeddings, views=live.view_hashes())
    space = fit_space(signals.descriptors)
    verifier = calibrate_verifier(
        signals,
        tune_sample,
        holdout_sample,
        exact_keys,
        labels,
        rule,
        hash_names,
        mirrored,
        dedup.target_precision,
        space,
    )
    if verifier is None:
        rows.append(
            _row(
                VERIFIED_EVIDENCE,
                None,
                None,
                "verifier: target precision unreachable, not used",
                dedup.target_precision,
            )
        )
        return Calibrated(rows, plots=plots)
    rows.append(
        _row(
            VERIFIED_EVIDENCE,
            verifier.scorer.threshold,
            None,
            "trained pair verifier, the judge of candidate pairs "
            f"({negatives}; threshold on out-of-fold scores: balanced precision reaches the target at "
            f"{verifier.balanced_threshold:.3g}, made as strict as {RECALL_BUDGET:.0%} of the copies allows)",
            dedup.target_precision,
            verifier.tune_precision,
            verifier.tune_recall,
            verifier.holdout_precision,
            verifier.holdout_recall,
        )
    )
    return Calibrated(rows, verifier.scorer, space, plots)


def _kept_calibration(dedup: DedupConfig, connection: duckdb.DuckDBPyConnection) -> dict | None:
    """The stored calibration when this run keeps it: made under the same settings, not to be
    redone, and not a fallback that was only there because the data was too small then."""
    stored = read_calibration(connection)
    if stored is None or dedup.recalibrate or dedup.thresholds_from:
        return None
    if stored["fingerprint"] != dedup.calibration_fingerprint() or stored["source"] == TOO_FEW:
        return None
    return stored


@dg.asset(
    group_name=groups.CALIBRATION,
    deps=["image_catalog"],
    description=(
        "The threshold of each evidence type used by the similarity join, and where it came from: "
        "fixed in config, calibrated on this dataset (synthetic copies of sampled images against hard "
        "negatives: their second-nearest images, or in heavily duplicated labelled data their nearest "
        "image with another label; tuned on one half of the images, precision and recall estimated on "
        "the other half), or a fallback when the dataset is too small to calibrate. Also whether each "
        "hash matches mirror-aware and, when calibrated, the trained pair verifier (row 'verified': its "
        "probability threshold and estimates; the model itself in table pair_verifier). Calibrated "
        "once and kept by later drops (table calibration says when and from what); recalibrate "
        "redoes it, thresholds_from applies another database's."
    ),
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
)
def match_thresholds(
    context: dg.AssetExecutionContext, dedup: DedupConfig, duckdb: StoreDatabase
) -> dg.MaterializeResult:
    timings: dict[str, object] = {}
    plotted: dict[str, object] = {}  # plots of a calibration made now
    with duckdb.get_connection() as connection, timed(timings, "seconds"):
        images = connection.execute("SELECT count(*) FROM image_manifest").fetchone()[0]
        kept = _kept_calibration(dedup, connection)
        if kept is not None:
            context.log.info(f"keeping the calibration of {kept['calibrated_at']} ({kept['source']})")
            source = f"kept from {kept['calibrated_at']:%Y-%m-%d %H:%M} ({kept['source']}, {kept['images']:,} images)"
        elif dedup.thresholds_from:
            with transaction(connection):
                copy_calibration(connection, dedup.thresholds_from)
                record_calibration(connection, f"from {dedup.thresholds_from}", dedup.calibration_fingerprint(), images)
            source = f"applied from {dedup.thresholds_from}"
        else:
            live = LiveImages.read(connection, store_of(duckdb.database))
            calibrated, source = _new_calibration(dedup, live, context.log)
            with transaction(connection):
                replace_table(connection, "match_thresholds", pl.DataFrame(calibrated.rows, schema=THRESHOLD_SCHEMA))
                write_verifier(connection, calibrated.verifier, calibrated.space)
                record_calibration(connection, source, dedup.calibration_fingerprint(), images)
            if calibrated.plots:
                plotted["copies_against_negatives"] = plots(calibrated.plots)
        table = read_table(connection, "match_thresholds")
    return dg.MaterializeResult(
        metadata={
            **table_metadata(table, duckdb.database, "match_thresholds"),
            "calibration": source,
            **plotted,
            **timings,
        }
    )


def _new_calibration(dedup: DedupConfig, live: LiveImages, log: dg.DagsterLogManager) -> tuple[Calibrated, str]:
    """The thresholds (configured, calibrated or fallbacks) and the verifier, and where they came from."""
    evidences = dedup.matching_evidence()
    fixed = dedup.fixed_thresholds()
    to_calibrate = [e for e in evidences if e not in fixed]
    rows = [
        _row(e, fixed[e], _mirrors(dedup, e), "configured", dedup.target_precision) for e in evidences if e in fixed
    ]
    if not (to_calibrate and dedup.calibrate):
        rows += [
            _row(e, FALLBACK_THRESHOLDS[e], _mirrors(dedup, e), "fallback: calibration off", dedup.target_precision)
            for e in to_calibrate
        ]
        return Calibrated(rows), "configured" if not to_calibrate else "fallback: calibration off"
    calibrated = _calibrated_rows(dedup, live, to_calibrate, log)
    source = TOO_FEW if calibrated.rows and calibrated.rows[0]["source"] == TOO_FEW else "calibrated"
    calibrated.rows = rows + calibrated.rows
    return calibrated, source
