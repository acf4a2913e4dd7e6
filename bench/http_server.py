"""One waitress server for the HTTP benchmarks: the archive app and a bare reference app.

    .venv/bin/python bench/http_server.py --port P [--threads 8] [--bare-file F] [--bare-db]

The archive app (:func:`access.app.create_app`, settings from the ``ARCHIVE_*``
environment, exactly as ``archive serve`` builds it) is mounted at ``/``; a tiny Flask
app at ``/bare`` (werkzeug ``DispatcherMiddleware``). Both run in this one process and
share one waitress thread pool with as many threads as ``archive serve`` uses (8), so a
reference request and an archive request meet the same server, GIL and cores.

Bare routes (no login, no policy, no audit, no digest check):

* ``/bare/file``: Flask ``send_file`` of ``--bare-file``;
* ``/bare/verified``: the same bytes streamed through SHA-256 + SHA-512 checking, the
  last chunk held back until both digests match (the verification cost alone);
* ``/bare/records/<id>`` (``--bare-db``): one SELECT of the record row joined to its
  issuing organisation on the archive's own catalog database, as JSON.

The archive's in-process scheduler (audit checkpoints every 15 minutes) is not started.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHUNK = 2**20  # as access/api.py streams


def _digests(path: str) -> list[str]:
    with open(path, "rb") as fh:
        data = fh.read()
    return [hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest()]


def bare_app(bare_file: str | None, database_url: str | None):
    from flask import Flask, Response, abort, jsonify, send_file

    app = Flask("bare")

    if bare_file:
        @app.get("/file")
        def file():
            return send_file(bare_file, mimetype="application/pdf")

        expected = _digests(bare_file)

        @app.get("/verified")
        def verified():
            """The same bytes streamed with the SHA-256 + SHA-512 check and nothing else:
            read in 1 MiB chunks, the last chunk released only once both digests match
            (what the archive's download does, without login, policy, catalog or audit)."""
            def generate():
                hashes = [hashlib.sha256(), hashlib.sha512()]
                with open(bare_file, "rb") as fh:
                    pending = fh.read(CHUNK)
                    for h in hashes:
                        h.update(pending)
                    while True:
                        chunk = fh.read(CHUNK)
                        if not chunk:
                            break
                        for h in hashes:
                            h.update(chunk)
                        yield pending
                        pending = chunk
                if [h.hexdigest() for h in hashes] != expected:
                    raise RuntimeError("digest mismatch")
                yield pending

            response = Response(generate(), mimetype="application/pdf")
            response.content_length = os.path.getsize(bare_file)
            return response

    if database_url:
        from sqlalchemy import select

        from archive.db import make_engine
        from archive.models import Agent, Record

        engine = make_engine(database_url)
        columns = [c for c in Record.__table__.c] + [Agent.identifier.label("org"),
                                                     Agent.name.label("org_name")]

        @app.get("/records/<record_id>")
        def record(record_id: str):
            with engine.connect() as conn:
                row = conn.execute(select(*columns)
                                   .join(Agent, Agent.id == Record.issuing_org_id)
                                   .where(Record.id == record_id)).mappings().first()
            if row is None:
                abort(404)
            return jsonify({k: (v.isoformat() if hasattr(v, "isoformat") else v)
                            for k, v in row.items()})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)  # `archive serve` default
    parser.add_argument("--bare-file")
    parser.add_argument("--bare-db", action="store_true")
    parser.add_argument("--waitress", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra waitress setting (experiments), e.g. "
                             "outbuf_overflow=4194304")
    args = parser.parse_args()

    import waitress
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from access.app import create_app
    from archive.instance import ArchiveInstance
    from archive.settings import load_settings

    instance = ArchiveInstance(load_settings())
    instance.catalog  # noqa: B018 - as `archive serve`: open before the threads start
    instance.store  # noqa: B018
    app = create_app(instance)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {
        "/bare": bare_app(args.bare_file,
                          instance.settings.database_url if args.bare_db else None)})
    extra = dict(item.split("=", 1) for item in args.waitress)
    waitress.serve(app, host=args.host, port=args.port, threads=args.threads,
                   ident="archive", **extra)


if __name__ == "__main__":
    main()
