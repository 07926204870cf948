"""Names for realistic sample catalogs (a few hundred real-looking perpetuals per venue).

The names are the kinds the exchanges list: multiplier bases (``1000PEPE``, ``1000000MOG``,
``1MBABYDOGE``), digits-only or digit-led bases (``42``, ``0G``, ``1INCH``), indexes
(``BTCDOM``). Each venue's sample answer, in its exact JSON shape, is built in its module
(:mod:`flow_assets.venues`) from these names; listing times are spread deterministically.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

COIN_TEXT = """
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
COINS = COIN_TEXT.split()
MULTIPLIED = ["1000PEPE", "1000SHIB", "1000BONK", "1000FLOKI", "1000LUNC", "1000XEC", "1000SATS",
               "1000RATS", "1000CAT", "1000CHEEMS", "1000000MOG", "1000000BOB", "1MBABYDOGE",
               "1000WHY", "1000X"]  # fmt: skip
START = datetime(2019, 9, 8, tzinfo=UTC)
SNAPSHOT_AT = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)


def listed(number: int) -> datetime:
    """A deterministic listing time between 2019 and 2026, at odd minutes."""
    return START + timedelta(days=(number * 37) % 2500, minutes=(number * 97) % 1440)
