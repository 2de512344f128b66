import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dedup_pipeline.lib.decisions.overrides import (
    ADDED,
    AGREED,
    CONFIRMED,
    REMOVED,
    STORED_SCHEMA,
    OverridesError,
    apply_marks,
    effect_counts,
    merged_marks,
    read_marks,
    verdict_of,
)

WHEN = datetime.datetime(2026, 11, 30, 12, 0)


def write(folder: Path, text: str, name: str = "marks.csv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_verdicts_are_read_whatever_their_spelling() -> None:
    assert verdict_of(" Not_Duplicate ") == verdict_of("not-duplicate") == "not duplicate"
    assert verdict_of("DUPLICATE") == "duplicate"
    assert verdict_of("clear") == "clear"
    assert verdict_of("maybe") is None and verdict_of("") is None


def test_marks_are_read_with_pairs_ordered_and_the_last_row_winning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\ufeffpath_a,path_b,verdict,note\n"  # a spreadsheet's byte order mark
        'b/2.jpg,a/1.jpg,duplicate,\n"x, ""quoted"".jpg",a/1.jpg,not duplicate,looks alike but is not\n'
        "a/1.jpg,b/2.jpg,not_duplicate,changed my mind\n",
    )
    marks = read_marks(path, WHEN)
    assert marks.schema == pl.Schema({name: dtype for name, dtype in STORED_SCHEMA.items() if name != "effect"})
    assert sorted(marks.select("path_a", "path_b", "verdict", "note").rows()) == [
        ("a/1.jpg", "b/2.jpg", "not duplicate", "changed my mind"),
        ("a/1.jpg", 'x, "quoted".jpg', "not duplicate", "looks alike but is not"),
    ]
    assert set(marks["source"]) == {str(path)} and set(marks["marked_at"]) == {WHEN}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path_a,path_b\na,b\n", "missing verdict"),
        (
            "path_a,path_b,verdict\na,b,perhaps\n",
            "line 2: verdict 'perhaps' is not one of duplicate, not duplicate, clear",
        ),
        ("path_a,path_b,verdict\na,,duplicate\n", "line 2: path_a and path_b must both be given"),
        ("path_a,path_b,verdict\na,a,duplicate\n", "line 2: an image cannot be its own duplicate"),
    ],
)
def test_bad_marks_files_name_every_bad_row(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(OverridesError, match=message):
        read_marks(write(tmp_path, text))


def test_a_marks_file_that_cannot_be_read_says_so(tmp_path: Path) -> None:
    with pytest.raises(OverridesError, match="cannot read the marks"):
        read_marks(tmp_path / "absent.csv")
    (tmp_path / "latin1.csv").write_bytes(b"path_a,path_b,verdict\n\xe9,b,duplicate\n")
    with pytest.raises(OverridesError, match="cannot read the marks"):
        read_marks(tmp_path / "latin1.csv")


def test_many_bad_rows_are_counted_not_all_listed(tmp_path: Path) -> None:
    rows = "".join(f"a{index},b{index},bad\n" for index in range(25))
    with pytest.raises(OverridesError, match="25 bad rows: .*and 15 more"):
        read_marks(write(tmp_path, "path_a,path_b,verdict\n" + rows))


def test_new_marks_replace_stored_ones_and_clear_forgets_them(tmp_path: Path) -> None:
    stored = read_marks(write(tmp_path, "path_a,path_b,verdict\na,b,duplicate\nc,d,not duplicate\ne,f,duplicate\n"))
    incoming = read_marks(
        write(tmp_path, "path_a,path_b,verdict\nb,a,not duplicate\nf,e,clear\ng,h,duplicate\n", "new.csv"), WHEN
    )
    merged = merged_marks(stored, incoming)
    assert merged.select("path_a", "path_b", "verdict").rows() == [
        ("a", "b", "not duplicate"),
        ("c", "d", "not duplicate"),
        ("g", "h", "duplicate"),
    ]
    assert merged.filter(pl.col("path_a") == "c")["source"].item().endswith("marks.csv")
    # the same file read again (a configured overrides_file): its marks keep their first time
    later = read_marks(tmp_path / "new.csv", WHEN + datetime.timedelta(days=1))
    again = merged_marks(merged, later)
    assert again.equals(merged)
    changed = read_marks(write(tmp_path, "path_a,path_b,verdict\ng,h,not duplicate\n", "changed.csv"))
    assert merged_marks(merged, changed).filter(pl.col("path_a") == "g")["verdict"].item() == "not duplicate"


def manifest(paths: list[str]) -> pl.DataFrame:
    """Live images in path order with ids that do not follow it."""
    ordered = sorted(paths)
    return pl.DataFrame({"image_id": [100 - index for index in range(len(ordered))], "path": ordered})


def marks_of(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(a, b, verdict, None, "marks.csv", WHEN) for a, b, verdict in rows],
        schema={name: dtype for name, dtype in STORED_SCHEMA.items() if name != "effect"},
        orient="row",
    )


def test_marks_remove_confirm_and_add_pairs_and_say_what_they_did() -> None:
    images = manifest(["a", "b", "c", "d", "e"])  # ids a=100, b=99, c=98, d=97, e=96
    machine = pl.DataFrame(
        {"image_id_a": [100, 99], "image_id_b": [99, 98], "hamming": [1, 2], "evidence": ["phash", "phash,verified"]}
    )
    measured: list[np.ndarray] = []

    def measure(positions: np.ndarray) -> pl.DataFrame:
        measured.append(positions)
        return pl.DataFrame(
            {"image_id_a": positions[:, 0], "image_id_b": positions[:, 1], "hamming": [30] * len(positions)}
        )

    marks = marks_of(
        [
            ("a", "b", "not duplicate"),
            ("b", "c", "duplicate"),
            ("a", "e", "duplicate"),  # e sorts after a: a is image a
            ("c", "d", "duplicate"),
            ("a", "c", "not duplicate"),
            ("a", "gone", "duplicate"),
            ("gone", "lost", "duplicate"),
        ]
    )
    pairs, applied = apply_marks(machine, marks, images, measure)
    assert pairs.select("image_id_a", "image_id_b", "hamming", "evidence").rows() == [
        (100, 96, 30, "override"),  # in path order: a-e, b-c, c-d
        (99, 98, 2, "phash,verified,override"),
        (98, 97, 30, "override"),
    ]
    assert pairs["found_by"].to_list() == ["override", None, "override"]
    assert [positions.tolist() for positions in measured] == [[[0, 4], [2, 3]]]
    effects = dict(((a, b), effect) for a, b, effect in applied.select("path_a", "path_b", "effect").rows())
    assert effects == {
        ("a", "b"): REMOVED,
        ("b", "c"): CONFIRMED,
        ("a", "e"): ADDED,
        ("c", "d"): ADDED,
        ("a", "c"): AGREED,
        ("a", "gone"): "inactive: path_b is not among the live images",
        ("gone", "lost"): "inactive: both images are not among the live images",
    }
    assert applied.schema == pl.Schema(STORED_SCHEMA)
    assert effect_counts(applied["effect"]) == {REMOVED: 1, CONFIRMED: 1, ADDED: 2, AGREED: 1, "inactive": 2}


def test_a_mark_names_the_pair_in_either_order() -> None:
    images = manifest(["a", "b"])
    machine = pl.DataFrame({"image_id_a": [100], "image_id_b": [99], "evidence": ["phash"]})
    pairs, applied = apply_marks(machine, marks_of([("b", "a", "not duplicate")]), images, lambda _: pl.DataFrame())
    assert pairs.height == 0 and applied["effect"].to_list() == [REMOVED]


def test_no_marks_leave_the_pairs_as_they_are() -> None:
    machine = pl.DataFrame({"image_id_a": [100], "image_id_b": [99], "evidence": ["phash"]})
    pairs, applied = apply_marks(machine, marks_of([]), manifest(["a", "b"]), lambda _: pl.DataFrame())
    assert pairs.equals(machine) and applied.height == 0
