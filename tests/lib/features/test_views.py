import numpy as np
import torch
import torch.nn.functional as F

from dedup_pipeline.lib.calibration.transforms import crop, jpeg, pad, rotate
from dedup_pipeline.lib.features.thumbnails import thumbnail
from dedup_pipeline.lib.features.views import (
    IDENTITY,
    VIEW_THRESHOLD,
    VIEWS,
    nominated,
    pair_views,
    view_hashes,
    view_matches,
    view_pairs,
    warped,
)
from dedup_pipeline.lib.verification.pair_features import pixel_features
from tests.conftest import smooth_picture

SOURCES = 6


def thumbnails_with_copies() -> np.ndarray:
    """Six distinct pictures, then a cropped copy of the first, a padded one of the second, a rotated
    one of the third and a JPEG one of the fourth (ids 6, 7, 8, 9)."""
    sources = [smooth_picture(k, size=(128, 128)) for k in range(SOURCES)]
    copies = [crop(sources[0], 64), pad(sources[1], 0.15), rotate(sources[2], 10), jpeg(sources[3], 50)]
    return np.stack([thumbnail(picture) for picture in sources + copies])


GEOMETRIC = [(0, 6), (1, 7), (2, 8)]


def test_views_nominate_cropped_padded_and_rotated_copies_that_plain_hashes_miss() -> None:
    hashes = view_hashes(thumbnails_with_copies())
    assert hashes.shape == (10, 2 + len(VIEWS))
    found = {tuple(pair) for pair in view_pairs(hashes).tolist()}
    for i, j in GEOMETRIC:
        assert (i, j) in found
        assert np.bitwise_count(hashes[i, IDENTITY] ^ hashes[j, IDENTITY]) > VIEW_THRESHOLD
    assert not any(i < j < SOURCES for i, j in found)  # distinct pictures stay apart
    first, second = np.array([0, 1, 2, 0]), np.array([6, 7, 8, 1])
    assert nominated(hashes[first], hashes[second]).tolist() == [True, True, True, False]
    matches, distances = view_matches(hashes[SOURCES:], hashes[:SOURCES])  # a padded copy's zoom
    assert (1, 1) in {tuple(pair) for pair in matches.tolist()}
    assert len(np.unique(matches, axis=0)) == len(matches) and distances.max() <= VIEW_THRESHOLD


def test_pair_views_lay_geometric_copies_over_and_leave_plain_copies_alone() -> None:
    thumbnails = thumbnails_with_copies()
    hashes = view_hashes(thumbnails)
    i, j = np.array([0, 1, 2, 3]), np.array([6, 7, 8, 9])
    views = pair_views(hashes, i, j)
    assert views.view[:3].min() >= 0 and views.view[3] == -1
    assert views.swapped[1]  # the padded copy is the one zoomed in on
    assert VIEWS[views.view[1]].name.startswith("zoom")
    assert VIEWS[views.view[2]].name.startswith("rotate")
    first, second = views.oriented(i, j)
    laid_over = pixel_features(thumbnails, first, second, views.view)[:, 0]
    as_they_are = pixel_features(thumbnails, i, j)[:, 0]
    assert np.all(laid_over[:3] > as_they_are[:3])
    assert laid_over[2] > as_they_are[2] + 0.1  # the alignment search has no rotations of its own
    assert laid_over[3] == as_they_are[3]


def test_warped_leaves_rows_without_a_view_unchanged() -> None:
    images = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    out = warped(images, np.array([-1, 0, -1]))
    assert np.array_equal(out[0], images[0]) and np.array_equal(out[2], images[2])
    assert not np.array_equal(out[1], images[1])


def test_views_sample_as_torch_grid_sample_does() -> None:
    """The views' bilinear sampling is written in numpy (extraction workers need no torch); it must
    see what ``grid_sample`` sees, zeros outside the picture included."""
    images = np.random.default_rng(1).random((len(VIEWS), 32, 32, 2), dtype=np.float32)
    thetas = torch.tensor([view.theta for view in VIEWS], dtype=torch.float32)
    grids = F.affine_grid(thetas, [len(VIEWS), 2, 32, 32], align_corners=False)
    expected = F.grid_sample(
        torch.from_numpy(images).permute(0, 3, 1, 2), grids, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    seen = warped(images, np.arange(len(VIEWS)))
    assert np.abs(seen - expected.permute(0, 2, 3, 1).numpy()).max() < 1e-5


def test_view_hashes_do_not_depend_on_the_chunk_they_were_computed_in() -> None:
    # near-flat pictures: their coefficients sit close to the median, where a float32 product's
    # rounding (which depends on how BLAS blocks the rows) used to flip bits between chunkings
    rng = np.random.default_rng(5)
    thumbnails = np.full((300, 32, 32, 3), 128, dtype=np.uint8)
    for picture in thumbnails:
        picture[rng.integers(0, 32, 3), rng.integers(0, 32, 3)] = rng.integers(0, 256, (3, 3))
    together = view_hashes(thumbnails)
    in_chunks = np.concatenate([view_hashes(thumbnails[start : start + 37]) for start in range(0, 300, 37)])
    assert np.array_equal(together, in_chunks)
