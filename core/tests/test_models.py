"""The default base model's tokenizer, converted without torch, equals transformers' own GGUF loading."""

from __future__ import annotations

from pathlib import Path

from tunery.models import resolve, tokenizer_source


def test_gguf_tokenizer_matches_transformers(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    spec = resolve("smollm2-135m-instruct")
    assert spec.gguf is not None
    mine = AutoTokenizer.from_pretrained(tokenizer_source(spec, tmp_path))
    assert tokenizer_source(spec, tmp_path) == str(tmp_path / "models/smollm2-135m-instruct/tokenizer")  # cached
    ref = AutoTokenizer.from_pretrained(str(spec.gguf.parent), gguf_file=spec.gguf.name)
    texts = [
        "Hello world 12345 3.14159 and 2026-11-27",
        "  leading spaces\n\ttabs\r\n  trailing  ",
        "émoji 🚀 中文 テスト Привет",
        "<|im_start|>user\nhi<|im_end|>",
        "def f(x):\n    return x ** 2  # comment",
    ]
    for t in texts:
        assert mine(t)["input_ids"] == ref(t)["input_ids"], t
    msgs = [{"role": "user", "content": "hi 42"}, {"role": "assistant", "content": "hello"}]
    assert mine.apply_chat_template(msgs, tokenize=False) == ref.apply_chat_template(msgs, tokenize=False)
    assert (mine.eos_token, mine.bos_token, mine.pad_token) == (ref.eos_token, ref.bos_token, ref.pad_token)
