import numpy as np

from dedup_pipeline.lib.calibration.thresholds import (
    CALIBRATION_TRANSFORMS,
    NEAREST_OTHER_LABEL,
    SECOND_NEAREST,
    EvidenceScores,
    calibrate,
    choose_mirroring,
    choose_negatives,
    choose_threshold,
    copy_like_share,
    decode_sample,
    half_of,
    labels_usable,
    mirror_variant,
    nearest_hamming,
    per_evidence_target,
    precision_recall,
    sample_ids,
    score_sample,
    select_variants,
    synthesize_copies,
    transforms_for,
    union_precision_recall,
    with_negatives,
)
from dedup_pipeline.lib.calibration.transforms import transform_named
from dedup_pipeline.lib.features.hashing import perceptual_hashes
from dedup_pipeline.lib.search.criteria import EMBEDDING_EVIDENCE
from tests.conftest import smooth_picture
from tests.lib.features.test_extraction import MeanColourEmbedder


def test_halves_are_stable_and_samples_disjoint() -> None:
    paths = [f"train/x/{k}.jpg" for k in range(400)]
    assert [half_of(p) for p in paths] == [half_of(p) for p in paths]
    assert 150 < sum(half_of(p) for p in paths) < 250
    first, second = sample_ids(paths, per_half=50)
    assert len(first) == len(second) == 50 and not set(first) & set(second)
    assert all(half_of(paths[k]) == 0 for k in first) and all(half_of(paths[k]) == 1 for k in second)
    assert np.array_equal(sample_ids(paths, per_half=50)[0], first)


def test_transform_subsets_are_deterministic_and_known() -> None:
    assert transforms_for(7, 5) == transforms_for(7, 5)
    assert len(set(transforms_for(7, 5))) == 5
    for name in CALIBRATION_TRANSFORMS:
        transform_named(name)  # every calibration transform exists in the catalogue


def test_threshold_is_the_loosest_that_keeps_precision() -> None:
    # Copies at distances 0..9 (10% each); hard negatives: 1% at 6, the rest at 20.
    positives = np.repeat(np.arange(10), 10)
    negatives = np.array([6] + [20] * 99)
    scores = EvidenceScores(positives, negatives, higher_is_closer=False)
    assert choose_threshold(scores, 0.95) == 9  # tpr 1.0, fpr 0.01 -> precision 0.99
    assert choose_threshold(scores, 0.995) == 5  # 6 would let the negative in
    precision, recall = precision_recall(scores, 5)
    assert precision == 1.0 and recall == 0.6


def test_cosine_scores_and_unreachable_targets() -> None:
    scores = EvidenceScores(np.array([0.99, 0.95, 0.9]), np.array([0.99, 0.5, 0.4]), higher_is_closer=True)
    assert choose_threshold(scores, 0.6) == 0.5  # tpr 1, fpr 2/3
    assert choose_threshold(scores, 0.7) == 0.9  # tpr 1, fpr 1/3
    assert choose_threshold(EvidenceScores(np.array([0.5]), np.array([0.9]), True), 0.99) is None


def test_union_and_per_evidence_target() -> None:
    a = EvidenceScores(np.array([1, 9, 9, 9]), np.array([9, 9]), higher_is_closer=False)
    b = EvidenceScores(np.array([9, 1, 9, 9]), np.array([1, 9]), higher_is_closer=False)
    precision, recall = union_precision_recall({"a": a, "b": b}, {"a": 2, "b": 2})
    assert recall == 0.5 and abs(precision - 0.5 / (0.5 + 0.5)) < 1e-9
    assert abs(per_evidence_target(0.99, 2) - 0.995) < 1e-12


def test_nearest_skips_excluded_images() -> None:
    hashes = np.array([[0b0000], [0b0000], [0b0001], [0b0111]], dtype=np.uint64)
    exclude = [np.array([0, 1])]  # image 0 and its exact copy 1
    assert nearest_hamming(np.array([0]), hashes, exclude, rank=1).tolist() == [3]
    assert nearest_hamming(np.array([0]), hashes, exclude, rank=0).tolist() == [1]


def test_labels_are_usable_when_nearly_every_image_has_one_of_several() -> None:
    assert labels_usable(["cat", "dog", "cat"])
    assert not labels_usable(["cat", "cat"])
    assert not labels_usable([None, None, "dog"])


def test_negatives_switch_to_other_labels_only_when_the_data_is_heavily_duplicated() -> None:
    copies = np.array([2, 3, 4, 5])
    other = np.array([30, 31, 32, 33])
    clean = {"phash": EvidenceScores(copies, np.array([20, 25, 3, 40]), False, other)}  # 1 of 4 copy-like
    duplicated = {"phash": EvidenceScores(copies, np.array([1, 2, 3, 40]), False, other)}  # 3 of 4
    assert copy_like_share(clean) == 0.25 and copy_like_share(duplicated) == 0.75
    assert choose_negatives({"phash": EvidenceScores(copies, np.array([20, 25, 30, 40]), False, other)}) == (
        SECOND_NEAREST,
        0.0,
    )
    rule, share = choose_negatives(duplicated)
    assert rule == NEAREST_OTHER_LABEL and share == 0.75
    assert with_negatives(duplicated, rule)["phash"].negatives.tolist() == other.tolist()
    unlabelled = {"phash": EvidenceScores(copies, np.array([1, 2, 3, 40]), False, None)}
    assert choose_negatives(unlabelled)[0] == SECOND_NEAREST


def test_scores_on_real_pictures_separate_copies_from_other_images() -> None:
    pictures = [smooth_picture(seed, size=(64, 64)) for seed in range(30)]
    hashes = {"phash": np.array([perceptual_hashes(p, 8, ["phash"])["phash"] for p in pictures], dtype=np.uint64)}
    embedder = MeanColourEmbedder()
    embedder.image_size = 16
    embeddings = embedder.embed(np.stack([np.asarray(p.resize((16, 16))) for p in pictures]))
    sample = np.arange(0, 30, 3)
    labels = np.array([str(k % 3) for k in range(30)], dtype=object)
    copies = synthesize_copies(sample, [pictures[k] for k in sample], ["phash"], [], 8, embedder, 4)
    assert copies.signals.thumbnails.shape == (40, 32, 32, 3) and copies.signals.embeddings.shape == (40, 3)
    scores = score_sample(sample, copies, hashes, embeddings, np.arange(30), labels)
    assert scores["phash"].other_label_negatives is not None
    assert set(scores) == {"phash", EMBEDDING_EVIDENCE}
    assert len(scores["phash"].positives) == 40 and len(scores["phash"].negatives) == 10
    results, (precision, recall) = calibrate(scores, scores, ["phash"], 0.9)
    assert results[0].threshold is not None and results[0].tune_precision >= 0.9
    assert 0 < recall <= 1 and precision >= 0.9


def test_mirror_matching_is_kept_only_where_it_recalls_more() -> None:
    negatives = np.array([20] * 100)
    helps = {
        "phash": EvidenceScores(np.array([1, 1, 30, 30]), negatives, False),
        mirror_variant("phash"): EvidenceScores(np.array([1, 1, 1, 30]), negatives, False),
        "dhash": EvidenceScores(np.array([1, 1, 1, 1]), negatives, False),
        mirror_variant("dhash"): EvidenceScores(np.array([1, 1, 1, 1]), np.array([1] + [20] * 99), False),
    }
    mirrored = choose_mirroring(helps, ["phash", "dhash"], 0.99)
    assert mirrored == {"phash"}
    chosen = select_variants(helps, mirrored)
    assert set(chosen) == {"phash", "dhash"} and chosen["phash"] is helps[mirror_variant("phash")]


def test_sampled_files_that_vanished_or_broke_are_left_out(tmp_path) -> None:
    paths = ["a.png", "gone.png", "broken.png", "b.png"]
    for name in ("a.png", "b.png"):
        smooth_picture(len(name)).save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"not an image any more")
    ids, pictures = decode_sample(tmp_path, paths, np.arange(4), 10**7)
    assert ids.tolist() == [0, 3] and len(pictures) == 2
