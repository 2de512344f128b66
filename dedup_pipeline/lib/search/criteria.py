"""What makes two images duplicate candidates and duplicates: the thresholds, the verifier and the
frozen look-alike space a join applies, and the names of the evidence it records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from dedup_pipeline.lib.features.hashing import mirror_key
from dedup_pipeline.lib.search.look_alikes import LookAlikeSpace
from dedup_pipeline.lib.verification.pair_scorer import PairScorer

EXACT_EVIDENCE = {"content": "content_sha256", "pixels": "pixel_sha256"}
EMBEDDING_EVIDENCE = "embedding"
VERIFIED_EVIDENCE = "verified"
VIEW_NOMINATION = "view"
LOOK_ALIKE_NOMINATION = "look-alike"


@dataclass(frozen=True)
class MatchThresholds:
    """A pair matches when any configured criterion holds.

    ``hamming`` maps a hash algorithm to its largest accepted distance (inclusive); ``cosine`` is
    the smallest accepted embedding similarity (inclusive), or None to not match on embeddings;
    hashes in ``mirrored`` count the smaller of the direct and the mirrored distance. With a
    ``verifier``, the verifier decides instead (the thresholds then only nominate candidates),
    look-alike lists are ranked in ``look_alikes`` (fixed with the calibration) and the verifier
    aligns the candidates its screen scores at least ``screen_cutoff``; the first join under this
    calibration also sets the verifier's operating threshold (in ``verifier``) and the estimated
    share of copies among its candidates, ``copy_share`` (see ``verification.base_rate``), for
    ``target_precision``. Both are None before it.
    """

    hamming: Mapping[str, int] = field(default_factory=dict)
    cosine: float | None = None
    mirrored: frozenset[str] = frozenset()  # hashes that also match the mirrored picture
    verifier: PairScorer | None = None
    look_alikes: LookAlikeSpace | None = None
    screen_cutoff: float | None = None
    copy_share: float | None = None
    target_precision: float = 0.99

    def mirror_hashes(self, algorithm: str, hashes: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """The mirrored-picture hashes to match ``algorithm`` with, if it matches mirror-aware."""
        return hashes.get(mirror_key(algorithm)) if algorithm in self.mirrored else None
