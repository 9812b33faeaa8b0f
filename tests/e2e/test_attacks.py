"""Every drill against a running daemon in enforce mode: detected, frozen, undone bit-exact.

The drills run with a 10 ms pause between files so that each attack is still running when it is
judged: these tests check that the freeze really stops it. Full-speed runs, with the number of
files damaged before the freeze, are the attack benchmark's job (bench/attacks).
Decoys are off here, so detection rests on content and namespace evidence alone; one test turns
them on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import blake3
import pytest

from tests.e2e.harness import Nocry

pytestmark = pytest.mark.kernel

ATTACKS = [
    "encrypt-in-place", "encrypt-new-delete", "intermittent", "partial-5pct", "header-only", "base64", "bitflip",
    "keep-extension", "random-names", "many-workers", "fork-per-file", "slow", "wipe-zero", "wipe-random",
    "wipe-truncate", "wipe-delete", "wipe-plausible",
]  # fmt: skip
BENIGN = ["benign-edit", "benign-compress-one", "benign-extract"]


@pytest.fixture(scope="module")
def template():
    d = Path(tempfile.mkdtemp(prefix="nocry-drill-tpl-"))
    res = Nocry(d / "unused-home").cli("drill", "init", d / "tree", "--files", "60", "--seed", "7")
    assert res.code == 0, res
    yield d / "tree"
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def work(template):
    d = Path(tempfile.mkdtemp(prefix="nocry-att-"))
    subprocess.run(["cp", "-a", str(template), str(d / "tree")], check=True)
    (d / "home").mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _generated(tree: Path) -> dict[str, str]:
    marker = json.loads((tree / ".nocry-drill").read_text())
    return {f["path"]: f["blake3"] for f in marker["files"]}


def _disk(tree: Path) -> dict[str, str]:
    out = {}
    for p in tree.rglob("*"):
        rel = str(p.relative_to(tree))
        if p.is_file() and not p.is_symlink() and not rel.startswith(".nocry-drill"):
            out[rel] = blake3.blake3(p.read_bytes()).hexdigest()
    return out


def _tree_bytes(tree: Path) -> dict[str, str]:
    return _disk(tree)


def _wait_incident(n: Nocry, timeout: float = 15) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        incs = n.cli("incidents").json["incidents"]
        if incs:
            return incs
        time.sleep(0.1)
    return []


def _attack(work: Path, scenario: str, canaries: bool = False) -> None:
    tree = work / "tree"
    (work / "home" / "config.toml").write_text(f"[canary]\nenabled = {'true' if canaries else 'false'}\n")
    want = _generated(tree)
    assert _disk(tree) == want
    with Nocry(work / "home") as n:
        n.start(tree)
        args = ["drill", "run", scenario, tree, "--timeout", "4", "--delay", "0.3" if scenario == "slow" else "0.01"]
        if scenario == "slow":
            args += ["--limit", "12"]
        run = n.cli(*args, timeout=120)
        assert run.code in (0, 1), run
        incs = _wait_incident(n)
        assert incs, f"{scenario}: not detected; drill said {run.out[-800:]}\n{n.log()[-2000:]}"
        assert len(incs) == 1, [i["actor"] for i in incs]
        inc = incs[0]
        assert inc["state"] == "frozen", inc
        # the attacker makes no change from 1 s after detection on
        time.sleep(max(0.0, inc["detected_at"] + 1.0 - time.time()))
        before = _tree_bytes(tree)
        time.sleep(1.0)
        assert _tree_bytes(tree) == before, f"{scenario}: files still change after the freeze"
        touched = inc["objects_touched"]
        n.sync()
        res = n.cli("incident", "restore", str(inc["id"]), timeout=300)
        assert res.code in (0, 1), res
        assert res.json["failed"] == 0, res.json
        # every generated file is back, bit-exact; ransom notes and encrypted copies are gone
        got = _disk(tree)
        lost = {p for p in want if got.get(p) != want[p]}
        assert not lost, f"{scenario}: {len(lost)} files not restored: {sorted(lost)[:5]}"
        extra = {p for p in set(got) - set(want) if not p.startswith("!")}  # decoys stay
        assert not extra, f"{scenario}: left behind: {sorted(extra)[:5]}"
        assert touched >= 1
        kill = n.cli("incident", "kill", str(inc["id"]))
        assert kill.code in (0, 1), kill
        n.stop()


@pytest.mark.parametrize("scenario", ATTACKS)
def test_attack_is_detected_frozen_and_undone(work, scenario):
    _attack(work, scenario)


def test_decoys_catch_an_attack_on_their_first_touch(work):
    _attack(work, "encrypt-in-place", canaries=True)


@pytest.mark.parametrize("scenario", BENIGN)
def test_ordinary_work_raises_nothing(work, scenario):
    tree = work / "tree"
    with Nocry(work / "home") as n:
        n.start(tree)
        run = n.cli("drill", "run", scenario, tree, "--timeout", "20", timeout=120)
        assert run.code == 0, run
        assert run.json["outcome"] == "finished"
        n.sync()
        time.sleep(0.3)
        assert n.cli("incidents").json["incidents"] == []
        n.stop()


def test_released_false_positive_carries_on_unharmed(work):
    """Release thaws the actor and it finishes its work; nothing it did is undone."""
    tree = work / "tree"
    (work / "home" / "config.toml").write_text("[canary]\nenabled = false\n")
    with Nocry(work / "home") as n:
        n.start(tree)
        proc = subprocess.Popen(
            [os.sys.executable, "-m", "nocry", "--json", "drill", "run", "encrypt-in-place", str(tree), "--delay", "0.02", "--timeout", "60"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        incs = _wait_incident(n)
        assert incs and incs[0]["state"] == "frozen"
        res = n.cli("incident", "release", str(incs[0]["id"]))
        assert res.code == 0, res
        out, _ = proc.communicate(timeout=120)
        run = json.loads(out)
        assert run["outcome"] == "finished", run
        assert len(run["files_touched"]) >= len(_generated(tree))  # every file got processed
        assert n.cli("incidents").json["incidents"][0]["state"] == "released"
        n.stop()


def test_observe_mode_alerts_without_acting(work):
    tree = work / "tree"
    (work / "home" / "config.toml").write_text("[canary]\nenabled = false\n")
    with Nocry(work / "home") as n:
        n.start(tree, extra=("--mode", "observe"))
        assert n.status()["mode"] == "observe"
        run = n.cli("drill", "run", "encrypt-in-place", tree, "--delay", "0.005", "--timeout", "30", timeout=120)
        assert run.json["outcome"] == "finished", run  # nobody stopped it
        incs = _wait_incident(n)
        assert incs and incs[0]["state"] == "observed" and incs[0]["mode"] == "observe"
        assert any(a["alert"] == "incident" for a in n.status()["recent_alerts"])
        # the whole attack is in the incident, and undone by it
        n.sync()
        res = n.cli("incident", "restore", str(incs[0]["id"]), timeout=300)
        assert res.json["failed"] == 0, res.json
        assert _disk(tree) == _generated(tree)
        n.stop()


def test_the_daemon_runs_niced_while_calm_and_at_normal_priority_once_attacked(work):
    from tests.kernel.test_priority import thread_nices

    tree = work / "tree"
    (work / "home" / "config.toml").write_text("[canary]\nenabled = false\n[capture]\nnice = 12\n")
    with Nocry(work / "home") as n:
        n.start(tree)
        st = n.status()
        base = os.getpriority(os.PRIO_PROCESS, 0)
        low = min(19, base + 12)
        assert st["priority"]["nice"] == low and st["priority"]["lowered"], st["priority"]
        assert set(thread_nices(st["pid"]).values()) == {low}
        run = n.cli("drill", "run", "encrypt-in-place", tree, "--delay", "0.01", "--timeout", "4", timeout=120)
        assert run.code in (0, 1), run
        incs = _wait_incident(n)
        assert incs
        deadline = time.monotonic() + 5
        while n.status()["priority"]["lowered"] and time.monotonic() < deadline:
            time.sleep(0.05)
        pr = n.status()["priority"]
        assert pr["nice"] == base and pr["last_reason"] in ("suspicious_actor", "incident_open"), pr
        assert set(thread_nices(st["pid"]).values()) == {base}
        for inc in incs:  # the frozen attacker must not outlive the test
            assert n.cli("incident", "kill", str(inc["id"])).code in (0, 1)
        n.stop()


WIPE_UNDER_FAKE_GIT = r"""
import os, sys, time
tree = sys.argv[1]
os.makedirs(os.path.join(tree, ".git"), exist_ok=True)
open(os.path.join(tree, ".git", "index.lock"), "w").close()  # looks like git at work
for d, _, files in os.walk(tree):
    if "/.git" in d or "/.nocry" in d:
        continue
    for name in sorted(files):
        if name.rsplit(".", 1)[-1] in ("docx", "xlsx", "pdf", "odt", "csv", "txt", "jpg", "png", "pptx", "ods"):
            os.unlink(os.path.join(d, name))
            time.sleep(0.01)
"""


def test_a_checkout_that_removes_documents_is_no_attack_when_the_repository_holds_them(tmp_path):
    """git checkout of an older commit removes the 40 CSV exports committed since; the analyzer
    finds each in the repository's pack, and no incident is raised."""
    repo, home = tmp_path / "repo", tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[canary]\nenabled = false\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "README.md").write_text("reports\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    (repo / "exports").mkdir()
    for i in range(40):
        (repo / "exports" / f"q{i}.csv").write_text("".join(f"{i},{j},{i * j}\n" for j in range(200)))
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "exports"], check=True)
    subprocess.run([*git, "gc", "-q"], check=True)
    with Nocry(home) as n:
        n.start(repo)
        subprocess.run([*git, "checkout", "-q", "HEAD~1"], check=True, timeout=60)
        assert not (repo / "exports").exists()
        n.sync()
        time.sleep(0.3)
        assert n.cli("incidents").json["incidents"] == []
        assert n.status()["detection"]["repository_lookups"] >= 30
        n.stop()


def test_a_fake_repository_does_not_excuse_a_wipe(work):
    """Writing a ``.git`` above the documents is how a checkout looks to the detector; the
    analyzer finds that this repository holds none of the deleted files, so they count."""
    tree = work / "tree"
    (work / "home" / "config.toml").write_text("[canary]\nenabled = false\n")
    want = _generated(tree)
    with Nocry(work / "home") as n:
        n.start(tree)
        wiper = subprocess.Popen([os.sys.executable, "-c", WIPE_UNDER_FAKE_GIT, str(tree)])
        try:
            incs = _wait_incident(n)
            assert incs, f"not detected\n{n.log()[-2000:]}"
            assert incs[0]["state"] == "frozen", incs[0]
            deletes = [i for i in incs[0]["indicators"] if i["name"] == "delete"]
            assert deletes and all("which does not hold it" in i["detail"] for i in deletes), incs[0]["indicators"]
            assert n.cli("incident", "kill", str(incs[0]["id"])).code in (0, 1)
            assert wiper.wait(30) == -9
        finally:
            wiper.kill()
        n.sync()
        res = n.cli("incident", "restore", str(incs[0]["id"]), timeout=300)
        assert res.json["failed"] == 0, res.json
        got = _disk(tree)
        assert {p for p in want if got.get(p) != want[p]} == set()
        n.stop()


FLOOD = "import os, sys\nd = os.path.join(sys.argv[1], 'flood')\nos.mkdir(d)\nfor i in range(4000):\n    open(os.path.join(d, 'x%d' % i), 'wb').write(b'%d' % i)"


def test_an_encryption_hidden_in_lost_events_is_still_reported_and_undone(work):
    """An attacker that first floods the kernel's queue and encrypts inside the dropped stretch
    leaves no event to name it by, so nothing is frozen; the rescan after the overflow finds the
    documents rewritten and raises the alarm with the moment events were lost from, and a
    restore of the tree to that moment brings every document back."""
    tree = work / "tree"
    (work / "home" / "config.toml").write_text("[canary]\nenabled = false\n")
    want = _generated(tree)
    knob = Path("/proc/sys/fs/fanotify/max_queued_events")
    old = knob.read_text()
    knob.write_text("64\n")  # applies to groups created from now on
    try:
        with Nocry(work / "home") as n:
            n.start(tree)
            knob.write_text(old)
            os.kill(n.daemon.pid, signal.SIGSTOP)  # the daemon falls behind while the flood lands
            try:
                subprocess.run([os.sys.executable, "-c", FLOOD, str(tree)], check=True)
                run = n.cli("drill", "run", "encrypt-in-place", tree, "--timeout", "30", timeout=120)
                assert run.code == 0 and run.json["outcome"] == "finished", run
            finally:
                os.kill(n.daemon.pid, signal.SIGCONT)
            n.sync()
            st = n.status()
            assert st["overflows"] >= 1, st
            alerts = [json.loads(line) for line in (work / "home" / "alerts.jsonl").read_text().splitlines()]
            alarms = [a for a in alerts if a["alert"] == "unattributed_damage"]
            assert len(alarms) == 1, alarms
            alarm = alarms[0]
            assert alarm["documents"] >= 10 and alarm["lost_since"] is not None, alarm
            assert st["detection"]["unattributed_damage"] == alarm["documents"]
            assert n.cli("incidents").json["incidents"] == []
            res = n.cli("restore", tree, "--at", str(alarm["lost_since"]), timeout=300)
            assert res.code == 0, res
            got = _disk(tree)
            assert {p for p in want if got.get(p) != want[p]} == set()
            n.stop()
    finally:
        knob.write_text(old)


def test_an_encryption_while_nocry_was_not_running_is_reported_at_the_next_start(work):
    """Documents encrypted while the daemon was down are found by the start's rescan, judged by
    their content, and reported; each one's earlier version is in the vault."""
    tree = work / "tree"
    (work / "home" / "config.toml").write_text("[canary]\nenabled = false\n")
    want = _generated(tree)
    with Nocry(work / "home") as n:
        n.start(tree)
        n.stop()
        run = n.cli("drill", "run", "encrypt-in-place", tree, "--timeout", "30", timeout=120)
        assert run.code == 0 and run.json["outcome"] == "finished", run
        n.start(tree)
        alerts = [json.loads(line) for line in (work / "home" / "alerts.jsonl").read_text().splitlines()]
        alarms = [a for a in alerts if a["alert"] == "unattributed_damage"]
        assert len(alarms) == 1 and alarms[0]["documents"] >= 10 and alarms[0]["lost_since"] is None, alarms
        assert "nocry was not running" in alarms[0]["message"]
        assert n.cli("incidents").json["incidents"] == []
        encrypted = next(p for p in want if _disk(tree).get(p) != want[p])
        versions = n.cli("versions", tree / encrypted).json
        assert len(versions["versions"]) >= 2, versions
        n.stop()
