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
    from dedup_pipeline.lib.hamming_join import hamming_pairs

    words = planted_hashes(count)
    start = time.perf_counter()
    pairs = len(hamming_pairs(words, threshold, method=method)[0])
    return {"seconds": time.perf_counter() - start, "pairs": pairs}


def _stored(database: Path, read):
    import duckdb

    with duckdb.connect(str(database), read_only=True) as connection:
        return read(connection)


def hamming_stored(database: Path, algorithm: str, threshold: int, method: str) -> dict[str, float]:
    from dedup_pipeline.lib.hamming_join import hamming_pairs
    from dedup_pipeline.lib.store import read_hashes

    words = _stored(database, lambda connection: read_hashes(connection, [algorithm])[algorithm])
    start = time.perf_counter()
    pairs = len(hamming_pairs(words, threshold, method=method)[0])
    return {"seconds": time.perf_counter() - start, "pairs": pairs, "hashes": len(words)}


def cosine_stored(database: Path, threshold: float, method: str) -> dict[str, float]:
    """``method``: bfloat16 / float32 (our triangular join) or faiss (IndexFlatIP.range_search)."""
    from dedup_pipeline.lib.cosine_join import cosine_pairs
    from dedup_pipeline.lib.store import read_embeddings

    vectors = _stored(database, read_embeddings)
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
        pairs = len(cosine_pairs(vectors, threshold, precision=method)[0])
    return {"seconds": time.perf_counter() - start, "pairs": pairs, "vectors": len(vectors)}


def matmul_gflops(dtype: str, side: int = 2048, repeats: int = 5) -> dict[str, float]:
    import torch

    a = torch.randn(side, side).to(getattr(torch, dtype))
    b = torch.randn(side, side).to(getattr(torch, dtype))
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return {"gflop_per_second": 2 * side**3 / float(np.median(times)) / 1e9}


def embedding_rate(size: int, batch: int, seconds: float = 6.0) -> dict[str, float]:
    """Images per second of the default embedder at ``size`` px (``batch`` 0: its preferred batch),
    and the model's GFLOP per image (multiply-adds counted as 2 FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dedup_pipeline.lib.embedding import load_embedder, preferred_batch_size

    embedder = load_embedder("efficientnet-lite0", size)
    batch = batch or preferred_batch_size(size)
    pixels = np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    embedder.embed(pixels)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        embedder.embed(pixels[:1])
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


def decode_and_hash(root: Path, limit: int, workers: int) -> dict[str, float]:
    """Our extraction without embeddings (decode once; content and pixel digests, four perceptual
    hashes and the mirrored matching ones, thumbnail) over the first ``limit`` images."""
    from dedup_pipeline.lib.extraction import ExtractionSettings, extract
    from dedup_pipeline.lib.hashing import PERCEPTUAL_HASHES
    from dedup_pipeline.lib.sources import discover

    sources = discover(str(root)).images[:limit]
    settings = ExtractionSettings(
        hash_size=8,
        hash_algorithms=tuple(PERCEPTUAL_HASHES),
        embedding_size=None,
        max_pixels=2 * 89_478_485,
        mirrored_algorithms=("phash", "dhash"),
    )
    start = time.perf_counter()
    result = extract(sources, settings, None, workers=workers)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images": result.manifest.height, "images_per_second": result.manifest.height / seconds}
