"""Drills: refusals, the generated tree, every scenario's damage and its undo, processes, stops.

These run real attacker processes (python workers, /bin/sh + openssl) against small trees in temp
dirs; no nocry daemon is involved. A template tree is built once and copied for each test.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import email
import email.policy
import gzip
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from blake3 import blake3

from nocry.cli.main import main
from nocry.drill.corpus import KINDS, FileSpec, Generator, plan_tree
from nocry.drill.crypto import INPLACE_TRANSFORMS, digest, ranges_for, torn_candidates, xor_ranges
from nocry.drill.marker import MARKER_NAME, STATE_DIR_NAME, read_manifest, refuse_system_dir
from nocry.drill.scenarios import RANSOM_NOTE_NAME, SCENARIOS
from nocry.errors import UserError

TREE_FILES = 40
SEED = 7


def cli(capsys, *argv: str) -> tuple[int, dict | None, str]:
    """Run ``nocry --json drill ...`` in-process; (exit code, JSON document or None, stderr)."""
    code = main(["--json", "drill", *argv])
    out, err = capsys.readouterr()
    doc = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
    return code, doc, err


def tree_files(root: Path) -> dict[str, str]:
    """rel path -> blake3 of every regular file outside the state dir (symlinks not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == STATE_DIR_NAME or rel_dir.startswith(STATE_DIR_NAME + "/"):
            continue
        for name in filenames:
            p = Path(dirpath) / name
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel == MARKER_NAME or p.is_symlink():
                continue
            out[rel] = blake3(p.read_bytes()).hexdigest()
    return out


def marker_hashes(root: Path) -> dict[str, str]:
    return {f["path"]: f["blake3"] for f in json.loads((root / MARKER_NAME).read_bytes())["files"]}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("drill-template") / "tree"
    assert main(["--json", "drill", "init", str(root), "--files", str(TREE_FILES), "--seed", str(SEED)]) == 0
    return root


@pytest.fixture
def drill(template, tmp_path, capsys) -> Path:
    capsys.readouterr()
    root = tmp_path / "t" / "drill"
    shutil.copytree(template, root, symlinks=True)
    shutil.copytree(template, tmp_path / "orig", symlinks=True)
    return root


# ---------------------------------------------------------------------------------------------
# refusals


def test_run_and_undo_refuse_a_directory_without_marker(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "important.docx").write_bytes(b"precious")
    for argv in (["run", "encrypt-in-place", str(plain)], ["undo", str(plain)]):
        code, doc, err = cli(capsys, *argv)
        assert code == 2
        assert "not a drill directory" in doc["error"]
    assert (plain / "important.docx").read_bytes() == b"precious"


@pytest.mark.parametrize("bad", ["/", "/etc", "/etc/nocry-drill", "/usr/share/nocry-drill-test", "/var/lib/nocry-drill",
                                 "/boot/x", "/home", "/tmp", "/bin", "/proc/self"])
def test_init_refuses_system_directories(bad, capsys):
    existed = os.path.lexists(bad)
    code, doc, _ = cli(capsys, "init", bad, "--files", "1")
    assert code == 2 and "refusing" in doc["error"]
    assert os.path.lexists(bad) == existed


def test_refuse_system_dir_allows_scratch_places():
    refuse_system_dir("/tmp/x")
    refuse_system_dir("/var/tmp/x")
    refuse_system_dir("/srv/share/drill")
    with pytest.raises(UserError):
        refuse_system_dir("/var/log/x")


def test_init_refuses_non_empty_unmarked_dir_and_a_second_init(tmp_path, template, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    code, doc, _ = cli(capsys, "init", str(full), "--files", "1")
    assert code == 2 and "not empty" in doc["error"]
    assert sorted(os.listdir(full)) == ["keep.txt"]
    code, doc, _ = cli(capsys, "init", str(template), "--files", "1")
    assert code == 2 and "already a drill directory" in doc["error"]


def test_symlinked_targets_are_refused(drill, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.docx").write_bytes(b"outside data")
    (drill / "elsewhere").symlink_to(outside)  # inside a marked tree, pointing out
    link_to_drill = tmp_path / "link-to-drill"
    link_to_drill.symlink_to(drill)
    for target in (drill / "elsewhere", link_to_drill):
        code, doc, _ = cli(capsys, "run", "encrypt-in-place", str(target))
        assert code == 2
        assert "symbolic link" in doc["error"]
    code, doc, _ = cli(capsys, "run", "encrypt-in-place", str(drill / "Mail"))  # marker only in a parent
    assert code == 2 and "not a drill directory" in doc["error"]
    assert (outside / "secret.docx").read_bytes() == b"outside data"


def test_symlinks_and_hard_links_inside_are_never_followed(drill, tmp_path, capsys):
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    secret = outside / "secret.docx"
    secret.write_bytes(b"outside file")
    (outside / "dir" / "inner.xlsx").write_bytes(b"outside dir")
    linked = outside / "hardlinked.txt"
    linked.write_bytes(b"outside inode")
    first_dir = next(p for p in sorted(drill.iterdir()) if p.is_dir() and not p.name.startswith("."))
    (first_dir / "aaa-link.docx").symlink_to(secret)
    (first_dir / "aaa-dirlink").symlink_to(outside / "dir")
    os.link(linked, first_dir / "aaa-hardlink.txt")
    before = {p: p.read_bytes() for p in (secret, outside / "dir" / "inner.xlsx", linked)}
    for scenario in ("encrypt-in-place", "wipe-delete", "fork-per-file"):
        if scenario == "fork-per-file" and not shutil.which("openssl"):
            continue
        code, doc, _ = cli(capsys, "run", scenario, str(drill))
        assert code == 0 and doc["finished"]
        assert not any("aaa-" in p for p in doc["files_touched"])
        assert {p: p.read_bytes() for p in before} == before
        assert (first_dir / "aaa-link.docx").is_symlink() and (first_dir / "aaa-dirlink").is_symlink()
        code, doc, _ = cli(capsys, "undo", str(drill))
        assert doc["restored"], doc
    assert os.stat(linked).st_nlink == 2


# ---------------------------------------------------------------------------------------------
# the tree


def test_init_is_deterministic_and_marker_matches(tmp_path, capsys):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d, seed in ((a, 3), (b, 3), (c, 4)):
        code, doc, _ = cli(capsys, "init", str(d), "--files", "25", "--seed", str(seed))
        assert code == 0 and doc["files"] == 25
    assert marker_hashes(a) == marker_hashes(b) == tree_files(a) == tree_files(b)
    assert marker_hashes(a) != marker_hashes(c)
    marker = json.loads((a / MARKER_NAME).read_bytes())
    assert marker["seed"] == 3 and marker["complete"] and marker["version"] == 1


def test_template_tree_is_nested_sized_and_marked(template):
    hashes = tree_files(template)
    assert hashes == marker_hashes(template)
    assert len(hashes) == TREE_FILES
    assert any(p.count("/") >= 2 for p in hashes)
    sizes = sorted((template / p).stat().st_size for p in hashes)
    assert sizes[0] >= 512 and sizes[-1] <= 2_600_000
    assert 5 * 1024 <= sizes[len(sizes) // 2] <= 200 * 1024


def test_every_kind_is_a_real_parsable_file():
    from docx import Document
    from odf.opendocument import load as load_odf
    from openpyxl import load_workbook
    from PIL import Image
    from pptx import Presentation

    gen = Generator(11)
    date = dt.datetime(2024, 3, 4, 10, 0, tzinfo=dt.timezone.utc)
    for i, kind in enumerate(KINDS):
        for size in (3 * 1024, 90 * 1024, 700 * 1024):
            ext = "c" if kind == "c" else kind
            data = gen.make(FileSpec(i, f"x/doc{i}.{ext}", kind, size, date, f"Title {i}"))
            assert 500 < len(data) < 2_700_000, (kind, size, len(data))
            f = io.BytesIO(data)
            if kind == "docx":
                assert Document(f).paragraphs
            elif kind == "xlsx":
                assert load_workbook(f).active.max_row > 1
            elif kind == "pptx":
                assert len(Presentation(f).slides) >= 2
            elif kind == "odt":
                assert load_odf(f).text is not None
            elif kind == "pdf":
                assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
            elif kind in ("jpg", "png"):
                img = Image.open(f)
                img.verify()
                assert img.format == {"jpg": "JPEG", "png": "PNG"}[kind]
            elif kind == "sqlite":
                con = sqlite3.connect(":memory:")
                con.deserialize(data)
                assert con.execute("select count(*) from orders").fetchone()[0] > 0
            elif kind == "eml":
                msg = email.message_from_bytes(data, policy=email.policy.default)
                assert msg["Subject"] and msg["From"] and msg.get_body() is not None
            elif kind == "csv":
                rows = list(csv.reader(io.StringIO(data.decode())))
                assert rows[0][0] == "date" and len(rows) > 2
            elif kind == "py":
                compile(data, "x.py", "exec")
            elif kind == "c":
                assert b"#include <stdint.h>" in data and data.count(b"{") == data.count(b"}")
            elif kind == "md":
                assert data.startswith(b"# ") and data.decode()
            else:
                assert kind == "txt" and len(data.decode().split()) > 100


def test_every_kind_is_deterministic_across_time():
    # the libraries stamp the current time into zips and metadata: a second later, same bytes
    date = dt.datetime(2023, 9, 1, 8, 30, tzinfo=dt.timezone.utc)
    specs = [FileSpec(i, f"d/f{i}.{k}", k, 120 * 1024, date, "T") for i, k in enumerate(KINDS)]
    first = [Generator(5).make(s) for s in specs]
    time.sleep(1.1)
    second = [Generator(5).make(s) for s in specs]
    assert [digest(x) for x in first] == [digest(x) for x in second]
    assert digest(Generator(6).make(specs[0])) != digest(first[0])


def test_plan_scales_folders_and_stays_unique():
    specs = plan_tree(3000, 5)
    paths = [s.path for s in specs]
    assert len(set(p.lower() for p in paths)) == 3000
    assert paths == sorted(paths)
    assert {s.kind for s in specs} == set(KINDS)
    assert len({p.rsplit("/", 1)[0] for p in paths}) > 40


# ---------------------------------------------------------------------------------------------
# transforms


@pytest.mark.parametrize("transform", INPLACE_TRANSFORMS)
def test_transforms_round_trip_and_torn_writes_recover(transform):
    key, nonce = os.urandom(32), os.urandom(16)
    data = os.urandom(50_000) + bytes(200_000)
    ranges = ranges_for(transform, len(data))
    enc = xor_ranges(key, nonce, data, ranges, transform=transform)
    assert enc != data and len(enc) == len(data)
    assert xor_ranges(key, nonce, enc, ranges, transform=transform) == data
    changed = sum(1 for a, b in zip(enc, data) if a != b) / len(data)
    expect = {"full": (0.95, 1), "bitflip": (1, 1), "intermittent": (0.45, 0.55), "partial-5pct": (0.04, 0.06),
              "header-only": (4000 / len(data), 4096 / len(data))}[transform]
    assert expect[0] <= changed <= expect[1]
    if transform in ("full", "intermittent", "bitflip"):
        torn = enc[:8192] + data[8192:]  # a kill after two pages
        back = xor_ranges(key, nonce, torn, ranges, transform=transform)
        assert any(digest(c) == digest(data) for c in torn_candidates(torn, back, [(0, len(data))]))


# ---------------------------------------------------------------------------------------------
# every scenario: damage as described, then undo restores every hash

LIMIT = 4
HEX_NAME = re.compile(r"^[0-9a-f]{8}\.[a-z]{3,6}$")


def _need_openssl() -> None:
    if shutil.which("openssl"):
        return
    if shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "openssl"], capture_output=True, timeout=300)
    if not shutil.which("openssl"):
        pytest.skip("openssl is missing and could not be installed")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_scenario_damages_then_undo_restores(scenario, drill, capsys):
    if SCENARIOS[scenario].needs:
        _need_openssl()
    original = tree_files(drill)
    assert original == marker_hashes(drill)
    extra = ["--delay", "0"] if scenario == "slow" else []
    extra += ["--workers", "3"] if scenario == "many-workers" else []
    code, doc, err = cli(capsys, "run", scenario, str(drill), "--limit", str(LIMIT), *extra)
    assert code == 0, err
    assert doc["finished"] and not doc["stopped"] and doc["outcome"] == "finished"
    assert set(doc) >= {"scenario", "pids", "files_touched", "files_created", "files_deleted", "started_at", "ended_at",
                        "finished", "stopped"}
    assert doc["scenario"] == scenario and doc["pids"] and not doc["errors"]
    rel = lambda p: os.path.relpath(p, drill)  # noqa: E731
    touched = [rel(p) for p in doc["files_touched"]]
    created = [rel(p) for p in doc["files_created"]]
    deleted = [rel(p) for p in doc["files_deleted"]]
    now = tree_files(drill)
    victims = sorted(original)[:LIMIT]
    kind = SCENARIOS[scenario].kind

    if kind == "attack":
        assert sorted(touched) == victims
    if scenario in ("encrypt-in-place", "many-workers", "slow", "bitflip", "intermittent", "partial-5pct", "header-only",
                    "keep-extension", "wipe-zero", "wipe-random"):
        for p in victims:
            assert now[p] != original[p] and (drill / p).stat().st_size == _orig_size(drill, p)
    if scenario == "bitflip":
        p = victims[0]
        assert (drill / p).read_bytes()[:4] == bytes(255 - b for b in _orig_bytes(drill, p)[:4])
    if scenario == "intermittent":
        for p in victims:
            new, old = (drill / p).read_bytes(), _orig_bytes(drill, p)
            assert new[16:32] == old[16:32] and new[:16] != old[:16]
    if scenario == "header-only":
        for p in victims:
            new, old = (drill / p).read_bytes(), _orig_bytes(drill, p)
            assert new[4096:] == old[4096:] and new[:16] != old[:16]
    if scenario == "partial-5pct":
        for p in victims:
            new, old = (drill / p).read_bytes(), _orig_bytes(drill, p)
            assert 0 < sum(a != b for a, b in zip(new, old)) <= 0.07 * len(old) + 64
    if scenario == "base64":
        for p in victims:
            base64.decodebytes((drill / p).read_bytes())  # valid base64 all through
    if scenario == "wipe-zero":
        assert all(not any((drill / p).read_bytes()) for p in victims)
    if scenario == "wipe-truncate":
        assert all((drill / p).stat().st_size == 0 for p in victims)
    if scenario in ("wipe-delete", "encrypt-new-delete", "random-names", "fork-per-file"):
        assert sorted(deleted) == victims and not any((drill / p).exists() for p in victims)
    if scenario == "wipe-plausible":
        for p in victims:
            ext = p.rsplit(".", 1)[-1]
            same_type = {h for q, h in original.items() if q != p and q.rsplit(".", 1)[-1] == ext}
            # another document of the type; the only one of its type gets its own blocks reordered
            assert now[p] != original[p] and (now[p] in same_type or not same_type)
    if scenario == "encrypt-new-delete":
        assert all((drill / (p + ".WNCRY")).read_bytes().startswith(b"WANACRY!") for p in victims)
        for d in {os.path.dirname(p) for p in victims}:
            assert (drill / d / RANSOM_NOTE_NAME).exists()
    if scenario == "random-names":
        assert len(created) == LIMIT and all(HEX_NAME.match(os.path.basename(c)) for c in created)
    if scenario == "fork-per-file":
        assert all((drill / (p + ".enc")).read_bytes().startswith(b"Salted__") for p in victims)
    if scenario == "benign-edit":
        assert touched and all(now[p] != original[p] for p in touched)
    if scenario == "benign-compress-one":
        (src,) = deleted
        assert created == [src + ".gz"]
        assert blake3(gzip.decompress((drill / created[0]).read_bytes())).hexdigest() == original[src]
    if scenario == "benign-extract":
        assert len(created) == LIMIT
        for c in created:
            assert c.startswith("Extracted ") and now[c] == original[c.split("/", 1)[1]]

    code, undo, err = cli(capsys, "undo", str(drill))
    assert code == 0, (undo, err)
    assert undo["restored"] and not undo["failed"] and not undo["verify"]["extra"]
    assert tree_files(drill) == original
    assert not (drill / STATE_DIR_NAME / "manifest.jsonl").exists()  # archived to history/
    code, again, _ = cli(capsys, "undo", str(drill))  # a second undo is harmless
    assert code == 0 and again["restored"] and again["changes"] == 0


def _orig_bytes(drill: Path, rel: str) -> bytes:
    """The original content of a file: the template the test tree was copied from."""
    return (drill.parent.parent / "orig" / rel).read_bytes()


def _orig_size(drill: Path, rel: str) -> int:
    return len(_orig_bytes(drill, rel))


# ---------------------------------------------------------------------------------------------
# processes


def test_many_workers_uses_several_processes(drill, capsys):
    code, doc, _ = cli(capsys, "run", "many-workers", str(drill), "--workers", "4", "--limit", "12")
    assert code == 0 and doc["finished"]
    records = [r for r in read_manifest(drill) if r.get("run") == doc["run_id"]]
    members = {r["pid"] for r in records if r.get("op") == "process" and r.get("role") == "member"}
    writers = {r["pid"] for r in records if r.get("op") == "inplace"}
    assert len(members) == 4 and len(writers) >= 2 and writers <= members
    assert set(doc["pids"]) >= members | {doc["pids"][0]}
    assert cli(capsys, "undo", str(drill))[1]["restored"]


def test_fork_per_file_spawns_a_process_per_file(drill, capsys):
    _need_openssl()
    code, doc, _ = cli(capsys, "run", "fork-per-file", str(drill), "--limit", "6")
    assert code == 0 and doc["finished"] and len(doc["files_touched"]) == 6
    records = [r for r in read_manifest(drill) if r.get("run") == doc["run_id"]]
    openssl = [r["pid"] for r in records if r.get("op") == "process" and r.get("role") == "openssl"]
    shell = [r["pid"] for r in records if r.get("op") == "process" and r.get("role") == "shell"]
    assert len(openssl) == 6 and len(set(openssl)) == 6 and len(shell) == 1
    assert not set(openssl) & set(shell) and set(openssl) <= set(doc["pids"])
    assert cli(capsys, "undo", str(drill))[1]["restored"]


def _leader_pid(root: Path, deadline: float) -> int:
    while time.monotonic() < deadline:
        for r in read_manifest(root):
            if r.get("op") == "process" and r.get("role") == "leader":
                return int(r["pid"])
        time.sleep(0.05)
    raise AssertionError("no attacker process announced itself")


def _gone(pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} did not end")


def _start_cli(drill: Path, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nocry.cli.main", "--json", "drill", "run", *argv, str(drill)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_returns_when_its_attacker_is_frozen(drill, capsys):
    cli_proc = _start_cli(drill, "slow", "--delay", "0.2", "--limit", "30", "--timeout", "1.5")
    pid = None
    try:
        pid = _leader_pid(drill, time.monotonic() + 20)
        time.sleep(0.5)
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        out, err = cli_proc.communicate(timeout=30)  # pipes closed: the worker holds none of them
        assert time.monotonic() - t0 < 10
        doc = json.loads(out.strip().splitlines()[-1])
        assert cli_proc.returncode == 0, err
        assert doc["stopped"] and not doc["finished"] and doc["outcome"] == "timeout"
        assert pid in doc["pids"] and pid in doc["alive_pids"]
        assert 0 < len(doc["files_touched"]) < 30
        code, refused, _ = cli(capsys, "undo", str(drill))  # the frozen attacker could go on writing
        assert code == 2 and str(pid) in refused["error"]
    finally:
        if cli_proc.poll() is None:
            cli_proc.kill()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
            _gone(pid, time.monotonic() + 10)
    code, undo, _ = cli(capsys, "undo", str(drill))
    assert code == 0 and undo["restored"]
    assert tree_files(drill) == marker_hashes(drill)


def test_run_reports_a_killed_attacker(drill, capsys):
    cli_proc = _start_cli(drill, "slow", "--delay", "0.2", "--limit", "30")
    pid = _leader_pid(drill, time.monotonic() + 20)
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    out, _ = cli_proc.communicate(timeout=30)
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["stopped"] and doc["outcome"] == "killed" and doc["exit_status"] == -9
    assert cli(capsys, "undo", str(drill))[1]["restored"]
    assert tree_files(drill) == marker_hashes(drill)


# ---------------------------------------------------------------------------------------------
# CLI odds and ends


def test_list_names_attacks_and_labelled_benign_jobs(capsys):
    code, doc, _ = cli(capsys, "list")
    assert code == 0
    kinds = {s["name"]: s["kind"] for s in doc["scenarios"]}
    assert [n for n, k in kinds.items() if k == "attack"] == [
        "encrypt-in-place", "encrypt-new-delete", "intermittent", "partial-5pct", "header-only", "base64", "bitflip",
        "keep-extension", "random-names", "many-workers", "fork-per-file", "slow", "wipe-zero", "wipe-random",
        "wipe-truncate", "wipe-delete", "wipe-plausible"]
    benign = [s for s in doc["scenarios"] if s["kind"] == "benign"]
    assert {s["name"] for s in benign} == {"benign-edit", "benign-compress-one", "benign-extract"}
    assert all(s["summary"].startswith("NOT AN ATTACK") for s in benign)


def test_unknown_scenario_and_bad_options(drill, capsys):
    assert cli(capsys, "run", "nope", str(drill))[0] == 2
    assert cli(capsys, "run", "encrypt-in-place", str(drill), "--workers", "3")[0] == 2
    assert cli(capsys, "run", "encrypt-in-place", str(drill), "--limit", "0")[0] == 2


def test_missing_drill_extra_is_one_clear_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "docx" else real(name, *a))
    code, doc, err = cli(capsys, "init", str(tmp_path / "x"))
    assert code == 2
    assert "drill extra is not installed" in doc["error"] and "nocry[drill]" in doc["error"]
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_undo_copes_with_torn_writes_and_restored_files_and_keeps_unknown_data(drill, capsys):
    code, doc, _ = cli(capsys, "run", "encrypt-in-place", str(drill), "--limit", "3")
    assert code == 0
    a, b, _c = (os.path.relpath(p, drill) for p in doc["files_touched"])
    orig_a, enc_a = _orig_bytes(drill, a), (drill / a).read_bytes()
    assert len(orig_a) > 4096
    cut = 4096 * max(1, (len(orig_a) // 2) // 4096)
    (drill / a).write_bytes(enc_a[:cut] + orig_a[cut:])  # the attacker was killed mid-write
    (drill / b).write_bytes(_orig_bytes(drill, b))  # a defender already put this one back
    code, doc, _ = cli(capsys, "run", "encrypt-new-delete", str(drill), "--limit", "1")
    notes = [p for p in doc["files_created"] if p.endswith(RANSOM_NOTE_NAME)]
    assert str(drill / RANSOM_NOTE_NAME) in notes  # every folder on the way down, the top included
    note = notes[-1]
    Path(note).write_text("someone wrote here after the drill")  # not the drill's any more

    code, undo, _ = cli(capsys, "undo", str(drill))
    assert code == 6 and not undo["restored"]
    assert [f["path"] for f in undo["failed"]] == [note]
    assert Path(note).read_text().startswith("someone")  # never destroyed
    # b was already back; a (torn), c, the .WNCRY and the other notes undone
    assert undo["unchanged"] == 1 and undo["undone"] == 3 + len(notes) - 1
    assert undo["verify"]["changed"] == [] and undo["verify"]["missing"] == [] and undo["verify"]["extra"] == [note]

    Path(note).unlink()
    code, undo, _ = cli(capsys, "undo", str(drill))
    assert code == 0 and undo["restored"] and not undo["failed"]
    assert tree_files(drill) == marker_hashes(drill)
