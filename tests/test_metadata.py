"""R-META-1 descriptive metadata rules (pure unit tests; the CLI path is in test_ingest)."""

from __future__ import annotations

from datetime import date

import pytest

from archive.errors import MetadataInvalid, Refused
from archive.metadata import retention_until, validate_metadata
from archive.settings import load_settings
from tests.conftest import ORG, sample_metadata

SETTINGS = load_settings(environ={})
TODAY = date(2026, 1, 1)


def check(**overrides):
    return validate_metadata(sample_metadata(**overrides), SETTINGS, today=TODAY,
                             org_registered=lambda org: org == ORG)


def test_valid_metadata_is_normalised():
    meta = check(classification="normal",
                 summary="  Quyết định  ", recipients=["000.00.01.H41"],
                 sent_at="2025-03-14T15:20:00+07:00", language="VI")
    assert meta.summary == "Quyết định"
    assert meta.language == "vi"
    assert meta.recipients == ("000.00.01.H41",)
    assert meta.to_json()["sent_at"] == "2025-03-14T15:20:00+07:00"
    assert retention_until(meta, SETTINGS) is None


def test_vietnamese_classification_spellings():
    assert check(classification="thường").classification == "normal"


def test_retention_end_is_counted_from_the_date():
    meta = check(retention_rule="10y", date="2016-02-29")
    assert retention_until(meta, SETTINGS) == date(2026, 2, 28)


def test_every_problem_is_reported_at_once():
    with pytest.raises(MetadataInvalid) as err:
        check(number_symbol="a\nb", date="2099-01-01", page_count=True, signer=None,
              recipients="000.00.01.H41", sent_at="2025-03-14T15:20:00",
              signer_id="12", fonds=7)
    fields = sorted(p.field for p in err.value.problems)
    assert fields == ["date", "fonds", "number_symbol", "page_count", "recipients",
                      "sent_at", "signer", "signer_id"]
    text = str(err.value)
    assert "in the future" in text and "time zone" in text


def test_not_an_object():
    with pytest.raises(MetadataInvalid, match="JSON object"):
        validate_metadata(["x"], SETTINGS)


@pytest.mark.parametrize("value", ["tuyệt mật", "tuyet-mat", "TUYỆT MẬT"])
def test_top_secret_is_refused_not_just_invalid(value):
    with pytest.raises(Refused, match="tuyệt mật"):
        check(classification=value)
