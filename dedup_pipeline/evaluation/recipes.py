"""Matching recipes to compare: each evidence type alone, the pipeline's combined default, and the
anchor recipes other tools ship. A recipe is an OR of criteria, evaluated on the hashes and
embeddings a pipeline run stored."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from dedup_pipeline.lib.pairs import MatchThresholds, candidate_pairs


@dataclass(frozen=True)
class Recipe:
    name: str
    hamming: dict[str, int] = field(default_factory=dict)
    cosine: float | None = None
    exact: bool = False  # identical bytes or pixels also match
    mirrored: frozenset[str] = frozenset()  # hashes that also match the mirrored picture


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
    recipes.append(
        Recipe(
            "combined default", dict(thresholds.hamming), thresholds.cosine, exact=True, mirrored=thresholds.mirrored
        )
    )
    return recipes


def recipe_pairs(
    manifest: pl.DataFrame, hashes: dict[str, np.ndarray], embeddings: np.ndarray | None, recipe: Recipe
) -> np.ndarray:
    """Unique pairs ``(i, j)``, ``i < j``, that the recipe matches, as an (n, 2) array."""
    thresholds = MatchThresholds(hamming=recipe.hamming, cosine=recipe.cosine, mirrored=recipe.mirrored)
    return candidate_pairs(manifest, hashes, embeddings, thresholds, exact=recipe.exact)[0]
