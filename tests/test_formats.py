"""PDF, HTML, DOCX, EPUB and Markdown files made here, read into text with pages and headings cited."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from conftest import write_epub
from test_cli import assert_one_line_error, run_in_process

from memgpt.io.formats import load_document
from memgpt.io.spans import DocumentIndex

MB = 64 << 20
PAGES = [
    ("The orchard behind the mill grew quinces, and the miller's daughter sold them at the Tuesday market.",
     "Dans le vieux moulin, l'été était chaud et sec."),
    ("The ferry to Varnholm left at seven each morning and carried mail, bread and sometimes a doctor.",
     "Row | Crop | Yield"),
    ("In 1902 the bridge over the Lenne was rebuilt in stone by the engineer Tomas Brandt.",
     "The old wooden bridge had burned in the winter before."),
]


def make_pdf(path: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for left, right in PAGES:
        pdf.add_page()
        y = pdf.get_y()
        pdf.multi_cell(90, 6, left)  # two columns
        pdf.set_xy(110, y)
        pdf.multi_cell(90, 6, right.replace("é", "e") if False else right.encode("latin-1", "replace").decode("latin-1"))
    with pdf.table() as table:  # a table on the last page
        for row in (("Crop", "Yield"), ("Quince", "40")):
            r = table.row()
            for cell in row:
                r.cell(cell)
    pdf.output(str(path))
    return path


def make_docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.add_heading("Mill", 1)
    d.add_paragraph(PAGES[0][0])
    d.add_heading("Ferry", 1)
    d.add_heading("Timetable", 2)
    d.add_paragraph(PAGES[1][0])
    t = d.add_table(rows=1, cols=2)
    t.rows[0].cells[0].text, t.rows[0].cells[1].text = "Quince", "40"
    d.save(str(path))
    return path


def make_epub(path: Path) -> Path:
    write_epub(path, [("Mill", PAGES[0][0]), ("Bridge", PAGES[2][0])], title="Valley")
    return path


HTML = ("<!DOCTYPE html><html><head><title>T</title><style>.nav{color:red}</style></head><body>"
        "<nav><a href='/'>Home navigation link</a></nav><script>var secretScript = 1;</script>"
        "<h1>Bridge</h1><p>" + PAGES[2][0] + "</p><h2>Ferry</h2><p>" + PAGES[1][0] + "</p>"
        "<footer>Copyright footer</footer></body></html>")


def test_pdf_pages(tmp_path):
    loaded = load_document(make_pdf(tmp_path / "a.pdf"), MB)
    assert len(loaded.map.page_starts) == 3
    at = loaded.text.index("Tomas Brandt")
    assert loaded.map.page(at) == 3 and loaded.map.page(loaded.text.index("Varnholm")) == 2
    assert "moulin" in loaded.text and "Quince" in loaded.text


def test_html_main_text_only(tmp_path):
    (tmp_path / "p.html").write_text(HTML)
    loaded = load_document(tmp_path / "p.html", MB)
    for hidden in ("secretScript", "color:red", "Home navigation", "Copyright footer"):
        assert hidden not in loaded.text
    assert loaded.map.heading_path(loaded.text.index("Varnholm")) == "Bridge > Ferry"


def test_docx_and_epub_headings(tmp_path):
    d = load_document(make_docx(tmp_path / "a.docx"), MB)
    assert d.map.heading_path(d.text.index("Varnholm")) == "Ferry > Timetable"
    assert "Quince | 40" in d.text
    e = load_document(make_epub(tmp_path / "a.epub"), MB)
    assert e.map.heading_path(e.text.index("Brandt")) == "Bridge"


def test_markdown_offsets_into_file(tmp_path):
    text = "# Mill\n\nQuinces grew here.\n\n## Ferry\n\nThe ferry left at seven.\n"
    (tmp_path / "a.md").write_text(text)
    loaded = load_document(tmp_path / "a.md", MB)
    assert loaded.text == text and [(h.level, h.title) for h in loaded.map.headings] == [(1, "Mill"), (2, "Ferry")]
    assert loaded.map.heading_path(text.index("seven")) == "Mill > Ferry"


def test_index_map_survives_tensors(tmp_path):
    loaded = load_document(make_pdf(tmp_path / "a.pdf"), MB)
    index = DocumentIndex([0], [5], [loaded.text[:5]], loaded.map)
    back = DocumentIndex.from_tensors(index.to_tensors())
    assert back.source == loaded.map and back.span(0).page == 1
    assert back.part(0, 1, 4) == type(back.span(0))(1, 4, loaded.text[1:4], 1, None)  # part of a sentence: page kept
    old = {k: v for k, v in index.to_tensors().items() if k.startswith("doc.")}
    assert DocumentIndex.from_tensors(old).source is None  # files from before maps still load


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    from fpdf import FPDF

    out = {}
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)  # a page with no text layer
    pdf.output(str(tmp_path / "scan.pdf"))
    out["no text layer"] = tmp_path / "scan.pdf"
    pdf = FPDF()
    pdf.set_encryption(owner_password="o", user_password="u")
    pdf.add_page()
    pdf.set_font("helvetica")
    pdf.cell(text="secret")
    pdf.output(str(tmp_path / "enc.pdf"))
    out["encrypted"] = tmp_path / "enc.pdf"
    good = make_docx(tmp_path / "good.docx").read_bytes()
    (tmp_path / "broken.docx").write_bytes(good[: len(good) // 2])
    out["corrupt"] = tmp_path / "broken.docx"
    with zipfile.ZipFile(tmp_path / "good.docx") as z, zipfile.ZipFile(tmp_path / "xxe.docx", "w") as w:
        for info in z.infolist():
            data = z.read(info)
            if info.filename == "word/document.xml":
                data = data.replace(b"?>", b'?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>', 1)
            w.writestr(info, data)
    out["entities"] = tmp_path / "xxe.docx"
    (tmp_path / "bomb.html").write_text("<html><body>" + "<div>" * 100_000 + "x" + "</div>" * 100_000 + "</body></html>")
    out["nested deeper"] = tmp_path / "bomb.html"
    return out


def test_bad_files_one_line_exit_2(tmp_path, capsys):
    for why, path in _bad_files(tmp_path).items():
        r = run_in_process(capsys, "ask", str(path), "What?")
        assert r.returncode == 2, (why, r.stderr)
        assert_one_line_error(r, why)
    (tmp_path / "big.pdf").write_bytes(b"%PDF-1.4\n")
    with open(tmp_path / "big.pdf", "r+b") as f:
        f.truncate(500 << 20)  # a sparse 500 MB file: refused by its size, never read
    r = run_in_process(capsys, "ask", str(tmp_path / "big.pdf"), "What?")
    assert r.returncode == 2
    assert_one_line_error(r, "input limit")


@pytest.mark.parametrize("maker,where", [(make_pdf, "p. 3"), (make_docx, None), (make_epub, "Bridge")])
def test_ask_cites_page_or_heading_default_model(tmp_path, capsys, maker, where):
    path = maker(tmp_path / f"a.{maker.__name__[5:]}")
    question = "Who rebuilt the bridge?" if where in ("p. 3", "Bridge") else "What did the ferry carry?"
    r = run_in_process(capsys, "ask", str(path), question, "--json", "--no-progress")
    assert r.returncode == 0, r.stderr
    cites = json.loads(r.stdout.strip().splitlines()[-1])
    text = json.dumps(cites)
    if where == "p. 3":
        assert '"page": 3' in text
    elif where:
        assert '"heading": "Bridge"' in text
    else:
        assert '"heading": "Ferry > Timetable"' in text


def test_an_uploads_extension_decides_where_content_does_not(tmp_path):
    """A file saved under another name (a server's upload) is read by the extension it was sent with."""
    from memgpt.io.formats import SourceMap, detect

    saved = tmp_path / ".upload.tmp"
    saved.write_text("# Mill\n\nQuinces grew here.\n")
    assert detect(saved) is None and detect(saved, ".md") == "markdown" and detect(saved, ".HTML") == "html"
    loaded = load_document(saved, MB, ".md")
    assert loaded.map.heading_path(loaded.text.index("Quinces")) == "Mill"
    assert SourceMap.from_dict(json.loads(json.dumps(loaded.map.to_dict()))) == loaded.map
    assert SourceMap.from_dict({"format": "pdf"}) is None
    saved.write_bytes(make_pdf(tmp_path / "a.pdf").read_bytes())
    assert detect(saved, ".md") == "pdf"  # content first
