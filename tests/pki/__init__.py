"""The test PKI: the simulated PKI of ``ingest/demo_pki`` (certomancer) with the test
catalogue of holders (every certificate case the archive must judge), and signed-PDF
factories.

``config`` holds the test profile, ``authority.TestPKI`` is the test-facing API,
``server`` serves it over HTTP on loopback, ``factories`` makes signed PDFs. The pytest
plugin is ``tests.services.pki`` (R-SIG-2, R-SIG-3, R-TS-1).
"""
