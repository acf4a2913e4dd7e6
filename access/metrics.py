"""Prometheus metrics of the web application (``/metrics``, R-INCIDENT-1).

One registry per app (no process-wide state, so tests can build many apps). Request
counts and latencies by endpoint and status; catalog gauges are read at scrape time.
"""

from __future__ import annotations

import time
from datetime import datetime

from flask import Flask, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from archive.errors import ArchiveError
from archive.models import PackageVersion, Record
from preservation.runner import last_runs

REQUESTS = "archive_http_requests"
LATENCY = "archive_http_request_duration_seconds"


def init_app(app: Flask) -> None:
    registry = CollectorRegistry(auto_describe=True)
    requests = Counter(REQUESTS, "HTTP requests served", ["endpoint", "method", "status"],
                       registry=registry)
    latency = Histogram(LATENCY, "HTTP request latency", ["endpoint"], registry=registry,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
    denials = Counter("archive_access_denied", "Requests refused by the policy (403)",
                      registry=registry)
    registry.register(CatalogCollector(app.config["ARCHIVE"]))
    app.extensions["metrics"] = {"registry": registry, "denials": denials}

    @app.after_request
    def _count(response):
        endpoint = request.endpoint or "unmatched"
        requests.labels(endpoint, request.method, str(response.status_code)).inc()
        started = g.get("started")
        if started is not None:
            latency.labels(endpoint).observe(time.perf_counter() - started)
        if response.status_code == 403:
            denials.inc()
        return response


class CatalogCollector:
    """Catalog gauges, read at scrape time."""

    def __init__(self, instance):
        self.instance = instance

    def collect(self):
        records = GaugeMetricFamily("archive_records", "Archived records by status",
                                    labels=["status"])
        failing = GaugeMetricFamily("archive_packages_fixity_failing",
                                    "Stored packages whose last fixity check failed")
        up = GaugeMetricFamily("archive_catalog_up", "1 when the catalog answers")
        job_last = GaugeMetricFamily("archive_job_last_run_timestamp",
                                     "Start of the last finished run of each job (Unix time)",
                                     labels=["job"])
        job_failed = GaugeMetricFamily("archive_job_last_run_failed",
                                       "1 when the last finished run of the job failed",
                                       labels=["job"])
        try:
            with self.instance.catalog.unit_of_work(snapshot=True) as session:
                for status, count in session.execute(
                        select(Record.status, func.count()).group_by(Record.status)):
                    records.add_metric([status], count)
                failing.add_metric([], session.scalar(
                    select(func.count()).select_from(PackageVersion)
                    .where(PackageVersion.last_fixity_outcome == "failed")) or 0)
                for job, info in last_runs(session).items():
                    if info.get("started_at"):
                        job_last.add_metric([job], datetime.fromisoformat(
                            info["started_at"]).timestamp())
                        job_failed.add_metric([job], int(info["status"] == "failed"))
            up.add_metric([], 1)
        except ArchiveError:
            up.add_metric([], 0)
        yield up
        yield records
        yield failing
        yield job_last
        yield job_failed
