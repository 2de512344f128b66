from pathlib import Path

import pytest

from dedup_pipeline.lib.inputs.demo_dataset import ORIGINALS, PLANTED, build_demo_dataset
from dedup_pipeline.lib.inputs.sources import discover


def test_demo_dataset_layout_and_planted_pairs(demo_dataset: tuple[Path, list[tuple[str, str, str]]]) -> None:
    root, planted = demo_dataset
    sources = discover(root)
    assert not sources.problems
    assert len(sources.images) == len(ORIGINALS) + len(PLANTED) + 1
    assert {image.split for image in sources.images} == {"train", "val", "test"}
    paths = {image.path for image in sources.images}
    for train_path, copy_path, _ in planted:
        assert train_path.startswith("train/") and train_path in paths and copy_path in paths
    assert sum("label conflict" in kind for _, _, kind in planted) == 1


def test_rebuilding_replaces_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "images"
    build_demo_dataset(root)
    (root / "train" / "junk.txt").write_text("left over")
    build_demo_dataset(root)
    assert not (root / "train" / "junk.txt").exists()


def test_a_folder_the_demo_did_not_build_is_never_deleted(tmp_path: Path) -> None:
    root = tmp_path / "images"
    (root / "precious.txt").parent.mkdir(parents=True)
    (root / "precious.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        build_demo_dataset(root)
    assert (root / "precious.txt").exists()
