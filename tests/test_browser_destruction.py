"""Destruction and scheduled jobs in headless Chromium (R-DESTROY-1, R-DESTROY-2, R-SCHED-1).

A job proposed a destruction list of the one expired record; an approver records the
decision through the approval form (irreversible: a checkbox must be ticked), an
archivist executes it, and the register shows the entry while the other record is
untouched. An auditor sees the job runs. Screenshots go to ``test-artifacts/screenshots/``.

Reuses the browser and login steps of ``tests/test_browser.py``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass

import pytest

from tests.conftest import make_archive_env
from tests.services.common import free_port
from tests.test_browser import (  # noqa: F401 - fixtures used by name
    Person,
    browser,
    chromium_available,
    log_in,
    log_out,
    make_people,
    page,
    shot,
    text_of,
)

pytestmark = [pytest.mark.services, pytest.mark.browser]


@dataclass
class DestructionSite:
    url: str
    expired: str
    kept: str
    list_id: str
    people: dict[str, Person]
    aenv: object


def _ingest(aenv, name: str, **meta) -> str:
    path = aenv.sample(f"{name}.pdf", text=name, **meta)
    result = aenv.invoke("ingest", str(path), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["results"][0]["record_id"]


PEOPLE = [("luutru", "001085000201", "Đỗ Thị Hằng", "archivist", "normal", True),
          ("pheduyet", "001085000202", "Vũ Văn Phúc", "approver", "normal", True),
          ("kiemtoan", "001085000203", "Hoàng Thị Lan", "auditor", "normal", True)]


@pytest.fixture(scope="module")
def site(tmp_path_factory, chromium_available):  # noqa: F811
    import waitress

    from access.app import create_app

    aenv = make_archive_env("local-sqlite", tmp_path_factory.mktemp("destruction-ui"), None)
    expired = _ingest(aenv, "expired", number_symbol="07-TB/VPTU", doc_type="thong-bao",
                      date="2005-02-01", retention_rule="5y",
                      summary="Thông báo lịch trực cơ quan dịp Tết Ất Dậu")
    kept = _ingest(aenv, "kept", number_symbol="12-QĐ/TU", retention_rule="vv")
    for job in ("backup", "retention"):
        result = aenv.invoke("jobs", "run", job, "--json")
        assert result.exit_code == 0, result.output
    lists = json.loads(aenv.invoke("destruction", "lists", "--json").stdout)
    (proposed,) = lists["lists"] if isinstance(lists, dict) else lists
    people = make_people(aenv, PEOPLE)
    app = create_app(aenv.instance())
    port = free_port()
    server = waitress.create_server(app, host="127.0.0.1", port=port, threads=4,
                                    ident="archive-test")
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield DestructionSite(f"http://127.0.0.1:{port}", expired, kept, proposed["id"],
                              people, aenv)
    finally:
        server.close()
        thread.join(timeout=5)
        aenv.close()


def test_approver_approves_archivist_executes_register_shows_the_entry(page, site):  # noqa: F811
    from archive.models import Record

    # The approver reviews the job's proposal: one expired record, not the permanent one.
    log_in(page, site.people["pheduyet"])
    page.goto(f"/destruction/{site.list_id}")
    assert page.locator(f"#item-{site.expired}").is_visible()
    assert page.locator(f"#item-{site.kept}").count() == 0
    assert page.locator("#execute-section").count() == 0  # not an archivist's page
    page.fill("#approving-body", "Thường trực Tỉnh ủy")
    page.fill("#decision-number", "45-QĐ/TU")
    page.fill("#legal-basis", "Luật Lưu trữ 2024; mục lục hồ sơ hết giá trị")
    shot(page, "destruction-approve-form")
    page.click("#approve-submit")  # refused by the browser until the box is ticked
    assert page.locator("#list-status").inner_text().strip() != "Đã phê duyệt"
    page.check("#approve-irreversible")
    page.click("#approve-submit")
    page.wait_for_selector("#list-approval")
    assert "45-QĐ/TU" in text_of(page, "#list-approval")
    log_out(page)

    # The archivist executes the approved list.
    log_in(page, site.people["luutru"])
    page.goto(f"/destruction/{site.list_id}")
    page.check("#execute-confirm")
    page.click("#execute-submit")
    page.wait_for_selector("#list-executed")
    shot(page, "destruction-list-executed")

    # The register keeps the tombstone; the record page says destroyed.
    page.goto("/destruction/register?q=07-TB")
    assert re.search(r"07-TB/VPTU", text_of(page, "#register"))
    shot(page, "destruction-register")
    page.goto(f"/records/{site.expired}")
    assert page.locator("#download").count() == 0
    instance = site.aenv.instance()
    with instance.catalog.unit_of_work(snapshot=True) as session:
        assert session.get(Record, site.expired).status == "destroyed"
        assert session.get(Record, site.kept).status == "active"
    assert not list(instance.store.list(f"aip/{site.expired}/"))
    assert list(instance.store.list(f"aip/{site.kept}/"))


def test_auditor_sees_the_job_runs(page, site):  # noqa: F811
    log_in(page, site.people["kiemtoan"])
    page.goto("/jobs")
    runs = text_of(page, "#job-runs")
    assert "backup" in runs and "retention" in runs
    shot(page, "jobs")
