"""The README's "Python API" section runs as written (from a fresh folder, on procedural data)."""

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    """The ```python blocks of the README section "## Python API", in order."""
    text = README.read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    import ltdd

    torch.set_num_threads(1)
    blocks = python_blocks()
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    finally:
        for registry, name in ((ltdd.DATASETS, "rows"), (ltdd.MODELS, "tiny-mlp")):
            if name in registry:
                registry.unregister(name)
    out = capsys.readouterr().out
    print(out)  # shown with -s: the output quoted in the closing note
    assert "train counts: [600, 464, 359, 278, 215, 166, 129, 100, 77, 60]" in out
    assert "run directory: runs/api-demo" in out
    for method in ("random", "ltdd"):
        assert re.search(rf"^ *{method}: \d+\.\d ± \d+\.\d % balanced accuracy$", out, re.M)
    assert "20 images (1, 28, 28) learned lr" in out
    assert "rows: [40, 20, 10]" in out
    exported = tmp_path / "runs" / "api-demo" / "export"
    assert len(list(exported.glob("train/*/*.png"))) == 20
    assert (exported / "labels.json").is_file() and (exported / "labels.csv").is_file()
