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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import numpy as np
import scipy.fft

from dedup_pipeline.lib.features.hashing import mirror_key
from dedup_pipeline.lib.features.thumbnails import MIN_DETAIL, detail, same_fill, thumbnail_descriptors
from dedup_pipeline.lib.features.views import PairViews, pair_views, view_hashes, warped
from dedup_pipeline.lib.runtime.parallel import available_cores
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


def _zoomed(images: np.ndarray, crop_x: int, crop_y: int) -> np.ndarray:
    """The centre of each image (..., side, side) without ``crop_x`` columns and ``crop_y`` rows,
    stretched back by bilinear interpolation."""
    if crop_x == crop_y == 0:
        return images
    height, width = images.shape[-2:]
    left, top = crop_x // 2, crop_y // 2
    centre = images[..., top : top + height - crop_y, left : left + width - crop_x]
    below, above, weight = _stretch(width - crop_x, width)
    wide = centre[..., below] * (1 - weight) + centre[..., above] * weight
    below, above, weight = _stretch(height - crop_y, height)
    return wide[..., below, :] * (1 - weight)[:, None] + wide[..., above, :] * weight[:, None]


@cache
def _stretch(inner: int, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each of ``side`` samples of a line stretched from ``inner`` samples is read (the
    sample below, the one above, the weight of the one above): bilinear interpolation with pixel
    centres aligned (``align_corners=False``, as torch's and OpenCV's resizes sample; the tests hold
    it to torch's). Element by element, not a matrix product: a product's rounding depends on the
    other rows BLAS multiplies along with it, a pair's features must not."""
    source = np.maximum((np.arange(side) + 0.5) * (inner / side) - 0.5, 0.0)
    below = np.floor(source).astype(np.int64)
    return below, np.minimum(below + 1, inner - 1), (source - below).astype(np.float32)


def _edges(images: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the gray level of (pairs, channels, side, side) pictures."""
    gray = images.mean(axis=1, keepdims=True)
    dx, dy = np.zeros_like(gray), np.zeros_like(gray)
    dx[..., :, :-1] = gray[..., :, 1:] - gray[..., :, :-1]
    dy[..., :-1, :] = gray[..., 1:, :] - gray[..., :-1, :]
    return np.sqrt(dx * dx + dy * dy + np.float32(1e-6))


@dataclass(frozen=True)
class _Search:
    """What the correlation needs of a picture searched over: its spectrum and, at every shift,
    the norm of the zero-mean window the template covers (channels pooled)."""

    spectrum: np.ndarray
    window_norm: np.ndarray  # (..., pairs, (2*SHIFT+1)**2)


def _search(images: np.ndarray) -> _Search:
    """The :class:`_Search` of (..., pairs, channels, side, side) pictures."""
    side = images.shape[-1]
    inner = side - 2 * SHIFT
    total, squares = _window_sums(images, inner), _window_sums(images * images, inner)
    variance = np.maximum(squares - total * total / (inner * inner), 0).sum(axis=-3)
    return _Search(scipy.fft.rfft2(images), np.sqrt(variance.reshape(*variance.shape[:-2], -1)))


def _template_spectrum(images: np.ndarray) -> np.ndarray:
    """Conjugate spectrum of the zero-mean, unit-norm centre of each picture (SHIFT pixels in from
    every side), zero-padded to the picture's size, for (..., pairs, channels, side, side) pictures."""
    side = images.shape[-1]
    inner = side - 2 * SHIFT
    template = images[..., SHIFT : SHIFT + inner, SHIFT : SHIFT + inner]
    template = template - template.mean(axis=(-2, -1), keepdims=True)
    norm = np.sqrt((template * template).sum(axis=(-3, -2, -1), keepdims=True))
    return np.conj(scipy.fft.rfft2(template / (norm + np.float32(1e-6)), s=(side, side)))


def _surface(search: _Search, template_spectrum: np.ndarray) -> np.ndarray:
    """Zero-mean normalised cross-correlation of a template with its search picture at every shift
    up to SHIFT pixels: (..., pairs, (2*SHIFT+1)**2), leading dimensions broadcast. The products
    come from spectra (the template fits inside the picture at every searched shift, so the
    circular correlation never wraps). An inverse FFT, not a product with a matrix of the 49
    needed frequencies: BLAS's rounding of a row depends on the rows multiplied with it."""
    side = search.spectrum.shape[-2]
    correlation = scipy.fft.irfft2(search.spectrum * template_spectrum, s=(side, side))
    products = correlation[..., : 2 * SHIFT + 1, : 2 * SHIFT + 1]
    return products.reshape(*products.shape[:-2], -1).sum(axis=-2) / (search.window_norm + np.float32(1e-6))


def _correlation_surface(search: np.ndarray, template_source: np.ndarray) -> np.ndarray:
    """The :func:`_surface` of the centre of ``template_source`` over ``search``."""
    return _surface(_search(search), _template_spectrum(template_source))


def _window_sums(images: np.ndarray, window: int) -> np.ndarray:
    """Sum over every ``window`` x ``window`` square: sliding sums along rows, then along columns of
    those (each from a running sum; a box filter this wide is slow as a pooling kernel)."""

    def along_rows(values: np.ndarray) -> np.ndarray:
        running = np.zeros((*values.shape[:-1], values.shape[-1] + 1), dtype=values.dtype)
        np.cumsum(values, axis=-1, out=running[..., 1:])
        return running[..., window:] - running[..., :-window]

    return along_rows(along_rows(images).swapaxes(-1, -2)).swapaxes(-1, -2)


def _gray_surfaces(gray_a: np.ndarray, gray_b: np.ndarray) -> np.ndarray:
    """(len(ALIGNMENTS), pairs, shifts): the gray correlation surface of every alignment. Alignments
    share their pictures (the first image unzoomed in half of them, each zoom of it in two), so
    each distinct search and template is transformed once and the alignments pair them up."""
    pictures = np.stack([gray_a, gray_b, gray_b[..., ::-1]])
    zooms = np.stack([_zoomed(pictures, *crop) for crop in CROPS], axis=1)  # (3 pictures, crops, pairs, 1, side, side)
    searches, templates = _search(zooms[0]), _template_spectrum(zooms[1:])
    unzoomed = _Search(searches.spectrum[0], searches.window_norm[0])
    zoomed = _Search(searches.spectrum[1:], searches.window_norm[1:])
    surfaces = [
        surface
        for mirrored in (0, 1)
        for surface in (_surface(unzoomed, templates[mirrored]), _surface(zoomed, templates[mirrored, 0]))
    ]
    return np.concatenate(surfaces)


_ALIGNMENT_TABLE = {
    name: np.array([getattr(candidate, name) for candidate in ALIGNMENTS])
    for name in ("mirrored", "zoom_first", "crop")
}


def _laid_over(a: np.ndarray, b: np.ndarray, alignment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pair ``(a[k], b[k])`` in ``ALIGNMENTS[alignment[k]]``, one zoom per crop."""
    mirrored, zoom_first, crop = (_ALIGNMENT_TABLE[name][alignment] for name in ("mirrored", "zoom_first", "crop"))
    search, template = a.copy(), np.where(mirrored[:, None, None, None], b[..., ::-1], b)
    for index in range(1, len(CROPS)):
        first, second = zoom_first & (crop == index), ~zoom_first & (crop == index)
        if first.any():
            search[first] = _zoomed(a[first], *CROPS[index])
        if second.any():
            template[second] = _zoomed(template[second], *CROPS[index])
    return search, template


def _pixel_features_block(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Gray correlation over every alignment at once; edges and colour at each pair's best one."""
    gray = _gray_surfaces(a.mean(axis=1, keepdims=True), b.mean(axis=1, keepdims=True))
    peak_per_alignment, shift_per_alignment = gray.max(axis=2), gray.argmax(axis=2)
    best_alignment = peak_per_alignment.argmax(axis=0)
    pairs = np.arange(len(a))
    peak, shift = peak_per_alignment[best_alignment, pairs], shift_per_alignment[best_alignment, pairs]
    search, template = _laid_over(a, b, best_alignment)
    edges = _correlation_surface(_edges(search), _edges(template))
    colour = _correlation_surface(search, template)
    values = [peak, edges[pairs, shift], edges.max(axis=1), colour[pairs, shift]]
    return np.stack(values, axis=1)


def pixel_features(thumbnails: np.ndarray, i: np.ndarray, j: np.ndarray, views: np.ndarray | None = None) -> np.ndarray:
    """(len(i), len(PIXEL_FEATURES)) float32 for the pairs ``(i[k], j[k])`` of uint8 RGB thumbnails
    (n, side, side, 3), the first image of each pair seen through ``VIEWS[views[k]]`` where that
    is not negative; computed in blocks, so memory does not grow with the number of pairs, one
    block per core at a time (numpy's FFTs and array loops release the GIL).

    Every block has exactly PAIR_BLOCK pairs (the last is padded with black pictures), and nothing
    in a block mixes its pairs (no matrix product: BLAS rounds a row differently by the rows it is
    multiplied with): a pair gets the same features whichever pairs it is judged with, as a data
    drop must judge a pair as a from-scratch run does."""
    views = np.full(len(i), -1) if views is None else views

    def block(start: int) -> np.ndarray:
        stop = min(len(i), start + PAIR_BLOCK)
        seen = warped(thumbnails[i[start:stop]].astype(np.float32) / 255, views[start:stop])
        a, b = np.zeros((2, PAIR_BLOCK, *seen.shape[1:]), dtype=np.float32)
        a[: stop - start], b[: stop - start] = seen, thumbnails[j[start:stop]].astype(np.float32) / 255
        return _pixel_features_block(a.transpose(0, 3, 1, 2), b.transpose(0, 3, 1, 2))[: stop - start]

    starts = range(0, len(i), PAIR_BLOCK)
    if len(starts) < 2:
        blocks = [block(start) for start in starts]
    else:
        with ThreadPoolExecutor(min(len(starts), available_cores())) as pool:
            blocks = list(pool.map(block, starts))
    return np.concatenate(blocks) if blocks else np.zeros((0, len(PIXEL_FEATURES)), dtype=np.float32)


class ImageSignals:
    """What the judging knows of each image, rows by position: thumbnails (None where only hashes
    and embeddings are compared), the matching hashes (and their mirror_key hashes where stored), embeddings (None
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

    def summaries_count(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Whether the hashes and embeddings of pairs ``(i[k], j[k])`` are evidence: unless both
        pictures have detail (:data:`MIN_DETAIL`), only when the two show the same fill. Without
        thumbnails, always."""
        if self.thumbnails is None:
            return np.ones(len(i), dtype=bool)
        rows, inverse = np.unique(np.concatenate([i, j]), return_inverse=True)
        pictures = np.asarray(self.thumbnails[rows])
        detailed = detail(pictures) >= MIN_DETAIL
        first, second = inverse[: len(i)], inverse[len(i) :]
        both = detailed[first] & detailed[second]
        flat = np.flatnonzero(~both)
        both[flat] = same_fill(pictures[first[flat]], pictures[second[flat]])
        return both

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
