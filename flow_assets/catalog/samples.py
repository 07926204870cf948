"""Realistic catalogs (a few hundred real-looking perpetuals per exchange) for tests and the demo.

The names are the kinds the exchanges list: multiplier bases (``1000PEPE``, ``1000000MOG``,
``1MBABYDOGE``), digits-only or digit-led bases (``42``, ``0G``, ``1INCH``), indexes
(``BTCDOM``), USDC twins, Binance's BTC-margined ``ETHBTC``, a quarterly delivery contract
(not a perpetual), a settling and a pending symbol; OKX linear USDT/USDC, inverse USD and
USD-margined (``_UM``) swaps with their ctVal. Listing times are spread deterministically.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flow_assets.catalog.mirror import (
    binance_exchange_info,
    binance_symbol,
    okx_instrument,
    okx_instruments,
)

_COIN_TEXT = """
BTC ETH BNB SOL XRP DOGE ADA TRX AVAX LINK DOT MATIC POL LTC BCH ATOM UNI ETC XLM FIL APT ARB OP
NEAR ICP HBAR VET INJ SUI SEI TIA STX RNDR RENDER IMX GRT AAVE MKR SNX CRV LDO RUNE ALGO SAND MANA
AXS GALA APE CHZ FLOW EGLD THETA XTZ EOS KAVA NEO IOTA ZEC DASH COMP YFI SUSHI 1INCH ENJ BAT ZIL
ONE CELO KSM QTUM ONT ICX ZRX BAND STORJ SKL ANKR OGN CTSI RSR LRC DYDX GMX BLUR JTO PYTH JUP WIF
BOME ENA ETHFI W TNSR OMNI REZ BB NOT IO ZK LISTA ZRO RENDER POPCAT EIGEN HMSTR CATI NEIRO TAO
AI16Z AIXBT VIRTUAL TRUMP MELANIA BERA IP KAITO SHELL PAXG TON ORDI SATS WLD FET ARKM
CYBER ID EDU HOOK MAGIC HIGH GMT STG MASK API3 LQTY PENDLE SSV RPL FXS CVX BICO ACH AGLD ALICE
ALPHA ANT AR ASTR AUDIO BAKE BEL BLZ BNT C98 CELR CHR COTI CTK DAR DENT DGB DUSK FLM FTM HOT IOST
IOTX JASMY KLAY KNC LINA LIT LPT MTL NKN OMG PEOPLE PERP REEF REN RLC ROSE RVN SFP SXP TLM TRB
UMA UNFI WAVES WOO XEM XMR XVS YGG ZEN 0G 2Z 42 4 A2Z AI ACE ACT ALT AEVO
"""
_COINS = _COIN_TEXT.split()
_MULTIPLIED = ["1000PEPE", "1000SHIB", "1000BONK", "1000FLOKI", "1000LUNC", "1000XEC", "1000SATS",
               "1000RATS", "1000CAT", "1000CHEEMS", "1000000MOG", "1000000BOB", "1MBABYDOGE",
               "1000WHY", "1000X"]  # fmt: skip
_USDC_TWINS = ["BTC", "ETH", "SOL", "XRP", "DOGE", "BNB", "ADA", "LINK", "SUI", "1000PEPE",
               "1000BONK", "1000SHIB", "WIF", "AAVE", "ORDI", "TRUMP"]  # fmt: skip
_OKX_CT_VAL = {"BTC": "0.01", "ETH": "0.1", "SOL": "1", "DOGE": "1000", "XRP": "100", "BNB": "0.01",
               "ADA": "100", "TRX": "1000", "LTC": "1", "BCH": "0.1", "LINK": "1", "DOT": "1",
               "AVAX": "1", "PEPE": "10000000", "SHIB": "1000000", "BONK": "100000",
               "FLOKI": "100", "SATS": "10000000", "1INCH": "1", "ORDI": "0.1",
               "TON": "1"}  # fmt: skip
_OKX_INVERSE = {"BTC": "100", "ETH": "10", "SOL": "10", "DOGE": "10", "XRP": "10", "LTC": "10",
                "ADA": "10", "TRX": "10", "DOT": "10", "LINK": "10", "BCH": "10", "ETC": "10",
                "FIL": "10", "TON": "10"}  # fmt: skip
_OKX_USDC = ["BTC", "ETH", "SOL", "XRP", "DOGE", "PEPE", "SUI", "WIF"]
_OKX_UM = ["BTC", "ETH", "SOL"]
# Binance symbols on their way out: status and the delivery (delisting) time announced.
_BINANCE_LEAVING = {
    "AGIX": ("SETTLING", datetime(2026, 9, 15, 9, tzinfo=UTC)),
    "OCEAN": ("CLOSE", datetime(2024, 9, 3, 9, 30, tzinfo=UTC)),
}
START = datetime(2019, 9, 8, tzinfo=UTC)
SNAPSHOT_AT = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)


def _listed(number: int) -> datetime:
    """A deterministic listing time between 2019 and 2026, at odd minutes."""
    return START + timedelta(days=(number * 37) % 2500, minutes=(number * 97) % 1440)


def binance_sample() -> dict[str, Any]:
    """A realistic exchangeInfo: ~300 USD-M perpetuals plus one quarterly contract."""
    pairs = [(c, "USDT") for c in dict.fromkeys(_COINS + _MULTIPLIED + ["BTCDOM"])]
    pairs += [(c, "USDC") for c in _USDC_TWINS] + [("ETH", "BTC"), ("BNB", "BTC")]
    symbols = [
        binance_symbol(f"{base}{quote}", base, quote, onboard=_listed(n))
        for n, (base, quote) in enumerate(pairs)
    ]
    symbols.append(
        binance_symbol("BTCUSDT_261225", "BTC", "USDT", onboard=_listed(1),
                       delivery=datetime(2026, 12, 25, 8, tzinfo=UTC),
                       contract_type="CURRENT_QUARTER")
    )  # fmt: skip
    for n, (base, (status, delivery)) in enumerate(_BINANCE_LEAVING.items()):
        symbols.append(
            binance_symbol(f"{base}USDT", base, "USDT", onboard=_listed(n + 3), status=status,
                           delivery=delivery)
        )  # fmt: skip
    symbols.append(
        binance_symbol("NEWCOINUSDT", "NEWCOIN", "USDT", onboard=SNAPSHOT_AT + timedelta(hours=6),
                       status="PENDING_TRADING")
    )  # fmt: skip
    return binance_exchange_info(symbols, SNAPSHOT_AT)


def _okx_ct_val(base: str, number: int) -> str:
    return _OKX_CT_VAL.get(base, ("1", "10", "100", "0.1")[number % 4])


def okx_sample() -> dict[str, Any]:
    """A realistic SWAP instruments answer: ~220 swaps of every kind OKX lists."""
    bases = [c for c in dict.fromkeys(_COINS) if c not in ("BTCDOM", "4", "42")]
    bases += ["PEPE", "SHIB", "BONK", "FLOKI"]
    items = [
        okx_instrument(f"{base}-USDT-SWAP", _okx_ct_val(base, n), listed=_listed(n))
        for n, base in enumerate(bases)
    ]
    items += [
        okx_instrument(f"{base}-USD-SWAP", value, listed=_listed(n))
        for n, (base, value) in enumerate(_OKX_INVERSE.items())
    ]
    items += [
        okx_instrument(f"{base}-USDC-SWAP", _okx_ct_val(base, n), listed=_listed(n + 7))
        for n, base in enumerate(_OKX_USDC)
    ]
    items += [
        okx_instrument(f"{base}-USD_UM-SWAP", _okx_ct_val(base, n), listed=_listed(n + 11),
                       settle="USD")
        for n, base in enumerate(_OKX_UM)
    ]  # fmt: skip
    items.append(
        okx_instrument("LOOM-USDT-SWAP", "10", listed=_listed(3), state="suspend",
                       exp=datetime(2026, 10, 3, 8, tzinfo=UTC))
    )  # fmt: skip
    return okx_instruments(items)
