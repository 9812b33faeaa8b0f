"""LibreOffice headless converting documents: docx -> pdf into an export folder, odt -> docx into
an export folder and next to the originals. The user profile (~/.config/libreoffice) lives in $W,
made once (a first start) so that every run starts LibreOffice as a returning user does."""

from __future__ import annotations

from pathlib import Path

from bench.benign.common import Assets, Workload, asset, sh, system_env


@asset("lo-profile")
def _lo_profile(assets: Assets, d: Path) -> None:
    """A LibreOffice user profile after one start (first-start work is not timed)."""
    sh(["soffice", f"-env:UserInstallation=file://{d}/profile", "--headless", "--terminate_after_init"],
       env=system_env({"HOME": str(d)}), timeout=300)  # fmt: skip


def _pre_profile(tree: Path, assets: Assets, scratch: Path) -> None:
    sh(["cp", "-a", str(assets.get("lo-profile") / "profile"), str(scratch / "lo")])


_SOFFICE = 'soffice -env:UserInstallation=file://"$W/lo" --headless'

WORKLOADS = [
    Workload(
        "libreoffice-convert", "office",
        title="soffice --headless --convert-to: 10 docx -> pdf (export folder), 15 odt -> docx (export folder and in place)",
        script=f"""
mkdir -p Exports/pdf Exports/docx
{_SOFFICE} --convert-to pdf --outdir Exports/pdf Projects/*/docs/*.docx > /dev/null
{_SOFFICE} --convert-to docx --outdir Exports/docx HR/Policies/*.odt > /dev/null
{_SOFFICE} --convert-to docx --outdir Legal Legal/*.odt > /dev/null
""",
        needs=("soffice",), apt=("libreoffice-writer-nogui",), assets=("lo-profile",), pre=_pre_profile, runs=3, timeout=900,
        note="libreoffice-writer-nogui: ~200 MiB installed (the libreoffice-* packages)",
    ),
]  # fmt: skip
