"""The stress dataset: a few thousand CIFAR-10 images that arrive in three stages, with planted
leaks, and a corpus of bad inputs beside them (``../shared``'s odd images and generated cases).

Every scenario builds its own copy under its own root with the same relative paths, so the final
tables of an interrupted or concurrent scenario compare row for row with the reference's.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dedup_pipeline.lib.calibration.transforms import transform_named
from dedup_pipeline.lib.inputs.sources import DROPS_FOLDER, READY_MARKER

BASE_TRAIN, BASE_TEST = 2_000, 400  # CIFAR images in the first stage
DROP_TRAIN, DROP_TEST = 400, 100  # CIFAR images in each later stage
DROPS = ("delivery-1", "delivery-2")
PLANTED_PER_STAGE = 20  # JPEG re-encodes of earlier training images, filed under test
CORPUS_FOLDERS = ("train/odd", "train/bad")


@dataclass(frozen=True)
class StressDataset:
    cifar: Path
    odd_images: Path
    stages: tuple[list[Path], ...]  # CIFAR files (relative to cifar) of the base and of each drop

    def build(self, root: Path) -> None:
        """The first stage at ``root``: CIFAR links, planted copies and the bad-input corpus."""
        if root.exists():
            shutil.rmtree(root)
        _link(self.cifar, root, self.stages[0])
        _plant(self.cifar, root / "test" / "planted", self.stages[0], 0)
        self._corpus(root)

    def deliver(self, root: Path, stage: int) -> None:
        """Stage ``stage`` (1 or 2) arrives whole under ``drops/<name>/``, with its ready marker."""
        folder = root / DROPS_FOLDER / DROPS[stage - 1]
        _link(self.cifar, folder, self.stages[stage])
        _plant(self.cifar, folder / "test" / "planted", self.stages[0], stage)
        (folder / READY_MARKER).touch()

    def _corpus(self, root: Path) -> None:
        odd = root / CORPUS_FOLDERS[0] / "files"
        odd.mkdir(parents=True)
        for source in sorted(self.odd_images.iterdir()):
            shutil.copy2(source, odd / source.name)
        bad = root / CORPUS_FOLDERS[1] / "files"
        bad.mkdir(parents=True)
        for make in GENERATED.values():
            make(bad)


def _picture(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8))


def _non_utf8_name(folder: Path) -> None:
    path = os.fsencode(folder) + b"/caf\xe9.png"  # a Latin-1 name, as copied from an old share
    _picture(1).save(Path(os.fsdecode(path)), "PNG")


def _unreadable(folder: Path) -> None:
    path = folder / "no-permission.png"
    _picture(2).save(path)
    path.chmod(0o000)


def _loop(folder: Path) -> None:
    (folder / "loop_a.jpg").symlink_to(folder / "loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to(folder / "loop_a.jpg")


def _folder_named_like_an_image(folder: Path) -> None:
    (folder / "dir.jpg").mkdir()
    _picture(5).save(folder / "dir.jpg" / "in.png")


# generated bad (and awkward but good) inputs: name -> how to make it in a folder
GENERATED = {
    "empty": lambda folder: (folder / "empty.jpg").write_bytes(b""),
    "random bytes": lambda folder: (folder / "random.jpg").write_bytes(np.random.default_rng(0).bytes(4096)),
    "JPEG named .png": lambda folder: _picture(3).save(folder / "jpeg.png", "JPEG"),
    "1x1": lambda folder: Image.new("RGB", (1, 1), (9, 9, 9)).save(folder / "one.png"),
    "1x100000": lambda folder: Image.new("RGB", (1, 100_000), (90, 9, 9)).save(folder / "tall.png"),
    "non-UTF-8 name": _non_utf8_name,
    "255-byte name": lambda folder: _picture(4).save(folder / ("n" * 251 + ".png")),
    "two files linked to each other": _loop,
    "folder link loop": lambda folder: (folder / "back").symlink_to(folder, target_is_directory=True),
    "dangling link": lambda folder: (folder / "dangling.png").symlink_to(folder / "missing.png"),
    "no read permission": _unreadable,
    "folder named like an image": _folder_named_like_an_image,
    "FIFO": lambda folder: os.mkfifo(folder / "pipe.png"),
}


def stress_dataset(cifar: Path, odd_images: Path) -> StressDataset:
    """Every 10th CIFAR file by sorted path, in the three stages."""
    train = sorted(path.relative_to(cifar) for path in (cifar / "train").rglob("*.jpg"))[::10]
    test = sorted(path.relative_to(cifar) for path in (cifar / "test").rglob("*.jpg"))[::10]
    stages = [train[:BASE_TRAIN] + test[:BASE_TEST]]
    for stage in range(len(DROPS)):
        start_train, start_test = BASE_TRAIN + stage * DROP_TRAIN, BASE_TEST + stage * DROP_TEST
        stages.append(train[start_train : start_train + DROP_TRAIN] + test[start_test : start_test + DROP_TEST])
    return StressDataset(cifar, odd_images, tuple(stages))


def _link(cifar: Path, target: Path, files: list[Path]) -> None:
    for relative in files:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).symlink_to((cifar / relative).resolve())


def _plant(cifar: Path, folder: Path, base: list[Path], stage: int) -> None:
    """JPEG quality-50 copies of training images of the first stage (a different slice per stage)."""
    folder.mkdir(parents=True, exist_ok=True)
    training = [path for path in base if path.parts[0] == "train"]
    for index, relative in enumerate(training[stage * PLANTED_PER_STAGE : (stage + 1) * PLANTED_PER_STAGE]):
        with Image.open(cifar / relative) as image:
            transform_named("jpeg q50").apply(image.convert("RGB")).save(folder / f"{stage}-{index:02d}.jpg")


def corpus_inputs(root: Path) -> int:
    """How many inputs the corpus under ``root`` holds: every entry that is not a real folder (files,
    links of any kind, FIFOs), walked without following links. Each must end as an image or a
    recorded error."""
    count, pending = 0, [root / folder for folder in CORPUS_FOLDERS]
    while pending:
        for entry in os.scandir(pending.pop()):
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            else:
                count += 1
    return count
