"""The HTTP API over the published store, compatible with the product's ``aperiodic`` client.

* :mod:`~flow_assets.api.settings`: configuration from the environment (one place);
* :mod:`~flow_assets.api.keys`: API keys (random, stored hashed) and tiers;
* :mod:`~flow_assets.api.signing`: signed, expiring links to files of a local store;
* :mod:`~flow_assets.api.ratelimit`: per-key token buckets;
* :mod:`~flow_assets.api.catalog`: what the store publishes (manifests only);
* :mod:`~flow_assets.api.app`, :mod:`~flow_assets.api.routes`, :mod:`~flow_assets.api.auth`,
  :mod:`~flow_assets.api.errors`, :mod:`~flow_assets.api.models`: the FastAPI application;
* :mod:`~flow_assets.api.server`: running it with uvicorn (also in a thread, for tests).

Nothing here imports Dagster; importing this package does not import FastAPI.
"""
