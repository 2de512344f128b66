"""Matching recipes to compare: each evidence type alone, the pipeline's combined default, and the
anchor recipes other tools ship. A recipe is an OR of criteria, evaluated on the hashes and
embeddings a pipeline run stored, or a selection of the pairs the run itself stored (the combined
default is always exactly what the pipeline wrote to ``similar_pairs``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from dedup_pipeline.evaluation.runs import StoredRun
from dedup_pipeline.lib.search.candidates import local_candidates
from dedup_pipeline.lib.search.criteria import EXACT_EVIDENCE, VERIFIED_EVIDENCE, MatchThresholds

STORED_ALL = "all"


@dataclass(frozen=True)
class Recipe:
    name: str
    hamming: dict[str, int] = field(default_factory=dict)
    cosine: float | None = None
    exact: bool = False  # identical bytes or pixels also match
    mirrored: frozenset[str] = frozenset()  # hashes that also match the mirrored picture
    stored: str | None = None  # the run's own pairs: STORED_ALL, or those with this evidence


ANCHORS: tuple[Recipe, ...] = (
    Recipe("anchor: aHash 8x8, Hamming < 4 (deepchecks)", hamming={"ahash": 3}),
    Recipe("anchor: pHash, Hamming <= 10 (imagededup default)", hamming={"phash": 10}),
    Recipe("anchor: embedding cosine >= 0.9 (imagededup CNN default)", cosine=0.9),
)


def evidence_recipes(thresholds: MatchThresholds) -> list[Recipe]:
    """Each criterion of the configured rule on its own, then the whole rule."""
    recipes = [Recipe("exact: identical bytes or pixels", exact=True)]
    recipes += [
        Recipe(
            f"{name} <= {limit}{' (mirror-aware)' if name in thresholds.mirrored else ''}",
            hamming={name: limit},
            mirrored=thresholds.mirrored,
        )
        for name, limit in thresholds.hamming.items()
    ]
    if thresholds.cosine is not None:
        recipes.append(Recipe(f"embedding cosine >= {thresholds.cosine:.3f}", cosine=thresholds.cosine))
    if thresholds.verifier is not None:
        union = Recipe(
            "thresholds' union (exact or any threshold, no verifier)",
            dict(thresholds.hamming),
            thresholds.cosine,
            exact=True,
            mirrored=thresholds.mirrored,
        )
        verified = Recipe(
            f"pair verifier, probability >= {thresholds.verifier.threshold:.3f}", stored=VERIFIED_EVIDENCE
        )
        recipes += [union, verified]
    recipes.append(Recipe("combined default", stored=STORED_ALL))
    return recipes


def recipe_pairs(run: StoredRun, recipe: Recipe) -> np.ndarray:
    """Unique pairs ``(i, j)``, ``i < j``, that the recipe matches, as an (n, 2) array."""
    if recipe.stored is not None:
        pairs = run.pairs
        if recipe.stored != STORED_ALL:
            pairs = pairs.filter(pl.col("evidence").str.split(",").list.contains(recipe.stored))
        return pairs.select("image_id_a", "image_id_b").to_numpy().astype(np.int64).reshape(-1, 2)
    thresholds = MatchThresholds(hamming=recipe.hamming, cosine=recipe.cosine, mirrored=recipe.mirrored)
    digests = {name: run.manifest[column].to_numpy() for name, column in EXACT_EVIDENCE.items()} if recipe.exact else {}
    return local_candidates(digests, run.hashes, run.embeddings, None, thresholds)
