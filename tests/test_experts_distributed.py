"""`torchrun --nproc_per_node 2` on CPU (gloo) writes the same store as one process."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from ltdd.io import sha256_file

SCRIPT = Path(__file__).with_name("experts_support.py")
ARGS = ["num_experts=3", "vectorize=1", "epochs=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_equal_one_process(tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    subprocess.run([sys.executable, str(SCRIPT), str(single), *ARGS], check=True, env=ENV)
    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            str(SCRIPT),
            str(double),
            *ARGS,
        ],
        check=True,
        env=ENV,
        timeout=120,
    )
    names = sorted(p.name for p in single.iterdir())
    assert names == [
        "expert_0000.safetensors",
        "expert_0001.safetensors",
        "expert_0002.safetensors",
        "manifest.json",
    ]
    assert sorted(p.name for p in double.iterdir()) == names
    for name in names:
        assert sha256_file(double / name) == sha256_file(single / name), name
