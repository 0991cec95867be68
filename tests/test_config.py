"""Settings: declared once, validated, documented from the declaration.

No model, no index: these run in well under a second."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from planqa import config
from planqa.config import PLAN_TEXT_PATH, Settings, settings_table
from planqa.errors import ConfigError

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PLANQA_* from the caller's shell; a known cache home; no warnings remembered."""
    for key in list(os.environ):
        if key.upper().startswith("PLANQA_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(config, "_warned", set())


# ---------------------------------------------------------------- defaults


def test_defaults_unchanged(tmp_path: Path) -> None:
    s = Settings()
    cache = tmp_path / "cache" / "planqa"
    assert s.embedding_model == "intfloat/multilingual-e5-small"
    assert s.cache_dir == cache and s.model_cache_dir == cache / "models"
    assert s.index_dir == Path(__file__).resolve().parent.parent / "index"  # a checkout
    assert s.plan_path == PLAN_TEXT_PATH
    assert (s.threads, s.max_question_chars) == (1, 2000)
    assert (s.llm_base_url, s.llm_model, s.llm_api_key, s.llm_timeout) == ("", "", "", 20.0)
    assert (s.host, s.port, s.root_path) == ("127.0.0.1", 7860, "")
    assert s.feedback_log == cache / "feedback.jsonl"
    assert (s.auth, s.api_token) == ("", "")
    assert s.request_timeout == 30.0
    assert s.prefault_model is True


def test_from_env_without_variables_is_the_defaults() -> None:
    assert Settings.from_env() == Settings()


def test_constructor_does_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANQA_PORT", "8000")
    assert Settings().port == 7860
    assert Settings(threads=2).port == 7860
    assert Settings.from_env().port == 8000


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_empty_values_keep_the_default(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    for name in ("PLANQA_PORT", "PLANQA_PREFAULT_MODEL", "PLANQA_HOST", "PLANQA_CACHE_DIR"):
        monkeypatch.setenv(name, blank)
    assert Settings.from_env() == Settings()


def test_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANQA_THREADS", " 4 ")
    monkeypatch.setenv("PLANQA_REQUEST_TIMEOUT", "2.5")
    monkeypatch.setenv("PLANQA_CACHE_DIR", "~/planqa-cache")
    monkeypatch.setenv("PLANQA_LLM_BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("PLANQA_AUTH", "staff:pa55word")
    s = Settings.from_env()
    assert (s.threads, s.request_timeout) == (4, 2.5)
    assert s.cache_dir == Path.home() / "planqa-cache"
    assert s.llm_base_url == "http://127.0.0.1:8000/v1"
    assert s.auth == "staff:pa55word"


# ---------------------------------------------------------------- booleans


@pytest.mark.parametrize("word", ["true", "True", "TRUE", "1", "on", "On", "yes", "YES", " yes "])
def test_boolean_true(monkeypatch: pytest.MonkeyPatch, word: str) -> None:
    monkeypatch.setenv("PLANQA_PREFAULT_MODEL", word)
    assert Settings.from_env().prefault_model is True


@pytest.mark.parametrize("word", ["false", "False", "FALSE", "0", "off", "OFF", "no", "No"])
def test_boolean_false(monkeypatch: pytest.MonkeyPatch, word: str) -> None:
    # "False" and "off" used to read as true: only "0", "false", "no" were false.
    monkeypatch.setenv("PLANQA_PREFAULT_MODEL", word)
    assert Settings.from_env().prefault_model is False


# ---------------------------------------------------------------- bad values


@pytest.mark.parametrize(("name", "value", "allowed"), [
    ("PLANQA_PORT", "99999", "an integer from 1 to 65535"),
    ("PLANQA_PORT", "0", "an integer from 1 to 65535"),
    ("PLANQA_PORT", "http", "an integer from 1 to 65535"),
    ("PLANQA_THREADS", "0", "an integer from 1 to 64"),
    ("PLANQA_THREADS", "65", "an integer from 1 to 64"),
    ("PLANQA_THREADS", "1.5", "an integer from 1 to 64"),
    ("PLANQA_MAX_QUESTION_CHARS", "0", "an integer of at least 1"),
    ("PLANQA_REQUEST_TIMEOUT", "-5", "a finite number greater than 0"),
    ("PLANQA_REQUEST_TIMEOUT", "0", "a finite number greater than 0"),
    ("PLANQA_LLM_TIMEOUT", "nan", "a finite number greater than 0"),
    ("PLANQA_LLM_TIMEOUT", "inf", "a finite number greater than 0"),
    ("PLANQA_LLM_TIMEOUT", "soon", "a finite number greater than 0"),
    ("PLANQA_PREFAULT_MODEL", "maybe", "one of true/false, 1/0, on/off, yes/no"),
    ("PLANQA_PREFAULT_MODEL", "2", "one of true/false, 1/0, on/off, yes/no"),
    ("PLANQA_LLM_BASE_URL", "localhost:8000", "an http:// or https:// URL"),
])
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                      allowed: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        Settings.from_env()
    message = str(info.value)
    assert message.startswith(f"{name} must be {allowed}"), message
    assert message.endswith(f"got {value!r}"), message


def test_bad_port_message_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANQA_PORT", "99999")
    with pytest.raises(ConfigError, match=re.escape(
            "PLANQA_PORT must be an integer from 1 to 65535, got '99999'")):
        Settings.from_env()


def test_every_bad_variable_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANQA_PORT", "99999")
    monkeypatch.setenv("PLANQA_THREADS", "0")
    with pytest.raises(ConfigError) as info:
        Settings.from_env()
    assert "PLANQA_PORT" in str(info.value) and "PLANQA_THREADS" in str(info.value)


def test_config_error_is_a_value_error_with_status_500(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANQA_THREADS", "0")
    with pytest.raises(ValueError) as info:
        Settings.from_env()
    assert isinstance(info.value, ConfigError) and info.value.http_status == 500


@pytest.mark.parametrize("auth", ["admin", "admin:", ":pa55word"])
def test_bad_secret_is_not_echoed(monkeypatch: pytest.MonkeyPatch, auth: str) -> None:
    monkeypatch.setenv("PLANQA_AUTH", auth)
    with pytest.raises(ConfigError) as info:
        Settings.from_env()
    message = str(info.value)
    assert message.startswith("PLANQA_AUTH must be `user:password`"), message
    assert "admin" not in message and "pa55word" not in message
    # pydantic's error, which does print the input, is not chained into the traceback
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_constructor_and_replace_validate_too() -> None:
    with pytest.raises(ConfigError, match="PLANQA_PORT must be an integer from 1 to 65535"):
        Settings(port=99999)
    with pytest.raises(ConfigError, match="PLANQA_THREADS"):
        Settings().replace(threads=0)


def test_unknown_field_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="threds"):
        Settings(threds=2)
    with pytest.raises(TypeError, match="threds"):
        Settings().replace(threds=2)
    with pytest.raises(TypeError, match="_env_file"):  # no back door to .env files
        Settings(_env_file=".env")


# ---------------------------------------------------------------- unknown variables


def test_unknown_variable_warns_with_the_closest_name(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PLANQA_THREAD", "2")  # the real one is PLANQA_THREADS
    monkeypatch.setenv("PLANQA_PORT", "8000")
    with caplog.at_level(logging.WARNING, logger="planqa.config"):
        s = Settings.from_env()
    assert s.threads == 1 and s.port == 8000  # ignored; the rest still read
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "PLANQA_THREAD " in warnings[0] and "PLANQA_THREADS" in warnings[0]


def test_unknown_variable_warns_once(monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PLANQA_REQUEST_TIMOUT", "5")
    with caplog.at_level(logging.WARNING, logger="planqa.config"):
        Settings.from_env()
        Settings.from_env()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "PLANQA_REQUEST_TIMEOUT" in messages[0]


def test_declared_and_test_variables_do_not_warn(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PLANQA_PORT", "8000")
    monkeypatch.setenv("PLANQA_TEST_STARTUP_TIMEOUT", "10")  # tests/web_fixtures.py's knob
    with caplog.at_level(logging.WARNING, logger="planqa.config"):
        Settings.from_env()
    assert not caplog.records


# ---------------------------------------------------------------- secrets, frozen, copies


def test_repr_hides_secrets() -> None:
    s = Settings(auth="staff:pa55word", api_token="tok-7f3a", llm_api_key="sk-91bd")
    for text in (repr(s), str(s)):
        assert "pa55word" not in text and "tok-7f3a" not in text and "sk-91bd" not in text
        assert "port=7860" in text  # the rest is shown
    assert (s.auth, s.api_token, s.llm_api_key) == ("staff:pa55word", "tok-7f3a", "sk-91bd")
    assert all(type(v) is str for v in (s.auth, s.api_token, s.llm_api_key))


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.port = 8000  # type: ignore[misc]


def test_replace_copies_with_changes() -> None:
    s = Settings(auth="staff:pa55word")
    t = s.replace(port=8000, llm_base_url="http://127.0.0.1:1/v1")
    assert (t.port, t.llm_base_url, t.auth) == (8000, "http://127.0.0.1:1/v1", "staff:pa55word")
    assert s.port == 7860 and t.replace(port=7860, llm_base_url="") == s


# ---------------------------------------------------------------- documentation


def test_every_setting_has_a_one_line_description() -> None:
    for name, info in Settings.model_fields.items():
        assert info.description and "\n" not in info.description, name


def test_readme_table_is_generated_from_the_declaration() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- settings table:[^\n]*-->\n(.*?)\n<!-- end of settings table -->",
                      text, re.S)
    assert match, "README.md lost its settings-table markers"
    assert match.group(1).strip() == settings_table(), (
        "README.md's Configuration table is out of date: regenerate it with "
        "`PYTHONPATH=src python -m planqa.config`")
    assert len(settings_table().splitlines()) == 2 + len(Settings.model_fields)
