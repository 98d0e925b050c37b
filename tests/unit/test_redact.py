"""Secret redaction: by key name, by the values of secret-named env vars, by token shape."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from ocrft.redact import (
    REDACTED,
    is_secret_key,
    redact,
    redact_overrides,
    redacted_yaml,
    scrub_text,
    secret_values,
)
from tests.helpers import compose

PLANTED = "plantedValue-7f3a9c1e"


@pytest.mark.parametrize("key", ["api_key", "OPENAI_API_KEY", "HF_TOKEN", "DB_PASSWORD", "aws_secret", "credentials"])
def test_secret_names(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["api_key_env", "HF_TOKEN_PATH", "max_new_tokens", "bleu_tokenize", "learning_rate"])
def test_not_secret_names(key):
    assert not is_secret_key(key)


def test_secret_values_come_from_secret_named_env_vars_longest_first():
    env = {
        "OPENAI_API_KEY": "sk-short-but-long-enough",
        "MY_SERVICE_TOKEN": "tok12345",
        "DB_PASSWORD": "hunter2hunter2",
        "TOKENIZERS_PARALLELISM": "false",  # secret-looking name, value too short to scrub
        "HF_TOKEN_PATH": "/root/.cache/huggingface/token",  # names a file, not a secret
        "HOME": "/root/home/not/secret",
    }
    assert secret_values(env) == ["sk-short-but-long-enough", "hunter2hunter2", "tok12345"]


def test_scrub_text_replaces_env_secret_values(monkeypatch):
    monkeypatch.setenv("OCRFT_TEST_API_KEY", PLANTED)
    assert scrub_text(f"401 for key {PLANTED}!") == f"401 for key {REDACTED}!"
    assert scrub_text("nothing to hide") == "nothing to hide"


def test_scrub_text_replaces_url_passwords_and_token_shapes():
    assert scrub_text("postgresql://ocr:pa55word@db:5432/optuna") == f"postgresql://ocr:{REDACTED}@db:5432/optuna"
    assert scrub_text("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    token = "sk-proj-" + "A1b2" * 8
    assert scrub_text(f"key={token} hf_{'x' * 34}") == f"key={REDACTED} {REDACTED}"
    assert scrub_text("Authorization: Bearer abcdefghijklmnop1234") == f"Authorization: Bearer {REDACTED}"
    # OCR text that merely contains the letters is left alone
    assert scrub_text("sk-8 ask-me hf_ab") == "sk-8 ask-me hf_ab"


def test_redact_by_key_and_by_value(monkeypatch):
    monkeypatch.setenv("OCRFT_TEST_API_KEY", PLANTED)
    model = {"api_key": "abc", "api_key_env": "OPENAI_API_KEY", "base_url": f"http://x/?k={PLANTED}"}
    out = redact({"model": model, "tags": [f"a-{PLANTED}", 3], "empty_token": None})
    assert out["model"] == {"api_key": REDACTED, "api_key_env": "OPENAI_API_KEY", "base_url": f"http://x/?k={REDACTED}"}
    assert out["tags"] == [f"a-{REDACTED}", 3]
    assert out["empty_token"] is None


def test_redact_overrides(monkeypatch):
    monkeypatch.setenv("OCRFT_TEST_API_KEY", PLANTED)
    overrides = ["+model.api_key=XYZ", "++serve.auth_token=abc", "train.learning_rate=1e-4",
                 f"data.path=/d/{PLANTED}.json", "model.api_key_env=OPENAI_API_KEY", "~model.api_key"]
    assert redact_overrides(overrides) == [
        f"+model.api_key={REDACTED}", f"++serve.auth_token={REDACTED}", "train.learning_rate=1e-4",
        f"data.path=/d/{REDACTED}.json", "model.api_key_env=OPENAI_API_KEY", "~model.api_key"]


def test_redacted_yaml_of_a_composed_config(monkeypatch):
    monkeypatch.setenv("OCRFT_TEST_API_KEY", PLANTED)
    cfg = compose(["+model.api_key=XYZSECRET", f"data.path=/data/{PLANTED}/ocr.json"])
    text = redacted_yaml(cfg)
    assert "XYZSECRET" not in text and PLANTED not in text
    parsed = OmegaConf.create(text)
    assert parsed.model.api_key == REDACTED and parsed.data.path == f"/data/{REDACTED}/ocr.json"
