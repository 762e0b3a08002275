"""Real documents made by the tests: PDFs (fpdf2), DOCX (python-docx), and hostile ones."""
from __future__ import annotations

import io
import zipfile

from fpdf import FPDF


def pdf(pages: list[str]) -> bytes:
    doc = FPDF()
    doc.set_font("helvetica", size=11)
    for text in pages:
        doc.add_page()
        doc.multi_cell(0, 6, text)
    return bytes(doc.output())


def encrypted_pdf(text: str = "secret lecture notes") -> bytes:
    from pypdf import PdfReader, PdfWriter
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(pdf([text]))).pages:
        writer.add_page(page)
    writer.encrypt(user_password="letmein", owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx(paragraphs: list[str]) -> bytes:
    from docx import Document
    d = Document()
    for p in paragraphs:
        d.add_paragraph(p)
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


def zip_bomb_docx(expanded_mb: int = 200) -> bytes:
    """A DOCX whose document.xml inflates from ~200 KB to `expanded_mb` MB."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        with z.open("word/document.xml", "w", force_zip64=True) as f:
            block = b" " * (1024 * 1024)
            for _ in range(expanded_mb):
                f.write(block)
    return out.getvalue()


def wav(seconds: float = 0.5, rate: int = 16000) -> bytes:
    import math
    import struct
    import wave
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                               for i in range(int(seconds * rate))))
    return out.getvalue()


PNG_1PX = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")
