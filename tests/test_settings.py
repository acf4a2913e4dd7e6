"""Configuration layers and their refusals (unknown keys are errors naming the key)."""

from __future__ import annotations

import pytest

from archive.errors import ConfigError
from archive.settings import load_settings


def test_defaults_load():
    s = load_settings(environ={})
    assert s.storage.backend == "local"
    assert s.fixity.algorithms == ("sha256", "sha512")
    assert s.database_url.startswith("sqlite:///")
    assert s.retention["vv"].period is None and s.retention["10y"].period == 10


def test_file_then_environment_override(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('[storage]\nbackend = "s3"\ns3_endpoint = "http://x"\ns3_bucket = "b"\n'
                   '[server]\nport = 9000\n[retention.3y]\nlabel = "3 năm"\nperiod = 3\n')
    s = load_settings(environ={"ARCHIVE_CONFIG": str(cfg), "ARCHIVE_SERVER__PORT": "9100",
                               "ARCHIVE_FIXITY__ALGORITHMS": "sha256,sha512,sha3_256",
                               "ARCHIVE_STORAGE__S3_PATH_STYLE": "no"})
    assert s.storage.backend == "s3" and s.storage.s3_bucket == "b"
    assert s.server.port == 9100
    assert s.fixity.algorithms == ("sha256", "sha512", "sha3_256")
    assert s.storage.s3_path_style is False
    assert s.retention["3y"].period == 3
    assert "environment" in s.source and str(cfg) in s.source


@pytest.mark.parametrize("content, words", [
    ("[storage]\nbukket = 1\n", "storage.bukket"),
    ("[nonsense]\na = 1\n", "[nonsense]"),
    ("[retention.x]\nlabel = 'x'\nperiod = 1\nfrom = 'date'\n", "retention.x.from"),
    ("[server]\nport = 'eighty'\n", "server.port"),
    ("[fixity]\nalgorithms = ['sha256']\n", "sha512"),
    ("[fixity]\nalgorithms = ['sha256', 'sha512', 'crc99']\n", "crc99"),
    ("[storage]\nbackend = 's3'\n", "storage.s3_endpoint"),
    ("[retention.x]\nlabel = 'x'\nperiod = -2\n", "retention.x.period"),
    ("not toml at all [", "not valid TOML"),
])
def test_bad_file_is_named(tmp_path, content, words):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"ARCHIVE_CONFIG": str(cfg)})
    assert words in str(err.value)


@pytest.mark.parametrize("name, value, words", [
    ("ARCHIVE_STORAGE__BUKET", "x", "storage.buket"),
    ("ARCHIVE_NOPE__X", "1", "[nope]"),
    ("ARCHIVE_SERVER__PORT", "http", "integer"),
    ("ARCHIVE_STORAGE__S3_PATH_STYLE", "perhaps", "true/false"),
])
def test_bad_environment_is_named(name, value, words):
    with pytest.raises(ConfigError) as err:
        load_settings(environ={name: value})
    assert words in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(environ={"ARCHIVE_CONFIG": str(tmp_path / "none.toml")})


def test_cli_reports_config_errors_with_exit_2(tmp_path):
    from click.testing import CliRunner

    from cli.main import cli

    result = CliRunner().invoke(cli, ["config", "show"], env={"ARCHIVE_SERVER__PROT": "1"})
    assert result.exit_code == 2
    assert "server.prot" in result.stderr
