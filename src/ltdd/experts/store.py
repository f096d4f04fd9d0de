"""The trajectory store: one safetensors file per expert plus `manifest.json`.

`expert_0007.safetensors` holds one flat (P,) tensor per kept epoch (`epoch_0000`, ...) in the
storage dtype, and `final` (float32) unless the last epoch is already kept in float32. Its
metadata (key `ltdd`) records the expert's index, seed, config hash and final test metrics.
`manifest.json` (written atomically, last) records the kind, resolved config, config hash, data
fingerprint, parameter layout, kept epochs, dtype and, per expert, file, sha256, seed, metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from ltdd.errors import UserError
from ltdd.hashcache import remembered_sha256
from ltdd.io import read_json, save_tensors, sha256_file, write_json
from ltdd.models.functional import ParamLayout

MANIFEST = "manifest.json"
FORMAT = "ltdd-experts/1"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SAFETENSORS_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


def expert_filename(index: int) -> str:
    return f"expert_{index:04d}.safetensors"


def epoch_key(epoch: int) -> str:
    return f"epoch_{epoch:04d}"


def _corrupt(path: Path, reason: str) -> UserError:
    return UserError(
        f"{path}: trajectory file is corrupt or truncated ({reason}); "
        "delete it and run `ltdd experts` again to retrain that expert"
    )


def write_expert(
    path: Path, snapshots: dict[int, Tensor], final: Tensor, num_epochs: int, dtype: str, meta: dict
) -> None:
    """Write one expert's kept snapshots (as copies in `dtype`) and its final weights atomically."""
    tensors = {epoch_key(e): s.detach().to(DTYPES[dtype]).clone() for e, s in snapshots.items()}
    if dtype != "float32" or num_epochs not in snapshots:
        tensors["final"] = final.detach().float().clone()
    save_tensors(path, tensors, meta)


def read_expert_meta(path: Path) -> dict:
    """The `ltdd` metadata of an expert file (reads only the header)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return json.loads((handle.metadata() or {}).get("ltdd", "{}"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _corrupt(path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def write_manifest(directory: Path, header: dict, num_experts: int) -> None:
    """Collect every expert file's metadata and sha256 into `manifest.json` (atomic)."""
    experts = []
    for index in range(num_experts):
        path = directory / expert_filename(index)
        meta = read_expert_meta(path)
        experts.append(
            {
                "index": index,
                "file": path.name,
                "sha256": remembered_sha256(path),  # also remembers it: no re-hash on open
                "seed": meta["seed"],
                "metrics": meta["metrics"],
            }
        )
    write_json(directory / MANIFEST, {"format": FORMAT, **header, "experts": experts})


class TrajectoryStore:
    """Read access to a store written by `train_experts`; reads one tensor at a time."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        if not path.is_file():
            raise UserError(
                f"{self.directory}: no {MANIFEST}; not an expert store (train one with "
                "`ltdd experts`, or finish an interrupted run by starting it again)"
            )
        self.manifest = read_json(path)
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            raise UserError(f"{path}: not an ltdd expert manifest (expected format {FORMAT})")
        problem = _manifest_problem(self.manifest)
        if problem:
            raise UserError(f"{path}: damaged expert manifest ({problem}); train the store again")

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def config_hash(self) -> str:
        return self.manifest["config_hash"]

    @property
    def num_experts(self) -> int:
        return len(self.manifest["experts"])

    @property
    def epochs(self) -> list[int]:
        return list(self.manifest["epochs"])

    @property
    def num_epochs(self) -> int:
        return self.manifest["num_epochs"]

    @property
    def num_params(self) -> int:
        return self.manifest["num_params"]

    @property
    def layout(self) -> ParamLayout:
        return ParamLayout(self.manifest["layout"]["names"], self.manifest["layout"]["shapes"])

    def path(self, expert: int) -> Path:
        if not 0 <= expert < self.num_experts:
            raise UserError(
                f"{self.directory}: no expert {expert}; "
                f"the store has experts 0..{self.num_experts - 1}"
            )
        return self.directory / self.manifest["experts"][expert]["file"]

    def _read(self, expert: int, key: str) -> Tensor:
        path = self.path(expert)
        try:
            with safe_open(str(path), framework="pt") as handle:
                tensor = handle.get_tensor(key)
        except (SafetensorError, OSError, ValueError) as exc:
            raise _corrupt(
                path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            ) from None
        if tensor.shape != (self.num_params,):
            raise _corrupt(
                path, f"{key} has shape {tuple(tensor.shape)}, want ({self.num_params},)"
            )
        return tensor.float()

    def snapshot(self, expert: int, epoch: int) -> Tensor:
        """Expert `expert`'s flat float32 (P,) parameters after `epoch` epochs (0 = init)."""
        if epoch not in self.manifest["epochs"]:
            raise UserError(
                f"{self.directory}: epoch {epoch} is not stored; kept epochs: "
                f"{_ranges(self.epochs)} (retrain with save_epochs covering it)"
            )
        return self._read(expert, epoch_key(epoch))

    def final(self, expert: int) -> Tensor:
        """Expert `expert`'s final float32 (P,) parameters."""
        keep_last = self.manifest["dtype"] == "float32" and self.num_epochs in self.epochs
        return self._read(expert, epoch_key(self.num_epochs) if keep_last else "final")

    def verify(self) -> None:
        """Check every expert file's sha256 (hashing it in full) and tensor shapes."""
        for entry in self.manifest["experts"]:
            path = self.directory / entry["file"]
            if not path.is_file():
                raise UserError(f"{path}: missing; run `ltdd experts` again to retrain it")
            if sha256_file(path) != entry["sha256"]:
                raise _corrupt(path, "sha256 differs from manifest.json")
        self.verify_headers()

    def verify_headers(self) -> None:
        """Check that every expert file's header lists each kept epoch in the right shape/dtype."""
        want = _SAFETENSORS_DTYPES[self.manifest["dtype"]]
        for entry in self.manifest["experts"]:
            path = self.directory / entry["file"]
            header = _header(path)
            for epoch in self.epochs:
                info = header.get(epoch_key(epoch)) if isinstance(header, dict) else None
                if not isinstance(info, dict) or (info.get("shape"), info.get("dtype")) != (
                    [self.num_params],
                    want,
                ):
                    raise _corrupt(path, f"{epoch_key(epoch)} missing or of wrong shape/dtype")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _manifest_problem(m: dict) -> str | None:
    """What is structurally wrong with a manifest (types and shapes of its fields), or None."""
    checks = {
        "kind": lambda v: isinstance(v, str),
        "config_hash": lambda v: isinstance(v, str),
        "data_fingerprint": lambda v: isinstance(v, str),
        "num_params": lambda v: _is_int(v) and v > 0,
        "num_epochs": lambda v: _is_int(v) and v >= 0,
        "dtype": lambda v: v in DTYPES,
        "epochs": lambda v: isinstance(v, list) and all(_is_int(e) and e >= 0 for e in v),
        "layout": lambda v: (
            isinstance(v, dict)
            and isinstance(v.get("names"), list)
            and isinstance(v.get("shapes"), list)
            and len(v["names"]) == len(v["shapes"])
            and all(isinstance(n, str) for n in v["names"])
            and all(
                isinstance(s, list) and all(_is_int(d) and d >= 0 for d in s) for s in v["shapes"]
            )
        ),
        "experts": lambda v: (
            isinstance(v, list)
            and all(
                isinstance(e, dict)
                and isinstance(e.get("file"), str)
                and e["file"] == Path(e["file"]).name
                and e["file"] not in ("", ".", "..")
                and isinstance(e.get("sha256"), str)
                and isinstance(e.get("metrics", {}), dict)
                for e in v
            )
        ),
    }
    for key, ok in checks.items():
        if key not in m:
            return f"no {key!r}"
        if not ok(m[key]):
            return f"{key!r} has the wrong type or shape"
    return None


def _header(path: Path) -> dict:
    """The safetensors JSON header of `path` (tensor name -> dtype, shape, offsets)."""
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if size <= 0 or size > path.stat().st_size - 8:
                raise ValueError("header length beyond the end of the file")
            return json.loads(fh.read(size))
    except (OSError, ValueError) as exc:
        raise _corrupt(path, str(exc)) from None


def _ranges(epochs: list[int]) -> str:
    """'0-5, 10' style summary of a sorted list of epochs."""
    parts, start = [], None
    for i, e in enumerate(epochs):
        if start is None:
            start = e
        if i + 1 == len(epochs) or epochs[i + 1] != e + 1:
            parts.append(str(start) if start == e else f"{start}-{e}")
            start = None
    return ", ".join(parts)
