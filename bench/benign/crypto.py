"""gpg: encrypting one file, symmetric (--batch --passphrase) and to a key generated on the spot.
The keyring lives in $W (outside the tree), like a user's ~/.gnupg."""

from __future__ import annotations

from bench.benign.common import Workload

_GPG = 'gpg --homedir "$W/gnupg" --batch --yes --quiet --pinentry-mode loopback'

WORKLOADS = [
    Workload(
        "gpg-symmetric", "crypto",
        title="gpg --symmetric one spreadsheet (original kept); a folder as .tar.gz.gpg",
        script=f"""
mkdir -p -m 700 "$W/gnupg" Archives
{_GPG} --passphrase 'correct horse' --symmetric --cipher-algo AES256 -o "Finance/2025/$(ls Finance/2025 | grep xlsx | head -1).gpg" "Finance/2025/$(ls Finance/2025 | grep xlsx | head -1)"
tar -cz Legal | {_GPG} --passphrase 'correct horse' --symmetric -o Archives/Legal.tar.gz.gpg
""",
        needs=("gpg", "tar"), apt=("gnupg",), quick=True, tested=True,
    ),
    Workload(
        "gpg-pubkey", "crypto",
        title="gpg: generate a key, encrypt one contract to it, delete the plaintext",
        script=f"""
mkdir -p -m 700 "$W/gnupg"
{_GPG} --passphrase '' --quick-gen-key 'Bench User <bench@example.org>' default default never
f="Legal/Contracts/$(ls Legal/Contracts | head -1)"
{_GPG} --trust-model always -r bench@example.org --encrypt -o "$f.gpg" "$f"
rm "$f"
""",
        needs=("gpg",), apt=("gnupg",),
    ),
]  # fmt: skip
