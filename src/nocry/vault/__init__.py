"""The vault: every stored version of every protected object (docs/vault-format.md).

    from nocry.vault import Vault, VersionRecord
    vault = Vault(root, cfg.vault, create=True)
    with vault.batch() as b:
        h, size = b.put_stream(f)
        b.add(VersionRecord(path, time_ns, "content", ftype="file", size=size, content=h))
    vault.state_at(b"/srv/share", incident_start_ns)     # what to restore
    b"".join(vault.read_content(h))                      # verified on the way out

Modules: ``store`` (Vault, Batch), ``packs`` (pack file format), ``index`` (SQLite schema and
queries), ``verify``, ``retention`` (forget, prune), ``model`` (VersionRecord).
"""

from nocry.vault.model import (
    FTYPE_DIR,
    FTYPE_FILE,
    FTYPE_OTHER,
    FTYPE_SYMLINK,
    KIND_CONTENT,
    KIND_META,
    KIND_TOMBSTONE,
    VersionRecord,
    ftype_of_mode,
)
from nocry.vault.retention import ForgetReport, PruneReport
from nocry.vault.store import Batch, Vault, VaultStats
from nocry.vault.verify import AffectedVersion, DamagedChunk, VerifyReport

__all__ = [
    "Vault",
    "Batch",
    "VaultStats",
    "VerifyReport",
    "DamagedChunk",
    "AffectedVersion",
    "ForgetReport",
    "PruneReport",
    "VersionRecord",
    "ftype_of_mode",
    "FTYPE_FILE",
    "FTYPE_DIR",
    "FTYPE_SYMLINK",
    "FTYPE_OTHER",
    "KIND_CONTENT",
    "KIND_META",
    "KIND_TOMBSTONE",
]
