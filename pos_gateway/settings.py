"""Configuration: one frozen Settings, read from the POS_* environment variables declared
once in VARIABLES (type, default, help); the commands' --help is generated from it."""

from __future__ import annotations

import json
import os
import secrets
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pos_gateway.security.pins import Argon2Params
from pos_gateway.security.strength import admin_token_problem, key_problem

SECRETS_FILE = "secrets.json"


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class Secrets:
    master_key: bytes = field(repr=False)
    pin_pepper: bytes = field(repr=False)
    admin_token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Variable:
    """One POS_* environment variable: its type (a parser from text), its default and
    its help. `field` names the Settings attribute it sets (None: read elsewhere)."""

    name: str
    parse: Callable[[str, str], Any]
    default: Any
    help: str
    field: str | None = None
    shown_default: str | None = None

    def read(self, env: Mapping[str, str]) -> Any:
        raw = env.get(self.name)
        if raw is None or raw == "":
            return self.default
        return self.parse(self.name, raw)


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive")
    return value


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < value < float("inf"):
        raise ConfigError(f"{name} must be positive")
    return value


def _text(name: str, raw: str) -> str:
    return raw


def _path(name: str, raw: str) -> Path:
    return Path(raw)


def _zone(name: str, raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name} must be an IANA time zone such as Asia/Shanghai") from None
    return raw


def _flag(name: str, raw: str) -> bool:
    if raw not in ("0", "1"):
        raise ConfigError(f"{name} must be 0 or 1, got {raw!r}")
    return raw == "1"


def _log_level(name: str, raw: str) -> str:
    level = raw.lower()
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"{name} must be debug, info, warning or error")
    return level


_ARGON2 = Argon2Params()
_GENERATED_NOTE = " (generated into POS_DATA_DIR/secrets.json, mode 0600, by serve, migrate and demo-data when unset and the database is embedded)"  # noqa: E501
VARIABLES: tuple[Variable, ...] = (
    Variable("POS_DATABASE_URL", _text, None,
             "PostgreSQL URL; unset: embedded PostgreSQL under POS_DATA_DIR", "database_url"),
    Variable("POS_DATA_DIR", _path, Path(".pos-data"),
             "data directory of the embedded database and generated secrets", "data_dir"),
    Variable("POS_MASTER_KEY", _text, None,
             "64 hex chars: wraps terminal keys at rest" + _GENERATED_NOTE),
    Variable("POS_PIN_PEPPER", _text, None,
             "64 hex chars: secret mixed into every PIN hash" + _GENERATED_NOTE),
    Variable("POS_ADMIN_TOKEN", _text, None,
             "bearer token of the operator API" + _GENERATED_NOTE),
    Variable("POS_ARGON2_TIME_COST", _positive_int, _ARGON2.time_cost, "PIN hash time cost"),
    Variable("POS_ARGON2_MEMORY_KIB", _positive_int, _ARGON2.memory_cost_kib,
             "PIN hash memory cost in KiB"),
    Variable("POS_ARGON2_PARALLELISM", _positive_int, _ARGON2.parallelism,
             "PIN hash parallelism"),
    Variable("POS_ALLOW_WEAK_PIN_HASH", _text, None,
             "'bench' allows PIN hash costs below t=2, m=19456 KiB (benchmarks only)"),
    Variable("POS_PIN_THREADS", _positive_int, None, "threads verifying PINs", "pin_threads",
             shown_default="CPU count"),
    Variable("POS_PIN_QUEUE_MAX", _positive_int, 100,
             "PIN checks waiting per process before new requests get 91 at once, unrecorded",
             "pin_queue_max"),
    Variable("POS_MAX_AMOUNT_FEN", _positive_int, 5_000_000,
             "largest purchase or refund, in fen (5000000 = 50,000.00 CNY); a larger "
             "amount is declined with 13", "max_amount_fen"),
    Variable("POS_TIMESTAMP_WINDOW_S", _positive_int, 300,
             "how far X-Timestamp of a terminal request may be from now, in seconds",
             "timestamp_window_s"),
    Variable("POS_BUSINESS_TZ", _zone, "Asia/Shanghai",
             "time zone in which dates (designation, expiry, months) are judged",
             "business_tz"),
    Variable("POS_DB_CONNECT_TIMEOUT_S", _positive_float, 2.0,
             "seconds to connect to PostgreSQL", "db_connect_timeout_s"),
    Variable("POS_DB_COMMAND_TIMEOUT_S", _positive_float, 5.0,
             "seconds one SQL command may take", "db_command_timeout_s"),
    Variable("POS_DB_POOL_MAX", _positive_int, 20, "connections in the pool", "db_pool_max"),
    Variable("POS_GROUP_COMMIT_MAX_BATCH", _positive_int, 256,
             "purchases recorded by one commit; 1 turns group commit off",
             "group_commit_max_batch"),
    Variable("POS_GROUP_COMMIT_FLUSHERS", _positive_int, 2,
             "group commits in flight at once", "group_commit_flushers"),
    Variable("POS_REQUEST_DEADLINE_S", _positive_float, 3.0,
             "seconds a terminal request (HTTP or ISO 8583) may take; past them the answer "
             "is 91 and the work is cancelled behind it", "request_deadline_s"),
    Variable("POS_LOG_LEVEL", _log_level, "info", "debug | info | warning | error",
             "log_level"),
    Variable("POS_TRUST_FORWARDED_PROTO", _flag, False,
             "1: behind a TLS proxy that sets it, X-Forwarded-Proto: https marks the pages' "
             "session cookies Secure; 0: only a TLS connection does",
             "trust_forwarded_proto", shown_default="0"),
    Variable("POS_ISO_PORT", _positive_int, None,
             "port of the ISO 8583 listener (serve --iso-port); unset: none", "iso_port"),
    Variable("POS_SCHEMA_DIR", _path, None,
             "directory of the SQL migrations (default: schema/ of the package)"),
    Variable("POS_DEMO_PORT", _positive_int, 8080, "port of `make demo` (scripts/demo.sh)"),
    Variable("POS_DEMO_ISO_PORT", _positive_int, None,
             "ISO 8583 port of `make demo` (default: POS_DEMO_PORT + 1)"),
    Variable("POS_TEST_DATABASE_URL", _text, None,
             "tests only: PostgreSQL server to create the test database on "
             "(default: an embedded one)"),
    Variable("POS_MODEL_SEED", _positive_int, None,
             "tests only: replays the run of tests/test_protocol_model.py with this seed "
             "(default: a random seed, printed)"),
    Variable("POS_MODEL_EXAMPLES", _positive_int, 60,
             "tests only: random sessions tests/test_protocol_model.py runs"),
    Variable("POS_MODEL_STEPS", _positive_int, 50,
             "tests only: steps in each session of tests/test_protocol_model.py"),
    Variable("POS_CHROMIUM", _path, None,
             "browser tests and `make screenshots`: the Chromium to drive "
             "(default: chromium on PATH)"),
    Variable("POS_REQUIRE_BROWSER", _flag, False,
             "tests only: 1 fails the browser tests when no Chromium is found instead of "
             "skipping them (CI)", shown_default="0"),
    Variable("POS_SCREENSHOT_PORT", _positive_int, 8091,
             "port of the gateway `make screenshots` starts (scripts/screenshots.py)"),
)  # fmt: skip
_BY_NAME = {v.name: v for v in VARIABLES}


def _default(name: str) -> Any:
    return _BY_NAME[name].default


def environment_help() -> str:
    """The `environment:` section of every command's --help, from VARIABLES."""
    lines = ["environment:"]
    for var in VARIABLES:
        shown = var.shown_default or (None if var.default is None else str(var.default))
        suffix = f" (default {shown})" if shown is not None else ""
        lines.append(f"  {var.name}")
        lines.extend(f"      {line}" for line in textwrap.wrap(var.help + suffix, 74))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Settings:
    secrets: Secrets
    database_url: str | None = None  # None: embedded PostgreSQL under data_dir
    data_dir: Path = _default("POS_DATA_DIR")  # noqa: RUF009 (a Path is immutable)
    argon2: Argon2Params = field(default_factory=Argon2Params)
    pin_threads: int = 2
    max_amount_fen: int = _default("POS_MAX_AMOUNT_FEN")
    timestamp_window_s: int = _default("POS_TIMESTAMP_WINDOW_S")
    business_tz: str = _default("POS_BUSINESS_TZ")
    db_connect_timeout_s: float = _default("POS_DB_CONNECT_TIMEOUT_S")
    db_command_timeout_s: float = _default("POS_DB_COMMAND_TIMEOUT_S")
    db_pool_max: int = _default("POS_DB_POOL_MAX")
    group_commit_max_batch: int = _default("POS_GROUP_COMMIT_MAX_BATCH")
    group_commit_flushers: int = _default("POS_GROUP_COMMIT_FLUSHERS")
    pin_queue_max: int = _default("POS_PIN_QUEUE_MAX")
    request_deadline_s: float = _default("POS_REQUEST_DEADLINE_S")
    log_level: str = _default("POS_LOG_LEVEL")
    # Pages: believe X-Forwarded-Proto (set only behind a TLS proxy that sets it) for the
    # cookie's Secure flag.
    trust_forwarded_proto: bool = _default("POS_TRUST_FORWARDED_PROTO")
    iso_port: int | None = None  # ISO 8583 listener (DESIGN §9); None: none. 0: any free port
    iso_host: str = "127.0.0.1"  # serve sets it to the HTTP host
    iso_reuse_port: bool = False  # serve --workers: every worker listens on the ISO port

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the POS_* variables of VARIABLES. Writes nothing: with the embedded
        database, secrets not in the environment are read from the file that
        ensure_embedded_secrets() wrote."""
        env = dict(os.environ if env is None else env)
        values = {v.field: v.read(env) for v in VARIABLES if v.field is not None}
        if values["pin_threads"] is None:
            values["pin_threads"] = os.cpu_count() or 2
        argon2 = Argon2Params(
            time_cost=_BY_NAME["POS_ARGON2_TIME_COST"].read(env),
            memory_cost_kib=_BY_NAME["POS_ARGON2_MEMORY_KIB"].read(env),
            parallelism=_BY_NAME["POS_ARGON2_PARALLELISM"].read(env),
        )
        if argon2 != Argon2Params() and not _weak_hash_allowed(env, argon2):
            raise ConfigError(
                "PIN hash parameters below t=2, m=19456 KiB (OWASP minimum for argon2id) are "
                "for benchmarks only: set POS_ALLOW_WEAK_PIN_HASH=bench to use them"
            )
        embedded = values["database_url"] is None
        return cls(
            secrets=_load_secrets(env, values["data_dir"], embedded=embedded),
            argon2=argon2,
            **values,
        )


def ensure_embedded_secrets(env: Mapping[str, str] | None = None) -> Path | None:
    """The explicit step of serve, migrate and demo-data that lets a fresh checkout run
    with no set-up: with the embedded database and a secret missing from the
    environment, generate the three secrets once into POS_DATA_DIR (mode 0600).
    Returns the file, or None when the environment provides everything needed."""
    env = dict(os.environ if env is None else env)
    if _BY_NAME["POS_DATABASE_URL"].read(env) is not None:
        return None
    if all(env.get(name) for name in _SECRET_NAMES):
        return None
    data_dir: Path = _BY_NAME["POS_DATA_DIR"].read(env)
    if (data_dir / SECRETS_FILE).exists():
        _keep_private(data_dir / SECRETS_FILE)
    else:
        _generated_secrets(data_dir)
    return data_dir / SECRETS_FILE


def _weak_hash_allowed(env: Mapping[str, str], params: Argon2Params) -> bool:
    strong = params.time_cost >= 2 and params.memory_cost_kib >= 19456
    return strong or env.get("POS_ALLOW_WEAK_PIN_HASH") == "bench"


def _hex_key(name: str, raw: str, length: int) -> bytes:
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        raise ConfigError(f"{name} must be hex") from None
    if len(key) != length:
        raise ConfigError(f"{name} must be {length} bytes ({2 * length} hex characters)")
    problem = key_problem(key)
    if problem:
        raise ConfigError(
            f"{name} {problem}: python3 -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return key


_SECRET_NAMES = ("POS_MASTER_KEY", "POS_PIN_PEPPER", "POS_ADMIN_TOKEN")


def _load_secrets(env: Mapping[str, str], data_dir: Path, *, embedded: bool) -> Secrets:
    values = {name: env.get(name) or None for name in _SECRET_NAMES}
    if any(v is None for v in values.values()):
        missing = ", ".join(n for n, v in values.items() if v is None)
        if not embedded:
            raise ConfigError(
                f"{missing} must be set when POS_DATABASE_URL points at an external database"
            )
        stored = _stored_secrets(data_dir / SECRETS_FILE, missing)
        values = {name: values[name] or stored[name] for name in _SECRET_NAMES}
    master_key, pin_pepper, admin_token = (values[name] or "" for name in _SECRET_NAMES)
    problem = admin_token_problem(admin_token)
    if problem:
        raise ConfigError(
            f"POS_ADMIN_TOKEN {problem}; generate one with "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return Secrets(
        master_key=_hex_key("POS_MASTER_KEY", master_key, 32),
        pin_pepper=_hex_key("POS_PIN_PEPPER", pin_pepper, 32),
        admin_token=admin_token,
    )


def _stored_secrets(path: Path, missing: str) -> dict[str, str]:
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{missing} not set and {path} does not exist: run `pos-gateway migrate` (or "
            "serve) once to generate the embedded database's secrets"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(stored, dict) or not all(
        isinstance(stored.get(k), str) for k in _SECRET_NAMES
    ):
        raise ConfigError(f"{path} is incomplete; remove it only if the data dir is new")
    return stored


def _generated_secrets(data_dir: Path) -> dict[str, str]:
    path = data_dir / SECRETS_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    fresh = {
        "POS_MASTER_KEY": secrets.token_hex(32),
        "POS_PIN_PEPPER": secrets.token_hex(32),
        "POS_ADMIN_TOKEN": secrets.token_urlsafe(32),
    }
    # Written whole to a private temp file, then linked into place: link() fails if the
    # file exists, so two processes starting together agree on one set of secrets.
    tmp = data_dir / f".{SECRETS_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(fresh, fh)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    else:
        return fresh
    finally:
        tmp.unlink()
    return _stored_secrets(path, "secrets")


def _keep_private(path: Path) -> None:
    """A secrets file others can read is made private again, and said so on stderr: its
    secrets may have been read meanwhile (rotate them if the host is shared)."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(path, 0o600)
        print(
            f"pos-gateway: warning: {path} had mode {mode:04o}, readable by others; set to 0600",
            file=sys.stderr,
        )
