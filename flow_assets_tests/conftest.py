"""Fixtures shared by every test module (requested by name, never imported there).

* ``mirror_root``, ``archive_server``, ``fast_session``, ``mirror``: a local exchange archive
  served over a real socket (:mod:`flow_assets_tests.archive_fixtures`);
* ``s3_server``, ``s3_env``: a real S3-compatible server (moto) and a fresh bucket with the
  ``AWS_*`` environment pointing at it (:mod:`flow_assets_tests.s3_fixtures`);
* ``postgres_server``, ``postgres_env``: a throwaway PostgreSQL cluster on 127.0.0.1 and the
  ``DAGSTER_PG_*`` environment for it (:mod:`flow_assets_tests.production`).

Helpers that are not fixtures (``Mirror``, ``assert_same_trades``, ``month_bars``, ...) are
imported from those modules as usual.
"""

from __future__ import annotations

from flow_assets_tests.archive_fixtures import archive_server, fast_session, mirror, mirror_root
from flow_assets_tests.production import postgres_env, postgres_server
from flow_assets_tests.s3_fixtures import s3_env, s3_server

__all__ = [
    "archive_server",
    "fast_session",
    "mirror",
    "mirror_root",
    "postgres_env",
    "postgres_server",
    "s3_env",
    "s3_server",
]
