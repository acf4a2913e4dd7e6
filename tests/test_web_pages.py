"""Pages of the web UI through Flask's test client: the paths the browser tests do not
walk (a refused file format, pagination that keeps the filters, the English catalogue
fallback, a page's denial for a role) on an archive without signature enforcement."""

from __future__ import annotations

import io
import re
import time

import pyotp
import pytest

from access.app import create_app

PASSWORD = "mật khẩu thử nghiệm 2025"  # noqa: S105 (a test password)


def _login(local_archive, client, role: str, clearance: str = "normal") -> None:
    """A user of ``role`` logged in with password and TOTP through the real pages."""
    from archive.agents import register_agent
    from archive.principal import Principal
    from archive.users import add_user, check_totp

    instance = local_archive.instance()
    operator = Principal.system("test")
    with instance.catalog.unit_of_work() as db:
        register_agent(db, instance.settings, operator, kind="person",
                       identifier="001085000201", name="Trần Văn Nam")
        user = add_user(db, instance.settings, operator, username=role,
                        person="001085000201", role=role, password=PASSWORD,
                        clearance=clearance, fonds=["PHONG-01"])
        previous = int(time.time()) // 30 - 1
        assert check_totp(db, instance.settings, user,
                          pyotp.TOTP(user.totp_secret).generate_otp(previous)).ok
        secret = user.totp_secret
    response = client.post("/login", data={"csrf_token": _csrf(client.get("/login").text),
                                           "username": role, "password": PASSWORD})
    assert response.headers["Location"].endswith("/login/totp")
    response = client.post("/login/totp", data={
        "csrf_token": _csrf(client.get("/login/totp").text),
        "code": pyotp.TOTP(secret).now()})
    assert response.status_code == 302, response.text


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
def client(local_archive):
    app = create_app(local_archive.instance())
    app.testing = True
    return app.test_client()


def test_a_refused_file_format_shows_the_return_to_sender_report(local_archive, client):
    _login(local_archive, client, "clerk")
    form = {"csrf_token": _csrf(client.get("/ingest").text), "number_symbol": "7-TB/TU",
            "doc_type": "thong-bao", "date": "2025-02-03", "issuing_org": "000.00.00.H41",
            "summary": "Thông báo kết luận", "signer": "Trần Văn Nam", "page_count": "1",
            "language": "vi", "classification": "normal", "retention_rule": "10y",
            "fonds": "PHONG-01", "file": (io.BytesIO(b"not a PDF at all\n"), "tb.txt")}
    response = client.post("/ingest", data=form, content_type="multipart/form-data")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Văn bản không được nhập kho: trả lại nơi gửi" in page
    assert "không được chấp nhận: kho chỉ lưu trữ văn bản PDF" in page
    assert re.search(r'id="submission-id">[0-9a-f-]{36}<', page)


def test_search_pages_keep_the_filters_and_english_is_the_fallback(local_archive, client):
    for n in range(3):
        pdf = local_archive.sample(f"s{n}.pdf", text=f"mẫu {n}",
                                   number_symbol=f"{n + 1}-QĐ/TU")
        assert local_archive.json("ingest", str(pdf))["results"][0]["status"] == "archived"
    _login(local_archive, client, "clerk")
    page = client.get("/records?q=quy+ch%E1%BA%BF&limit=2").get_data(as_text=True)
    assert "Tìm thấy 3 văn bản" in page and "1–2 trong tổng số 3" in page
    following = re.search(r'href="([^"]+)" id="next-page"', page).group(1)
    assert "offset=2" in following and "q=quy" in following and "limit=2" in following
    page = client.get(following.replace("&amp;", "&")).get_data(as_text=True)
    assert "3–3 trong tổng số 3" in page

    client.set_cookie("lang", "en")
    page = client.get("/records?from=2025-12-31&to=2025-01-01").get_data(as_text=True)
    assert "The search could not be run" in page and "from: must not be after to" in page


def test_the_audit_page_is_refused_to_a_clerk_with_the_reason(local_archive, client):
    _login(local_archive, client, "clerk")
    assert "/audit" not in client.get("/records").get_data(as_text=True)
    response = client.get("/audit?outcome=denied")
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "Không được phép truy cập" in page
    assert "Vai trò của bạn (Văn thư) không được phép thực hiện: Đọc nhật ký hệ thống" in page
