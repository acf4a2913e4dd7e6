"""A simulated PKI (certomancer) for the DEMO archive and the tests: a root and an
issuing CA, an OCSP responder, CRLs and an RFC 3161 TSA, served over HTTP on loopback.

``config`` describes the PKI (a ``Profile``: who holds a certificate, how each name is
marked) and writes certomancer's configuration with freshly generated keys;
``authority.PKI`` is the generated PKI (certificates, keys, URLs, pyHanko signers);
``server`` serves it with certomancer's Animator; ``signing`` signs PDFs with it.
``DEMO`` is the profile of the DEMO archive (every name marked DEMO); the tests use
their own profile (``tests/pki``). Needs the ``demo`` (or ``test``) extra: certomancer.
Never for real use: the keys are unprotected files (R-SIG-2, R-TS-1).
"""
