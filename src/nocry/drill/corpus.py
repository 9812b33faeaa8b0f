"""The document tree a drill attacks: a realistic, seeded, deterministic mix of office files.

    specs = plan_tree(n_files, seed)        # paths, types, target sizes, dates: pure, no I/O
    gen = Generator(seed)
    for spec in specs:
        data = gen.make(spec)               # real formats from the usual libraries
        fs.create(spec.path, data)          # (build_tree does this and returns the hash list)

Speed (2,000 files in ~17 s on two cores): a few dozen library-made templates per zipped office type
(docx, xlsx, pptx, odt) are built once, with placeholders; each file is a template whose
placeholders get fresh text (and, for big ones, a fresh picture) and whose zip is rewritten with
fixed timestamps (that rewrite is also what makes python-docx, openpyxl, python-pptx and odfpy output
deterministic: they stamp the current time). Photos reuse a few grain textures; text comes from a
fixed pool of sentences. Everything else is made per file. Each file draws from its own
``random.Random`` seeded by (seed, index, path), templates from (seed, template id), so the bytes
depend only on the seed, the file count and the versions of the libraries.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import math
import os
import random
import re
import sqlite3
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from nocry.drill.crypto import digest
from nocry.drill.safefs import DrillFS

__all__ = ["FileSpec", "plan_tree", "Generator", "build_tree", "KINDS", "MAX_FILES"]

log = logging.getLogger(__name__)

MAX_FILES = 100_000
KiB = 1024
MiB = 1024 * 1024

# kind -> share of the tree (a small office's file server)
KINDS: dict[str, float] = {
    "docx": 13, "xlsx": 10, "pptx": 4, "odt": 4, "pdf": 12, "jpg": 13, "png": 5, "sqlite": 2,
    "eml": 13, "csv": 6, "py": 4, "c": 3, "txt": 4, "md": 4,
}
# kind -> (min, max) target size in bytes; the format may add its own overhead
SIZE_RANGE: dict[str, tuple[int, int]] = {
    "docx": (12 * KiB, 2 * MiB), "xlsx": (6 * KiB, 2 * MiB), "pptx": (30 * KiB, 2 * MiB),
    "odt": (4 * KiB, 1 * MiB), "pdf": (2 * KiB, 2 * MiB), "jpg": (20 * KiB, 2 * MiB),
    "png": (3 * KiB, 1 * MiB), "sqlite": (8 * KiB, 2 * MiB), "eml": (1 * KiB, 2 * MiB),
    "csv": (1 * KiB, 1 * MiB), "py": (1 * KiB, 160 * KiB), "c": (1 * KiB, 160 * KiB),
    "txt": (1 * KiB, 256 * KiB), "md": (1 * KiB, 128 * KiB),
}

FIRST = ["Anna", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Liam",
         "Maria", "Noah", "Olga", "Pablo", "Qi", "Rosa", "Sam", "Tariq", "Ursula", "Viktor", "Wen", "Yusuf", "Zoe",
         "Hélène", "Jürgen", "Søren", "Ana", "Marek"]
LAST = ["Adams", "Berg", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jansen", "Kowalski",
        "Larsen", "Müller", "Novak", "Okafor", "Petrov", "Quinn", "Rossi", "Schmidt", "Tanaka", "Ulrich", "Vega",
        "Weber", "Xu", "Yilmaz", "Zimmer", "Nowak", "Lefèvre"]
COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella Logistics", "Stark Supplies", "Wayne Foods", "Hooli",
             "Vandelay Import", "Soylent Farms", "Tyrell Systems", "Cyberdyne Parts", "Wonka Retail",
             "Nordwind GmbH", "Blue Harbor Ltd", "Pinecrest Bank", "Helios Energy"]
PROJECTS = ["Atlas", "Borealis", "Cedar", "Dynamo", "Ember", "Falcon", "Granite", "Harbor", "Iris", "Juniper",
            "Kestrel", "Lumen", "Meridian", "Nimbus", "Orion", "Pioneer", "Quartz", "Redwood", "Summit", "Tundra",
            "Umbra", "Vertex", "Willow", "Xenon", "Yukon", "Zephyr"]
TOPICS = ["budget", "hiring", "security", "migration", "pricing", "logistics", "marketing", "compliance",
          "onboarding", "procurement", "training", "roadmap", "audit", "support", "infrastructure", "travel"]
CITIES = ["Berlin", "Lisbon", "Oslo", "Lyon", "Kraków", "Leeds", "Porto", "Ghent", "Turin", "Malmö"]
EVENTS = ["Summer party", "Team offsite", "Trade fair", "Office move", "Christmas dinner", "Site visit",
          "Product launch", "Workshop"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
SUBJECTS = ["The team", "Our customer", "The finance department", "The board", "The vendor", "Management",
            "The project lead", "Legal", "The steering committee", "Procurement", "The auditor", "Support",
            "Our partner", "The works council", "HR"]
VERBS = ["reviewed", "approved", "postponed", "discussed", "delivered", "requested", "rejected", "signed",
         "updated", "escalated", "prepared", "summarised", "questioned", "confirmed", "estimated", "planned",
         "scheduled", "documented", "cancelled", "forwarded"]
OBJECTS = ["the quarterly budget", "the revised contract", "the migration plan", "the new pricing model",
           "the open invoices", "the hiring plan", "the security review", "the shipping schedule",
           "the draft policy", "the supplier list", "the travel expenses", "the training material",
           "the customer survey", "the risk register", "the change request", "the service levels",
           "the inventory count", "the forecast", "the floor plan", "the backup concept"]
ADJUNCTS = ["before the deadline", "after the audit", "in the weekly meeting", "for the next quarter",
            "without further comments", "with minor changes", "as agreed last week", "despite the delays",
            "for the {city} office", "on short notice", "in close cooperation with {company}",
            "by the end of {month}", "ahead of the board meeting", "pending approval", "until further notice"]


# ----------------------------------------------------------------------------------------------
# the plan: which files, where, how big


@dataclass(frozen=True, slots=True)
class FileSpec:
    index: int
    path: str  # relative, "/"-separated
    kind: str
    size: int  # target size in bytes
    date: dt.datetime  # the document's date (also its mtime)
    title: str


def _target_size(rng: random.Random, kind: str) -> int:
    lo, hi = SIZE_RANGE[kind]
    u = rng.random()
    if kind == "jpg":  # photos: mostly 60 KiB - 1 MiB
        size = math.exp(rng.uniform(math.log(60 * KiB), math.log(1 * MiB))) if u < 0.9 else rng.uniform(1 * MiB, 2 * MiB)
    elif u < 0.08:
        size = rng.uniform(1 * KiB, 5 * KiB)
    elif u < 0.94:
        size = math.exp(rng.uniform(math.log(5 * KiB), math.log(200 * KiB)))
    else:
        size = math.exp(rng.uniform(math.log(200 * KiB), math.log(2 * MiB)))
    return int(min(hi, max(lo, size)))


def _scale_lists(n_files: int) -> tuple[list[int], list[str], list[str]]:
    nyears = min(12, 3 + n_files // 2000)
    years = list(range(2025 - nyears + 1, 2026))
    nproj = 3 + n_files // 300
    projects = [PROJECTS[i % len(PROJECTS)] + ("" if i < len(PROJECTS) else f" {i // len(PROJECTS) + 1}") for i in range(nproj)]
    nusers = 2 + n_files // 500
    users = [f"{FIRST[i % len(FIRST)]} {LAST[(i * 7) % len(LAST)]}" for i in range(nusers)]
    return years, projects, users


def _folder(rng: random.Random, kind: str, year: int, years: list[int], projects: list[str], users: list[str]) -> str:
    P = rng.choice(projects)
    if rng.random() < 0.07:  # personal folders hold a bit of everything
        return f"Users/{rng.choice(users)}/{rng.choice(['Documents', 'Desktop', 'Downloads'])}"
    choices: dict[str, list[str]] = {
        "docx": [f"Finance/{year}", "HR/Contracts", "HR/Reviews", f"Projects/{P}/docs", "Shared/Templates", "Legal"],
        "xlsx": [f"Finance/{year}", f"Finance/{year}/Q{rng.randint(1, 4)}", f"Projects/{P}/data", "HR", "Sales"],
        "pptx": [f"Projects/{P}/slides", "Sales/Presentations", "Shared/Templates"],
        "odt": ["HR/Policies", "Shared/Templates", "Legal"],
        "pdf": [f"Finance/{year}/Invoices", "Legal/Contracts", f"HR/Payslips/{year}", f"Projects/{P}/docs", "Shared/Scans"],
        "jpg": [f"Photos/{year}/{rng.choice(EVENTS)}", f"Projects/{P}/assets", f"Photos/{year}"],
        "png": [f"Projects/{P}/assets", "Shared/Logos", "Photos/Screenshots"],
        "sqlite": [f"Projects/{P}/data", "Finance", "Sales"],
        "eml": ["Mail/Inbox", "Mail/Sent", f"Mail/Archive/{year}", f"Mail/Projects/{P}"],
        "csv": [f"Finance/{year}", f"Projects/{P}/data", "Sales/Exports"],
        "py": [f"src/{P.lower().replace(' ', '-')}", f"src/{P.lower().replace(' ', '-')}/lib", "src/tools"],
        "c": [f"src/{P.lower().replace(' ', '-')}/native", "src/firmware"],
        "txt": ["Notes", f"Projects/{P}", "Shared"],
        "md": ["Notes", f"Projects/{P}", f"src/{P.lower().replace(' ', '-')}"],
    }
    return rng.choice(choices[kind])


def _name(rng: random.Random, kind: str, d: dt.datetime) -> str:
    date = d.strftime("%Y-%m-%d")
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    month, year, q = MONTHS[d.month - 1], d.year, (d.month - 1) // 3 + 1
    company, topic, project = rng.choice(COMPANIES), rng.choice(TOPICS), rng.choice(PROJECTS)
    n = rng.randint(1, 9999)
    pats: dict[str, list[str]] = {
        "docx": [f"{topic.title()} report {date}", f"Meeting notes {date}", f"Proposal for {company}",
                 f"Contract {company} {year}", f"Letter to {name}", f"Minutes {date}", f"Offer letter {name}",
                 f"Performance review {name} {year}"],
        "xlsx": [f"Budget {year}", f"Expenses {month} {year}", f"Forecast Q{q} {year}", f"Timesheet {name} {month}",
                 f"Inventory {date}", f"Sales pipeline {month} {year}", f"{topic.title()} costs {year}"],
        "pptx": [f"{project} kickoff", f"{topic.title()} strategy {year}", f"Quarterly review Q{q} {year}",
                 f"Pitch {company}", f"Präsentation {company}"],
        "odt": [f"Policy {topic}", f"Handbook {topic}", f"Draft {topic} {date}"],
        "pdf": [f"Invoice {year}-{n:05d}", f"Payslip {name} {month} {year}", f"Statement {month} {year}",
                f"Signed contract {company}", f"Scan {date} {n:04d}", f"Résumé {name}"],
        "jpg": [f"IMG_{n:04d}", f"DSC{n:05d}", f"{rng.choice(EVENTS)} {n:03d}"],
        "png": [f"Screenshot {date} at {d:%H.%M.%S}", f"diagram-{topic}", f"logo-{company.split()[0].lower()}"],
        "sqlite": [f"{project.lower()}", "crm", "inventory", f"{topic}-tracker"],
        "eml": [f"{date} {topic.title()} {rng.choice(['update', 'question', 'invoice', 'follow-up', 'minutes'])}"],
        "csv": [f"export-{topic}-{date}", f"transactions {month} {year}", f"{company.split()[0].lower()}-orders"],
        "py": [f"{rng.choice(TOPICS)}_{rng.choice(['utils', 'client', 'models', 'report', 'sync', 'cli'])}"],
        "c": [f"{rng.choice(['uart', 'spi', 'crc', 'ring', 'sched', 'log', 'cfg', 'net'])}_{rng.choice(['core', 'io', 'buf', 'util'])}"],
        "txt": [f"notes {date}", "todo", f"{topic} ideas", f"phone list {year}"],
        "md": ["README", f"{topic}", f"meeting-{date}", "CHANGELOG"],
    }
    ext = {"sqlite": rng.choice(["sqlite", "db", "sqlite3"]), "c": rng.choice(["c", "c", "h"])}.get(kind, kind)
    return f"{rng.choice(pats[kind])}.{ext}"


def plan_tree(n_files: int, seed: int) -> list[FileSpec]:
    """The files of a drill tree: deterministic in (n_files, seed), sorted by path."""
    if not 1 <= n_files <= MAX_FILES:
        raise ValueError(f"file count must be between 1 and {MAX_FILES}")
    years, projects, users = _scale_lists(n_files)
    kinds, weights = list(KINDS), list(KINDS.values())
    used: set[str] = set()
    out: list[FileSpec] = []
    for i in range(n_files):
        rng = random.Random(f"nocry-drill-plan:{seed}:{i}")
        kind = rng.choices(kinds, weights)[0]
        year = rng.choice(years)
        date = dt.datetime(year, rng.randint(1, 12), rng.randint(1, 28), rng.randint(7, 19), rng.randint(0, 59),
                           rng.randint(0, 59), tzinfo=dt.timezone.utc)
        folder = _folder(rng, kind, year, years, projects, users)
        name = _name(rng, kind, date)
        path = f"{folder}/{name}"
        stem, dot, ext = name.rpartition(".")
        k = 2
        while path.lower() in used:
            path = f"{folder}/{stem} ({k}){dot}{ext}"
            k += 1
        used.add(path.lower())
        out.append(FileSpec(i, path, kind, _target_size(rng, kind), date, stem))
    out.sort(key=lambda s: s.path)
    return out


# ----------------------------------------------------------------------------------------------
# text


class Words:
    """A fixed pool of business sentences; files draw from it, so text costs one ``choices``."""

    def __init__(self) -> None:
        rng = random.Random("nocry-drill-sentences")
        self.sentences = []
        for _ in range(4000):
            adj = rng.choice(ADJUNCTS).format(city=rng.choice(CITIES), company=rng.choice(COMPANIES), month=rng.choice(MONTHS))
            s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {adj}."
            if rng.random() < 0.3:
                s += f" {rng.choice(['Costs', 'Savings', 'Revenue', 'The delta'])} of {rng.randint(1, 999)},{rng.randint(0, 999):03d} EUR {rng.choice(['were noted', 'are expected', 'remain open'])}."
            if rng.random() < 0.15:
                s += f" Contact: {rng.choice(FIRST)} {rng.choice(LAST)} (ext. {rng.randint(100, 999)})."
            self.sentences.append(s)
        # phrases by word count, for cells, titles and PDF lines (one choice each, no slicing)
        self.phrases: dict[int, list[str]] = {}
        for n in range(1, 17):
            self.phrases[n] = [" ".join(rng.choice(self.sentences).split()[:n]).rstrip(".,") for _ in range(400)]

    def paragraph(self, rng: random.Random, lo: int = 3, hi: int = 8) -> str:
        return " ".join(rng.choices(self.sentences, k=rng.randint(lo, hi)))

    def text(self, rng: random.Random, nbytes: int) -> str:
        """Paragraphs adding up to about ``nbytes`` characters."""
        k = max(1, nbytes // 95)  # sentences average ~95 characters
        sents = rng.choices(self.sentences, k=k)
        paras, i = [], 0
        while i < len(sents):
            n = rng.randint(3, 8)
            paras.append(" ".join(sents[i : i + n]))
            i += n
        return "\n\n".join(paras)

    def words(self, rng: random.Random, n: int) -> str:
        """A phrase of ``n`` words (1..16), from a pool cut out of the sentences."""
        return rng.choice(self.phrases[min(16, max(1, n))])


_WORDS: Words | None = None


def words() -> Words:
    global _WORDS
    if _WORDS is None:
        _WORDS = Words()
    return _WORDS


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ----------------------------------------------------------------------------------------------
# zip rewriting: placeholders filled, timestamps fixed

_PLACEHOLDER = re.compile(rb"@@([A-Z]+)(\d*)@@")
_CORE_DATE = re.compile(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:(?:created|modified)>)")


@dataclass
class ZipTemplate:
    members: list[tuple[zipfile.ZipInfo, bytes]]  # (info, uncompressed bytes) in original order
    size: int  # size of the template as generated (to pick one by target size)
    placeholders: int  # how many text placeholders it has
    image: str | None  # member name of the embedded picture, if any


def load_template(data: bytes, image_prefix: str | None = None) -> ZipTemplate:
    z = zipfile.ZipFile(io.BytesIO(data))
    members = [(i, z.read(i)) for i in z.infolist()]
    n = sum(len(_PLACEHOLDER.findall(b)) for i, b in members if i.filename.endswith(".xml"))
    image = None
    if image_prefix:
        image = next((i.filename for i, _ in members if i.filename.startswith(image_prefix)), None)
    return ZipTemplate(members, len(data), n, image)


def fill_zip(t: ZipTemplate, d: dt.datetime, fill: Callable[[bytes, int], str], *, image: bytes | None = None) -> bytes:
    """A copy of a template with placeholders replaced and every timestamp set to ``d``."""
    stamp = d.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    date_time = (d.year, d.month, d.day, d.hour, d.minute, d.second)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info, data in t.members:
            if info.filename.endswith((".xml", ".rels")):
                if b"@@" in data:
                    data = _PLACEHOLDER.sub(lambda m: _xml_escape(fill(m.group(1), int(m.group(2) or 0))).encode(), data)
                if info.filename == "docProps/core.xml":
                    data = _CORE_DATE.sub(lambda m: m.group(1) + stamp + m.group(2), data)
            elif image is not None and info.filename == t.image:
                data = image
            zi = zipfile.ZipInfo(info.filename, date_time)
            zi.compress_type = info.compress_type
            zi.external_attr = info.external_attr
            z.writestr(zi, data, compresslevel=6 if info.compress_type == zipfile.ZIP_DEFLATED else None)
    return out.getvalue()


_ROOT_TAG = re.compile(rb"<(?!\?)[^>]*>")
_XMLNS = re.compile(rb'\s+xmlns:([A-Za-z0-9_.-]+)="[^"]*"')


def _canonical_odf(data: bytes) -> bytes:
    """odfpy declares on each root element every namespace the *process* has used so far (a class
    attribute shared by all documents): keep only the prefixes this document uses, sorted, so
    that its bytes do not depend on what was generated before it."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            body = src.read(info)
            if info.filename.endswith(".xml"):
                m = _ROOT_TAG.search(body)
                if m is not None:
                    root = m.group(0)
                    rest = body[: m.start()] + body[m.end() :]
                    decls = sorted(set(re.findall(rb'\s+xmlns:[A-Za-z0-9_.-]+="[^"]*"', root)))
                    used = [d for d in decls if _XMLNS.match(d).group(1) + b":" in rest + _XMLNS.sub(b"", root)]
                    root = _XMLNS.sub(b"", root)
                    end = -2 if root.endswith(b"/>") else -1
                    root = root[:end] + b"".join(used) + root[end:]
                    body = body[: m.start()] + root + body[m.end() :]
            z.writestr(info, body)
    return out.getvalue()


# ----------------------------------------------------------------------------------------------
# the generator


class Generator:
    def __init__(self, seed: int):
        self.seed = seed
        self.w = words()
        self._templates: dict[tuple[str, int], ZipTemplate] = {}
        self._textures: dict[int, Any] = {}

    def make(self, spec: FileSpec) -> bytes:
        rng = random.Random(f"nocry-drill-file:{self.seed}:{spec.index}:{spec.path}")
        return getattr(self, f"_make_{spec.kind}")(rng, spec)

    # -- templates ------------------------------------------------------------------------------

    def _template(self, kind: str, tid: int, build: Callable[[random.Random, int], tuple[bytes, str | None]]) -> ZipTemplate:
        key = (kind, tid)
        t = self._templates.get(key)
        if t is None:
            rng = random.Random(f"nocry-drill-template:{self.seed}:{kind}:{tid}")
            data, image_prefix = build(rng, tid)
            t = self._templates[key] = load_template(data, image_prefix)
        return t

    def _filler(self, rng: random.Random, per_paragraph: int, title: str, author: str) -> Callable[[bytes, int], str]:
        def fill(kind: bytes, n: int) -> str:
            if kind == b"TITLE":
                return title
            if kind == b"AUTHOR":
                return author
            if kind in (b"H", b"T"):
                return self.w.words(rng, rng.randint(2, 6)).capitalize()
            if kind == b"S":
                return self.w.words(rng, rng.randint(1, 4))
            return self.w.text(rng, max(40, int(per_paragraph * rng.uniform(0.5, 1.5))))
        return fill

    # -- office documents ------------------------------------------------------------------------

    def _make_docx(self, rng: random.Random, spec: FileSpec) -> bytes:
        big = spec.size > 300 * KiB
        tid = rng.randrange(6) + (6 if big else 0)
        t = self._template("docx", tid, self._build_docx)
        image = self._jpeg(rng, int(spec.size * 0.8)) if big and t.image else None
        text_budget = max(2000, (spec.size - t.size - (len(image) if image else 0)) * 3)
        fill = self._filler(rng, text_budget // max(1, t.placeholders), spec.title, self._person(rng))
        return fill_zip(t, spec.date, fill, image=image)

    def _build_docx(self, rng: random.Random, tid: int) -> tuple[bytes, str | None]:
        from docx import Document
        from docx.shared import Inches, Pt

        doc = Document()
        doc.core_properties.title = "@@TITLE@@"
        doc.core_properties.author = "@@AUTHOR@@"
        doc.core_properties.last_modified_by = "@@AUTHOR@@"
        doc.styles["Normal"].font.name = rng.choice(["Calibri", "Arial", "Georgia", "Liberation Serif"])
        doc.styles["Normal"].font.size = Pt(rng.choice([10, 11, 12]))
        doc.add_heading("@@TITLE@@", 0)
        k = 0
        for _s in range(rng.randint(3, 6)):
            doc.add_heading(f"@@H{k}@@", 1)
            k += 1
            for _p in range(rng.randint(2, 5)):
                doc.add_paragraph(f"@@P{k}@@")
                k += 1
            if rng.random() < 0.3:
                for _b in range(rng.randint(2, 4)):
                    doc.add_paragraph(f"@@S{k}@@", style="List Bullet")
                    k += 1
        if tid % 2 == 0:
            rows, cols = rng.randint(3, 8), rng.randint(2, 5)
            table = doc.add_table(rows=rows, cols=cols)
            table.style = "Table Grid"
            for r in range(rows):
                for c in range(cols):
                    table.cell(r, c).text = f"@@S{k}@@"
                    k += 1
        image_prefix = None
        if tid >= 6:
            doc.add_picture(io.BytesIO(self._jpeg(rng, 30 * KiB)), width=Inches(5))
            image_prefix = "word/media/"
        buf = io.BytesIO()
        doc.save(buf)
        return buf.getvalue(), image_prefix

    def _make_xlsx(self, rng: random.Random, spec: FileSpec) -> bytes:
        # templates on a ladder of row counts; pick the one nearest the target size
        ladder = [20, 60, 200, 600, 2000, 6000]
        rows = min(ladder, key=lambda r: abs(math.log(r * 60 + 5000) - math.log(spec.size)))
        tid = ladder.index(rows) * 3 + rng.randrange(3 if rows < 2000 else 1)
        t = self._template("xlsx", tid, lambda r, i: self._build_xlsx(r, ladder[i // 3], i % 3))
        fill = self._filler(rng, 30, spec.title, self._person(rng))
        return fill_zip(t, spec.date, fill)

    def _build_xlsx(self, rng: random.Random, rows: int, layout: int) -> tuple[bytes, None]:
        from openpyxl import Workbook
        from openpyxl.styles import Font

        wb = Workbook()
        wb.properties.creator = "@@AUTHOR@@"
        wb.properties.title = "@@TITLE@@"
        ws = wb.active
        ws.title = ["Budget", "Data", "Pipeline"][layout]
        heads = [["Item", "Category", "Planned", "Actual", "Date", "Owner"],
                 ["ID", "Customer", "Amount", "Quantity", "Date", "Status", "Notes"],
                 ["Deal", "Company", "Value", "Probability", "Close date"]][layout]
        ws.append(heads)
        for c in ws[1]:
            c.font = Font(bold=True)
        k = 0
        base = dt.date(2024, 1, 1)
        for r in range(rows):
            row: list[Any] = []
            for h in heads:
                if h in ("Planned", "Actual", "Amount", "Value", "Quantity", "Probability"):
                    row.append(round(rng.uniform(1, 10000), 2))
                elif "ate" in h:
                    row.append(base + dt.timedelta(days=rng.randrange(700)))
                elif h == "ID":
                    row.append(r + 1)
                else:
                    row.append(f"@@S{k}@@")
                    k += 1
            ws.append(row)
        if layout == 0:
            ws.append(["Total", "", f"=SUM(C2:C{rows + 1})", f"=SUM(D2:D{rows + 1})"])
        if rows >= 200:
            ws2 = wb.create_sheet("Summary")
            ws2.append(["Metric", "Value"])
            for i in range(12):
                ws2.append([f"@@S{k}@@", round(rng.uniform(0, 1000), 1)])
                k += 1
        buf = io.BytesIO()
        wb.save(buf)
        return buf.getvalue(), None

    def _make_pptx(self, rng: random.Random, spec: FileSpec) -> bytes:
        with_image = spec.size > 120 * KiB
        slides = rng.choice([4, 8, 14, 24])
        tid = [4, 8, 14, 24].index(slides) * 2 + (1 if with_image else 0)
        t = self._template("pptx", tid, lambda r, i: self._build_pptx(r, [4, 8, 14, 24][i // 2], i % 2 == 1))
        image = self._jpeg(rng, int(spec.size * 0.85)) if with_image and t.image else None
        fill = self._filler(rng, 300, spec.title, self._person(rng))
        return fill_zip(t, spec.date, fill, image=image)

    def _build_pptx(self, rng: random.Random, slides: int, with_image: bool) -> tuple[bytes, str | None]:
        from pptx import Presentation
        from pptx.util import Inches

        prs = Presentation()
        prs.core_properties.title = "@@TITLE@@"
        prs.core_properties.author = "@@AUTHOR@@"
        prs.core_properties.last_modified_by = "@@AUTHOR@@"
        s = prs.slides.add_slide(prs.slide_layouts[0])
        s.shapes.title.text = "@@TITLE@@"
        s.placeholders[1].text = "@@AUTHOR@@"
        k = 0
        for i in range(slides - 1):
            s = prs.slides.add_slide(prs.slide_layouts[1])
            s.shapes.title.text = f"@@T{k}@@"
            body = s.placeholders[1].text_frame
            body.text = f"@@S{k + 1}@@"
            for _ in range(rng.randint(2, 5)):
                body.add_paragraph().text = f"@@S{k + 2}@@"
                k += 1
            k += 2
        image_prefix = None
        if with_image:
            s = prs.slides.add_slide(prs.slide_layouts[5])
            s.shapes.title.text = f"@@T{k}@@"
            s.shapes.add_picture(io.BytesIO(self._jpeg(rng, 40 * KiB)), Inches(1), Inches(1.5), width=Inches(8))
            image_prefix = "ppt/media/"
        buf = io.BytesIO()
        prs.save(buf)
        return buf.getvalue(), image_prefix

    def _make_odt(self, rng: random.Random, spec: FileSpec) -> bytes:
        paras = rng.choice([6, 12, 24, 48])
        tid = [6, 12, 24, 48].index(paras) * 2 + rng.randrange(2)
        t = self._template("odt", tid, lambda r, i: self._build_odt(r, [6, 12, 24, 48][i // 2]))
        # deflate shrinks this text about threefold
        fill = self._filler(rng, max(200, (spec.size - t.size) * 3 // max(1, t.placeholders)), spec.title, self._person(rng))
        return fill_zip(t, spec.date, fill)

    def _build_odt(self, rng: random.Random, paras: int) -> tuple[bytes, None]:
        from odf import text
        from odf.dc import Creator, Title
        from odf.opendocument import OpenDocumentText

        doc = OpenDocumentText()
        doc.meta.addElement(Title(text="@@TITLE@@"))
        doc.meta.addElement(Creator(text="@@AUTHOR@@"))
        doc.text.addElement(text.H(outlinelevel=1, text="@@TITLE@@"))
        for k in range(paras):
            if rng.random() < 0.2:
                doc.text.addElement(text.H(outlinelevel=2, text=f"@@H{k}@@"))
            doc.text.addElement(text.P(text=f"@@P{k}@@"))
        buf = io.BytesIO()
        doc.save(buf)
        return _canonical_odf(buf.getvalue()), None

    def _make_pdf(self, rng: random.Random, spec: FileSpec) -> bytes:
        from fpdf import FPDF

        pdf = FPDF(format="A4")
        pdf.set_creation_date(spec.date)
        pdf.set_title(spec.title)
        pdf.set_author(self._person(rng))
        pdf.set_producer("nocry drill")
        pdf.set_auto_page_break(False)
        # text pages with the standard (not embedded) fonts are ~2-3 KiB each: a handful of them,
        # and the rest of the size in pictures (a scan, a photo, a chart), as real PDFs go
        text_pages = max(1, min(12, spec.size // (3 * KiB)))
        if spec.size > 150 * KiB and rng.random() < 0.5:
            text_pages = 0
        for _ in range(text_pages):
            pdf.add_page()
            pdf.set_font("Helvetica", "B", 14)
            pdf.text(20, 20, spec.title.encode("latin-1", "replace").decode("latin-1"))
            pdf.set_font("Helvetica", size=10)
            y = 32.0
            while y < 280:
                pdf.text(20, y, self.w.words(rng, rng.randint(9, 14)))
                y += 5.2
        rest = spec.size - (2 * KiB + text_pages * 3 * KiB)
        if rest > 20 * KiB:
            pages = max(1, min(4, rest // (300 * KiB) + 1))
            for _ in range(pages):
                pdf.add_page()
                pdf.image(io.BytesIO(self._jpeg(rng, rest // pages, gray=not text_pages, aspect=(1, 1.41))), x=0, y=0, w=210)
        return bytes(pdf.output())

    # -- pictures -------------------------------------------------------------------------------

    def _texture(self, slot: int):
        from PIL import Image

        # film grain for photos; made from our own seeded bytes (Pillow's effect_noise uses C rand())
        t = self._textures.get(slot)
        if t is None:
            rng = random.Random(f"nocry-drill-texture:{self.seed}:{slot}")
            size = (2600, 2000)
            t = self._textures[slot] = Image.frombytes("L", size, rng.randbytes(size[0] * size[1])).convert("RGB")
        return t

    def _jpeg(self, rng: random.Random, target: int, *, gray: bool = False, aspect: tuple[float, float] = (4, 3)) -> bytes:
        from PIL import Image, ImageDraw

        # ~0.36 bytes per pixel at quality 80-92 with this texture
        px = max(64 * 48, target / 0.36)
        w = int(min(2560, math.sqrt(px * aspect[0] / aspect[1])))
        h = int(min(1920 if aspect[1] < aspect[0] else 2560, w * aspect[1] / aspect[0]))
        h = min(h, 1990)
        base = Image.new("RGB", (4, 3))
        base.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(12)])
        img = base.resize((w, h), Image.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(rng.randint(3, 9)):
            x, y = rng.randrange(w), rng.randrange(h)
            r = rng.randint(w // 20 + 1, w // 4 + 2)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
        tex = self._texture(rng.randrange(3))
        ox, oy = rng.randrange(tex.width - w + 1), rng.randrange(tex.height - h + 1)
        img = Image.blend(img, tex.crop((ox, oy, ox + w, oy + h)), rng.uniform(0.08, 0.2))
        if gray:
            img = img.convert("L")
        buf = io.BytesIO()
        exif = Image.Exif()
        exif[0x0110] = rng.choice(["PowerShot G7", "iPhone 13", "Pixel 7", "EOS 80D", "X-T30"])  # Model
        exif[0x0132] = "2024:05:17 10:22:31"  # DateTime
        img.save(buf, "JPEG", quality=rng.randint(80, 92), exif=exif.tobytes())
        return buf.getvalue()

    def _make_jpg(self, rng: random.Random, spec: FileSpec) -> bytes:
        return self._jpeg(rng, spec.size, aspect=rng.choice([(4, 3), (3, 2), (16, 9), (3, 4)]))

    def _make_png(self, rng: random.Random, spec: FileSpec) -> bytes:
        from PIL import Image, ImageDraw

        # screenshots and diagrams: flat colours and text compress well, so size grows with area
        # and detail; big targets get a photo inset
        w = int(min(2560, max(160, math.sqrt(spec.size * 6))))
        h = int(w * rng.choice([0.5625, 0.625, 0.75]))
        img = Image.new("RGB", (w, h), tuple(rng.randint(220, 255) for _ in range(3)))
        d = ImageDraw.Draw(img)
        d.rectangle((0, 0, w, max(12, h // 14)), fill=tuple(rng.randint(30, 90) for _ in range(3)))
        for _ in range(rng.randint(5, 25)):
            x0, y0 = rng.randrange(w), rng.randrange(h)
            x1, y1 = min(w, x0 + rng.randint(20, w // 2 + 20)), min(h, y0 + rng.randint(10, h // 3 + 10))
            d.rectangle((x0, y0, x1, y1), outline=(60, 60, 60), fill=tuple(rng.randint(150, 250) for _ in range(3)))
        for y in range(h // 14 + 8, h - 10, 14):
            if rng.random() < 0.5:
                d.text((rng.randint(4, w // 3), y), self.w.words(rng, rng.randint(3, 9)), fill=(20, 20, 20))
        if spec.size > 150 * KiB:
            inset = Image.open(io.BytesIO(self._jpeg(rng, spec.size // 3)))
            inset.thumbnail((w // 2, h // 2))
            img.paste(inset, (w // 4, h // 4))
        buf = io.BytesIO()
        img.save(buf, "PNG", compress_level=6)
        return buf.getvalue()

    # -- data, mail, code, text -----------------------------------------------------------------

    def _make_sqlite(self, rng: random.Random, spec: FileSpec) -> bytes:
        con = sqlite3.connect(":memory:")
        con.executescript(
            """
            CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, company TEXT, city TEXT, email TEXT);
            CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
                                day TEXT, amount REAL, status TEXT, note TEXT);
            CREATE INDEX orders_customer ON orders(customer_id);
            """
        )
        ncust = max(5, spec.size // 2000)
        con.executemany(
            "INSERT INTO customers VALUES (?,?,?,?,?)",
            [(i, f"{rng.choice(FIRST)} {rng.choice(LAST)}", rng.choice(COMPANIES), rng.choice(CITIES),
              f"user{i}@{rng.choice(COMPANIES).split()[0].lower()}.example") for i in range(1, ncust + 1)],
        )
        norders = max(10, spec.size // 110)
        con.executemany(
            "INSERT INTO orders VALUES (?,?,?,?,?,?)",
            [(i, rng.randint(1, ncust), f"{spec.date.year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
              round(rng.uniform(5, 5000), 2), rng.choice(["open", "paid", "shipped", "cancelled"]),
              self.w.words(rng, rng.randint(0, 6))) for i in range(1, norders + 1)],
        )
        con.commit()
        data = con.serialize()
        con.close()
        return data

    def _make_eml(self, rng: random.Random, spec: FileSpec) -> bytes:
        sender, to = self._person(rng), self._person(rng)
        msg = EmailMessage()
        msg["From"] = f"{sender} <{sender.split()[0].lower()}@{rng.choice(COMPANIES).split()[0].lower()}.example>"
        msg["To"] = f"{to} <{to.split()[0].lower()}@example.org>"
        msg["Subject"] = spec.title.split(" ", 1)[-1]
        msg["Date"] = format_datetime(spec.date)
        msg["Message-ID"] = f"<{rng.getrandbits(64):016x}.{spec.index}@mail.example>"
        body = f"Hello {to.split()[0]},\n\n" + self.w.text(rng, min(spec.size, 12 * KiB)) + f"\n\nBest regards,\n{sender}\n"
        msg.set_content(body)
        if spec.size > 16 * KiB:
            # base64 adds a third; aim the attachment at what is left
            att = int((spec.size - len(body)) * 0.74)
            kind = rng.choice(["pdf", "xlsx", "jpg", "csv"])
            sub = FileSpec(spec.index, f"attachment.{kind}", kind, max(SIZE_RANGE[kind][0], att), spec.date, spec.title)
            data = getattr(self, f"_make_{kind}")(rng, sub)
            mimes = {"pdf": ("application", "pdf"), "jpg": ("image", "jpeg"), "csv": ("text", "csv"),
                     "xlsx": ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")}
            maintype, subtype = mimes[kind]
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=f"{spec.title}.{kind}")
            # the email package draws boundaries from the global random: fix ours
            msg.set_boundary(f"===============_{rng.getrandbits(64):016x}==")
        return bytes(msg)

    def _make_csv(self, rng: random.Random, spec: FileSpec) -> bytes:
        buf = io.StringIO()
        wr = csv.writer(buf, lineterminator="\r\n" if rng.random() < 0.5 else "\n")
        wr.writerow(["date", "reference", "counterparty", "category", "amount", "currency", "memo"])
        while buf.tell() < spec.size:
            for _ in range(200):
                wr.writerow([f"{spec.date.year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", f"TX{rng.randint(0, 10 ** 8):08d}",
                             rng.choice(COMPANIES), rng.choice(TOPICS), f"{rng.uniform(-5000, 20000):.2f}", "EUR",
                             self.w.words(rng, rng.randint(2, 7))])
        return buf.getvalue()[: spec.size].rsplit("\n", 1)[0].encode() + b"\n"

    def _make_py(self, rng: random.Random, spec: FileSpec) -> bytes:
        out = [f'"""{self.w.words(rng, 8).capitalize()}."""\n', "from __future__ import annotations\n",
               "import json\nimport logging\nimport os\nfrom dataclasses import dataclass\n",
               "log = logging.getLogger(__name__)\n"]
        size = sum(map(len, out))
        while size < spec.size:
            name = f"{rng.choice(VERBS)[:-1]}_{rng.choice(OBJECTS).split()[-1]}_{rng.randint(0, 999)}"
            if rng.random() < 0.25:
                block = (f"\n\n@dataclass\nclass {name.title().replace('_', '')}:\n"
                         f'    """{self.w.words(rng, 9).capitalize()}."""\n\n'
                         + "".join(f"    {rng.choice(TOPICS)}_{i}: {rng.choice(['int', 'str', 'float', 'bool'])} = {rng.choice(['0', repr(''), '0.0', 'False'])}\n" for i in range(rng.randint(2, 7))))
            else:
                arg = rng.choice(TOPICS)
                block = (f"\n\ndef {name}({arg}: dict, limit: int = {rng.randint(1, 500)}) -> list:\n"
                         f'    """{self.w.words(rng, 10).capitalize()}."""\n'
                         f"    result = []\n    for key, value in sorted({arg}.items()):\n"
                         f"        if len(result) >= limit:\n            break\n"
                         f"        if value and key.startswith({rng.choice(TOPICS)[:3]!r}):\n"
                         f"            result.append((key, value * {rng.randint(2, 9)}))\n"
                         f"        log.debug(\"{name} key=%s\", key)\n    return result\n")
            out.append(block)
            size += len(block)
        return "".join(out).encode()

    def _make_c(self, rng: random.Random, spec: FileSpec) -> bytes:
        guard = f"DRILL_{rng.randrange(1 << 32):08X}_H"
        header = spec.path.endswith(".h")
        out = [f"/* {self.w.words(rng, 9)} */\n"]
        out.append(f"#ifndef {guard}\n#define {guard}\n#include <stdint.h>\n" if header else "#include <stdint.h>\n#include <string.h>\n#include \"config.h\"\n")
        size = sum(map(len, out))
        while size < spec.size:
            fn = f"{rng.choice(['uart', 'spi', 'crc', 'ring', 'sched', 'log', 'cfg'])}_{rng.choice(['init', 'read', 'write', 'flush', 'poll', 'reset'])}_{rng.randint(0, 99)}"
            if header:
                block = f"int {fn}(uint8_t *buf, size_t len); /* {self.w.words(rng, 6)} */\n"
            else:
                block = (f"\n/* {self.w.words(rng, 10)} */\nint {fn}(uint8_t *buf, size_t len)\n{{\n"
                         f"    uint32_t acc = 0x{rng.randrange(1 << 32):08x}u;\n    for (size_t i = 0; i < len; i++) {{\n"
                         f"        acc = (acc << {rng.randint(1, 7)}) ^ buf[i];\n        if (acc & 0x{rng.randrange(1 << 16):04x}u)\n"
                         f"            buf[i] = (uint8_t)(acc >> {rng.randint(1, 24)});\n    }}\n    return (int)(acc % {rng.randint(3, 251)}u);\n}}\n")
            out.append(block)
            size += len(block)
        if header:
            out.append(f"#endif /* {guard} */\n")
        return "".join(out).encode()

    def _make_txt(self, rng: random.Random, spec: FileSpec) -> bytes:
        return (self.w.text(rng, spec.size) + "\n").encode()

    def _make_md(self, rng: random.Random, spec: FileSpec) -> bytes:
        out = [f"# {spec.title}\n"]
        size = len(out[0])
        while size < spec.size:
            r = rng.random()
            if r < 0.2:
                part = f"\n## {self.w.words(rng, 4).capitalize()}\n"
            elif r < 0.35:
                part = "\n" + "".join(f"- {self.w.words(rng, rng.randint(3, 9))}\n" for _ in range(rng.randint(2, 6)))
            elif r < 0.42:
                part = "\n| item | owner | due |\n|---|---|---|\n" + "".join(
                    f"| {rng.choice(OBJECTS)} | {rng.choice(FIRST)} | {rng.choice(MONTHS)} |\n" for _ in range(rng.randint(2, 6)))
            else:
                part = "\n" + self.w.paragraph(rng) + "\n"
            out.append(part)
            size += len(part)
        return "".join(out).encode()

    def _person(self, rng: random.Random) -> str:
        return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def build_tree(fs: DrillFS, n_files: int, seed: int, progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Generate and write every file; returns the marker's file list (path, type, size, blake3)."""
    gen = Generator(seed)
    specs = plan_tree(n_files, seed)
    out = []
    t0 = time.monotonic()
    for k, spec in enumerate(specs):
        data = gen.make(spec)
        fs.create(spec.path, data, make_dirs=True)
        mtime = int(spec.date.timestamp() * 1e9)
        dfd, name = fs._where(spec.path)
        os.utime(name, ns=(mtime, mtime), dir_fd=dfd, follow_symlinks=False)
        out.append({"path": spec.path, "type": spec.kind, "size": len(data), "blake3": digest(data)})
        if progress is not None:
            progress(k + 1, len(specs))
    log.info("drill tree built files=%d seconds=%.1f", len(specs), time.monotonic() - t0)
    return out

