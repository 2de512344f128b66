from pathlib import Path

import pytest

from dedup_pipeline.lib.features.onnx_models import CACHE_VARIABLE, exported_model, model_cache


def test_a_model_is_exported_once_per_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path))
    exports = []

    def export(path: Path) -> None:
        exports.append(path)
        path.write_bytes(b"graph")

    first = exported_model("net", {"weights": "a"}, export)
    assert exported_model("net", {"weights": "a"}, export) == first and len(exports) == 1
    assert first.parent == model_cache() == tmp_path and first.read_bytes() == b"graph"
    second = exported_model("net", {"weights": "b"}, export)
    assert second != first and len(exports) == 2
    assert sorted(tmp_path.iterdir()) == sorted([first, second])  # no temporary file left


def test_a_failed_export_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path))

    def export(path: Path) -> None:
        path.write_bytes(b"half a graph")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError, match="exporter crashed"):
        exported_model("net", {"weights": "a"}, export)
    assert list(tmp_path.iterdir()) == []


def test_an_unusable_cache_folder_falls_back_to_the_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    monkeypatch.setenv(CACHE_VARIABLE, str(blocker / "models"))  # below a file: cannot be created
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with pytest.warns(UserWarning, match="cannot use"):
        path = exported_model("net", {"weights": "a"}, lambda target: target.write_bytes(b"graph"))
    assert path.parent == tmp_path / "tmp" / "dedup-pipeline-models" and path.read_bytes() == b"graph"
