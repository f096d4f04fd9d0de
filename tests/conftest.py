import os
import sys
from pathlib import Path

import pytest
import torch

from ltdd.allocator import keep_freed_memory

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (official-format writers)
keep_freed_memory()  # as the `ltdd` command does: no page faults on re-allocated tensors
if "PYTEST_XDIST_WORKER" in os.environ:
    # one worker per core (make test): each worker and the commands it starts use one thread,
    # since two workers of two threads each on two cores spend their time waiting for each other
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Decoded-array cache in a temporary folder: tests never touch the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LTDD_CACHE", str(tmp_path_factory.mktemp("ltdd-cache")))
    yield
    mp.undo()
