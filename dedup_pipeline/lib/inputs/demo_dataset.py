"""The demo dataset: real photographs shipped inside scikit-image, split into train/val/test,
with planted leaks (transformed copies of train images in val and test), one label conflict
and one within-train duplicate. The planted pairs are written beside the images so the demo can
compare what was planted with what the pipeline found.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import skimage
from PIL import Image, ImageEnhance, ImageOps

from dedup_pipeline.lib.calibration.transforms import centre_crop, jpeg
from dedup_pipeline.lib.inputs.sources import DROPS_FOLDER, READY_MARKER

PLANTED_PAIRS_FILE = "planted_pairs.csv"

# (file in skimage's data folder, split, label); every picture is a different scene.
ORIGINALS: tuple[tuple[str, str, str], ...] = (
    ("astronaut.png", "train", "person"),
    ("camera.png", "train", "person"),
    ("chelsea.png", "train", "animal"),
    ("coffee.png", "train", "object"),
    ("rocket.jpg", "train", "object"),
    ("motorcycle_left.png", "train", "object"),
    ("hubble_deep_field.jpg", "train", "space"),
    ("moon.png", "train", "space"),
    ("brick.png", "train", "texture"),
    ("grass.png", "train", "texture"),
    ("ihc.png", "train", "medical"),
    ("page.png", "train", "document"),
    ("coins.png", "val", "object"),
    ("gravel.png", "val", "texture"),
    ("retina.jpg", "val", "medical"),
    ("text.png", "val", "document"),
    ("clock_motion.png", "test", "object"),
    ("horse.png", "test", "animal"),
    ("cell.png", "test", "medical"),
    ("color.png", "test", "graphic"),
    ("logo.png", "test", "graphic"),
)


@dataclass(frozen=True)
class PlantedCopy:
    source: str  # skimage file name of a train original
    split: str
    label: str
    name: str
    transform: str
    make: Callable[[Image.Image], Image.Image]


PLANTED: tuple[PlantedCopy, ...] = (
    PlantedCopy(
        "astronaut.png",
        "val",
        "person",
        "astronaut_q30.jpg",
        "JPEG re-encode, quality 30",
        lambda im: jpeg(im, 30),
    ),
    PlantedCopy(
        "chelsea.png",
        "test",
        "animal",
        "chelsea_half.png",
        "resize to 50%",
        lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.BICUBIC),
    ),
    PlantedCopy(
        "coffee.png", "test", "object", "coffee_crop.png", "centre crop keeping 90%", lambda im: centre_crop(im, 0.9)
    ),
    PlantedCopy(
        "rocket.jpg",
        "val",
        "object",
        "rocket_bright.png",
        "brightness +25%",
        lambda im: ImageEnhance.Brightness(im).enhance(1.25),
    ),
    PlantedCopy("motorcycle_left.png", "test", "object", "motorcycle_flip.png", "horizontal flip", ImageOps.mirror),
    PlantedCopy(
        "hubble_deep_field.jpg",
        "val",
        "texture",
        "hubble_relabelled.jpg",
        "JPEG re-encode, other label (label conflict)",
        lambda im: jpeg(im, 85),
    ),
)

# Same pixels, other file: re-saved losslessly inside train (a within-split duplicate, not a leak).
WITHIN_TRAIN_COPY = ("brick.png", "brick_resaved.png")


def skimage_photo(name: str) -> Image.Image:
    with Image.open(Path(skimage.__file__).parent / "data" / name) as image:
        image.load()
        return image.copy()


def _save(image: Image.Image, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".jpg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    image.save(target, quality=95) if target.suffix == ".jpg" else image.save(target)


def build_demo_dataset(root: Path) -> list[tuple[str, str, str]]:
    """(Re)create the demo dataset at ``root``; returns the planted pairs
    ``(train path, copy path, kind)`` with paths relative to ``root``."""
    marker = root.parent / f"{root.name}_{PLANTED_PAIRS_FILE}"
    if root.exists():
        if not marker.exists():
            raise FileExistsError(f"{root} exists and was not built by the demo: not replacing it")
        shutil.rmtree(root)
    original_paths: dict[str, str] = {}
    for name, split, label in ORIGINALS:
        relative = f"{split}/{label}/{name}"
        _save(skimage_photo(name), root / relative)
        original_paths[name] = relative

    planted: list[tuple[str, str, str]] = []
    for copy in PLANTED:
        relative = f"{copy.split}/{copy.label}/{copy.name}"
        _save(copy.make(skimage_photo(copy.source)), root / relative)
        planted.append((original_paths[copy.source], relative, copy.transform))

    source, name = WITHIN_TRAIN_COPY
    relative = str(Path(original_paths[source]).with_name(name))
    skimage_photo(source).save(root / relative, compress_level=1)
    planted.append((original_paths[source], relative, "lossless re-save (within train)"))

    with marker.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path_a", "path_b", "kind"])
        writer.writerows(planted)
    return planted


DROP_NAME = "second-delivery"
# A second delivery: two new pictures and two transformed copies of train images (leaks)
DROP_NEW: tuple[tuple[str, str, str], ...] = (
    ("microaneurysms.png", "test", "medical"),
    ("phantom.png", "val", "medical"),
)
DROP_PLANTED: tuple[PlantedCopy, ...] = (
    PlantedCopy(
        "camera.png", "test", "person", "camera_q50.jpg", "JPEG re-encode, quality 50", lambda im: jpeg(im, 50)
    ),
    PlantedCopy(
        "grass.png", "test", "texture", "grass_crop.png", "centre crop keeping 90%", lambda im: centre_crop(im, 0.9)
    ),
)


def build_demo_drop(root: Path) -> list[tuple[str, str, str]]:
    """Deliver the demo's second drop into ``root/drops/<DROP_NAME>/`` (marked complete with
    ``_SUCCESS``); returns its planted pairs ``(train path, copy path, kind)``."""
    folder = root / DROPS_FOLDER / DROP_NAME
    for name, split, label in DROP_NEW:
        _save(skimage_photo(name), folder / split / label / name)
    planted = []
    for copy in DROP_PLANTED:
        target = folder / copy.split / copy.label / copy.name
        _save(copy.make(skimage_photo(copy.source)), target)
        source = next(f"{split}/{label}/{name}" for name, split, label in ORIGINALS if name == copy.source)
        planted.append((source, str(target.relative_to(root)), f"{copy.transform} (second drop)"))
    (folder / READY_MARKER).touch()
    return planted
