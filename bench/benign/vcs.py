"""git on a real repository with history: a generated project of 300 commits (Python, C, headers,
Markdown, JSON, CSV, shell; files added, changed, deleted and renamed along the way), built with
``git fast-import`` into a bare repository outside the tree. Tag ``old`` is 280 commits behind
``main``: checking out one from the other rewrites, removes or adds most of the files.

No deb-src line is configured on Debian 12's default images, so ``apt-get source`` is not used:
the history is generated (deterministic, seeded)."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from bench.benign.common import Assets, Workload, asset, sh, system_env

_WORDS = (
    "account address amount balance batch buffer cache client config connect context count cursor data "
    "decode delta device entry error event export field filter format frame handle header index input "
    "invoice item journal key layer limit line list load lock log map merge message meter node offset "
    "order output packet page parse path payload policy pool port queue range reader record region report "
    "request result retry route row sample scan schema send session shard signal size slot source state "
    "status stream table task thread token total trace update user value vector window worker writer"
).split()
_KINDS = [("src/app", ".py"), ("src/core", ".c"), ("include", ".h"), ("docs", ".md"), ("config", ".json"),
          ("tests", ".py"), ("scripts", ".sh"), ("data", ".csv")]  # fmt: skip


def _name(rng: random.Random) -> str:
    return "_".join(rng.sample(_WORDS, 2))


def _content(rng: random.Random, ext: str, n: int) -> str:
    w = lambda: rng.choice(_WORDS)  # noqa: E731
    out = []
    for _ in range(n):
        if ext == ".py":
            out.append(f"def {w()}_{w()}({w()}, {w()}=None):\n    \"\"\"Return the {w()} of the {w()}.\"\"\"\n    if {w()} is None:\n        return {rng.randint(0, 999)}\n    return {w()}.{w()}({w()})\n")
        elif ext in (".c", ".h"):
            if ext == ".h":
                out.append(f"int {w()}_{w()}(struct {w()} *{w()}, size_t {w()});\n")
            else:
                out.append(f"int {w()}_{w()}(struct {w()} *p, size_t n)\n{{\n    size_t i;\n    for (i = 0; i < n; i++)\n        p->{w()} += {rng.randint(1, 64)};\n    return (int)n;\n}}\n")
        elif ext == ".md":
            out.append(f"## {w().title()} {w()}\n\nThe {w()} {w()} keeps the {w()} of each {w()} until the {w()} is {w()}. " * 2 + "\n")
        elif ext == ".json":
            out.append(f'  "{w()}_{rng.randint(0, 99)}": {{"{w()}": {rng.randint(0, 9999)}, "{w()}": "{w()}"}},\n')
        elif ext == ".sh":
            out.append(f'{w()}() {{\n    echo "{w()} $1" >> "${w().upper()}_LOG"\n}}\n')
        else:
            out.append(f"{rng.randint(1000, 9999)},{w()},{w()},{rng.random() * 1000:.2f}\n")
    body = "".join(out)
    return "{\n" + body + '  "end": 0\n}\n' if ext == ".json" else body


@asset("repo")
def _repo(assets: Assets, d: Path) -> None:
    """repo.git: 300 commits; tag ``old`` = main~280."""
    rng = random.Random(11)
    files: dict[str, str] = {}
    stream: list[bytes] = []
    mark = 0

    def blob(text: str) -> int:
        nonlocal mark
        mark += 1
        data = text.encode()
        stream.append(b"blob\nmark :%d\ndata %d\n" % (mark, len(data)) + data + b"\n")
        return mark

    def new_path() -> str:
        while True:
            dirn, ext = rng.choice(_KINDS)
            p = f"{dirn}/{_name(rng)}{ext}"
            if p not in files:
                return p

    for i in range(300):
        ops: list[str] = []
        if i == 0:
            for _ in range(150):
                p = new_path()
                files[p] = _content(rng, p[p.rfind(".") :], rng.randint(5, 60))
                ops.append(f"M 100644 :{blob(files[p])} {p}")
        else:
            for p in rng.sample(sorted(files), rng.randint(1, 5)):
                lines = files[p].splitlines(keepends=True)
                a = rng.randrange(len(lines))
                lines[a : a + rng.randint(1, 8)] = _content(rng, p[p.rfind(".") :], rng.randint(1, 4)).splitlines(keepends=True)
                files[p] = "".join(lines)
                ops.append(f"M 100644 :{blob(files[p])} {p}")
            for _ in range(rng.choice([0, 1, 1, 2])):
                p = new_path()
                files[p] = _content(rng, p[p.rfind(".") :], rng.randint(5, 60))
                ops.append(f"M 100644 :{blob(files[p])} {p}")
            if rng.random() < 0.2 and len(files) > 100:
                p = rng.choice(sorted(files))
                del files[p]
                ops.append(f"D {p}")
            if rng.random() < 0.05:
                p = rng.choice(sorted(files))
                q = p.rsplit("/", 1)[0] + "/" + _name(rng) + p[p.rfind(".") :]
                if q not in files:
                    files[q] = files.pop(p)
                    ops.append(f"D {p}")
                    ops.append(f"M 100644 :{blob(files[q])} {q}")
        t = 1704067200 + i * 10800
        msg = f"{rng.choice(['Fix', 'Add', 'Refactor', 'Document', 'Speed up'])} {rng.choice(_WORDS)} {rng.choice(_WORDS)}\n".encode()
        head = f"commit refs/heads/main\ncommitter Dev Eloper <dev@example.org> {t} +0000\n".encode()
        stream.append(head + b"data %d\n" % len(msg) + msg + ("\n".join(ops) + "\n").encode() + b"\n")
        if i == 19:
            stream.append(b"reset refs/tags/old\nfrom refs/heads/main\n\n")
    bare = d / "repo.git"
    env = system_env({"HOME": str(d)})
    sh(["git", "init", "-q", "--bare", "-b", "main", str(bare)], env=env)
    p = subprocess.run(["git", "fast-import", "--quiet"], cwd=bare, input=b"".join(stream), env=env, capture_output=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.decode(errors="replace")[-1000:])
    sh(["git", "gc", "-q"], cwd=bare, env=env)


_GITCFG = 'export GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@example.org GIT_COMMITTER_NAME=Bench GIT_COMMITTER_EMAIL=bench@example.org\n'


def _pre_clone(tree: Path, assets: Assets, scratch: Path) -> None:
    """A working copy the user cloned long ago: in the tree before nocry starts."""
    (tree / "Code").mkdir(exist_ok=True)
    sh(["git", "clone", "-q", str(assets.get("repo") / "repo.git"), str(tree / "Code" / "app")], env=system_env({"HOME": str(scratch / "home")}))


WORKLOADS = [
    Workload(
        "git-clone-commit-gc", "vcs",
        title="git clone (300 commits), 10 commits, gc, checkout 280 commits back and forth 3 times",
        script=_GITCFG + """
mkdir -p Code
git clone -q "$A/repo/repo.git" Code/app
cd Code/app
for i in $(seq 1 10); do
  for f in $(git ls-files 'src/app/*.py' | sed -n "$i,$((i + 2))p"); do printf '# change %s\\n' "$i" >> "$f"; done
  git commit -q -am "change $i"
done
git gc -q
for i in 1 2 3; do
  git checkout -q old
  git checkout -q main
done
""",
        needs=("git",), apt=("git",), assets=("repo",), quick=True, tested=True,
    ),
    Workload(
        "git-checkout-existing", "vcs",
        title="git checkout 280 commits back and forth, commit, gc, in a clone made before protection",
        script=_GITCFG + """
cd Code/app
git checkout -q old
git checkout -q main
printf '# reviewed\\n' >> "$(git ls-files 'src/app/*.py' | head -1)"
git commit -q -am "review"
git gc -q
""",
        needs=("git",), apt=("git",), assets=("repo",), pre=_pre_clone,
    ),
]  # fmt: skip
