"""Paper renditions in headless Chromium (R-CONV-2): a clerk prints a signed record from
its page, the PDF downloads, the panel lists the rendition, and its public verification
page opens for a visitor with no login. Screenshots of the record page with the
renditions panel and of the verification page go to ``test-artifacts/screenshots/``.

Reuses the archive, server, browser and login steps of ``tests/test_browser.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pypdfium2 as pdfium
import pytest
import zxingcpp

from tests.test_browser import (  # noqa: F401 - fixtures used by name
    browser,
    chromium_available,
    log_in,
    page,
    shot,
    site,
    text_of,
)

pytestmark = [pytest.mark.services, pytest.mark.browser]


def _qr_and_text(pdf: bytes) -> tuple[str, str]:
    doc = pdfium.PdfDocument(pdf)
    try:
        page_ = doc[0]
        text = page_.get_textpage().get_text_range()
        codes = [b.text for b in zxingcpp.read_barcodes(page_.render(scale=3).to_pil())]
    finally:
        doc.close()
    assert len(codes) == 1, codes
    return codes[0], " ".join(text.split())


def test_clerk_prints_a_rendition_and_the_verification_page_opens(page, site, browser):  # noqa: F811
    record_id = site.records["quyet-dinh"]
    log_in(page, site.people["vanthu2"])
    page.goto(f"/records/{record_id}")
    assert page.locator("#no-renditions").is_visible()
    with page.expect_download() as info:
        page.click("#print-rendition")
    pdf = Path(info.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF-")
    url, text = _qr_and_text(pdf)
    rendition_id = url.rsplit("/", 1)[1]
    assert f"Mã bản in: {rendition_id}" in text
    assert "Người chuyển đổi: Phạm Văn Hải" in text and "12-QĐ/TU" in text

    # The panel lists it, linked to its verification page.
    page.goto(f"/records/{record_id}")
    link = page.locator(f"#rendition-list a:has-text('{rendition_id}')")
    assert link.count() == 1
    assert "Phạm Văn Hải" in text_of(page, "#rendition-list")
    page.locator("#renditions").scroll_into_view_if_needed()
    shot(page, "rendition-record-panel")
    assert link.get_attribute("href") == urlparse(url).path

    # A visitor with no login follows the QR code's path.
    visitor = browser.new_context(viewport={"width": 1000, "height": 800}, locale="vi-VN",
                                  base_url=site.url)
    try:
        tab = visitor.new_page()
        problems: list[str] = []
        tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        tab.goto(urlparse(url).path)
        assert re.search(r"/verify/", tab.url) and "/login" not in tab.url
        assert tab.locator("#verify-status").get_attribute("data-status") == "valid"
        assert "Còn hiệu lực" in text_of(tab, "#verify-status")
        assert text_of(tab, "#verify-number") == "12-QĐ/TU"
        assert "Văn phòng Tỉnh ủy" in text_of(tab, "#verify-issuer")
        body = text_of(tab, "main")
        assert "Quyết định về việc ban hành" not in body and "Nguyễn Văn An" not in body
        shot(tab, "rendition-verification")
        assert not [p for p in problems if "Content Security Policy" in p], problems
    finally:
        visitor.close()
