"""Matching recipes to compare: each evidence type alone, the pipeline's combined default, and the
anchor recipes other tools ship. A recipe is an OR of criteria, evaluated on the hashes and
embeddings a pipeline run stored."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from dedup_pipeline.lib.cosine_join import cosine_pairs
from dedup_pipeline.lib.hamming_join import hamming_pairs, mirror_aware_pairs
from dedup_pipeline.lib.hashing import mirror_key
from dedup_pipeline.lib.pairs import EXACT_EVIDENCE, MatchThresholds, exact_pairs


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
    found = [np.zeros((0, 2), dtype=np.int64)]
    if recipe.exact:
        found += [np.stack(exact_pairs(manifest, column), axis=1) for column in EXACT_EVIDENCE.values()]
    for name, limit in recipe.hamming.items():
        mirrored = hashes.get(mirror_key(name)) if name in recipe.mirrored else None
        if mirrored is None:
            i, j, _ = hamming_pairs(hashes[name], limit)
        else:
            i, j, _ = mirror_aware_pairs(hashes[name], mirrored, limit)
        found.append(np.stack([i, j], axis=1))
    if recipe.cosine is not None and embeddings is not None:
        i, j, _ = cosine_pairs(embeddings, recipe.cosine)
        found.append(np.stack([i, j], axis=1))
    return np.unique(np.concatenate(found).astype(np.int64), axis=0)
