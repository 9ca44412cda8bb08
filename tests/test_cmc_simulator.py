"""The CoinMarketCap global-metrics simulator, over real HTTP with requests."""
from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from simulators.coinmarketcap import ENDPOINT, CoinMarketCapSimulator
from tests.plugins.cmc_sim import CMC_KEY

ROOT = Path(__file__).resolve().parent.parent


def get(sim: CoinMarketCapSimulator, key: str | None = CMC_KEY, **params: str) -> requests.Response:
    headers = {"Accept": "application/json"} | ({"X-CMC_PRO_API_KEY": key} if key else {})
    return requests.get(sim.url + ENDPOINT, headers=headers, params=params, timeout=10)


def body(response: requests.Response) -> dict:
    return json.loads(response.text, parse_float=Decimal)


def failure(response: requests.Response) -> tuple[int, int, str]:
    envelope = body(response)
    assert "data" not in envelope
    return response.status_code, envelope["status"]["error_code"], envelope["status"]["error_message"]


def test_default_quote_is_usd_with_numbers_as_json_numbers(cmc_sim: CoinMarketCapSimulator) -> None:
    response = get(cmc_sim)
    assert response.status_code == 200
    envelope = body(response)
    status, data = envelope["status"], envelope["data"]
    assert (status["error_code"], status["error_message"], status["credit_count"], status["notice"]) == (
        0, None, 1, None)
    assert status["timestamp"].endswith("Z") and isinstance(status["elapsed"], int)
    assert list(data["quote"]) == ["USD"]
    usd = data["quote"]["USD"]
    assert usd["total_market_cap"] == Decimal("1.37500000000012E+12")
    assert usd["total_volume_24h"] == Decimal("63150000000.50")
    assert data["btc_dominance"] == Decimal("51.234567") and data["active_cryptocurrencies"] == 8800
    assert {"eth_dominance", "total_cryptocurrencies", "active_market_pairs", "active_exchanges",
            "total_exchanges", "last_updated"} <= set(data)
    assert {"total_volume_24h_reported", "altcoin_volume_24h", "altcoin_market_cap", "last_updated"} <= set(usd)
    assert '"total_market_cap": 1.37500000000012E+12' in response.text  # large numbers in exponent form
    assert '"btc_dominance": 51.234567' in response.text


def test_convert_lists_quotes_keyed_by_symbol(cmc_sim: CoinMarketCapSimulator) -> None:
    envelope = body(get(cmc_sim, convert="EUR,btc"))
    assert envelope["status"]["credit_count"] == 2
    quote = envelope["data"]["quote"]
    assert list(quote) == ["EUR", "BTC"]
    assert quote["EUR"]["total_market_cap"] == Decimal("1265000000000.11")  # 1375000000000.12 * 0.92
    assert quote["BTC"]["total_volume_24h"] == Decimal("1705050.00")  # 63150000000.5 * 0.000027


def test_convert_id_keys_quotes_by_id(cmc_sim: CoinMarketCapSimulator) -> None:
    quote = body(get(cmc_sim, convert_id="2781,2790"))["data"]["quote"]
    assert list(quote) == ["2781", "2790"]
    assert quote["2790"] == body(get(cmc_sim, convert="EUR"))["data"]["quote"]["EUR"]


def test_the_key_may_come_in_the_query_string(cmc_sim: CoinMarketCapSimulator) -> None:
    response = get(cmc_sim, key=None, CMC_PRO_API_KEY=CMC_KEY)
    assert response.status_code == 200 and body(response)["status"]["error_code"] == 0


def test_set_metrics_changes_what_is_served(cmc_sim: CoinMarketCapSimulator) -> None:
    cmc_sim.set_metrics(btc_dominance="55.5", active_cryptocurrencies=9001, total_market_cap="2E12",
                        rates={"EUR": "0.5"}, last_updated=1_700_000_000)
    data = body(get(cmc_sim, convert="USD,EUR"))["data"]
    assert (data["btc_dominance"], data["active_cryptocurrencies"]) == (Decimal("55.5"), 9001)
    assert data["quote"]["USD"]["total_market_cap"] == Decimal("2E12")
    assert data["quote"]["EUR"]["total_market_cap"] == Decimal("1E12")
    assert data["last_updated"] == data["quote"]["EUR"]["last_updated"] == "2023-11-14T22:13:20.000Z"


@pytest.mark.parametrize("key, params, expected", [
    (None, {}, (401, 1002, "API key missing.")),
    ("not-a-key", {}, (401, 1001, "This API Key is invalid.")),
    (CMC_KEY, {"convert": "EUR", "convert_id": "2781"},
     (400, 400, '"convert" and "convert_id" cannot be used together')),
    (CMC_KEY, {"convert": "EUR,XYZ"}, (400, 400, 'Invalid value for "convert": "XYZ"')),
    (CMC_KEY, {"convert_id": "99999"}, (400, 400, 'Invalid value for "convert_id": "99999"')),
    (CMC_KEY, {"limit": "10"}, (400, 400, '"limit" is not allowed')),
])
def test_errors(cmc_sim: CoinMarketCapSimulator, key: str | None, params: dict, expected: tuple) -> None:
    assert failure(get(cmc_sim, key=key, **params)) == expected


def test_per_minute_rate_limit() -> None:
    with CoinMarketCapSimulator(api_keys=["a", "b"], rate_limit=2) as sim:
        responses = [get(sim, key="a") for _ in range(5)]
        other_key = get(sim, key="b")
    # However the minute turns during the five calls, one minute gets three of them.
    assert [r.status_code for r in responses[:2]] == [200, 200]
    limited = [failure(r) for r in responses if r.status_code != 200]
    assert limited and limited[0][:2] == (429, 1008)
    assert other_key.status_code == 200  # counted per key


def test_server_error_fault_is_a_json_envelope(cmc_sim: CoinMarketCapSimulator) -> None:
    cmc_sim.inject("*", "server_error")
    assert failure(get(cmc_sim)) == (500, 500, "An internal server error occurred.")
    assert get(cmc_sim).status_code == 200


def test_html_and_malformed_faults(cmc_sim: CoinMarketCapSimulator) -> None:
    cmc_sim.inject(ENDPOINT, "http_500")
    page = get(cmc_sim)
    assert page.status_code == 500 and page.headers["Content-Type"].startswith("text/html")
    cmc_sim.inject("*", "malformed_json")
    garbled = get(cmc_sim)
    assert garbled.status_code == 200
    with pytest.raises(ValueError):
        garbled.json()


def test_timeout_fault(cmc_sim: CoinMarketCapSimulator) -> None:
    cmc_sim.inject("*", "delay", seconds=30)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(cmc_sim.url + ENDPOINT, headers={"X-CMC_PRO_API_KEY": CMC_KEY}, timeout=0.2)
    assert get(cmc_sim).status_code == 200


def test_calls_and_unknown_paths(cmc_sim: CoinMarketCapSimulator) -> None:
    get(cmc_sim)
    get(cmc_sim, key=None)
    missing = requests.get(cmc_sim.url + "/v1/cryptocurrency/listings/latest", timeout=10)
    assert failure(missing)[:2] == (404, 404)
    assert cmc_sim.calls == {ENDPOINT: 2, "/v1/cryptocurrency/listings/latest": 1}


def test_runnable_by_hand() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "simulators.coinmarketcap", "--port", str(port)],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, "the simulator printed nothing in 20 s"
        assert f"http://127.0.0.1:{port}{ENDPOINT}" in process.stdout.readline()
        response = requests.get(f"http://127.0.0.1:{port}{ENDPOINT}",
                                headers={"X-CMC_PRO_API_KEY": "simulator-key"}, timeout=10)
        assert body(response)["status"]["error_code"] == 0
    finally:
        process.terminate()
        process.wait(10)
