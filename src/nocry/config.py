"""Configuration: one TOML file read into one frozen dataclass.

    home/config.toml  --tomllib-->  dict  --check keys, types-->  Config (frozen)

Unknown sections or keys and wrong types are errors that cite the file and line, so a typo never
silently leaves a default in force. ``DEFAULT_TOML`` is the commented default file that
``nocry config default`` prints and ``protect`` writes into a new home.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from nocry.errors import ConfigError

__all__ = ["Config", "SensorConfig", "CaptureConfig", "VaultConfig", "RetentionConfig", "load_config", "DEFAULT_TOML"]


@dataclass(frozen=True)
class SensorConfig:
    #: report opens, reads and close-nowrite (needed for theft detection; costs events)
    watch_reads: bool = True
    #: ask the kernel for an unbounded event queue (FAN_UNLIMITED_QUEUE); off keeps the kernel's
    #: default of 16384 queued events, after which an overflow triggers a rescan
    unlimited_queue: bool = False
    #: size of the in-process queue between the reader thread and the daemon
    queue_size: int = 1_000_000


@dataclass(frozen=True)
class CaptureConfig:
    #: wait this long after the last close-write before capturing a file (files written repeatedly)
    debounce_ms: int = 100
    #: but never wait longer than this after the first unsaved change
    max_delay_ms: int = 1000
    #: one vault write batch (one pack flush + one index transaction) holds at most this many files
    batch_max_files: int = 512
    #: shell-style patterns (matched against the path relative to its tree, and against the file
    #: name) of objects never captured, e.g. caches and build outputs
    exclude: tuple[str, ...] = ()
    #: files larger than this are recorded as metadata only (0: no limit)
    max_file_bytes: int = 0


@dataclass(frozen=True)
class VaultConfig:
    #: FastCDC average chunk size; min is a quarter, max four times this
    chunk_avg_kib: int = 64
    #: zstd level (1 fast ... 19 small)
    compression_level: int = 3
    #: a pack file is closed when it reaches this size
    pack_target_mib: int = 16
    #: space held back in the vault so that a full disk cannot stop the index mid-write
    reserve_mib: int = 32
    #: raise an alarm and pause capture when the vault's disk has less free space than this
    min_free_mib: int = 64


@dataclass(frozen=True)
class RetentionConfig:
    #: keep every version for this many days
    keep_all_days: int = 14
    #: then one version per object per day for this many days (counted from now)
    keep_daily_days: int = 90
    #: the newest version of every object is kept forever, whatever its age


@dataclass(frozen=True)
class Config:
    #: observe (alert only) or enforce
    mode: str = "enforce"
    sensor: SensorConfig = field(default_factory=SensorConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    vault: VaultConfig = field(default_factory=VaultConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    #: where the config came from (for messages)
    source: str = "<defaults>"

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


DEFAULT_TOML = """\
# nocry configuration. Every key is optional; the values shown are the defaults.
# Unknown keys are errors. Check a file with: nocry check-config [FILE]

# observe: alert only. enforce: alert and act (freeze the attacker).
mode = "enforce"

[sensor]
# report opens and reads too (bulk-theft detection needs them)
watch_reads = true
# ask the kernel for an unbounded queue instead of its 16384 events
unlimited_queue = false
queue_size = 1000000

[capture]
# capture a file this long after its last close-write ...
debounce_ms = 100
# ... but never later than this after its first change
max_delay_ms = 1000
batch_max_files = 512
# never capture these (shell patterns against the name or the path inside the tree)
exclude = []
# files above this size are recorded as metadata only (0: no limit)
max_file_bytes = 0

[vault]
chunk_avg_kib = 64
compression_level = 3
pack_target_mib = 16
reserve_mib = 32
min_free_mib = 64

[retention]
keep_all_days = 14
keep_daily_days = 90
"""

_SECTIONS = {
    "sensor": SensorConfig,
    "capture": CaptureConfig,
    "vault": VaultConfig,
    "retention": RetentionConfig,
}


def _line_of(text: str, key: str, section: str | None) -> int | None:
    """Best-effort line number of ``key`` (inside ``[section]``) for error messages."""
    current = None
    for no, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        m = re.match(r"^\[([^\]]+)\]", stripped)
        if m:
            current = m.group(1).strip()
            if section is None and current == key:
                return no
            continue
        if current == section and re.match(rf"^{re.escape(key)}\s*=", stripped):
            return no
    return None


def _check_value(name: str, want: Any, value: Any) -> Any:
    if want is bool:
        ok = isinstance(value, bool)
    elif want is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    elif want is str:
        ok = isinstance(value, str)
    elif want == tuple[str, ...]:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    else:  # pragma: no cover - a new field type needs a case here
        raise AssertionError(f"unhandled config type {want} for {name}")
    if not ok:
        kind = {bool: "true or false", int: "a non-negative integer", str: "a string"}.get(want, "a list of strings")
        raise ValueError(f"{name} must be {kind}, not {value!r}")
    return value


def _build(cls: type, table: dict[str, Any], text: str, where: str, section: str | None) -> Any:
    hints = get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)} - {"source"}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        line = _line_of(text, key, section)
        loc = f"{where}:{line}" if line else where
        dotted = f"{section}.{key}" if section else key
        if section is None and key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{loc}: [{key}] must be a table")
            kwargs[key] = _build(_SECTIONS[key], value, text, where, key)
            continue
        if key not in fields or (section is None and key in _SECTIONS):
            raise ConfigError(f"{loc}: unknown key {dotted!r}")
        try:
            kwargs[key] = _check_value(dotted, hints[key], value)
        except ValueError as exc:
            raise ConfigError(f"{loc}: {exc}") from None
    return cls(**kwargs)


def parse_config(text: str, where: str = "<config>") -> Config:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    cfg = _build(Config, table, text, where, None)
    if cfg.mode not in ("observe", "enforce"):
        line = _line_of(text, "mode", None)
        raise ConfigError(f"{where}:{line}: mode must be 'observe' or 'enforce', not {cfg.mode!r}")
    v = cfg.vault
    if not 1 <= v.chunk_avg_kib <= 4096:
        raise ConfigError(f"{where}: vault.chunk_avg_kib must be between 1 and 4096")
    if not 1 <= v.compression_level <= 22:
        raise ConfigError(f"{where}: vault.compression_level must be between 1 and 22")
    if v.pack_target_mib < 1:
        raise ConfigError(f"{where}: vault.pack_target_mib must be at least 1")
    return cfg.replace(source=where)


def load_config(path: Path | None) -> Config:
    """Read ``path``; a missing file gives the defaults."""
    if path is None or not path.exists():
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_config(text, str(path))
