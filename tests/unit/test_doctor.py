"""Doctor: the model it recommends for a machine, and its probe of backends."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tandem import doctor
from tandem.config import Settings, build
from tandem.system import memory
from tests.fakes.apis import serving

GIB = 1024**3


@pytest.mark.parametrize(
    ("cpus", "ram_gb", "gpu", "vram_gb", "size"),
    [
        (2, 22, False, None, "1.5B"),  # this dev machine: RAM for 14B, cores for 1.5B
        (16, 64, False, None, "7B"),
        (8, 6, False, None, "3B"),
        (4, 1.5, False, None, "0.5B"),
        (8, 32, True, 24, "14B"),  # a 24 GB GPU
        (8, 32, True, 80, "32B"),
        (8, 32, False, 80, "3B"),  # a GPU the build cannot use does not count
    ],
)
def test_recommendation_fits_memory_and_speed(
    cpus: int, ram_gb: float, gpu: bool, vram_gb: float | None, size: str
) -> None:
    vram = (
        {"total": int(vram_gb * GIB), "free": int(vram_gb * GIB)} if vram_gb else None
    )
    found = doctor.recommend(cpus, int(ram_gb * GIB), gpu, vram)
    assert found["size"] == size, found["why"]
    assert found["file"].endswith(".gguf") and size.lower() in found["file"]


def settings(data: dict[str, Any]) -> Settings:
    found, errors = build(data)
    assert not errors
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_probes_configured_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-doctor-key")
    # The stand-in answers at once; a busy machine must not make it "no answer".
    monkeypatch.setattr(doctor, "PROBE_TIMEOUT_S", 60.0)
    with serving() as api:
        found = doctor.report(
            settings(
                {
                    "routing": {
                        "completion": ["ollama", "local"],
                        "escalateTo": "anthropic",
                        "allowEscalation": True,
                    },
                    "ollama": {"host": api.url, "model": "qwen2.5-coder:1.5b"},
                    "anthropic": {"baseUrl": api.url},
                    "openai": {"baseUrl": f"http://127.0.0.1:{free_port()}/v1"},
                }
            )
        )
    backends = found["backends"]
    assert set(backends) == {"ollama", "anthropic"}  # openai: in no chain
    assert backends["ollama"].startswith("answers; run `ollama pull qwen2.5-coder")
    assert backends["anthropic"] == "answers; the key is accepted"
    text = doctor.text(found)
    assert "backend ollama: answers" in text
    assert "sk-ant-test-doctor-key" not in text and "sk-ant" not in str(found)


def test_a_backend_that_is_down_is_reported() -> None:
    found = doctor.report(
        settings(
            {
                "routing": {"explain": ["ollama"]},
                "ollama": {"host": f"http://127.0.0.1:{free_port()}"},
            }
        )
    )
    assert found["backends"]["ollama"].startswith("FAILED: ")
    assert "not running" in found["backends"]["ollama"]


def test_offline_probes_nothing() -> None:
    found = doctor.report(
        settings({"offline": True, "routing": {"explain": ["ollama"]}})
    )
    assert found["backends"] == "not checked: offline"
    assert "backends: not checked: offline" in doctor.text(found)


def test_model_too_big_for_ram_gets_its_fim_family_from_the_vocabulary(
    tmp_path: Path,
) -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    from tests import gguf_vocab

    # CodeLlama's vocabulary in a file as big as a 70B model (sparse: no disk).
    path = gguf_vocab.write("codellama", tmp_path / "codellama-70b.Q4_K_M.gguf", False)
    with path.open("r+b") as f:
        f.truncate(max(200 * GIB, 2 * (memory()["total"] or 0)))
    found = doctor.report(settings({"offline": True}), probe=False, model=path)
    model = found["model"]
    assert model["source"] == "argument" and model["found"] is True
    assert model["fits_in_ram"] is False
    assert model["fim"]["fim_family"] == "codellama"
    assert list(model["fim"]["fim_tokens"]) == ["▁<PRE>", "▁<SUF>", "▁<MID>"]
    assert found["recommended"]["size"]
    text = doctor.text(found)
    assert "TOO BIG FOR RAM" in text and "FIM: codellama (▁<PRE> ▁<SUF> ▁<MID>" in text
