from pathlib import Path

import numpy as np

from dedup_pipeline.lib.image_work import ExtractionSettings, ImageFacts, ImageFailure, extract_chunk
from tests.conftest import encoded, smooth_picture


def test_a_chunk_gives_each_file_an_outcome_and_stacks_the_decoded_ones(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(encoded(smooth_picture(1), "JPEG"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    settings = ExtractionSettings(8, ("phash", "ahash"), None, 10**7, mirrored_algorithms=("phash",))
    chunk = extract_chunk([good, broken, tmp_path / "missing.jpg", good], settings)
    kinds = [type(outcome) for outcome in chunk.outcomes]
    assert kinds == [ImageFacts, ImageFailure, ImageFailure, ImageFacts]
    assert "cannot read file" in chunk.outcomes[2].reason
    assert set(chunk.hashes) == {"phash", "ahash", "phash_mirror"}
    assert all(words.shape == (2, 1) for words in chunk.hashes.values())
    assert chunk.thumbnails.shape == (2, 32, 32, 3) and chunk.embeddings is None
    assert np.array_equal(chunk.thumbnails[0], chunk.thumbnails[1])
    assert chunk.outcomes[0].width == 96 and chunk.outcomes[0].format == "JPEG"
