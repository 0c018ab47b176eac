"""Configuration: one frozen Settings, read from POS_* environment variables."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

from pos_gateway.security.pins import Argon2Params

SECRETS_FILE = "secrets.json"


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class Secrets:
    master_key: bytes = field(repr=False)
    pin_pepper: bytes = field(repr=False)
    admin_token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Settings:
    secrets: Secrets
    database_url: str | None = None  # None: embedded PostgreSQL under data_dir
    data_dir: Path = Path(".pos-data")
    argon2: Argon2Params = field(default_factory=Argon2Params)
    pin_threads: int = 2
    max_amount_fen: int = 5_000_000  # 50,000 CNY per transaction
    timestamp_window_s: int = 300
    business_tz: str = "Asia/Shanghai"
    db_connect_timeout_s: float = 2.0
    db_command_timeout_s: float = 5.0
    db_pool_max: int = 20
    group_commit_max_batch: int = 256  # 1 turns group commit off: one commit per request
    group_commit_flushers: int = 2
    pin_queue_max: int = 100  # PIN checks waiting per process before requests are shed (91)
    request_deadline_s: float = 3.0  # a terminal request unanswered by then gets 91
    log_level: str = "info"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read POS_* variables; with the embedded database, missing secrets are generated
        once into POS_DATA_DIR (mode 0600) so a fresh checkout runs with no set-up."""
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("POS_DATA_DIR", ".pos-data"))
        database_url = env.get("POS_DATABASE_URL") or None
        base = cls(secrets=_load_secrets(env, data_dir, embedded=database_url is None))
        argon2 = Argon2Params(
            time_cost=_int(env, "POS_ARGON2_TIME_COST", base.argon2.time_cost),
            memory_cost_kib=_int(env, "POS_ARGON2_MEMORY_KIB", base.argon2.memory_cost_kib),
            parallelism=_int(env, "POS_ARGON2_PARALLELISM", base.argon2.parallelism),
        )
        if argon2 != Argon2Params() and not _weak_hash_allowed(env, argon2):
            raise ConfigError(
                "PIN hash parameters below t=2, m=19456 KiB (OWASP minimum for argon2id) are "
                "for benchmarks only: set POS_ALLOW_WEAK_PIN_HASH=bench to use them"
            )
        return replace(
            base,
            database_url=database_url,
            data_dir=data_dir,
            argon2=argon2,
            pin_threads=_int(env, "POS_PIN_THREADS", os.cpu_count() or 2),
            max_amount_fen=_int(env, "POS_MAX_AMOUNT_FEN", base.max_amount_fen),
            db_pool_max=_int(env, "POS_DB_POOL_MAX", base.db_pool_max),
            group_commit_max_batch=_int(
                env, "POS_GROUP_COMMIT_MAX_BATCH", base.group_commit_max_batch
            ),
            group_commit_flushers=_int(
                env, "POS_GROUP_COMMIT_FLUSHERS", base.group_commit_flushers
            ),
            pin_queue_max=_int(env, "POS_PIN_QUEUE_MAX", base.pin_queue_max),
            request_deadline_s=_float(env, "POS_REQUEST_DEADLINE_S", base.request_deadline_s),
            log_level=env.get("POS_LOG_LEVEL", base.log_level).lower(),
        )


def _weak_hash_allowed(env: dict[str, str], params: Argon2Params) -> bool:
    strong = params.time_cost >= 2 and params.memory_cost_kib >= 19456
    return strong or env.get("POS_ALLOW_WEAK_PIN_HASH") == "bench"


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive")
    return value


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not 0 < value < 3600:
        raise ConfigError(f"{name} must be positive seconds (below 3600)")
    return value


def _hex_key(name: str, raw: str, length: int) -> bytes:
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        raise ConfigError(f"{name} must be hex") from None
    if len(key) != length:
        raise ConfigError(f"{name} must be {length} bytes ({2 * length} hex characters)")
    return key


def _load_secrets(env: dict[str, str], data_dir: Path, *, embedded: bool) -> Secrets:
    names = ("POS_MASTER_KEY", "POS_PIN_PEPPER", "POS_ADMIN_TOKEN")
    values = {name: env.get(name) or None for name in names}
    if any(v is None for v in values.values()):
        if not embedded:
            missing = ", ".join(n for n, v in values.items() if v is None)
            raise ConfigError(
                f"{missing} must be set when POS_DATABASE_URL points at an external database"
            )
        stored = _generated_secrets(data_dir)
        values = {name: values[name] or stored[name] for name in names}
    return Secrets(
        master_key=_hex_key("POS_MASTER_KEY", values["POS_MASTER_KEY"], 32),
        pin_pepper=_hex_key("POS_PIN_PEPPER", values["POS_PIN_PEPPER"], 32),
        admin_token=values["POS_ADMIN_TOKEN"],
    )


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
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not all(isinstance(stored.get(k), str) for k in fresh):
        raise ConfigError(f"{path} is incomplete; remove it only if the data dir is new")
    return stored
