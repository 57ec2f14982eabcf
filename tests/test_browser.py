"""The reader page in a real browser: headless Debian Chromium (/usr/bin/chromium) driven by Playwright,
against a real `memgpt serve` process on the default model. Every citation on the page is clicked and its
highlight compared with the document's characters at the cited code-point offsets."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from server_process import KEY, ROOT, start_server, tiny_backbone

CHROMIUM = Path(os.environ.get("MEMGPT_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SCREENSHOT = ROOT / "docs" / "reader.png"
TIMEOUT_MS = 60_000  # any one step; a reading or an answer may take longer on a loaded machine
WAIT_MS = 600_000

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")

ASCII_DOC = """The Harbour Light at Skerrow

The harbour light at Skerrow was built in 1822 by the mason Tobias Reed. It stood on a granite ledge at the mouth of the bay.
Its first keeper was Agnes Mull, who kept the lamp burning for thirty-one years.

In 1931 the lamp was electrified, and the clockwork that had turned the lens was removed.
The lantern was painted green in 1950, after a storm broke two of its panes.

Today the light is run from the town of Fennick, and the keeper's cottage is a small museum.
"""

CJK_DOC = ("The tea house 茶館 stood beside the river 🌊 in the old town of 京都.\n"
           "Its owner, 佐藤花子, opened it in 1902 and served green tea 🍵 to travellers.\n"
           "每天早上，她打开窗户。 The house closed in 1968, when a flood 🌧️ reached the door.\n"
           "A painter, Mei Lin 林美, kept a sketch of the tea house 茶館 until 1990 👩‍🎨.\n")

SCRIPT_DOC = ("Notes on the page <script>window.pwned = 1</script> that a careless reader would run.\n"
              "A second line with <img src=x onerror=\"window.pwned = 2\"> in it, and <b>bold</b> markup.\n"
              "The notes were written by Ada Quill in 1911 at the harbour of Skerrow.\n")

NETWORK_ERROR = re.compile(r"^Failed to load resource: the server responded with a status of 4\d\d")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    server = start_server(tmp, "--data-dir", str(tmp / "data"), "--max-body-mb", "1", key=None)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser-key")
    server = start_server(tmp, "--model", str(tiny_backbone(tmp / "tiny")), "--dtype", "fp32",
                          "--data-dir", str(tmp / "data"), key=KEY)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    """A fresh tab (its own session storage) at 1280 px; any console error or uncaught exception fails the
    test, but for the browser's own line about an HTTP 4xx the test provoked."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    tab.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    tab.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}")
           if m.type in ("error", "warning") and not NETWORK_ERROR.match(m.text) else None)
    yield tab
    context.close()
    assert not problems, problems


def origin(server) -> str:
    return f"http://127.0.0.1:{server.port}"


def open_page(page, server):
    page.goto(origin(server) + "/")
    page.wait_for_selector("body[data-started]", state="attached")


def read_text(page, text: str, name: str) -> list[str]:
    """Paste, Read, wait for the outline; returns the status lines shown meanwhile."""
    page.fill("#paste", text)
    page.fill("#name", name)
    page.evaluate("""() => { window.statusSeen = [];
        const status = document.getElementById("status");
        new MutationObserver(() => window.statusSeen.push(status.textContent))
            .observe(status, {childList: true, characterData: true, subtree: true}); }""")
    page.click("#read")
    page.wait_for_selector("body[data-ready]", state="attached", timeout=WAIT_MS)
    return page.evaluate("window.statusSeen")


def check_every_citation(page, scope: str, document: str) -> int:
    """Click every citation link under `scope`; each must highlight exactly document[start:end] (code points)."""
    links = page.locator(f"{scope} a.cite")
    count = links.count()
    for k in range(count):
        link = links.nth(k)
        start, end = int(link.get_attribute("data-start")), int(link.get_attribute("data-end"))
        link.click()
        marks = page.locator("#document mark")
        assert marks.count() == 1, (scope, k)
        assert marks.text_content() == document[start:end], (start, end)
        assert page.locator("#document").text_content() == document  # nothing else changed
        assert page.evaluate("document.activeElement.tagName") == "MARK"
    return count


def test_read_outline_ask_and_cite(page, server, tmp_path):
    open_page(page, server)
    seen = read_text(page, ASCII_DOC, "skerrow.txt")
    assert any(line.startswith("Reading skerrow.txt: ") for line in seen), seen  # progress, from the polled status
    assert page.locator("#document").text_content() == ASCII_DOC
    assert page.locator("#error").is_hidden()
    assert page.locator("#outline a.cite").count() >= 3
    assert check_every_citation(page, "#outline", ASCII_DOC) >= 3

    page.fill("#question", "When was the lamp electrified?")
    page.press("#question", "Enter")
    page.wait_for_selector("body[data-answered='1']", state="attached", timeout=WAIT_MS)
    answer = page.locator("#answers .answer").first
    assert "1931" in answer.inner_text()
    assert check_every_citation(page, "#answers", ASCII_DOC) >= 1

    page.fill("#question", "Where did Captain Oduya sail in 1870?")
    page.click("#ask")
    page.wait_for_selector("body[data-answered='2']", state="attached", timeout=WAIT_MS)
    assert page.locator("#answers .answer .abstained").first.text_content() == "The document does not say."

    page.locator("#outline a.cite").first.click()
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size < 400_000

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "reader-phone.png"), full_page=True)

    # the memory is listed, reopened and deleted
    page.set_viewport_size({"width": 1280, "height": 900})
    item = page.locator("#memories li", has_text="skerrow.txt")
    assert "ready" in item.inner_text()
    page.evaluate("delete document.body.dataset.ready")
    item.get_by_role("button", name="Open skerrow.txt").click()
    page.wait_for_selector("body[data-ready]", state="attached", timeout=WAIT_MS)
    assert page.locator("#document").text_content() == ASCII_DOC
    page.locator("#memories li", has_text="skerrow.txt").get_by_role("button", name="Delete skerrow.txt").click()
    sync_api.expect(page.locator("#memories")).not_to_contain_text("skerrow.txt", timeout=TIMEOUT_MS)
    assert page.locator("#document").text_content() == ""


def test_focus_order_and_labels(page, server):
    open_page(page, server)
    for control in ("file", "paste", "name", "question"):
        assert page.locator(f"label[for='{control}']").count() == 1
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id"))
    assert order[:5] == ["file", "paste", "name", "read", "question"], order
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def test_cjk_and_emoji_offsets(page, server):
    """Offsets count code points; the page converts them to UTF-16 units (emoji are two, ZWJ sequences more)."""
    open_page(page, server)
    page.set_input_files("#file", files=[{"name": "teahouse.txt", "mimeType": "text/plain",
                                          "buffer": CJK_DOC.encode("utf-8")}])
    page.click("#read")
    page.wait_for_selector("body[data-ready]", state="attached", timeout=WAIT_MS)
    assert page.locator("#document").text_content() == CJK_DOC
    starts = [int(s) for s in page.locator("#outline a.cite").evaluate_all("ls => ls.map(l => l.dataset.start)")]
    assert any(s > CJK_DOC.index("🌊") for s in starts)  # a citation past an astral character
    assert check_every_citation(page, "#outline", CJK_DOC) >= 2
    page.fill("#question", "When did the house close?")
    page.click("#ask")
    page.wait_for_selector("body[data-answered='1']", state="attached", timeout=WAIT_MS)
    check_every_citation(page, "#answers", CJK_DOC)


def test_unplaceable_citation_highlights_nothing(page, server):
    open_page(page, server)
    read_text(page, CJK_DOC, "teahouse")
    for cite in ({"start": 0, "end": 5, "text": "wrong"}, {"start": 5, "end": 10_000, "text": "x"},
                 {"start": 7, "end": 3}, {"start": -1, "end": 3}, {"start": 1.5, "end": 3}):
        page.evaluate("c => highlight(c)", cite)
        assert page.locator("#document mark").count() == 0, cite
        assert page.locator("#document").text_content() == CJK_DOC
        assert "nothing is highlighted" in page.locator("#cite-note").text_content()


def test_script_document_shown_as_text(page, server):
    open_page(page, server)
    read_text(page, SCRIPT_DOC, "<script>alert(1)</script>")
    assert page.locator("#document").text_content() == SCRIPT_DOC
    assert page.locator("#document script, #document img, #outline script, #outline img, #memories script").count() == 0
    assert page.locator("#memories").inner_text().count("<script>alert(1)</script>") == 1
    assert page.evaluate("window.pwned") is None
    check_every_citation(page, "#outline", SCRIPT_DOC)


@pytest.mark.parametrize("case", ["binary", "empty", "too-large"])
def test_bad_input_shows_the_servers_error(page, server, case):
    open_page(page, server)
    with page.expect_response(lambda r: r.url.endswith("/v1/memories") and r.request.method == "POST") as sent:
        if case == "empty":
            page.fill("#paste", "   ")
        else:
            data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 64 if case == "binary" else b"word " * 300_000  # 1.4 MiB
            page.set_input_files("#file", files=[{"name": f"{case}.bin", "mimeType": "application/octet-stream",
                                                  "buffer": data}])
        page.click("#read")
    response = sent.value
    assert 400 <= response.status < 500
    message = response.json()["error"]["message"]
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert error.text_content() == message and "\n" not in message
    assert page.locator("#open-form").is_visible() and page.locator("#read").is_enabled()


def test_api_key_asked_once_and_wrong_key_shows_error(page, keyed_server):
    sent: list[str | None] = []
    page.on("request", lambda r: sent.append(r.headers.get("authorization")) if "/v1/" in r.url else None)
    open_page(page, keyed_server)
    status, body, _ = keyed_server.request("GET", "/v1/memories", key="wrong")
    assert status == 401
    page.locator("#key-form").wait_for(state="visible")
    assert page.locator("#error").text_content() == body["error"]["message"]
    page.fill("#key", "wrong")
    with page.expect_response(lambda r: "/v1/memories" in r.url) as answered:
        page.press("#key", "Enter")
    assert answered.value.status == 401 and answered.value.request.headers["authorization"] == "Bearer wrong"
    sync_api.expect(page.locator("#error")).to_have_text(body["error"]["message"], timeout=TIMEOUT_MS)
    assert page.locator("#key-form").is_visible()

    page.fill("#key", KEY)
    page.click("#key-form button")
    page.locator("#key-form").wait_for(state="hidden")
    assert page.locator("#error").is_hidden()
    assert page.evaluate("sessionStorage.getItem('memgpt-api-key')") == KEY
    page.reload()  # the same tab: the key is not asked again
    page.wait_for_selector("body[data-started]", state="attached")
    assert page.locator("#key-form").is_hidden() and page.locator("#error").is_hidden()
    assert sent[0] is None and sent[-1] == f"Bearer {KEY}" and sent[-2] == f"Bearer {KEY}"


def test_page_is_served_under_the_servers_rules(server, keyed_server):
    status, body, headers = keyed_server.request("GET", "/", key=None)  # the page is public, holds no data
    assert status == 200 and "memgpt reader" in body and "script-src 'self'" in headers["content-security-policy"]
    assert keyed_server.request("GET", "/v1/memories", key=None)[0] == 401
    assert keyed_server.request("GET", "/app.js/../v1/memories", key=None)[0] in (401, 404)
    status, body, _ = server.request("GET", "/", headers={"Host": "rebind.example"})
    assert status == 403 and body["error"]["code"] == "host_not_allowed"
