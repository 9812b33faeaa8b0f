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

__all__ = [
    "Config", "SensorConfig", "CaptureConfig", "VaultConfig", "RetentionConfig", "DetectConfig", "RespondConfig",
    "CanaryConfig", "load_config", "DEFAULT_TOML",
]  # fmt: skip


@dataclass(frozen=True)
class SensorConfig:
    #: report opens and close-nowrite of files too (for bulk-read evidence; no detector uses
    #: them yet, and they multiply the events of the whole filesystem: off by default)
    watch_reads: bool = False
    #: ask the kernel for an unbounded event queue (FAN_UNLIMITED_QUEUE); off keeps the kernel's
    #: default of 16384 queued events, after which an overflow triggers a rescan
    unlimited_queue: bool = False
    #: events read from the kernel and not yet handled that the daemon holds at most (~300 bytes
    #: each); beyond it the reader waits, the kernel's queue fills and overflows, and the daemon
    #: rescans: bounded memory while the capture loop is busy (e.g. rescanning during a burst)
    queue_size: int = 500_000
    #: the reader lets a burst of events gather this long before reading it: the writing process
    #: then does not wake the reader for every event (0: read at once; latency grows by at most
    #: this). 1 ms already takes a write storm's cost down as far as 5 ms did (bench/overhead/floor.py)
    coalesce_ms: int = 1


@dataclass(frozen=True)
class CaptureConfig:
    #: wait this long after the last close-write before capturing a file (files written repeatedly)
    debounce_ms: int = 100
    #: but never wait longer than this after the first unsaved change
    max_delay_ms: int = 1000
    #: record a deleted file this long after the delete; a file created again at the same path
    #: within it (tar or git replacing a file: unlink, then create, microseconds apart) is a
    #: rewrite. Deletion-based attacks reach the detector this much later
    delete_debounce_ms: int = 10
    #: one vault write batch (one pack flush + one index transaction) holds at most this many files
    batch_max_files: int = 512
    #: captures made within this long share one vault write (one pack flush, one index commit);
    #: a quiet moment commits at once, unless the last commit was less than this long ago.
    #: Longer: less CPU and fewer fsyncs under write storms and builds; shorter: a smaller window
    #: of versions that a crash of the daemon would lose
    group_commit_ms: int = 250
    #: shell-style patterns (matched against the path relative to its tree, and against the file
    #: name) of objects never captured, e.g. caches and build outputs
    exclude: tuple[str, ...] = ()
    #: files larger than this are recorded as metadata only (0: no limit)
    max_file_bytes: int = 0
    #: the daemon's niceness while nothing is suspicious and it keeps up (0-19, 0: never lowered);
    #: it goes back to normal priority while an actor looks suspicious or it falls behind
    nice: int = 10


@dataclass(frozen=True)
class VaultConfig:
    #: FastCDC average chunk size; min is a quarter, max four times this
    chunk_avg_kib: int = 64
    #: zstd level (1 fast ... 19 small). 1: 30% less compression CPU than 3 for 3% more bytes on
    #: source trees; capture runs on every save, so the daemon's CPU matters more
    compression_level: int = 1
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
    #: the daemon applies the policy (forget + prune) this often; 0: only `nocry vault prune`.
    #: The newest version of every object is kept forever, whatever its age, and nothing from
    #: before an open incident's start that a restore of it would need is ever dropped.
    every_hours: int = 24


@dataclass(frozen=True)
class DetectConfig:
    """Weights of indicators (points added to an actor's score) and the thresholds of a verdict.
    An actor's score decays with ``half_life_s`` so that slow attacks still add up while
    occasional odd events of ordinary work fade away."""

    #: an actor is judged hostile when its score reaches this ...
    threshold: float = 10.0
    #: ... and it damaged at least this many distinct objects (one odd file is never enough)
    min_objects: int = 2
    half_life_s: int = 900
    # content indicators (new version compared with the previous one)
    w_type_lost: float = 5.0
    w_random_rewrite: float = 4.0
    w_partial_encryption: float = 5.0
    w_header_rewrite: float = 4.0
    w_encoded: float = 5.0
    w_zero_fill: float = 5.0
    w_truncate: float = 4.0
    w_content_replaced: float = 0.0
    w_copied_over: float = 4.0
    w_random_new_file: float = 0.0
    # namespace indicators
    w_rename_new_ext: float = 3.0
    w_replace_original: float = 4.0
    w_ransom_note: float = 6.0
    w_delete_document: float = 1.5
    w_delete_other: float = 0.5
    w_canary: float = 100.0
    #: distinct directories damaged by one actor before the breadth bonus applies
    breadth_dirs: int = 3
    w_breadth: float = 3.0
    #: the same new file content in this many directories is a ransom note
    note_dirs: int = 3
    #: a new file and a deleted original count as a replacement within this window
    replace_window_s: int = 60
    #: an incident also holds what its actor changed this long before its first damage
    lookback_s: int = 300
    #: extensions of documents (deleting them weighs more)
    #: extensions of user documents: deleting or truncating them weighs; source code, markup and
    #: configuration are left out (checkouts, builds and virtualenvs delete those all day; an
    #: attack on them is seen by its content indicators)
    document_exts: tuple[str, ...] = (
        "doc", "docx", "docm", "xls", "xlsx", "xlsm", "ppt", "pptx", "odt", "ods", "odp", "odg", "pdf", "rtf",
        "txt", "csv", "md", "jpg", "jpeg", "png", "gif", "tif", "tiff", "heic", "raw", "psd", "svg", "mp3", "wav",
        "flac", "mp4", "mov", "mkv", "avi", "eml", "msg", "pst", "mbox", "sqlite", "db", "mdb", "accdb", "dwg",
        "dxf", "key", "pages", "numbers", "ods", "vsdx", "one",
    )


@dataclass(frozen=True)
class RespondConfig:
    #: never freeze or kill processes whose executable is one of these (full paths)
    critical_exes: tuple[str, ...] = (
        "/usr/lib/systemd/systemd", "/lib/systemd/systemd", "/usr/sbin/sshd", "/usr/sbin/smbd", "/usr/sbin/nmbd",
        "/usr/sbin/cron", "/usr/sbin/rsyslogd", "/usr/lib/systemd/systemd-journald", "/lib/systemd/systemd-journald",
        "/usr/sbin/dbus-daemon", "/usr/bin/dbus-daemon", "/usr/sbin/init", "/sbin/init",
    )  # fmt: skip
    #: after freezing: "none" (wait for the operator), or "kill" (kill the frozen actor at once)
    after_freeze: str = "none"
    #: where quarantine cgroups are created ("auto": find the cgroup v2 mount)
    cgroup_root: str = "auto"


@dataclass(frozen=True)
class CanaryConfig:
    #: plant decoy files in each protected tree; any write, rename or delete of one is strong evidence
    enabled: bool = True
    #: file names of the decoys, planted at the root of each tree
    names: tuple[str, ...] = ("!Accounts-2025.xlsx", "!Passwords-backup.docx")


@dataclass(frozen=True)
class Config:
    #: observe (alert only) or enforce
    mode: str = "enforce"
    sensor: SensorConfig = field(default_factory=SensorConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    vault: VaultConfig = field(default_factory=VaultConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    respond: RespondConfig = field(default_factory=RespondConfig)
    canary: CanaryConfig = field(default_factory=CanaryConfig)
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
# report opens and close-nowrite too (read evidence; no detector uses it yet; costs events)
watch_reads = false
# ask the kernel for an unbounded queue instead of its 16384 events
unlimited_queue = false
# events read but not yet handled that the daemon holds (~300 bytes each); beyond it the kernel's
# queue overflows and the daemon rescans
queue_size = 500000
# let a burst of events gather this long before reading it (fewer wake-ups of the reader from
# the writing process; events wait at most this much longer)
coalesce_ms = 1

[capture]
# capture a file this long after its last close-write ...
debounce_ms = 100
# ... but never later than this after its first change
max_delay_ms = 1000
# record a deleted file this long after the delete (a file created again at the same path
# meanwhile is a rewrite); deletion-based attacks reach the detector this much later
delete_debounce_ms = 10
batch_max_files = 512
# captures within this long share one vault commit, and commits are at least this far apart
# (a quiet moment after a quiet while commits at once)
group_commit_ms = 250
# never capture these (shell patterns against the name or the path inside the tree)
exclude = []
# files above this size are recorded as metadata only (0: no limit)
max_file_bytes = 0
# niceness while nothing looks suspicious and the daemon keeps up (0: never lowered); back to
# normal priority while an actor scores a third of the threshold or more, or capture lags
nice = 10

[vault]
chunk_avg_kib = 64
compression_level = 1
pack_target_mib = 16
reserve_mib = 32
min_free_mib = 64

[retention]
keep_all_days = 14
keep_daily_days = 90
# the daemon thins the vault this often (0: only with `nocry vault prune`)
every_hours = 24

[detect]
# An actor (process tree, session, uid) is judged hostile when its score reaches `threshold`
# and it damaged at least `min_objects` distinct objects. Scores decay with `half_life_s`.
threshold = 10.0
min_objects = 2
half_life_s = 900
# content indicators: the new version compared with the previous one in the vault
w_type_lost = 5.0            # e.g. a .docx that is no longer a zip
w_random_rewrite = 4.0       # content became random/incompressible where it was not
w_partial_encryption = 5.0   # some blocks turned random while the rest stayed (intermittent)
w_header_rewrite = 4.0       # only the header changed, and to random bytes
w_encoded = 5.0              # replaced by base64/hex-looking text
w_zero_fill = 5.0            # overwritten with zeros or one repeated byte
w_truncate = 4.0             # truncated to nothing
w_content_replaced = 0.0     # same type, every block different: what every save of a zipped
                             # document does, so it weighs nothing by default
w_copied_over = 4.0          # overwritten with the exact content of another file (plausible-data wipers)
w_random_new_file = 0.0      # a new random file alone harms nothing (backups write them); it counts
                             # when an original of similar size is deleted (w_replace_original)
# namespace indicators
w_rename_new_ext = 3.0       # renamed to a new or unknown extension
w_replace_original = 4.0     # a new file written and a similar original deleted
w_ransom_note = 6.0          # the same new file in several directories
w_delete_document = 1.5
w_delete_other = 0.5
w_canary = 100.0             # a decoy file was touched
breadth_dirs = 3
w_breadth = 3.0
note_dirs = 3
replace_window_s = 60
lookback_s = 300

[respond]
# after freezing: "none" waits for the operator (nocry incident kill|release ID), "kill" kills
after_freeze = "none"
cgroup_root = "auto"
# critical_exes = ["/usr/sbin/sshd", ...]   never frozen or killed (see nocry default-config)

[canary]
# plant decoy files at the root of each protected tree; touching one is strong evidence
enabled = true
names = ["!Accounts-2025.xlsx", "!Passwords-backup.docx"]
"""

_SECTIONS = {
    "sensor": SensorConfig,
    "capture": CaptureConfig,
    "vault": VaultConfig,
    "retention": RetentionConfig,
    "detect": DetectConfig,
    "respond": RespondConfig,
    "canary": CanaryConfig,
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
    elif want is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
        value = float(value) if ok else value
    elif want is str:
        ok = isinstance(value, str)
    elif want == tuple[str, ...]:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    else:  # pragma: no cover - a new field type needs a case here
        raise AssertionError(f"unhandled config type {want} for {name}")
    if not ok:
        kind = {bool: "true or false", int: "a non-negative integer", float: "a non-negative number", str: "a string"}.get(want, "a list of strings")
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
    if cfg.capture.nice > 19:
        raise ConfigError(f"{where}: capture.nice must be between 0 and 19")
    if cfg.sensor.queue_size < 1:
        raise ConfigError(f"{where}: sensor.queue_size must be at least 1")
    if cfg.sensor.coalesce_ms > 1000:
        raise ConfigError(f"{where}: sensor.coalesce_ms must be at most 1000")
    if cfg.respond.after_freeze not in ("none", "kill"):
        raise ConfigError(f"{where}: respond.after_freeze must be 'none' or 'kill'")
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
