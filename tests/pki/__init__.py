"""A test PKI that behaves like the real one (certomancer), and signed-PDF factories.

``config`` generates keys and the certomancer configuration, ``authority.TestPKI`` is
the test-facing API, ``server`` serves it over HTTP on loopback, ``factories`` makes
signed PDFs. The pytest plugin is ``tests.services.pki`` (R-SIG-2, R-SIG-3, R-TS-1).
"""
