import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (official-format writers)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Decoded-array cache in a temporary folder: tests never touch the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LTDD_CACHE", str(tmp_path_factory.mktemp("ltdd-cache")))
    yield
    mp.undo()
