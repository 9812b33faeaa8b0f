"""Decoy documents: small, valid files of the type their name promises.

A decoy must look worth encrypting (a real .xlsx / .docx / .pdf, not junk) and must parse as its
type, so that the analyzer's "type lost" indicator fires when it is overwritten.
"""

from __future__ import annotations

import io
import random
import zipfile

__all__ = ["decoy_bytes"]

_WORDS = "account balance invoice total payroll quarter budget forecast revenue audit salary vendor tax bank transfer reserve".split()


def _ooxml(kind: str, rng: random.Random) -> bytes:
    buf = io.BytesIO()
    rows = "".join(
        f'<row r="{i}"><c r="A{i}" t="inlineStr"><is><t>{rng.choice(_WORDS)}</t></is></c><c r="B{i}"><v>{rng.randint(100, 999999)}</v></c></row>' for i in range(1, 60)
    )
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        if kind == "xlsx":
            z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>')
            z.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>')
            z.writestr("xl/workbook.xml", '<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Accounts" sheetId="1" r:id="rId1"/></sheets></workbook>')
            z.writestr("xl/_rels/workbook.xml.rels", '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>')
            z.writestr("xl/worksheets/sheet1.xml", f'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{rows}</sheetData></worksheet>')
        else:
            paras = "".join(f"<w:p><w:r><w:t>{' '.join(rng.choice(_WORDS) for _ in range(12))}</w:t></w:r></w:p>" for _ in range(40))
            z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
            z.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>')
            z.writestr("word/document.xml", f'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{paras}</w:body></w:document>')
    return buf.getvalue()


def decoy_bytes(name: str, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext in ("xlsx", "docx"):
        return _ooxml(ext, rng)
    if ext == "pdf":
        text = " ".join(rng.choice(_WORDS) for _ in range(80))
        body = f"BT /F1 10 Tf 40 800 Td ({text}) Tj ET".encode()
        return b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj 3 0 obj<</Type/Page/Parent 2 0 R/Contents 4 0 R>>endobj 4 0 obj<</Length %d>>stream\n%s\nendstream endobj\ntrailer<</Root 1 0 R>>\n%%%%EOF\n" % (len(body), body)
    lines = [f"{rng.choice(_WORDS)},{rng.randint(1000, 99999)},{rng.choice(_WORDS)}" for _ in range(200)]
    return ("\n".join(lines) + "\n").encode()
