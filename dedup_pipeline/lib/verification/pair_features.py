"""Pair verification: is a candidate pair a re-processed copy, or two different pictures that merely
look alike?

Hashes and embeddings each see a summary; on small, class-structured data (CIFAR) different photos
of the same kind of scene (a plane in blue sky) get as close under them as real copies do. The
verifier looks at the thumbnails of both images: it lays one over the other through the geometric
view that brings their pHashes closest, when one does (``views``: crops, pads, rotations), aligns
them over small shifts and zooms and measures how well the gray levels, the edges and the colours
then agree. Copies agree in detail; look-alikes only in layout. These pixel measures, the
descriptor cosine, the hash distances (also at the best view) and the embedding cosine feed a
logistic model with pairwise interactions that is trained per dataset on synthetic copies of its
own images against its own look-alikes (see ``calibration``), so the thresholds need no hand
tuning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

from dedup_pipeline.lib.features.hashing import mirror_key
from dedup_pipeline.lib.features.thumbnails import thumbnail_descriptors
from dedup_pipeline.lib.features.views import PairViews, pair_views, view_hashes, warped
from dedup_pipeline.lib.search.cosine_join import pair_similarities
from dedup_pipeline.lib.search.hamming_join import mirror_aware_distances, pair_distances

SHIFT = 3  # pixels (of a 32-pixel thumbnail) searched in each direction
# Pixels cut from the centre of the 32-pixel thumbnail before it is stretched back, per axis: zooms
# of 1, 1.10 and 1.23, searched for width and height apart and on either image. Real copies
# are re-cropped and squashed to a new aspect ratio (CIFAR's near-duplicates are), so a
# uniform zoom leaves them misaligned: on CIFAR's ciFAIR pairs against look-alikes of another label,
# the separate axes took the gray correlation's recall at 1% false positives from 0.82 to 0.91.
ZOOM_CROPS = (0, 3, 6)
PAIR_BLOCK = 64
VIEW_DISTANCE = "view_distance"  # the pair's pHash distance at its best view (see ``views``)
PIXEL_FEATURES: tuple[str, ...] = (
    "gray_correlation",
    "edge_correlation_at_best",
    "edge_correlation",
    "colour_correlation_at_best",
)  # no pixel difference: gamma and brightness changes make copies differ as much as strangers


CROPS = tuple((x, y) for x in ZOOM_CROPS for y in ZOOM_CROPS)  # no crop first


@dataclass(frozen=True)
class Alignment:
    """How the second image of a pair is laid over the first: mirrored or not, then one of the two
    zoomed (``zoom_first``) by cutting ``CROPS[crop]`` (columns, rows) from its centre."""

    mirrored: bool
    zoom_first: bool
    crop: int


# Every searched alignment, the identity first; per mirroring, the second image zoomed by each crop,
# then the first image by each but "no crop" (``_gray_surfaces`` builds its surfaces in this order).
# Mirrored ones are searched too: a flipped copy is the most common augmentation, and its pixels
# agree as well as a direct copy's do.
ALIGNMENTS = tuple(
    Alignment(mirrored, zoom_first, crop)
    for mirrored in (False, True)
    for zoom_first in (False, True)
    for crop in range(1 if zoom_first else 0, len(CROPS))
)


def _zoomed(images: torch.Tensor, crop_x: int, crop_y: int) -> torch.Tensor:
    """The centre of each image without ``crop_x`` columns and ``crop_y`` rows, stretched back."""
    if crop_x == crop_y == 0:
        return images
    height, width = images.shape[-2:]
    left, top = crop_x // 2, crop_y // 2
    centre = images[:, :, top : top + height - crop_y, left : left + width - crop_x]
    return F.interpolate(centre, size=(height, width), mode="bilinear", align_corners=False)


def _edges(images: torch.Tensor) -> torch.Tensor:
    gray = images.mean(dim=1, keepdim=True)
    dx = F.pad(gray[:, :, :, 1:] - gray[:, :, :, :-1], (0, 1, 0, 0))
    dy = F.pad(gray[:, :, 1:, :] - gray[:, :, :-1, :], (0, 0, 0, 1))
    return torch.sqrt(dx * dx + dy * dy + 1e-6)


@dataclass(frozen=True)
class _Search:
    """What the correlation needs of a picture searched over: its spectrum and, at every shift,
    the norm of the zero-mean window the template covers (channels pooled)."""

    spectrum: torch.Tensor
    window_norm: torch.Tensor  # (..., pairs, (2*SHIFT+1)**2)


def _search(images: torch.Tensor) -> _Search:
    """The :class:`_Search` of (..., pairs, channels, side, side) pictures."""
    side = images.shape[-1]
    inner = side - 2 * SHIFT
    total, squares = _window_sums(images, inner), _window_sums(images * images, inner)
    variance = (squares - total * total / (inner * inner)).clamp(min=0).sum(dim=-3).flatten(-2)
    return _Search(torch.fft.rfft2(images), variance.sqrt())


def _template_spectrum(images: torch.Tensor) -> torch.Tensor:
    """Conjugate spectrum of the zero-mean, unit-norm centre of each picture (SHIFT pixels in from
    every side), zero-padded to the picture's size, for (..., pairs, channels, side, side) pictures."""
    side = images.shape[-1]
    inner = side - 2 * SHIFT
    template = images[..., SHIFT : SHIFT + inner, SHIFT : SHIFT + inner]
    template = template - template.mean(dim=(-2, -1), keepdim=True)
    template = template / (torch.linalg.vector_norm(template, dim=(-3, -2, -1), keepdim=True) + 1e-6)
    return torch.conj(torch.fft.rfft2(template, s=(side, side)))


def _surface(search: _Search, template_spectrum: torch.Tensor) -> torch.Tensor:
    """Zero-mean normalised cross-correlation of a template with its search picture at every shift
    up to SHIFT pixels: (..., pairs, (2*SHIFT+1)**2), leading dimensions broadcast. The products
    come from spectra (the template fits inside the picture at every searched shift, so the
    circular correlation never wraps)."""
    spectrum = (search.spectrum * template_spectrum).flatten(-2)
    products = torch.matmul(spectrum, _shift_basis(search.spectrum.shape[-2])).real
    return products.sum(dim=-2) / (search.window_norm + 1e-6)


@cache
def _shift_basis(side: int) -> torch.Tensor:
    """(side * (side // 2 + 1), (2*SHIFT+1)**2) complex: a flattened half spectrum (``rfft2``'s)
    times this, real part, is its inverse transform at the searched shifts only. Computing the
    49 values needed, not all ``side**2``, as one matrix product is cheaper than ``irfft2``."""
    frequency_y, frequency_x = np.arange(side), np.arange(side // 2 + 1)
    shift_y, shift_x = np.divmod(np.arange((2 * SHIFT + 1) ** 2), 2 * SHIFT + 1)
    # the half spectrum stands for its mirrored columns too, except the first and the Nyquist one
    weight = np.where((frequency_x == 0) | (2 * frequency_x == side), 1.0, 2.0) / (side * side)
    phase = (
        frequency_y[:, None, None] * shift_y[None, None, :] + frequency_x[None, :, None] * shift_x[None, None, :]
    ) * (2 * np.pi / side)
    basis = weight[None, :, None] * np.exp(1j * phase)
    return torch.from_numpy(basis.reshape(side * (side // 2 + 1), -1).astype(np.complex64))


def _correlation_surface(search: torch.Tensor, template_source: torch.Tensor) -> torch.Tensor:
    """The :func:`_surface` of the centre of ``template_source`` over ``search``."""
    return _surface(_search(search), _template_spectrum(template_source))


def _window_sums(images: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over every ``window`` x ``window`` square, from an integral image (a box filter this wide
    is slow as a pooling kernel)."""
    integral = F.pad(images.cumsum(dim=-2).cumsum(dim=-1), (1, 0, 1, 0))
    return (
        integral[..., window:, window:]
        - integral[..., :-window, window:]
        - integral[..., window:, :-window]
        + integral[..., :-window, :-window]
    )


def _gray_surfaces(gray_a: torch.Tensor, gray_b: torch.Tensor) -> torch.Tensor:
    """(len(ALIGNMENTS), pairs, shifts): the gray correlation surface of every alignment. Alignments
    share their pictures (the first image unzoomed in half of them, each zoom of it in two), so
    each distinct search and template is transformed once and the alignments pair them up."""
    pictures = torch.stack([gray_a, gray_b, gray_b.flip(-1)])
    # (3 pictures, crops, pairs, 1, side, side)
    zooms = torch.stack([_zoomed(pictures.flatten(0, 1), *crop).view(pictures.shape) for crop in CROPS], dim=1)
    searches, templates = _search(zooms[0]), _template_spectrum(zooms[1:])
    unzoomed = _Search(searches.spectrum[0], searches.window_norm[0])
    zoomed = _Search(searches.spectrum[1:], searches.window_norm[1:])
    surfaces = [
        surface
        for mirrored in (0, 1)
        for surface in (_surface(unzoomed, templates[mirrored]), _surface(zoomed, templates[mirrored, 0]))
    ]
    return torch.cat(surfaces)


def _laid_over(a: torch.Tensor, b: torch.Tensor, alignment: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pair ``(a[k], b[k])`` in ``ALIGNMENTS[alignment[k]]``, one zoom per crop."""
    mirrored, zoom_first, crop = (
        torch.tensor([getattr(candidate, name) for candidate in ALIGNMENTS])[alignment]
        for name in ("mirrored", "zoom_first", "crop")
    )
    search, template = a.clone(), torch.where(mirrored[:, None, None, None], b.flip(-1), b)
    for index in range(1, len(CROPS)):
        first, second = zoom_first & (crop == index), ~zoom_first & (crop == index)
        if first.any():
            search[first] = _zoomed(a[first], *CROPS[index])
        if second.any():
            template[second] = _zoomed(template[second], *CROPS[index])
    return search, template


def _pixel_features_block(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Gray correlation over every alignment at once; edges and colour at each pair's best one."""
    gray = _gray_surfaces(a.mean(dim=1, keepdim=True), b.mean(dim=1, keepdim=True))
    peak_per_alignment, shift_per_alignment = gray.max(dim=2)
    peak, best_alignment = peak_per_alignment.max(dim=0)
    shift = shift_per_alignment.gather(0, best_alignment[None])[0][:, None]
    search, template = _laid_over(a, b, best_alignment)
    edges = _correlation_surface(_edges(search), _edges(template))
    colour = _correlation_surface(search, template)
    values = [peak, edges.gather(1, shift)[:, 0], edges.max(dim=1).values, colour.gather(1, shift)[:, 0]]
    return torch.stack(values, dim=1)


def pixel_features(thumbnails: np.ndarray, i: np.ndarray, j: np.ndarray, views: np.ndarray | None = None) -> np.ndarray:
    """(len(i), len(PIXEL_FEATURES)) float32 for the pairs ``(i[k], j[k])`` of uint8 RGB thumbnails
    (n, side, side, 3), the first image of each pair seen through ``VIEWS[views[k]]`` where that
    is not negative; computed in blocks, so memory does not grow with the number of pairs."""
    out = np.empty((len(i), len(PIXEL_FEATURES)), dtype=np.float32)
    views = np.full(len(i), -1) if views is None else views
    with torch.inference_mode():
        for start in range(0, len(i), PAIR_BLOCK):
            stop = min(len(i), start + PAIR_BLOCK)
            seen = warped(thumbnails[i[start:stop]].astype(np.float32) / 255, views[start:stop])
            a = torch.from_numpy(seen).permute(0, 3, 1, 2)
            b = torch.from_numpy(thumbnails[j[start:stop]]).permute(0, 3, 1, 2).float() / 255
            out[start:stop] = _pixel_features_block(a, b).numpy()
    return out


class ImageSignals:
    """What the verifier knows of each image, rows by position: thumbnails (None when no verifier
    needs them), the matching hashes (and their mirror_key hashes where stored), embeddings (None
    when off), and the thumbnails' descriptors and view hashes (computed from the thumbnails on
    first use when not given: once per image, not once per pair)."""

    def __init__(
        self,
        thumbnails: np.ndarray | None,
        hashes: Mapping[str, np.ndarray],
        embeddings: np.ndarray | None,
        descriptors: np.ndarray | None = None,
        views: np.ndarray | None = None,
    ) -> None:
        self.thumbnails, self.hashes, self.embeddings = thumbnails, hashes, embeddings
        self._descriptors, self._views = descriptors, views

    @property
    def descriptors(self) -> np.ndarray:
        if self._descriptors is None:
            self._descriptors = thumbnail_descriptors(self._required_thumbnails())
        return self._descriptors

    @property
    def views(self) -> np.ndarray:
        if self._views is None:
            self._views = view_hashes(np.asarray(self._required_thumbnails()))
        return self._views

    def descriptor_similarities(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Descriptor cosine of pairs ``(i[k], j[k])``; unless every image's descriptor is known,
        only the images in these pairs get one (a drop's candidates touch a few of the images)."""
        if self._descriptors is not None:
            return pair_similarities(self._descriptors, i, j)
        rows, inverse = np.unique(np.concatenate([i, j]), return_inverse=True)
        descriptors = thumbnail_descriptors(self._required_thumbnails()[rows])
        return pair_similarities(descriptors, inverse[: len(i)], inverse[len(i) :])

    def _required_thumbnails(self) -> np.ndarray:
        if self.thumbnails is None:
            raise ValueError("these signals were read without thumbnails")
        return self.thumbnails

    def __len__(self) -> int:
        for rows in (self.thumbnails, self.embeddings, *self.hashes.values()):
            if rows is not None:
                return len(rows)
        return 0

    def appended(self, other: ImageSignals) -> ImageSignals:
        """These images followed by ``other``'s (ids of ``other`` shift by ``len(self)``)."""
        return ImageSignals(
            np.concatenate([self._required_thumbnails(), other._required_thumbnails()]),
            {name: np.concatenate([words, other.hashes[name]]) for name, words in self.hashes.items()},
            None if self.embeddings is None else np.concatenate([self.embeddings, other.embeddings]),
            np.concatenate([self.descriptors, other.descriptors]),
            np.concatenate([self.views, other.views]),
        )


def feature_names(hash_names: Sequence[str], with_embedding: bool) -> tuple[str, ...]:
    """The verifier's features: the screen's, with the aligned pixel measures after the first."""
    first, *rest = screen_feature_names(hash_names, with_embedding)
    return (first, *PIXEL_FEATURES, *rest)


def screen_feature_names(hash_names: Sequence[str], with_embedding: bool) -> tuple[str, ...]:
    """The cheap features (no alignment): what the screen in front of the verifier sees."""
    embedding = ("embedding_cosine",) if with_embedding else ()
    return ("descriptor_cosine", *(f"{name}_distance" for name in hash_names), VIEW_DISTANCE, *embedding)


def screen_features(
    signals: ImageSignals,
    i: np.ndarray,
    j: np.ndarray,
    hash_names: Sequence[str],
    mirrored: frozenset[str],
    views: PairViews,
) -> np.ndarray:
    """The :func:`screen_feature_names` columns for pairs ``(i[k], j[k])`` and their ``views``;
    hashes in ``mirrored`` give the smaller of the direct and mirrored distance."""
    columns = [signals.descriptor_similarities(i, j)[:, None]]
    for name in hash_names:
        words = signals.hashes[name]
        distance = (
            mirror_aware_distances(words, signals.hashes[mirror_key(name)], i, j)
            if name in mirrored
            else pair_distances(words, i, j)
        )
        columns.append(distance[:, None].astype(np.float32))
    columns.append(views.distance[:, None].astype(np.float32))
    if signals.embeddings is not None:
        columns.append(pair_similarities(signals.embeddings, i, j)[:, None])
    return np.concatenate(columns, axis=1)


def with_pixel_features(
    thumbnails: np.ndarray, i: np.ndarray, j: np.ndarray, screened: np.ndarray, views: PairViews
) -> np.ndarray:
    """The :func:`feature_names` columns from the pairs' screen features and their thumbnails, laid
    over through their ``views``."""
    first, second = views.oriented(i, j)
    pixels = pixel_features(thumbnails, first, second, views.view)
    return np.concatenate([screened[:, :1], pixels, screened[:, 1:]], axis=1)


def pair_features(
    signals: ImageSignals, i: np.ndarray, j: np.ndarray, hash_names: Sequence[str], mirrored: frozenset[str]
) -> np.ndarray:
    """The :func:`feature_names` columns for pairs ``(i[k], j[k])``."""
    views = pair_views(signals.views, i, j)
    screened = screen_features(signals, i, j, hash_names, mirrored, views)
    return with_pixel_features(signals.thumbnails, i, j, screened, views)


def scorer_inputs(features: Sequence[str]) -> tuple[list[str], bool]:
    """The hashes and whether the embedding a scorer trained on ``features`` needs."""
    hashes = [
        name.removesuffix("_distance") for name in features if name.endswith("_distance") and name != VIEW_DISTANCE
    ]
    return hashes, "embedding_cosine" in features
