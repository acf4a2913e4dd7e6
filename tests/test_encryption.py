"""Encryption at rest of classified files (R-CLASS-1) and crypto-shredding (R-DESTROY-1):
streaming AES-256-GCM, per-file data keys in a vault, rotatable key-encryption keys."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import threading
import tracemalloc
from pathlib import Path

import pytest

from archive.encryption import (
    TAG_BYTES,
    associated_data,
    decrypt_plaintext_digests,
    encrypt_file,
    encrypt_stream,
    open_decrypting,
)
from archive.errors import (
    ConfigError,
    DataKeyDestroyed,
    DecryptionFailed,
    InputError,
    IntegrityError,
    KeyInUse,
    KeyMissing,
    KeyUnusable,
)
from archive.keystore import KeyVault

AAD = associated_data("0b6f2c1e-record", "data/content/quyet-dinh.pdf")
SECRET_TEXT = "Quyết định số 12-QĐ/TU (MẬT): nội dung không được tiết lộ. ".encode()


@pytest.fixture
def vault(tmp_path) -> KeyVault:
    v = KeyVault(tmp_path / "keys" / "kek", tmp_path / "keys" / "vault")
    v.init()
    return v


def _encrypt(vault: KeyVault, data: bytes, aad: str = AAD, **kw):
    out = io.BytesIO()
    result = encrypt_stream(io.BytesIO(data), out, vault, aad=aad, **kw)
    return result, out.getvalue()


def _read_all(reader, chunk: int = 4096) -> tuple[bytes, BaseException | None]:
    """Read in chunks; return what was read before an error, and the error."""
    parts = []
    try:
        while True:
            data = reader.read(chunk)
            if not data:
                return b"".join(parts), None
            parts.append(data)
    except IntegrityError as exc:
        return b"".join(parts), exc


# ---- roundtrip, digests, no plaintext in the stored bytes -----------------------------


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 4096, 100_003])
def test_roundtrip(vault, size):
    data = os.urandom(size)
    result, stored = _encrypt(vault, data)
    assert len(stored) == size + TAG_BYTES == result.size
    reader = open_decrypting(io.BytesIO(stored), result.metadata, len(stored), vault, aad=AAD)
    plain, error = _read_all(reader, chunk=7)
    assert error is None and plain == data
    assert reader.authenticated


def test_large_file_is_streamed_in_bounded_memory(vault, tmp_path):
    size, block = 20 * 1024 * 1024, os.urandom(1024 * 1024)
    source = tmp_path / "big.pdf"
    with open(source, "wb") as fh:
        for i in range(size // len(block)):
            fh.write(bytes([i]) + block[1:])
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "big.pdf.enc"

    tracemalloc.start()
    try:
        result = encrypt_file(source, target, vault, aad=AAD, chunk_size=256 * 1024)
        _, encrypt_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        with open(target, "rb") as raw:
            reader = open_decrypting(raw, result.metadata, target.stat().st_size, vault)
            while chunk := reader.read(256 * 1024):
                digest.update(chunk)
        _, decrypt_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == expected == result.plaintext_digests["sha256"]
    assert result.size == size + TAG_BYTES == target.stat().st_size
    assert encrypt_peak < 4 * 1024 * 1024, encrypt_peak
    assert decrypt_peak < 4 * 1024 * 1024, decrypt_peak


def test_stored_bytes_hold_no_plaintext_run(vault):
    data = SECRET_TEXT * 200
    _, stored = _encrypt(vault, data)
    for i in range(0, len(data) - 8, 5):
        assert data[i:i + 8] not in stored
    assert "MẬT".encode() not in stored


def test_digests_of_plaintext_and_ciphertext(vault):
    data = SECRET_TEXT * 1000
    algorithms = ("sha256", "sha512", "sha3_256")
    result, stored = _encrypt(vault, data, algorithms=algorithms, chunk_size=4096)
    for name in algorithms:
        assert result.digests[name] == hashlib.new(name, stored).hexdigest()
        assert result.plaintext_digests[name] == hashlib.new(name, data).hexdigest()
    assert result.plaintext_size == len(data)


def test_metadata_is_json_and_keeps_plaintext_digests_encrypted(vault):
    data = SECRET_TEXT * 10
    result, _ = _encrypt(vault, data)
    meta = json.loads(json.dumps(result.metadata))  # what the catalog's JSON column holds
    assert meta["algorithm"] == "AES-256-GCM" and meta["aad"] == AAD
    assert meta["dek_id"] and meta["kek_id"] == vault.active_kek_id()
    assert len(base64.b64decode(meta["nonce"])) == 12
    text = json.dumps(meta)
    for name in ("sha256", "sha512"):
        assert hashlib.new(name, data).hexdigest() not in text
    assert decrypt_plaintext_digests(meta, vault) == {
        "size": len(data),
        "digests": {n: hashlib.new(n, data).hexdigest() for n in ("sha256", "sha512")}}


def test_each_file_gets_its_own_data_key_and_nonce(vault):
    first, stored1 = _encrypt(vault, SECRET_TEXT)
    second, stored2 = _encrypt(vault, SECRET_TEXT)
    assert first.metadata["dek_id"] != second.metadata["dek_id"]
    assert first.metadata["nonce"] != second.metadata["nonce"]
    assert stored1 != stored2


# ---- tampering: the tag check fails at the end of the stream ---------------------------


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


@pytest.mark.parametrize("where", ["first byte", "middle byte", "tag"])
def test_tampered_stored_bytes_fail_at_end_of_stream(vault, where):
    data = SECRET_TEXT * 500
    result, stored = _encrypt(vault, data)
    index = {"first byte": 0, "middle byte": len(data) // 2, "tag": len(stored) - 3}[where]
    reader = open_decrypting(io.BytesIO(_flip(stored, index)), result.metadata, len(stored),
                             vault)
    plain, error = _read_all(reader)
    assert isinstance(error, DecryptionFailed), error
    assert "tag mismatch" in error.message
    # Plaintext was released before the check (GCM): the error comes from the final
    # read, before end of stream, and the reader never claims to be authenticated.
    assert len(plain) == len(data)
    assert not reader.authenticated
    with pytest.raises(DecryptionFailed):  # never a clean end after a failure
        reader.read(10)


def test_ciphertext_bound_to_other_identity_fails(vault):
    result, stored = _encrypt(vault, SECRET_TEXT * 50)
    # A catalog row altered (or copied to another record) to claim another identity:
    moved = dict(result.metadata, aad=associated_data("other-record", "data/content/x.pdf"))
    plain, error = _read_all(open_decrypting(io.BytesIO(stored), moved, len(stored), vault))
    assert isinstance(error, DecryptionFailed)
    # The caller's expected identity is compared before anything is read.
    with pytest.raises(DecryptionFailed, match="binds this file"):
        open_decrypting(io.BytesIO(stored), result.metadata, len(stored), vault,
                        aad=associated_data("other-record", "data/content/x.pdf"))


def test_truncated_stored_bytes_fail(vault):
    result, stored = _encrypt(vault, SECRET_TEXT * 50)
    short = stored[:-5]
    _, error = _read_all(open_decrypting(io.BytesIO(short), result.metadata, len(stored),
                                         vault))
    assert isinstance(error, DecryptionFailed)
    with pytest.raises(DecryptionFailed, match="truncated"):
        open_decrypting(io.BytesIO(b"x"), result.metadata, 1, vault)


# ---- missing keys and crypto-shredding -------------------------------------------------


def test_encrypting_without_a_kek_says_what_to_do(tmp_path):
    empty = KeyVault(tmp_path / "kek", tmp_path / "vault")
    with pytest.raises(KeyMissing, match="archive keys init"):
        _encrypt(empty, SECRET_TEXT)
    assert list(empty.data_key_ids()) == []


def test_missing_kek_is_a_clear_error(vault):
    result, stored = _encrypt(vault, SECRET_TEXT)
    kek_id = result.metadata["kek_id"]
    (vault.kek_dir / f"{kek_id}.key").unlink()
    with pytest.raises(KeyMissing) as info:
        open_decrypting(io.BytesIO(stored), result.metadata, len(stored), vault)
    assert kek_id in info.value.message and info.value.exit_code == 1
    assert not isinstance(info.value, DataKeyDestroyed)


def test_shredded_data_key_makes_the_ciphertext_unreadable(vault):
    kept, kept_stored = _encrypt(vault, b"another record")
    result, stored = _encrypt(vault, SECRET_TEXT)
    dek_id = result.metadata["dek_id"]
    assert vault.data_key_exists(dek_id)
    assert vault.destroy_data_key(dek_id) is True
    assert not vault.data_key_exists(dek_id)
    assert not (vault.vault_dir / f"{dek_id}.json").exists()
    with pytest.raises(DataKeyDestroyed, match="crypto-shredded") as info:
        open_decrypting(io.BytesIO(stored), result.metadata, len(stored), vault)
    assert info.value.key_id == dek_id
    with pytest.raises(DataKeyDestroyed):
        decrypt_plaintext_digests(result.metadata, vault)
    assert vault.destroy_data_key(dek_id) is False  # re-running a destruction is fine
    # Destroying one record's key never touches another's.
    reader = open_decrypting(io.BytesIO(kept_stored), kept.metadata, len(kept_stored), vault)
    assert reader.read(1000) == b"another record"


def test_ids_from_outside_never_become_paths(vault):
    with pytest.raises(InputError, match="not a data key id"):
        vault.destroy_data_key("../kek/ACTIVE")
    with pytest.raises(InputError, match="not a key-encryption key id"):
        vault.retire_kek("../../etc/passwd")


def test_failed_encryption_leaves_no_data_key_and_no_file(vault, tmp_path):
    class Broken(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, b):
            raise OSError("disk gone")

    with pytest.raises(OSError):
        encrypt_stream(Broken(), io.BytesIO(), vault, aad=AAD)
    assert list(vault.data_key_ids()) == []

    source, target = tmp_path / "a.pdf", tmp_path / "a.pdf.enc"
    source.write_bytes(SECRET_TEXT)
    target.write_bytes(b"existing")
    with pytest.raises(InputError, match="already exists"):
        encrypt_file(source, target, vault, aad=AAD)
    assert target.read_bytes() == b"existing"
    with pytest.raises(FileNotFoundError):
        encrypt_file(tmp_path / "missing.pdf", tmp_path / "b.enc", vault, aad=AAD)
    assert not (tmp_path / "b.enc").exists()
    assert list(vault.data_key_ids()) == []


# ---- rotation and retirement -----------------------------------------------------------


def test_rotation_rewraps_every_data_key_and_old_kek_can_be_retired(vault):
    old = vault.active_kek_id()
    files = [_encrypt(vault, SECRET_TEXT + bytes([i])) for i in range(5)]
    old_kek_bytes = (vault.kek_dir / f"{old}.key").read_bytes()
    with pytest.raises(KeyInUse, match="active"):
        vault.retire_kek(old)

    report = vault.rotate()
    assert report.ok and report.rewrapped == 5 and report.previous_kek == old
    new = vault.active_kek_id()
    assert new == report.new_kek != old
    for dek_id in vault.data_key_ids():
        assert vault.data_key(dek_id).kek_id == new
    assert (vault.kek_dir / f"{old}.key").read_bytes() == old_kek_bytes  # never rewritten
    listed = {k.kek_id: k for k in vault.list_keks()}
    assert listed[new].active and listed[new].data_keys == 5
    assert not listed[old].active and listed[old].data_keys == 0

    vault.retire_kek(old)
    assert not (vault.kek_dir / f"{old}.key").exists()
    for (result, stored), i in zip(files, range(5), strict=True):
        reader = open_decrypting(io.BytesIO(stored), result.metadata, len(stored), vault)
        assert reader.read(10_000) == SECRET_TEXT + bytes([i])
        assert reader.read(10) == b"" and reader.authenticated


def _make_active(vault: KeyVault, kek_id: str) -> None:
    (vault.kek_dir / "ACTIVE").write_text(kek_id + "\n")


def test_a_kek_still_wrapping_data_keys_cannot_be_retired(vault):
    old = vault.active_kek_id()
    new = vault.rotate().new_kek
    _make_active(vault, old)  # e.g. a process that still wrapped under the old KEK
    dek = vault.new_data_key()
    _make_active(vault, new)
    with pytest.raises(KeyInUse, match="still wraps 1 data key"):
        vault.retire_kek(old)
    assert vault.data_key(dek.dek_id).kek_id == old


def test_rotation_reports_data_keys_it_cannot_rewrap_and_recovers_a_lost_active_kek(vault):
    lost = vault.active_kek_id()
    result, _ = _encrypt(vault, SECRET_TEXT)
    vault.rotate()
    _make_active(vault, lost)
    dek_under_lost = vault.new_data_key()
    (vault.kek_dir / f"{lost}.key").unlink()
    with pytest.raises(KeyMissing, match="is missing"):
        vault.new_data_key()
    listed = {k.kek_id: k for k in vault.list_keks()}
    assert listed[lost].created == "" and listed[lost].active and listed[lost].data_keys == 1

    report = vault.rotate()
    assert not report.ok and report.previous_kek == lost
    assert report.rewrapped == 1  # the file encrypted before: its KEK is still there
    assert report.problems == [{"dek_id": dek_under_lost.dek_id, "kek_id": lost,
                                "message": report.problems[0]["message"]}]
    assert lost in report.problems[0]["message"]
    assert vault.data_key(result.metadata["dek_id"]).kek_id == report.new_kek


def test_rotation_never_resurrects_a_destroyed_data_key(vault):
    deks = [vault.new_data_key().dek_id for _ in range(60)]
    doomed, kept = deks[::2], deks[1::2]
    errors = []

    def destroy():
        try:
            for dek_id in doomed:
                vault.destroy_data_key(dek_id)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=destroy)]
    for t in threads:
        t.start()
    for _ in range(3):
        vault.rotate()
    for t in threads:
        t.join()
    assert not errors
    assert not any(vault.data_key_exists(d) for d in doomed)
    assert all(vault.data_key(d).kek_id == vault.active_kek_id() for d in kept)


# ---- key files -------------------------------------------------------------------------


def test_key_files_are_private_and_never_overwritten(vault):
    _encrypt(vault, SECRET_TEXT)
    vault.rotate()
    for folder in (vault.kek_dir, vault.vault_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = list(vault.kek_dir.glob("kek-*.key")) + list(vault.vault_dir.glob("dek-*.json"))
    assert len(files) == 3
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    from archive.keystore import _write_new

    existing = files[0]
    before = existing.read_bytes()
    with pytest.raises(FileExistsError):
        _write_new(existing, b"replacement")
    assert existing.read_bytes() == before
    assert not [p for p in vault.kek_dir.iterdir() if p.name.endswith(".tmp")]


def test_kek_readable_by_others_is_refused(vault):
    path = vault.kek_dir / f"{vault.active_kek_id()}.key"
    os.chmod(path, 0o644)
    with pytest.raises(KeyUnusable, match="chmod 600"):
        vault.new_data_key()


def test_init_is_idempotent_and_lost_active_marker_falls_back_to_newest(vault):
    first = vault.active_kek_id()
    info, created = vault.init()
    assert (info.kek_id, created) == (first, False)
    vault.rotate()
    newest = vault.active_kek_id()
    (vault.kek_dir / "ACTIVE").unlink()
    assert vault.active_kek_id() == newest
    vault.init()
    assert (vault.kek_dir / "ACTIVE").read_text().strip() == newest


def test_key_folders_from_settings(tmp_path):
    from archive.settings import load_settings

    env = {"ARCHIVE_ARCHIVE__DATA_DIR": str(tmp_path / "data")}
    v = KeyVault.from_settings(load_settings(environ=env))
    assert v.kek_dir == tmp_path / "data" / "keys" / "kek"
    assert v.vault_dir == tmp_path / "data" / "keys" / "vault"
    inside = dict(env, ARCHIVE_ENCRYPTION__VAULT_DIR=str(tmp_path / "data" / "objects" / "v"))
    with pytest.raises(ConfigError, match="apart from the data"):
        KeyVault.from_settings(load_settings(environ=inside))
    elsewhere = dict(env, ARCHIVE_ENCRYPTION__KEK_DIR=str(tmp_path / "hsm-mount"))
    assert KeyVault.from_settings(load_settings(environ=elsewhere)).kek_dir == \
        tmp_path / "hsm-mount"


# ---- CLI -------------------------------------------------------------------------------


def _key_material(data_dir: Path) -> list[str]:
    """Every secret on disk, in the encodings a leak could take."""
    secrets = []
    for path in list((data_dir / "keys" / "kek").glob("*.key")) + \
            list((data_dir / "keys" / "vault").glob("*.json")):
        record = json.loads(path.read_text())
        raw = base64.b64decode(record.get("key") or record.get("wrapped_key"))
        secrets += [base64.b64encode(raw).decode(), raw.hex()]
    return secrets


def test_cli_keys_init_rotate_list_retire(tmp_path):
    from click.testing import CliRunner

    from archive.settings import load_settings
    from cli.main import cli

    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    env["ARCHIVE_ARCHIVE__DATA_DIR"] = str(tmp_path / "data")
    runner = CliRunner()
    outputs = []

    def run(*args, expect=0):
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        outputs.append(result.stdout + result.stderr)
        assert result.exit_code == expect, (result.stdout, result.stderr)
        return result

    assert "archive keys init" in run("keys", "rotate", expect=1).stderr
    first = json.loads(run("keys", "init", "--json").stdout)
    assert first["created"] is True
    again = json.loads(run("keys", "init", "--json").stdout)
    assert again == dict(first, created=False)
    assert "already present" in run("keys", "init").stdout

    vault = KeyVault.from_settings(load_settings(environ=env))
    deks = [vault.new_data_key() for _ in range(3)]
    listed = json.loads(run("keys", "list", "--json").stdout)
    assert listed == [{"kek_id": first["active"], "created": listed[0]["created"],
                       "active": True, "data_keys": 3}]

    rotated = json.loads(run("keys", "rotate", "--json").stdout)
    assert rotated["ok"] and rotated["rewrapped"] == 3
    assert rotated["previous_kek"] == first["active"]
    human = run("keys", "list").stdout
    assert f"* {rotated['new_kek']}" in human and "3 data key(s)" in human
    listed = {r["kek_id"]: r for r in json.loads(run("keys", "list", "--json").stdout)}
    assert listed[first["active"]]["data_keys"] == 0 and listed[rotated["new_kek"]]["active"]

    assert "active" in run("keys", "retire", rotated["new_kek"], expect=3).stderr
    run("keys", "retire", first["active"])
    assert [r["kek_id"] for r in json.loads(run("keys", "list", "--json").stdout)] == \
        [rotated["new_kek"]]
    assert all(vault.data_key(d.dek_id).key == d.key for d in deks)

    secrets = _key_material(tmp_path / "data")
    secrets += [base64.b64encode(d.key).decode() for d in deks] + [d.key.hex() for d in deks]
    assert len(secrets) >= 8
    text = "\n".join(outputs)
    assert not [s for s in secrets if s in text]


def test_cli_rotate_lists_data_keys_it_could_not_rewrap(tmp_path):
    from click.testing import CliRunner

    from archive.settings import load_settings
    from cli.main import cli

    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    env["ARCHIVE_ARCHIVE__DATA_DIR"] = str(tmp_path / "data")
    runner = CliRunner()
    assert runner.invoke(cli, ["keys", "init"], env=env).exit_code == 0
    vault = KeyVault.from_settings(load_settings(environ=env))
    good, bad = vault.new_data_key(), vault.new_data_key()
    entry_path = vault.vault_dir / f"{bad.dek_id}.json"
    entry = json.loads(entry_path.read_text())
    entry["wrapped_key"] = base64.b64encode(os.urandom(40)).decode()
    entry_path.write_text(json.dumps(entry))

    result = runner.invoke(cli, ["keys", "rotate"], env=env)
    assert result.exit_code == 1
    assert "re-wrapped 1 data key(s)" in result.stdout
    assert f"not re-wrapped: {bad.dek_id}" in result.stderr
    assert "does not unwrap" in result.stderr
    assert vault.data_key(good.dek_id).key == good.key
