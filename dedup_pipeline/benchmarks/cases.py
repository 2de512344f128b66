"""Benchmark cases. Each is a plain function run in its own process by :func:`measure.isolated`,
so it imports what it needs and returns something small (a count, a rate)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

PLANTED_FRACTION = 0.01
MAX_PLANTED_FLIPS = 8


def planted_hashes(count: int, seed: int = 0) -> np.ndarray:
    """(count, 1) random 64-bit hashes; 1% of them are copies of others with 0..8 bits flipped."""
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2**64, size=(count, 1), dtype=np.uint64)
    planted = int(count * PLANTED_FRACTION)
    sources, copies = np.split(rng.choice(count, 2 * planted, replace=False), 2)
    bits = rng.random((planted, 64)).argsort(axis=1)  # a random bit order per copy
    flips = rng.integers(0, MAX_PLANTED_FLIPS + 1, size=planted)
    masks = np.zeros(planted, dtype=np.uint64)
    for column in range(MAX_PLANTED_FLIPS):
        chosen = column < flips
        masks[chosen] |= np.left_shift(np.uint64(1), bits[chosen, column].astype(np.uint64))
    words[copies, 0] = words[sources, 0] ^ masks
    return words


def hamming_synthetic(count: int, threshold: int, method: str) -> dict[str, float]:
    from dedup_pipeline.lib.search.hamming_join import hamming_pairs

    words = planted_hashes(count)
    start = time.perf_counter()
    pairs = len(hamming_pairs(words, threshold, method=method)[0])
    return {"seconds": time.perf_counter() - start, "pairs": pairs}


def _stored(database: Path, read):
    """``read(live images)`` of a pipeline run's store."""
    import duckdb

    from dedup_pipeline.lib.storage.features import LiveImages
    from dedup_pipeline.lib.storage.store import Store

    with duckdb.connect(str(database), read_only=True) as connection:
        return read(LiveImages.read(connection, Store.beside(database)))


def hamming_stored(database: Path, algorithm: str, threshold: int, method: str) -> dict[str, float]:
    from dedup_pipeline.lib.search.hamming_join import hamming_pairs

    words = _stored(database, lambda live: live.hashes([algorithm])[algorithm])
    start = time.perf_counter()
    pairs = len(hamming_pairs(words, threshold, method=method)[0])
    return {"seconds": time.perf_counter() - start, "pairs": pairs, "hashes": len(words)}


def cosine_stored(database: Path, threshold: float, method: str) -> dict[str, float]:
    """``method``: bounded / full (our triangular join, on bounding vectors or on the full
    embeddings) or faiss (IndexFlatIP.range_search)."""
    from dedup_pipeline.lib.search.cosine_join import cosine_pairs

    vectors = _stored(database, lambda live: np.asarray(live.embeddings()))
    start = time.perf_counter()
    if method == "faiss":
        import faiss

        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        pairs = 0
        for block in range(0, len(vectors), 4096):
            limits, _, found = index.range_search(vectors[block : block + 4096], threshold)
            queries = np.repeat(np.arange(block, block + len(limits) - 1), np.diff(limits).astype(np.int64))
            pairs += int((found > queries).sum())
    else:
        pairs = len(cosine_pairs(vectors, threshold, bounded=method == "bounded")[0])
    return {"seconds": time.perf_counter() - start, "pairs": pairs, "vectors": len(vectors)}


def planted_embeddings(count: int, dimension: int = 1280, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(count, dimension) float32 unit vectors shaped like image embeddings: 300 broad clusters
    (members at cosine about 0.4 to each other, so k-means cells split the clusters) and 1% planted
    near-duplicates of other vectors at cosine 0.85-0.99, returned as (source, copy) row pairs."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((300, dimension), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = np.empty((count, dimension), dtype=np.float32)
    for start in range(0, count, 100_000):
        stop = min(start + 100_000, count)
        block = rng.standard_normal((stop - start, dimension), dtype=np.float32) * np.float32(1.2 / np.sqrt(dimension))
        block += centres[rng.integers(0, len(centres), size=stop - start)]
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    planted = int(count * PLANTED_FRACTION)
    sources, copies = np.split(rng.choice(count, 2 * planted, replace=False), 2)
    target = rng.uniform(0.85, 0.99, size=planted).astype(np.float32)
    noise = rng.standard_normal((planted, dimension), dtype=np.float32)
    noise -= np.einsum("nd,nd->n", noise, vectors[sources])[:, None] * vectors[sources]  # orthogonal to the source
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    vectors[copies] = target[:, None] * vectors[sources] + np.sqrt(1 - target**2)[:, None] * noise
    return vectors, np.stack([sources, copies], axis=1)


def sampled_recall(
    vectors: np.ndarray, threshold: float, found: tuple[np.ndarray, np.ndarray], queries: int = 2_000, seed: int = 1
) -> dict[str, float]:
    """Recall of ``found`` pairs against the exact pairs of ``queries`` sampled rows (brute force
    against all rows): of every pair above the threshold that involves a sampled row, the share found."""
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(vectors), size=min(queries, len(vectors)), replace=False))
    found_keys = set((found[0] * len(vectors) + found[1]).tolist())
    exact = hits = 0
    for start in range(0, len(sample), 250):
        rows = sample[start : start + 250]
        query, partner = np.nonzero(vectors[rows] @ vectors.T >= threshold)
        query = rows[query]
        keep = query != partner
        low, high = np.minimum(query[keep], partner[keep]), np.maximum(query[keep], partner[keep])
        exact += len(low)
        hits += sum(key in found_keys for key in (low * len(vectors) + high).tolist())
    return {"sampled_queries": len(sample), "exact_pairs": exact, "recall": hits / exact if exact else 1.0}


def cosine_synthetic(count: int, threshold: float, method: str) -> dict[str, float]:
    """``method``: exact (our triangular join) or approximate (k-means cells); recall from sampled queries."""
    from dedup_pipeline.lib.search.approximate_cosine_join import approximate_cosine_pairs
    from dedup_pipeline.lib.search.cosine_join import cosine_pairs

    vectors, planted = planted_embeddings(count)
    join = approximate_cosine_pairs if method == "approximate" else cosine_pairs
    start = time.perf_counter()
    i, j, _ = join(vectors, threshold)
    seconds = time.perf_counter() - start
    planted = planted[np.einsum("nd,nd->n", vectors[planted[:, 0]], vectors[planted[:, 1]]) >= threshold]
    planted_keys = np.minimum(planted[:, 0], planted[:, 1]) * count + np.maximum(planted[:, 0], planted[:, 1])
    return {
        "seconds": seconds,
        "pairs": len(i),
        "planted_pairs": len(planted),
        "planted_recall": float(np.isin(planted_keys, i * count + j).mean()) if len(planted) else 1.0,
    } | sampled_recall(vectors, threshold, (i, j))


def matmul_gflops(dtype: str, side: int = 2048, repeats: int = 5) -> dict[str, float]:
    """The matmul rate of ``dtype``, and whether it is native (bfloat16 emulated in software is
    measured on a 256-side product: at 2048 it takes minutes)."""
    import torch

    from dedup_pipeline.lib.runtime.cpu_features import bfloat16_is_fast

    native = dtype != "bfloat16" or bfloat16_is_fast()
    side = side if native else 256
    a = torch.randn(side, side).to(getattr(torch, dtype))
    b = torch.randn(side, side).to(getattr(torch, dtype))
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return {"gflop_per_second": 2 * side**3 / float(np.median(times)) / 1e9, "native": native}


def embedding_rate(size: int, batch: int, seconds: float = 6.0) -> dict[str, float]:
    """Images per second of the default embedder at ``size`` px (``batch`` 0: its preferred batch),
    and the model's GFLOP per image (multiply-adds counted as 2 FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dedup_pipeline.lib.features.embedding import (
        folded_for_inference,
        load_embedder,
        preferred_batch_size,
        pretrained_lite0,
    )

    embedder = load_embedder("efficientnet-lite0", size)
    batch = batch or preferred_batch_size(size)
    pixels = np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    embedder.embed(pixels)
    # counted on the torch definition: the embedder may run an exported copy in ONNX Runtime
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        folded_for_inference(pretrained_lite0()).extract_features(torch.zeros(1, 3, size, size))
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        embedder.embed(pixels)
        done += batch
    return {
        "batch": batch,
        "seconds": time.perf_counter() - start,
        "images_per_second": done / (time.perf_counter() - start),
        "gflop_per_image": counter.get_total_flops() / 1e9,
    }


def decode_and_hash(
    root: Path,
    limit: int,
    workers: int,
    embedding_size: int | None = None,
    reduced_decoding: bool = True,
    view_hashes: bool = False,
) -> dict[str, float]:
    """Our extraction without the model (decode once; content and pixel digests, four perceptual
    hashes and the mirrored matching ones, thumbnail, the embedding input when a size is given and
    the thumbnail's view hashes when asked for) over the first ``limit`` images. Timed from the
    listing of the folder on, as imagededup's ``encode_images`` is."""
    from dedup_pipeline.lib.features.extraction import extract
    from dedup_pipeline.lib.features.hashing import PERCEPTUAL_HASHES
    from dedup_pipeline.lib.features.image_work import ExtractionSettings
    from dedup_pipeline.lib.inputs.sources import discover

    start = time.perf_counter()
    sources = discover(str(root)).images[:limit]
    settings = ExtractionSettings(
        hash_size=8,
        hash_algorithms=tuple(PERCEPTUAL_HASHES),
        embedding_size=embedding_size,
        max_pixels=2 * 89_478_485,
        mirrored_algorithms=("phash", "dhash"),
        reduced_decoding=reduced_decoding,
        view_hashes=view_hashes,
    )
    result = extract(sources, settings, workers=workers)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images": result.manifest.height, "images_per_second": result.manifest.height / seconds}
