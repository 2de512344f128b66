import numpy as np
import polars as pl

from dedup_pipeline.evaluation.cifar import CandidateScores, best_partners


def test_best_partners_ranks_test_images_by_their_best_train_pair() -> None:
    manifest = pl.DataFrame(
        {
            "path": ["test/a.jpg", "test/b.jpg", "train/x.jpg", "train/y.jpg", "test/c.jpg"],
            "split": ["test", "test", "train", "train", "test"],
        }
    )
    scores = CandidateScores(
        pairs=np.array([[0, 2], [0, 3], [1, 2], [2, 3], [1, 4], [3, 4]]),
        probability=np.array([0.2, 0.9, 0.5, 1.0, 1.0, 0.0]),
        exact=np.array([False, False, False, False, False, True]),
    )

    ranking = best_partners(manifest, scores)

    # c's exact pair scores 1; train-train and test-test pairs do not count.
    assert ranking.rows() == [
        ("test/c.jpg", "train/y.jpg", 1.0, 0),
        ("test/a.jpg", "train/y.jpg", 0.9, 1),
        ("test/b.jpg", "train/x.jpg", 0.5, 2),
    ]
