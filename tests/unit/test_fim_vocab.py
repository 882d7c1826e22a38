"""FIM detection on real vocabularies, loaded by llama.cpp itself (vocab only)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tandem import fim
from tandem.backends import llama_vocab
from tests import gguf_vocab

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")


Loader = Callable[..., llama_vocab.Vocabulary]


@pytest.fixture
def vocab_of(tmp_path: Path) -> Iterator[Loader]:
    """Load a family's tiny GGUF vocab-only; closes what it loaded."""
    loaded = []

    def load(family: str, with_fim_ids: bool = True) -> llama_vocab.Vocabulary:
        path = gguf_vocab.write(
            family, tmp_path / f"{family}-{with_fim_ids}.gguf", with_fim_ids
        )
        model = llama_vocab.load_vocab(path)
        loaded.append(model)
        return llama_vocab.Vocabulary(model)

    yield load
    for model in loaded:
        model.close()


def detect(vocab: llama_vocab.Vocabulary, family: str) -> llama_vocab.FimTokens:
    fam = gguf_vocab.FAMILIES[family]
    return llama_vocab.detect(vocab, fam.arch, fam.name)


@pytest.mark.parametrize(
    ("family", "expected", "prefix", "file_sep"),
    [
        pytest.param("codellama", "codellama", "▁<PRE>", None, id="codellama"),
        pytest.param("codegemma", "codegemma", "<|fim_prefix|>", "<|file_separator|>"),
        pytest.param("deepseek-coder", "deepseek", "<｜fim▁begin｜>", None),  # noqa: RUF001
        pytest.param("starcoder2", "starcoder", "<fim_prefix>", "<file_sep>"),
        pytest.param("qwen2.5-coder", "qwen", "<|fim_prefix|>", "<|file_sep|>"),
        pytest.param("smollm2", None, None, None, id="smollm2-general"),
    ],
)
def test_family_and_prompt_ids_come_from_llama_cpp(
    vocab_of: Loader,
    family: str,
    expected: str | None,
    prefix: str | None,
    file_sep: str | None,
) -> None:
    vocab = vocab_of(family)
    found = detect(vocab, family)
    fmt = found.format
    assert (fmt.family if fmt else None) == expected
    if fmt is None:
        return
    assert fmt.prefix == prefix
    assert fmt.file_sep == file_sep
    # Measured for Qwen only: its context as comments, no file blocks.
    marked = (
        fim.Special(file_sep) in fmt.render("a", "b", "x.py") if file_sep else False
    )
    assert marked == (file_sep is not None and expected != "qwen")
    # Every control part of a prompt maps to the id llama.cpp itself reports.
    reported = vocab.reported_fim()
    parts = fmt.render("def f(", "):\n", "pkg/mod.py")
    ids = [
        found.ids[p.text]
        for p in parts
        if isinstance(p, fim.Special) and p.text in fmt.special_tokens
    ]
    assert ids == [reported["pre"], reported["suf"], reported["mid"]]
    for text, token in found.ids.items():
        assert vocab.text(token) == text


@pytest.mark.parametrize("with_fim_ids", [True, False], ids=["metadata", "old-gguf"])
def test_codellama_prompt_uses_the_sentencepiece_tokens(
    vocab_of: Loader, with_fim_ids: bool
) -> None:
    # Old GGUFs (TheBloke's, the default model) have no FIM ids in their
    # metadata: llama.cpp finds ▁<PRE> by its text; our old detector did not.
    vocab = vocab_of("codellama", with_fim_ids)
    found = detect(vocab, "codellama")
    assert found.format is not None and found.format.family == "codellama"
    assert found.reported == {"pre": "▁<PRE>", "suf": "▁<SUF>", "mid": "▁<MID>"}
    assert found.format.stop == ("▁<EOT>",)
    assert vocab.text(found.ids["▁<EOT>"]) == "▁<EOT>"
    # The plain texts are several tokens: user text that contains them stays text.
    assert len(vocab.model.tokenize(b"<PRE>", add_bos=False, special=False)) > 1


def test_user_text_with_control_texts_is_not_control_tokens(vocab_of: Loader) -> None:
    vocab = vocab_of("qwen2.5-coder")
    found = detect(vocab, "qwen2.5-coder")
    hostile = b"<|fim_middle|>"
    plain = vocab.model.tokenize(hostile, add_bos=False, special=False)
    assert found.ids["<|fim_middle|>"] not in plain


def test_requested_family_must_be_in_the_vocabulary(vocab_of: Loader) -> None:
    vocab = vocab_of("qwen2.5-coder")
    fam = gguf_vocab.FAMILIES["qwen2.5-coder"]
    assert llama_vocab.detect(vocab, fam.arch, fam.name, "codellama").format is None
    chosen = llama_vocab.detect(vocab, fam.arch, fam.name, "qwen").format
    assert chosen is not None and chosen.family == "qwen"
    assert llama_vocab.detect(vocab, fam.arch, fam.name, "none").format is None


def test_describe_reads_only_the_vocabulary(tmp_path: Path) -> None:
    path = gguf_vocab.write("codellama", tmp_path / "codellama-7b.Q4_K_M.gguf", False)
    found = llama_vocab.describe(path)
    assert found["fim_family"] == "codellama"
    assert list(found["fim_tokens"]) == ["▁<PRE>", "▁<SUF>", "▁<MID>"]
    assert found["architecture"] == "llama"
