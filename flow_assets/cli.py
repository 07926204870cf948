"""The ``flow-assets`` command: serve the API and manage its keys.

    flow-assets serve [--host 127.0.0.1] [--port 8000]
    flow-assets keys create --name NAME [--tier basic|prime] [--rate R --burst B]
    flow-assets keys revoke NAME
    flow-assets keys list

Configuration comes from the environment (:class:`flow_assets.api.settings.ApiSettings`);
``keys`` needs only ``FLOW_ASSETS_KEYS``. No Dagster is imported.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date

from flow_assets.api.keys import TIERS, KeyStore, KeyStoreError
from flow_assets.api.settings import ApiSettings, SettingsError, keys_location


def _keys_create(args: argparse.Namespace) -> int:
    store = KeyStore(keys_location())
    record, key = store.create(args.name, args.tier, args.rate, args.burst)
    intervals = " ".join(TIERS[record.tier])
    print(f"Created key {record.name!r} (tier {record.tier}: {intervals}) in {store.location}.")
    print("It is shown only this once and stored only hashed; keep it now:")
    print(key)
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    record = KeyStore(keys_location()).revoke(args.name)
    print(f"Key {record.name!r} revoked at {record.revoked_at} (refused within seconds).")
    return 0


def _keys_list(_: argparse.Namespace) -> int:
    store = KeyStore(keys_location())
    records = store.load().records
    if not records:
        print(f"No keys in {store.location}.")
    for r in records:
        state = f"revoked {r.revoked_at}" if r.revoked else "active"
        limit = f" rate={r.rate}/s burst={r.burst}" if r.rate or r.burst else ""
        print(f"{r.name:<24} {r.tier:<6} created {r.created_at}  {state}{limit}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from flow_assets.api.app import create_app  # noqa: PLC0415  (keys commands skip FastAPI)
    from flow_assets.api.server import serve  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = ApiSettings.from_env()
    logging.getLogger("flow_assets.api").info("starting with %r", settings)
    serve(create_app(settings), args.host, args.port)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flow-assets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the API over FLOW_ASSETS_STORAGE_URL")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=_serve)
    keys = commands.add_parser("keys", help="manage API keys (FLOW_ASSETS_KEYS)")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key; prints it once, on the last line")
    create.add_argument("--name", required=True)
    create.add_argument("--tier", choices=sorted(TIERS), default="basic")
    create.add_argument("--rate", type=float, default=None, help="own requests/s limit")
    create.add_argument("--burst", type=int, default=None, help="own burst size")
    create.set_defaults(run=_keys_create)
    revoke = actions.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("name")
    revoke.set_defaults(run=_keys_revoke)
    actions.add_parser("list", help="list keys (names, tiers, dates; never the keys)").set_defaults(
        run=_keys_list
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flow-assets`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (KeyStoreError, SettingsError) as error:
        print(f"flow-assets: {error}", file=sys.stderr)
        return 2


def api_howto(exchange: str, symbol: str, start: date, end: date, interval: str = "1d") -> str:
    """Shell lines that serve the store through the API and read it back with ``aperiodic``
    (printed at the end of the demo)."""
    read = (
        "import aperiodic, datetime as dt, os; print(aperiodic.get_metrics(os.environ['KEY'], "
        f"metric='flow', timestamp='exchange', interval='{interval}', exchange='{exchange}', "
        f"symbol='{symbol}', start_date=dt.date.fromisoformat('{start}'), "
        f"end_date=dt.date.fromisoformat('{end}')))"
    )
    return "\n".join(
        [
            "Read it through the HTTP API with the product's own client (aperiodic[polars]):",
            "  .venv/bin/pip install --quiet 'aperiodic[polars]'",
            "  export FLOW_ASSETS_API_SECRET=$(head -c 32 /dev/urandom | base64)",
            "  export KEY=$(.venv/bin/flow-assets keys create --name demo-$RANDOM | tail -1)",
            "  .venv/bin/flow-assets serve & SERVER=$!; sleep 3  # docs: :8000/api/v1/docs",
            "  export APERIODIC_API_URL=http://127.0.0.1:8000/api/v1",
            f'  .venv/bin/python -c "{read}"',
            "  kill $SERVER   # stops the API server (or: fg, then Ctrl-C)",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
