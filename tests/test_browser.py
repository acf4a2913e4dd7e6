"""The web UI in headless Chromium (issue #4, R-AUTH-1, R-AUDIT-1, R-HIST-1, R-SIG-2).

The app runs under waitress on a loopback port over an archive of signed records
(test PKI, signature enforcement on, one record classified "mật"); Debian's Chromium
is driven by Playwright. People log in through the real pages: password, then a TOTP
code computed with pyotp (or enrolment on first login). Screenshots of the main pages
go to ``test-artifacts/screenshots/``.

Without Chromium or Playwright the tests are skipped with the reason; with
ARCHIVE_REQUIRE_SERVICES=1 (CI) that is a failure. ``scripts/system-deps.sh`` installs
the ``chromium`` and ``fonts-dejavu-core`` packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest

from tests.conftest import ORG, REPO, sample_metadata
from tests.services.common import free_port, unavailable

pytestmark = [pytest.mark.services, pytest.mark.browser]

CHROMIUM = os.environ.get("ARCHIVE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
PASSWORD = "mật khẩu thử nghiệm 2025"  # noqa: S105 (a test password)
FONDS = "PHONG-01"


@dataclass
class Person:
    username: str
    secret: str


@dataclass
class Site:
    url: str
    records: dict[str, str]  # name -> record id
    originals: dict[str, bytes]  # name -> the file ingested
    people: dict[str, Person]
    files: dict[str, Path]  # name -> a signed PDF for the ingest form


# ---- the archive, the server and the browser ----------------------------------------


def _ingest(aenv, name: str, pdf: Path, **meta) -> str:
    inbox = aenv.tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    target = inbox / f"{name}.pdf"
    shutil.copyfile(pdf, target)
    target.with_name(target.name + ".json").write_text(
        json.dumps(sample_metadata(**meta), ensure_ascii=False), encoding="utf-8")
    result = aenv.invoke("ingest", str(target), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["results"][0]["record_id"]


def _signed_archive(tmp_path: Path, pki):
    from tests.conftest import make_archive_env

    aenv = make_archive_env("local-sqlite", tmp_path, None)
    aenv.env.update({
        "ARCHIVE_SIGNATURES__ENFORCE": "true",
        "ARCHIVE_SIGNATURES__ALLOW_FETCHING": "true",
        "ARCHIVE_SIGNATURES__TRUST_ROOTS": json.dumps([str(pki.trust_roots_path)]),
        "ARCHIVE_SIGNATURES__TSA_URL": pki.tsa_url,
        "ARCHIVE_SIGNATURES__REVOCATION_MODE": "require",
    })
    steps = [("agents", "add-person", pki.identifier("an"), "Nguyễn Văn An"),
             ("agents", "bind-cert", pki.identifier("an"), str(pki.cert_path("an"))),
             ("agents", "bind-cert", pki.identifier("org_vptu"),
              str(pki.cert_path("org_vptu"))),
             ("agents", "grant-authority", pki.identifier("an"), ORG, "--position",
              "Chánh Văn phòng", "--from", "2020-01-01")]
    for step in steps:
        result = aenv.invoke(*step)
        assert result.exit_code == 0, result.output
    return aenv


PEOPLE = [("vanthu", "001085000101", "Nguyễn Thị Thu", "clerk", "normal", False),
          ("vanthu2", "001085000102", "Phạm Văn Hải", "clerk", "normal", True),
          ("thanhtra", "001085000103", "Lê Minh Đức", "inspector", "mat", True),
          ("kiemtoan", "001085000104", "Hoàng Thị Lan", "auditor", "normal", True)]


def make_people(aenv, plan=PEOPLE) -> dict[str, Person]:
    """Users of ``plan`` (username, person, name, role, clearance, confirmed). By default
    a clerk who enrols in the browser; a second clerk, an inspector cleared for "mật"
    and an auditor whose TOTP is already confirmed (with the code of the previous
    30-second step, so the browser's current code is a fresh one)."""
    from archive.agents import register_agent
    from archive.principal import Principal
    from archive.users import add_user, check_totp

    instance = aenv.instance()
    operator = Principal.system("test")
    people = {}
    with instance.catalog.unit_of_work() as db:
        for username, person, name, role, clearance, confirm in plan:
            register_agent(db, instance.settings, operator, kind="person",
                           identifier=person, name=name)
            user = add_user(db, instance.settings, operator, username=username,
                            person=person, role=role, password=PASSWORD,
                            clearance=clearance, fonds=[FONDS])
            if confirm:
                previous = int(time.time()) // 30 - 1
                code = pyotp.TOTP(user.totp_secret).generate_otp(previous)
                assert check_totp(db, instance.settings, user, code).ok
            people[username] = Person(username, user.totp_secret)
    return people


@pytest.fixture(scope="module")
def site(tmp_path_factory, pki, signed_pdfs):
    import waitress

    from access.app import create_app

    aenv = _signed_archive(tmp_path_factory.mktemp("browser-archive"), pki)
    # Every PDF is signed now: Playwright's event loop would stop pyHanko's later.
    form_files = {
        "person-only": signed_pdfs.path("person_t"),
        "plan": signed_pdfs.signed("an", "org_vptu", text="Kế hoạch số 15-KH/TU (TEST)"),
    }
    files = {
        "quyet-dinh": signed_pdfs.path("person_org_t"),
        "cong-van": signed_pdfs.signed("an", "org_vptu",
                                       text="Công văn số 34-CV/VPTU (TEST)"),
        "mat": signed_pdfs.signed("an", "org_vptu", text="Báo cáo MẬT số 05-BC/TU (TEST)"),
    }
    records = {
        "quyet-dinh": _ingest(aenv, "quyet-dinh", files["quyet-dinh"]),
        "cong-van": _ingest(aenv, "cong-van", files["cong-van"], doc_type="cong-van",
                            number_symbol="34-CV/VPTU", date="2025-05-02",
                            summary="Công văn về việc triển khai chuyển đổi số trong các "
                                    "cơ quan Đảng", retention_rule="20y"),
        "mat": _ingest(aenv, "mat", files["mat"], doc_type="bao-cao", classification="mat",
                       number_symbol="05-BC/TU", date="2025-06-30",
                       summary="Báo cáo tình hình bảo vệ bí mật nhà nước 6 tháng đầu năm"),
    }
    people = make_people(aenv)
    app = create_app(aenv.instance())
    port = free_port()
    server = waitress.create_server(app, host="127.0.0.1", port=port, threads=4,
                                    ident="archive-test")
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{port}", records,
                   {k: Path(v).read_bytes() for k, v in files.items()}, people, form_files)
    finally:
        server.close()
        thread.join(timeout=5)
        aenv.close()


@pytest.fixture(scope="module")
def chromium_available() -> None:
    """Checked before the archive is built, so a missing browser costs nothing."""
    if not Path(CHROMIUM).is_file():
        unavailable("Chromium", f"{CHROMIUM} not found (Debian package 'chromium'; "
                    "scripts/system-deps.sh installs it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        unavailable("Playwright", f"{exc}; install the 'test' extra")


@pytest.fixture(scope="module")
def browser(chromium_available):
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                                  args=CHROMIUM_ARGS)
        except Error as exc:
            unavailable("Chromium", f"cannot start {CHROMIUM}: {exc.message.splitlines()[0]}")
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(chromium_available, site, browser):
    """A fresh browser profile (no cookies) per test; console errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN",
                                  timezone_id="Asia/Ho_Chi_Minh", accept_downloads=True,
                                  base_url=site.url)
    context.set_default_timeout(20000)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        yield tab
        # A CSP violation (inline style or script) shows up as a console error.
        assert not [p for p in problems if "Content Security Policy" in p], problems
    finally:
        context.close()


def shot(tab, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


# ---- steps --------------------------------------------------------------------------


def password_step(tab, username: str, password: str = PASSWORD) -> None:
    tab.goto("/login")
    tab.fill("#username", username)
    tab.fill("#password", password)
    tab.click("#login button[type=submit]")


def log_in(tab, person: Person) -> None:
    """Password, then the TOTP code of the current 30-second step."""
    password_step(tab, person.username)
    tab.wait_for_url(re.compile(r"/login/totp"))
    tab.fill("#code", pyotp.TOTP(person.secret).now())
    tab.click("#login-code")
    tab.wait_for_url(re.compile(r"/records"))


def log_out(tab) -> None:
    tab.click("#logout")
    tab.wait_for_url(re.compile(r"/login"))


def download(tab, site: Site, name: str) -> bytes:
    tab.goto(f"/records/{site.records[name]}")
    with tab.expect_download() as info:
        tab.click("#download")
    return Path(info.value.path()).read_bytes()


def text_of(tab, selector: str) -> str:
    return tab.locator(selector).inner_text()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- tests --------------------------------------------------------------------------


def test_clerk_enrols_searches_opens_downloads_and_is_denied_a_classified_record(page, site):
    tab = page
    # Anonymous: every page leads to the login, in Vietnamese by default.
    tab.goto("/records")
    tab.wait_for_url(re.compile(r"/login\?next="))
    assert tab.locator("html").get_attribute("lang") == "vi"
    assert text_of(tab, "h1") == "Đăng nhập"
    shot(tab, "01-login")

    # First login: password, then enrolment of the second factor (QR code + secret).
    password_step(tab, "vanthu")
    tab.wait_for_url(re.compile(r"/login/enrol"))
    assert tab.locator("img.qr").get_attribute("src").startswith("data:image/svg+xml")
    secret = text_of(tab, "#totp-secret").strip()
    assert secret == site.people["vanthu"].secret
    shot(tab, "02-enrol")
    tab.fill("#code", pyotp.TOTP(secret).now())
    tab.click("#confirm-code")
    tab.wait_for_url(re.compile(r"/records$"))
    assert "mật khẩu và mã xác thực một lần" in text_of(tab, ".who")
    assert tab.locator("#weak-login").count() == 0

    # Navigation shows what a clerk may do: no audit log.
    menu = text_of(tab, ".main-nav")
    assert "Nộp lưu văn bản" in menu and "Nhật ký hệ thống" not in menu

    # Search: the classified record is not among the results of a clerk.
    assert "Tìm thấy 2 văn bản" in text_of(tab, "#result-count")
    tab.fill("#q", "chuyển đổi số")
    tab.click("#search")
    tab.wait_for_url(re.compile(r"q=chuy"))
    assert "Tìm thấy 1 văn bản" in text_of(tab, "#result-count")
    assert "34-CV/VPTU" in text_of(tab, "#results")
    tab.goto("/records?type=quyet-dinh&from=2025-01-01&to=2025-12-31&status=active")
    assert text_of(tab, "#results tbody").count("12-QĐ/TU") == 1
    tab.goto("/records")
    shot(tab, "03-search")

    # The record: metadata, signature verdict per signer, badges, history, download.
    tab.click("text=12-QĐ/TU")
    tab.wait_for_url(re.compile(r"/records/[0-9a-f-]{36}$"))
    assert text_of(tab, "#record-id") == site.records["quyet-dinh"]
    meta = text_of(tab, "#metadata")
    assert "Quyết định về việc ban hành quy chế lưu trữ số" in meta and "PHONG-01" in meta
    assert "Văn phòng Tỉnh ủy" in meta and "14/03/2025" in meta
    assert "Hợp lệ" in text_of(tab, "#overall-verdict")
    assert tab.locator("#signatures article.signature").count() == 2
    signatures = text_of(tab, "#signatures")
    assert "cá nhân" in signatures and "cơ quan, tổ chức" in signatures
    assert "dấu thời gian" in signatures
    assert "Còn hiệu lực" in text_of(tab, "#badges")
    history = text_of(tab, "#history")
    assert "Kiểm tra chữ ký số" in history and "Nhập kho lưu trữ" in history
    shot(tab, "04-record")
    assert sha256(download(tab, site, "quyet-dinh")) == sha256(site.originals["quyet-dinh"])

    # A classified record above the clerk's clearance: 403 with the reason.
    response = tab.goto(f"/records/{site.records['mat']}")
    assert response.status == 403
    assert text_of(tab, "h1") == "Không được phép truy cập"
    assert "độ mật “Mật”" in text_of(tab, "#reason")
    shot(tab, "07-denied")
    assert tab.goto("/audit").status == 403

    # English and back.
    tab.goto("/records")
    tab.click("a.lang[hreflang=en]")
    tab.wait_for_url(re.compile(r"/records"))
    assert text_of(tab, "h1") == "Search records"
    assert tab.locator("html").get_attribute("lang") == "en"
    tab.click("a.lang[hreflang=vi]")
    tab.wait_for_url(re.compile(r"/records"))
    assert text_of(tab, "h1") == "Tra cứu văn bản"

    # Own access history: the download and the denial are there.
    tab.click("text=Nhật ký truy cập của tôi")
    tab.wait_for_url(re.compile(r"/me/access"))
    own = text_of(tab, "#access-log")
    assert "Tải bản gốc" in own and "bị từ chối" in own

    log_out(tab)
    assert tab.goto("/records").url.split("?")[0].endswith("/login")


def test_ingest_form_lists_bad_fields_shows_the_refusal_report_and_archives(page, site):
    tab = page
    log_in(tab, site.people["vanthu2"])
    tab.click("text=Nộp lưu văn bản")
    tab.wait_for_url(re.compile(r"/ingest$"))

    def fill(pdf: Path, **values):
        fields = {"number_symbol": "15-KH/TU", "date": "2025-04-10",
                  "summary": "Kế hoạch triển khai lưu trữ văn bản điện tử",
                  "signer": "Nguyễn Văn An", "page_count": "2", "fonds": FONDS, **values}
        tab.set_input_files("#file", str(pdf))
        for name, value in fields.items():
            tab.fill(f"#{name}", value)
        tab.select_option("#doc_type", "ke-hoach")
        tab.select_option("#issuing_org", ORG)
        tab.select_option("#retention_rule", "10y")
        tab.click("#submit")
        tab.wait_for_load_state()

    # Bad metadata: every bad field is named next to its input; nothing is stored.
    fill(site.files["person-only"], date="2999-01-01", page_count="mười")
    assert "Ngày 2999-01-01 là ngày trong tương lai" in text_of(tab, "#error-date")
    assert "Phải là số nguyên" in text_of(tab, "#error-page_count")
    assert "(2)" in text_of(tab, "#field-errors-summary")
    assert tab.input_value("#summary") == "Kế hoạch triển khai lưu trữ văn bản điện tử"

    # Signed by the person only: a plan needs the organisation's signature too.
    fill(site.files["person-only"])
    refusal = text_of(tab, "#refusal")
    assert "trả lại nơi gửi" in refusal
    assert f"Thiếu chữ ký số hợp lệ của cơ quan, tổ chức ban hành {ORG}" in \
        text_of(tab, "#refusal-problems")
    assert re.fullmatch(r"[0-9a-f-]{36}", text_of(tab, "#submission-id"))
    shot(tab, "05-ingest-refusal")

    # Signed by the person and the organisation: archived, with a link to the record.
    fill(site.files["plan"])
    assert "đã được nhập kho" in text_of(tab, "#ingest-result")
    tab.click("#new-record")
    tab.wait_for_url(re.compile(r"/records/[0-9a-f-]{36}$"))
    assert "15-KH/TU" in text_of(tab, "#metadata")
    assert "Hợp lệ" in text_of(tab, "#overall-verdict")
    log_out(tab)


def test_inspector_opens_the_classified_record_but_not_in_a_browse_only_session(page, site):
    tab = page
    inspector = site.people["thanhtra"]
    log_in(tab, inspector)
    tab.fill("#q", "bí mật")
    tab.click("#search")
    tab.wait_for_url(re.compile(r"q="))
    assert "05-BC/TU" in text_of(tab, "#results")
    tab.click("text=05-BC/TU")
    tab.wait_for_url(re.compile(r"/records/[0-9a-f-]{36}$"))
    assert "Mật" in text_of(tab, "#badges")
    assert tab.locator("#badges .badge-mat").count() == 1
    shot(tab, "09-record-classified")
    assert sha256(download(tab, site, "mat")) == sha256(site.originals["mat"])
    log_out(tab)

    # Password only ("browse only"): the same person may not open the classified record.
    password_step(tab, inspector.username)
    tab.wait_for_url(re.compile(r"/login/totp"))
    shot(tab, "08-totp")
    tab.click("#browse-only")
    tab.wait_for_url(re.compile(r"/records$"))
    assert "Phiên chỉ tra cứu" in text_of(tab, "#weak-login")
    assert "chỉ tra cứu" in text_of(tab, ".who")
    assert "05-BC/TU" not in text_of(tab, "main")
    response = tab.goto(f"/records/{site.records['mat']}")
    assert response.status == 403
    assert "mã xác thực một lần" in text_of(tab, "#reason")
    # The download link of the record is refused too, without a byte of the file.
    response = tab.request.get(f"/records/{site.records['mat']}/download")
    assert response.status == 403 and b"%PDF" not in response.body()
    log_out(tab)


def test_auditor_filters_the_audit_log_and_exports_it(page, site):
    tab = page
    log_in(tab, site.people["kiemtoan"])
    assert "Nhật ký hệ thống" in text_of(tab, ".main-nav")
    assert "Nộp lưu văn bản" not in text_of(tab, ".main-nav")
    # The auditor's clearance is "normal": the classified record is denied (and logged).
    assert tab.goto(f"/records/{site.records['mat']}").status == 403

    tab.click("text=Nhật ký hệ thống")
    tab.wait_for_url(re.compile(r"/audit$"))
    tab.select_option("#outcome", "denied")
    tab.fill("#actor", "user:kiemtoan")
    tab.click("#filter")
    tab.wait_for_url(re.compile(r"outcome=denied"))
    table = text_of(tab, "#audit-log")
    assert "record.view" in table and f"record:{site.records['mat']}" in table
    assert "bị từ chối" in table
    shot(tab, "06-audit")

    href = tab.locator("#export-csv").get_attribute("href")
    assert "outcome=denied" in href and "actor=user:kiemtoan" in href
    exported = tab.request.get(href)
    assert exported.status == 200 and exported.headers["content-type"].startswith("text/csv")
    lines = exported.text().splitlines()
    assert lines[0].startswith("seq,occurred_at,actor,action")
    assert len(lines) >= 2 and all(",denied," in line for line in lines[1:])
    jsonl = tab.request.get(tab.locator("#export-jsonl").get_attribute("href"))
    assert jsonl.status == 200
    assert all(json.loads(line)["outcome"] == "denied" for line in jsonl.text().splitlines())
    log_out(tab)
