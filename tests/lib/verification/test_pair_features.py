import numpy as np
from PIL import Image, ImageOps

from dedup_pipeline.lib.features.thumbnails import thumbnail
from dedup_pipeline.lib.search.hamming_join import pair_distances
from dedup_pipeline.lib.verification.pair_features import (
    PIXEL_FEATURES,
    ImageSignals,
    _zoomed,
    feature_names,
    pair_features,
    pixel_features,
    scorer_inputs,
)
from tests.conftest import smooth_picture


def shifted(picture: Image.Image, pixels: int) -> Image.Image:
    """The picture cut by ``pixels`` (at 32 px) on the left and top: a translated copy."""
    cut = round(pixels * picture.width / 32)
    return picture.crop((cut, cut, picture.width, picture.height)).resize(picture.size)


def zoomed(picture: Image.Image, factor: float) -> Image.Image:
    keep_w, keep_h = round(picture.width / factor), round(picture.height / factor)
    left, top = (picture.width - keep_w) // 2, (picture.height - keep_h) // 2
    return picture.crop((left, top, left + keep_w, top + keep_h)).resize(picture.size)


def test_aligned_copies_correlate_and_different_pictures_do_not() -> None:
    source = smooth_picture(3, size=(128, 128))
    images = [source, shifted(source, 2), zoomed(source, 1.12), smooth_picture(4, size=(128, 128))]
    thumbs = np.stack([thumbnail(image) for image in images])
    features = pixel_features(thumbs, np.array([0, 0, 0, 0]), np.array([0, 1, 2, 3]))
    gray = features[:, PIXEL_FEATURES.index("gray_correlation")]
    edges = features[:, PIXEL_FEATURES.index("edge_correlation")]
    assert gray[0] > 0.999
    assert gray[1] > 0.95 and gray[2] > 0.95  # a shift and a zoom are searched
    assert edges[1] > 0.8 and edges[2] > 0.8
    assert gray[3] < 0.7 and edges[3] < 0.5


def squashed(picture: Image.Image, width_factor: float) -> Image.Image:
    """A centre crop ``width_factor`` narrower, stretched back to the full width: a new aspect ratio."""
    keep = round(picture.width / width_factor)
    left = (picture.width - keep) // 2
    return picture.crop((left, 0, left + keep, picture.height)).resize(picture.size)


def test_mirrored_and_reframed_copies_align() -> None:
    source = smooth_picture(5, size=(128, 128))
    unrelated = smooth_picture(6, size=(128, 128))
    images = [source, ImageOps.mirror(source), squashed(source, 1.2), ImageOps.mirror(unrelated)]
    thumbs = np.stack([thumbnail(image) for image in images])
    features = pixel_features(thumbs, np.array([0, 0, 0]), np.array([1, 2, 3]))
    gray = features[:, PIXEL_FEATURES.index("gray_correlation")]
    edges = features[:, PIXEL_FEATURES.index("edge_correlation_at_best")]
    assert gray[0] > 0.999 and edges[0] > 0.99  # the mirror is searched
    assert gray[1] > 0.97 and edges[1] > 0.8  # so is a zoom of one axis only
    assert gray[2] < 0.7 and edges[2] < 0.5


def test_pair_features_columns_follow_feature_names() -> None:
    thumbs = np.stack([thumbnail(smooth_picture(k)) for k in range(4)])
    hashes = {
        "phash": np.array([[0], [1], [3], [7]], dtype=np.uint64),
        "phash_mirror": np.array([[7], [7], [0], [0]], dtype=np.uint64),
    }
    embeddings = np.eye(4, dtype=np.float32)
    signals = ImageSignals(thumbs, hashes, embeddings)
    i, j = np.array([0, 0, 1]), np.array([1, 2, 3])
    names = feature_names(["phash"], with_embedding=True)
    direct = pair_features(signals, i, j, ["phash"], frozenset())
    either = pair_features(signals, i, j, ["phash"], frozenset({"phash"}))
    assert direct.shape == (3, len(names))
    assert names[-3:] == ("phash_distance", "view_distance", "embedding_cosine")
    assert direct[:, -3].tolist() == pair_distances(hashes["phash"], i, j).tolist() == [1, 2, 2]
    assert either[:, -3].tolist() == [1, 0, 0]  # against the mirrored picture: 0 vs 0, 7 vs 7
    assert direct[:, -1].tolist() == [0, 0, 0]
    assert scorer_inputs(names) == (["phash"], True)
    assert scorer_inputs(feature_names([], with_embedding=False)) == ([], False)


def test_appended_signals_shift_the_other_ids() -> None:
    first = ImageSignals(np.zeros((2, 32, 32, 3), np.uint8), {"dhash": np.zeros((2, 1), np.uint64)}, None)
    second = ImageSignals(np.ones((3, 32, 32, 3), np.uint8), {"dhash": np.ones((3, 1), np.uint64)}, None)
    both = first.appended(second)
    assert len(both) == 5 and both.thumbnails[2].max() == 1 and both.hashes["dhash"][:, 0].tolist() == [0, 0, 1, 1, 1]


def test_a_pair_gets_the_same_pixel_features_whichever_pairs_it_is_judged_with() -> None:
    rng = np.random.default_rng(3)
    thumbnails = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    thumbnails[20:] = np.clip(thumbnails[:20].astype(int) + rng.integers(-12, 12, (20, 32, 32, 3)), 0, 255)
    i, j = rng.integers(0, 40, 150), rng.integers(0, 40, 150)
    views = rng.integers(-1, 4, 150)
    together = pixel_features(thumbnails, i, j, views)
    order = rng.permutation(150)
    shuffled = pixel_features(thumbnails, i[order], j[order], views[order])
    alone = np.concatenate([pixel_features(thumbnails, i[k : k + 1], j[k : k + 1], views[k : k + 1]) for k in range(9)])
    # bit for bit: a data drop judges a pair as a from-scratch run does
    assert np.array_equal(shuffled, together[order]) and np.array_equal(alone, together[:9])


def test_zooming_samples_as_torch_s_bilinear_resize() -> None:
    import torch
    import torch.nn.functional as F

    pictures = np.random.default_rng(4).random((2, 3, 32, 32), dtype=np.float32)
    for crop_x, crop_y in [(3, 0), (6, 3), (0, 6)]:
        centre = torch.from_numpy(pictures)[
            :, :, crop_y // 2 : 32 - crop_y + crop_y // 2, crop_x // 2 : 32 - crop_x + crop_x // 2
        ]
        expected = F.interpolate(centre, size=(32, 32), mode="bilinear", align_corners=False).numpy()
        assert np.allclose(_zoomed(pictures, crop_x, crop_y), expected, atol=1e-6)
