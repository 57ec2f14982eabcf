"""Uploads of PDF, DOCX, EPUB, HTML and Markdown files to a real `memgpt serve` process (the packaged
default model): read as their extracted text, answered with citations that name the page or heading;
damaged or hostile uploads are a 400 with one clear line."""

from __future__ import annotations

import io
import zipfile

import httpx
import openai
import pytest
from conftest import write_epub
from server_process import KEY, Server, start_server
from test_formats import _bad_files

HARBOUR = ("The harbour at Skarvik faces west. Fishing boats leave before dawn and come back at noon. "
           "Gulls wait on the roofs of the sheds along the quay.")
SIGNALS = ("Flags are raised on the mast when a storm comes. The signal book is kept by Ingrid Salvesen. "
           "Every sailor learns the flags as a child.")
WEATHER = ("Fog is common in the autumn months. The winters are long and dark, and the summers are short. "
           "Snow seldom stays on the quay for long.")
SECTIONS = [("Harbour", HARBOUR), ("Signals", SIGNALS), ("Weather", WEATHER)]
QUESTION, GOLD = "Who keeps the signal book?", "Salvesen"


def pdf_bytes() -> bytes:
    """Three pages, the answer on page 2."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for _, body in SECTIONS:
        pdf.add_page()
        pdf.multi_cell(0, 6, body)
    return bytes(pdf.output())


def docx_bytes() -> bytes:
    import docx

    d = docx.Document()
    for title, body in SECTIONS:
        d.add_heading(title, 1)
        d.add_paragraph(body)
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


def epub_bytes(tmp_path) -> bytes:
    write_epub(tmp_path / "book.epub", SECTIONS, title="Skarvik")
    return (tmp_path / "book.epub").read_bytes()


def html_bytes() -> bytes:
    """No doctype or <html>: known by its extension only."""
    return ("<body><nav>Home | About</nav>" + "".join(f"<h1>{t}</h1><p>{b}</p>" for t, b in SECTIONS)
            + "<footer>Skarvik town council</footer></body>").encode()


def markdown_bytes() -> bytes:
    return "".join(f"# {t}\n\n{b}\n\n" for t, b in SECTIONS).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    """The packaged default model (fp32 on a CPU), an API key."""
    tmp = tmp_path_factory.mktemp("serve-formats")
    server = start_server(tmp, "--dtype", "fp32", "--data-dir", str(tmp / "data"), "--max-body-mb", "4",
                          "--max-tokens", "64")
    server.data = tmp / "data"
    yield server
    server.stop()
    assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=300)


def upload(server: Server, filename: str, data: bytes, mime: str = "application/octet-stream") -> httpx.Response:
    return httpx.post(f"{server.base_url}/memories", files={"file": (filename, data, mime)}, data={"kind": "retrieval"},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=120)


@pytest.mark.parametrize("fmt", ["pdf", "docx", "epub", "html", "markdown"])
def test_upload_is_read_as_text_and_cited_by_page_or_heading(server, client, tmp_path, fmt):
    data = {"pdf": pdf_bytes, "docx": docx_bytes, "epub": lambda: epub_bytes(tmp_path), "html": html_bytes,
            "markdown": markdown_bytes}[fmt]()
    filename = {"markdown": "notes.md", "html": "page.html"}.get(fmt, f"upload.{fmt}")
    if fmt == "pdf":  # the official client's multipart upload
        created = client.post("/memories", cast_to=object, body={"kind": "retrieval", "name": "skarvik"},
                              files=[("file", (filename, data, "application/pdf"))],
                              options={"headers": {"Content-Type": "multipart/form-data"}})
    else:
        response = upload(server, filename, data)
        assert response.status_code == 202, response.text
        created = response.json()
    assert created["format"] == fmt, created
    record = server.wait_memory(created["id"])
    assert record["status"] == "ready", record

    status, document, _ = server.request("GET", f"/v1/memories/{created['id']}/document")
    text = document["text"]
    assert status == 200 and GOLD in text and "%PDF" not in text and "<h1>" not in text and "PK" not in text[:2]
    if fmt == "html":
        assert "Home | About" not in text and "town council" not in text

    answer = client.chat.completions.create(model="default", messages=[{"role": "user", "content": QUESTION}],
                                            max_tokens=16, extra_body={"memory": created["id"]})
    assert GOLD in answer.choices[0].message.content, answer.choices[0].message.content
    quote, citations = answer.model_extra["quote"], answer.model_extra["citations"]
    assert GOLD in quote["text"] and text[quote["start"] : quote["end"]] == quote["text"]
    for cite in citations:  # offsets into the extracted text the document route returns
        assert text[cite["start"] : cite["end"]] == cite["text"]
    if fmt == "pdf":
        assert quote["page"] == 2 and "heading" not in quote, quote
        assert all("page" in c for c in citations)
    else:
        assert quote["heading"] == "Signals" and "page" not in quote, quote
    assert server.request("DELETE", f"/v1/memories/{created['id']}")[0] == 200
    assert not [p for p in server.data.rglob("*") if created["id"] in p.name]


def test_bad_uploads_are_one_line_400s(server, tmp_path):
    bad = {why: (path.name, path.read_bytes()) for why, path in _bad_files(tmp_path).items()}
    neither = io.BytesIO()
    with zipfile.ZipFile(neither, "w") as z:
        z.writestr("hello.txt", "hello")
    bad["neither DOCX nor EPUB"] = ("archive.docx", neither.getvalue())
    bad["not a valid DOCX"] = ("letter.docx", b"Dear reader, this is plain text.")
    bad["not a valid PDF"] = ("paper.pdf", b"<html>not a pdf</html>")
    bad["not valid UTF-8"] = ("notes.md", b"# Title\n\n\xff\xfe broken")
    for why, (filename, data) in bad.items():
        response = upload(server, filename, data)
        assert response.status_code == 400, (why, response.status_code, response.text)
        message = response.json()["error"]["message"]
        assert why in message and "\n" not in message, (why, message)
        assert str(server.data) not in message and ".upload" not in message, message
    assert server.request("GET", "/v1/memories")[1]["data"] == []
    assert not [p for p in (server.data / "documents").iterdir()]  # nothing of a refused upload is kept


def test_pages_survive_a_restart(tmp_path):
    """A tiny backbone: the map is in the memory file, so after a `kill -9` and a restart every citation
    of a PDF memory still names its page."""
    import signal

    from server_process import tiny_backbone

    args = ("--model", str(tiny_backbone(tmp_path / "tiny")), "--dtype", "fp32", "--data-dir", str(tmp_path / "data"))
    server = start_server(tmp_path, *args)
    try:
        created = upload(server, "upload.pdf", pdf_bytes()).json()
        assert server.wait_memory(created["id"])["status"] == "ready"
    finally:
        server.stop(signal.SIGKILL)
    server = start_server(tmp_path, *args)
    try:
        reply = server.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": QUESTION}],
                                                                 "memory": created["id"], "max_tokens": 4})
        assert reply[0] == 200, reply
        citations = reply[1].get("citations") or []
        assert citations and all(c["page"] in (1, 2, 3) for c in citations), reply[1]
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text()
