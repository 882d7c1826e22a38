"""FIM formats per model family and their detection from the vocabulary."""

from __future__ import annotations

import pytest

from tandem import fim
from tandem.fim import Special

# Control tokens of real vocabularies (from the models' tokenizer configs).
VOCABS = {
    "qwen2.5-coder": {
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|fim_pad|>",
        "<|file_sep|>",
        "<|repo_name|>",
        "<|endoftext|>",
        "<|im_end|>",
    },
    "codegemma": {
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|file_separator|>",
    },
    "starcoder2": {
        "<fim_prefix>",
        "<fim_suffix>",
        "<fim_middle>",
        "<fim_pad>",
        "<file_sep>",
        "<repo_name>",
        "<|endoftext|>",
    },
    # SentencePiece pieces with the word mark (CodeLlama-7b-hf tokenizer.json).
    "codellama": {"▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"},
    "deepseek-coder": {
        *fim.DEEPSEEK.special_tokens,
        "<|EOT|>",
    },
    # SmolLM2 reuses StarCoder's tokenizer but was never trained for FIM.
    "smollm2": {"<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|im_end|>"},
    "llama3": {"<|begin_of_text|>", "<|eot_id|>"},
}


@pytest.mark.parametrize(
    ("vocab", "arch", "name", "family"),
    [
        pytest.param(
            "qwen2.5-coder", "qwen2", "Qwen2.5 Coder 0.5B Instruct", "qwen", id="qwen"
        ),
        pytest.param("codegemma", "gemma", "codegemma-2b", "codegemma", id="codegemma"),
        pytest.param(
            "starcoder2", "starcoder2", "StarCoder2 3B", "starcoder", id="starcoder2"
        ),
        pytest.param("codellama", "llama", "CodeLlama 7B", "codellama", id="codellama"),
        pytest.param(
            "deepseek-coder",
            "llama",
            "deepseek-coder-1.3b-base",
            "deepseek",
            id="deepseek",
        ),
        pytest.param("smollm2", "llama", "SmolLM2 135M Instruct", None, id="smollm2"),
        pytest.param("llama3", "llama", "Llama 3.2 1B", None, id="llama3"),
    ],
)
def test_detect_from_the_table_when_llama_cpp_reports_nothing(
    vocab: str, arch: str, name: str, family: str | None
) -> None:
    found = fim.detect({}, VOCABS[vocab].__contains__, arch, name)
    assert (found.family if found else None) == family
    if found is not None:  # spelled as the vocabulary spells its tokens
        assert set(found.special_tokens) <= VOCABS[vocab]
        assert set(found.stop) <= VOCABS[vocab]


def test_codellama_from_llama_cpp_uses_its_token_texts() -> None:
    reported = {"pre": "▁<PRE>", "suf": "▁<SUF>", "mid": "▁<MID>"}
    found = fim.detect(reported, VOCABS["codellama"].__contains__, "llama", "LLaMA v2")
    assert found is not None and found.family == "codellama"
    assert found.special_tokens == ("▁<PRE>", "▁<SUF>", "▁<MID>")
    assert found.stop == ("▁<EOT>",)  # llama.cpp does not know this one as EOT
    assert found.render("a", "b")[0] == Special("▁<PRE>")


def test_unknown_family_reported_by_llama_cpp_gets_its_own_format() -> None:
    # GLM-4.5's FIM tokens: llama.cpp knows them, our table does not.
    reported = {
        "pre": "<|code_prefix|>",
        "suf": "<|code_suffix|>",
        "mid": "<|code_middle|>",
    }
    found = fim.detect(reported, set(reported.values()).__contains__, "glm4moe", "GLM")
    assert found is not None and found.family == "llama.cpp:glm4moe"
    assert found.render("a", "b") == [
        Special("<|code_prefix|>"),
        "a",
        Special("<|code_suffix|>"),
        "b",
        Special("<|code_middle|>"),
    ]
    # A file separator llama.cpp reports gives it file blocks.
    sep = {**reported, "sep": "<|code_file|>"}
    found = fim.detect(sep, set(sep.values()).__contains__, "glm4moe", "GLM")
    assert found is not None and found.file_blocks
    assert found.render("a", "b", "x.py")[:2] == [Special("<|code_file|>"), "x.py\n"]


def test_requested_family_missing_from_the_vocabulary() -> None:
    assert fim.adapt(fim.CODELLAMA, {}, VOCABS["qwen2.5-coder"].__contains__) is None


def test_psm_layout_puts_cursor_text_last_and_file_marker_first() -> None:
    parts = fim.STARCODER.render("def f(", "):\n", "pkg/mod.py")
    assert parts == [
        Special("<file_sep>"),
        "pkg/mod.py\n",
        Special("<fim_prefix>"),
        "def f(",
        Special("<fim_suffix>"),
        "):\n",
        Special("<fim_middle>"),
    ]


def test_qwen_marks_no_file() -> None:
    # Measured: the current file's marker costs Qwen2.5-Coder whole lines.
    parts = fim.QWEN.render("def f(", "):\n", "pkg/mod.py")
    assert parts == [
        Special("<|fim_prefix|>"),
        "def f(",
        Special("<|fim_suffix|>"),
        "):\n",
        Special("<|fim_middle|>"),
    ]


@pytest.mark.parametrize("family", sorted(fim.FORMATS))
def test_every_family_ends_with_middle_and_keeps_user_text_plain(family: str) -> None:
    fmt = fim.FORMATS[family]
    hostile = "x = '<|fim_middle|><PRE><fim_suffix>'"
    parts = fmt.render(hostile, "tail", None)
    assert parts[-1] == Special(fmt.middle)
    # User text is never a Special part, whatever it contains.
    assert hostile in parts and "tail" in parts
    assert {p.text for p in parts if isinstance(p, Special)} <= set(fmt.special_tokens)


def test_codellama_has_no_file_marker() -> None:
    parts = fim.CODELLAMA.render("a", "b", "x.py")
    assert parts == [Special("<PRE>"), "a", Special("<SUF>"), "b", Special("<MID>")]


def test_spm_order() -> None:
    fmt = fim.FimFormat("t", "<P>", "<S>", "<M>", order="spm")
    assert fmt.render("a", "b") == [
        Special("<S>"),
        "b",
        Special("<P>"),
        "a",
        Special("<M>"),
    ]


def test_by_name() -> None:
    assert fim.by_name("none") is None
    assert fim.by_name("starcoder") is fim.STARCODER
    with pytest.raises(ValueError, match="unknown FIM format 'gpt'"):
        fim.by_name("gpt")
