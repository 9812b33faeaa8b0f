"""Benign workload suite: real programs on a realistic protected tree must raise no incident.

Entry point: ``bench/benign/run.py``; the workloads live in one module per family
(archive, crypto, copy, backup, vcs, build, office, media, data, userops); ``common.py`` runs
them (daemon, timing, CPU, incident evidence) for both the benchmark and tests/e2e/test_benign.py.
"""
