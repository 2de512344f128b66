from pathlib import Path

from dedup_pipeline.stress.dataset import CORPUS_FOLDERS, GENERATED, corpus_inputs


def test_every_generated_input_is_counted_once_without_following_links(tmp_path: Path) -> None:
    folder = tmp_path / CORPUS_FOLDERS[1] / "files"
    folder.mkdir(parents=True)
    (tmp_path / CORPUS_FOLDERS[0]).mkdir(parents=True)
    for make in GENERATED.values():
        make(folder)
    # two files linked to each other count twice, the folder named like an image counts its file
    assert corpus_inputs(tmp_path) == len(GENERATED) + 1
