"""plot_graphs: charts from a real market DB and state store, a page that headless
Chromium renders with every image loaded, and chart files that never leave img/."""
from __future__ import annotations

import csv
import html
import json
import re
import subprocess
import sys
import time
from decimal import Decimal as D
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from PIL import Image

from includes.config import load_config
from includes.model import Candle, GlobalMetrics, Ticker
from includes.plots import chart_path, chart_stem, plot_all, portfolio
from includes.storage.marketdb import MarketDB
from includes.storage.state import Thread, open_state_store
from tests.conftest import ROOT

HOSTILE = ["../../etc/x", "a/b/c", "..", ".", "", "x" * 500, "BTC/€", "nul\x00name", "/", "-rf",
           "<script>alert(1)</script>/EUR", "portfolio/live", "global/market", "BTC-EUR", "..\\..\\x"]
MARKETS = ["BTC/EUR", "ADA/EUR", "SOL/EUR", "ETH/EUR"]       # ETH/EUR has no data


def csv_candles(path: Path, end: int) -> list[Candle]:
    """A real series, moved in time so that its last candle opens at `end`."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    shift = end - int(rows[-1]["timestamp"])
    return [Candle(int(r["timestamp"]) + shift, D(r["open"]), D(r["high"]), D(r["low"]), D(r["close"]),
                   D(r["volume"])) for r in rows]


def trade(db: MarketDB, ref: str, ns: str, market: str, side: str, thread: int, at: int) -> D:
    price = db.close_at("kraken", market, 1, at)
    volume = (D(5) / price).quantize(D("0.00000001"))
    db.journal_intent(ref, mode=ns, exchange="kraken", market=market, side=side, thread=thread, at=at)
    db.journal_result(ref, "closed", order_id="O" + ref, filled=volume, price=price, cost=volume * price,
                      fee=(volume * price * D("0.0026")).quantize(D("0.00000001")), at=at + 1)
    return price


def fill(db_url: str, state_url: str, data: Path, now: int) -> None:
    """A day of BTC, ten days of ADA, five hours of SOL (1-minute candles, real series),
    tickers, global metrics, dry trades on BTC and a live one on ADA, threads of both."""
    db = MarketDB(db_url)
    end = now // 60 * 60 - 60
    btc = csv_candles(data / "unk_BTC_USD_1m_20190329.csv", end)
    db.upsert_candles("kraken", "BTC/EUR", 1, btc)
    db.upsert_candles("kraken", "ADA/EUR", 1, csv_candles(data / "bittrex_UNITTEST_BTC_1m.csv", end))
    db.upsert_candles("kraken", "SOL/EUR", 1, csv_candles(data / "unk_SOL_USD_1m.csv", end))
    db.insert_tickers("kraken", [Ticker("BTC/EUR", c.ts + 60, c.close, c.close, c.close, D(1)) for c in btc[::10]])
    db.insert_global_metrics("coinmarketcap", [
        GlobalMetrics(now - h * 3600, "EUR", D(2_000_000_000_000 + h * 7_000_000_000), D(9e10),
                      D("52.5") - D(h % 5) / 3, 9000) for h in range(30)])
    trade(db, "buy-1", "dry", "BTC/EUR", "buy", 1, now - 20 * 3600)
    trade(db, "sell-1", "dry", "BTC/EUR", "sell", 1, now - 5 * 3600)
    bought = trade(db, "buy-2", "dry", "BTC/EUR", "buy", 2, now - 3 * 3600)
    trade(db, "buy-3", "live", "ADA/EUR", "buy", 1, now - 10 * 3600)
    db.close()
    dry = open_state_store(state_url, "crontrader", "dry")
    dry.ensure_threads(3)
    dry.put_thread(Thread(2, "active", "BTC", D("5.013"), D("0.0012"), bought, None, "buy-2", now - 3 * 3600))
    dry.close()
    live = open_state_store(state_url, "crontrader", "live")
    live.ensure_threads(2)
    live.put_thread(Thread(2, "waiting", "<img src=x onerror=alert(1)>", order_ref="<b>ref</b>"))
    live.close()


def write_config(tmp_path: Path, db_url: str, markets: list[str] = MARKETS) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "paths": {"log": str(tmp_path / "log"), "tmp": str(tmp_path / "tmp"), "img": str(tmp_path / "img")},
        "storage": {"market_db": db_url, "state": f"sqlite:///{tmp_path / 'state.db'}"},
        "market_data": {"candle_interval": 1},
        "plots": {"window_hours": 24, "markets": markets}}))
    return path


@pytest.fixture
def plotted(tmp_path: Path, sqlite_url: str, shared_data: Path) -> Path:
    """img/ after a plot_graphs.py run as cron starts it; the time it took is printed."""
    fill(sqlite_url, f"sqlite:///{tmp_path / 'state.db'}", shared_data, int(time.time()))
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "plot_graphs.py"), "--config",
                           str(write_config(tmp_path, sqlite_url))], capture_output=True, text=True, timeout=120)
    print(f"plot_graphs.py run: {time.monotonic() - started:.2f} s")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return tmp_path / "img"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(page: str) -> list[tuple[str, dict]]:
    parser = Tags()
    parser.feed(page)
    return parser.tags


# --- the page, as a browser shows it ------------------------------------------------------------

WRAPPER = """<!DOCTYPE html><html><body>
<iframe id="page" src="{src}" width="1280" height="2400"></iframe>
<script>
document.getElementById("page").addEventListener("load", () => {{
  const images = [...document.getElementById("page").contentDocument.images];
  const out = document.createElement("pre");
  out.id = "result";
  out.textContent = JSON.stringify(images.map(i => [i.getAttribute("src"), i.complete, i.naturalWidth]));
  document.body.appendChild(out);
}});
</script></body></html>"""


def loaded_images(chromium, tmp_path: Path, index: Path) -> list[list]:
    """Each <img> of the page as Chromium loaded it from file://, read from a test page that
    frames it: nothing is added to the page under test."""
    wrapper = tmp_path / "wrapper.html"
    wrapper.write_text(WRAPPER.format(src=index.as_uri()))
    dom = chromium.dump_dom(wrapper.as_uri(), "--allow-file-access-from-files")
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return json.loads(found.group(1))


def test_the_page_shows_every_chart_in_headless_chromium(plotted, chromium, tmp_path):
    index = plotted / "index.html"
    charts = sorted(p.name for p in plotted.glob("*.png"))
    assert charts == ["ADA-EUR.png", "BTC-EUR.png", "ETH-EUR.png", "SOL-EUR.png", "global_market.png",
                      "portfolio_dry.png", "portfolio_live.png"]
    images = loaded_images(chromium, tmp_path, index)
    assert sorted(src.split("?")[0] for src, _, _ in images) == charts
    assert all(complete and width == 900 for _, complete, width in images), images

    shot = chromium.screenshot(index.as_uri(), tmp_path / "page.png")
    with Image.open(shot) as picture:
        colours = picture.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 500             # charts, not a blank or an error page

    (plotted / "SOL-EUR.png").unlink()                            # and a missing chart is seen as one
    widths = {src.split("?")[0]: width for src, _, width in loaded_images(chromium, tmp_path, index)}
    assert widths["SOL-EUR.png"] == 0 and widths["BTC-EUR.png"] == 900


def test_the_page_has_the_threads_the_time_and_nothing_unescaped(plotted):
    page = (plotted / "index.html").read_text()
    assert {tag for tag, _ in tags_of(page)} <= {"html", "head", "meta", "title", "style", "body", "h1", "p",
                                                 "time", "h2", "h3", "table", "tr", "th", "td", "figure", "img",
                                                 "figcaption", "dl", "dt", "dd"}
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&lt;b&gt;ref&lt;/b&gt;" in page
    assert re.search(r"Last update: <time datetime=\"\d{4}-\d\d-\d\dT[\d:]+\+00:00\">[\d -:]+ UTC</time>", page)
    rows = [re.sub(r' data-label="[^"]*"', "", r) for r in re.findall(r"<tr>(.*?)</tr>", page)]
    assert len(rows) == 2 + 2 + 3 + 1 + 3                         # threads: 2 live, 3 dry; 3 dry trades
    active = next(r for r in rows if "<td>active</td>" in r)
    assert "<td>BTC</td><td>5.013</td><td>0.0012</td>" in active and re.search(r"<td>[+-]\d+\.\d\d%</td>", active)
    assert "no price data for ETH/EUR" not in page                # that is in the picture; the caption says:
    assert "<figcaption>ETH/EUR: no data</figcaption>" in page
    assert not list(plotted.glob(".*"))                          # no temporary file left behind


# --- names that try to leave img/ -----------------------------------------------------------------

def test_a_chart_name_never_leaves_img(tmp_path):
    img = tmp_path / "img"
    stems = [chart_stem(name) for name in HOSTILE]
    assert chart_stem("BTC/EUR") == "BTC-EUR"
    assert len(set(stems)) == len(HOSTILE)                        # no two names share a file
    for name, stem in zip(HOSTILE, stems, strict=True):
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,80}", stem), (name, stem)
        assert chart_path(img, stem).resolve().parent == img.resolve()
    assert not {"portfolio_live", "portfolio_dry", "global_market"} & set(stems)
    for bad in ("../x", "", "a/b", "a\x00"):
        with pytest.raises(ValueError):
            chart_path(img, bad)


def test_hostile_market_names_get_no_data_charts_inside_img(tmp_path, sqlite_url):
    cfg = load_config(write_config(tmp_path, sqlite_url, markets=HOSTILE))
    before = set(tmp_path.rglob("*"))
    page = plot_all(cfg)
    created = set(tmp_path.rglob("*")) - before
    img = tmp_path / "img"
    assert {p for p in created if p.parent != img} <= {img, tmp_path / "market.db", tmp_path / "state.db",
                                                       tmp_path / "market.db-wal", tmp_path / "market.db-shm"}
    assert len([c for c in page.charts if c[0] == "Markets"]) == len(HOSTILE)
    assert len(list(img.glob("*.png"))) == len(HOSTILE) + 1      # and the portfolio's "no order yet"
    html = (img / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;/EUR: no data" in html and "<script" not in html


# --- the numbers behind the portfolio chart -------------------------------------------------------

def order(ref: str, side: str, thread: int, at: int, filled: str, price: str, cost: str, fee: str,
          market: str = "BTC/EUR") -> dict:
    return {"ref": ref, "mode": "dry", "market": market, "side": side, "thread": thread, "status": "closed",
            "intent_at": at - 1, "result_at": at, "filled": D(filled), "price": D(price), "cost": D(cost),
            "fee": D(fee)}


def test_the_portfolio_is_exact_from_the_journal_and_prices():
    orders = [order("b1", "buy", 1, 100, "0.001", "4000", "4", "0.0104"),
              order("b2", "buy", 2, 200, "0.002", "4100", "8.2", "0.02132"),
              order("s1", "sell", 1, 300, "0.001", "4200", "4.2", "0.01092")]
    prices = {"BTC/EUR": [(150, D("4050")), (250, D("4150")), (350, D("4300"))]}
    points = portfolio(orders, prices, [50, 100, 160, 250, 300, 400], start=D(100))
    assert [(p.quote, p.positions, p.realised) for p in points] == [
        (D(100), D(0), D(0)),
        (D("95.9896"), D("4.000"), D(0)),                 # valued at its fill price until a price is known
        (D("95.9896"), D("4.050"), D(0)),
        (D("87.76828"), D("12.450"), D(0)),
        (D("91.95736"), D("8.300"), D("0.17868")),        # 4.2 - 0.01092 - (4 + 0.0104)
        (D("91.95736"), D("8.600"), D("0.17868"))]


def test_a_window_on_top_of_the_fills_before_it_is_the_same_portfolio():
    """plot_graphs reads the window's fills and the running totals of those before (issue 17)."""
    from includes.storage.journal import totals

    orders = [order("b1", "buy", 1, 100, "0.001", "4000", "4", "0.0104"),
              order("b2", "buy", 2, 200, "0.002", "4100", "8.2", "0.02132"),
              order("s2", "sell", 2, 220, "0.001", "4150", "4.15", "0.01"),
              order("s1", "sell", 1, 300, "0.001", "4200", "4.2", "0.01092"),
              order("s3", "sell", 2, 320, "0.001", "4250", "4.25", "0.01")]
    prices = {"BTC/EUR": [(150, D("4050")), (250, D("4150")), (350, D("4300"))]}
    times = [250, 300, 310, 400]
    whole = portfolio(orders, prices, times, start=D(100))
    for cut in (150, 210, 250):
        window = portfolio([o for o in orders if o["intent_at"] >= cut], prices, times, start=D(100),
                           opening=totals(o for o in orders if o["intent_at"] < cut))
        assert window == whole, cut


def test_on_mariadb_too(tmp_path, mariadb_url, shared_data):
    fill(mariadb_url, f"sqlite:///{tmp_path / 'state.db'}", shared_data, int(time.time()))
    page = plot_all(load_config(write_config(tmp_path, mariadb_url)))
    assert [c[2] for c in page.charts] == ["BTC/EUR", "ADA/EUR", "SOL/EUR", "ETH/EUR: no data", "live portfolio",
                                           "dry portfolio", "total market cap and BTC dominance"]
    for _, name, _ in page.charts:
        with Image.open(tmp_path / "img" / name) as picture:
            assert picture.size == (900, 420 if "portfolio" not in name else 630)
    assert set(page.threads) == {"live", "dry"}


def test_matplotlib_is_loaded_only_to_draw():
    code = ("import sys, includes.plots, includes.backup, includes.agent, includes.marketdata; "
            "print('matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_a_state_store_that_cannot_be_read_is_noted_on_the_page(tmp_path, sqlite_url, closed_port):
    path = write_config(tmp_path, sqlite_url, markets=["BTC/EUR"])
    data = yaml.safe_load(path.read_text())
    data["storage"]["state"] = f"redis://127.0.0.1:{closed_port}/0"
    path.write_text(yaml.safe_dump(data))
    page = plot_all(load_config(path))
    assert page.threads == {} and len(page.notes) == 2
    assert page.notes[0].startswith(f"live threads: Redis at 127.0.0.1:{closed_port}/0: ")
    html = (tmp_path / "img" / "index.html").read_text()
    assert f'<p class="note">dry threads: Redis at 127.0.0.1:{closed_port}/0: ' in html
    assert "<figcaption>BTC/EUR: no data</figcaption>" in html


# --- a trader's page: the status summary, the bid, and a phone ---------------------------------------

LAYOUT = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="page" src="{src}" width="{width}" height="900" style="border:0"></iframe>
<script>
document.getElementById("page").addEventListener("load", () => {{
  const doc = document.getElementById("page").contentDocument;
  const out = document.createElement("pre");
  out.id = "result";
  out.textContent = JSON.stringify([doc.documentElement.scrollWidth, doc.documentElement.clientWidth]);
  document.body.appendChild(out);
}});
</script></body></html>"""


def page_widths(chromium, tmp_path: Path, index: Path, width: int) -> list[int]:
    """(scrollWidth, clientWidth) of the page framed at `width` px: equal when nothing scrolls sideways."""
    wrapper = tmp_path / f"layout-{width}.html"
    wrapper.write_text(LAYOUT.format(src=index.as_uri(), width=width))
    dom = chromium.dump_dom(wrapper.as_uri(), "--allow-file-access-from-files", f"--window-size={width + 40},1000")
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return json.loads(found.group(1))


def test_the_page_fits_a_phone_and_a_desktop_without_sideways_scrolling(plotted, chromium, tmp_path):
    index = plotted / "index.html"
    for width in (412, 1280):
        scroll, client = page_widths(chromium, tmp_path, index, width)
        assert width - 20 <= client <= width and scroll == client, (width, scroll, client)  # less a scrollbar
        chromium.screenshot(index.as_uri(), tmp_path / f"page-{width}.png", width=width, height=1600)
    text = index.read_text()
    assert text.count("<tr>") == 11 and 'data-label="bid now"' in text and 'data-label="fee (EUR)"' in text


def test_the_summary_is_status_py_and_the_price_is_the_bid(plotted, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "status.py"), "--config", str(tmp_path / "config.yaml")],
                          capture_output=True, text=True, timeout=60)
    page = (plotted / "index.html").read_text()
    summary = {html.unescape(k): html.unescape(v) for k, v in re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page)}
    for line in done.stdout.splitlines()[:3]:                  # mode, equity, realised P&L: the same text
        label, _, text = line.partition(": ")
        assert summary[label] == text
    db = MarketDB(f"sqlite:///{tmp_path / 'market.db'}")
    bid = db.last_ticker("kraken", "BTC/EUR")["bid"]
    db.close()
    active = next(r for r in re.findall(r"<tr>(.*?)</tr>", page) if ">active<" in r)
    assert f'<td data-label="bid now">{bid:f}</td>' in active

    trades = page.split("<h2>Recent trades</h2>")[1].split("</table>")[0]
    cells = [dict(re.findall(r'<td data-label="([^"]*)">(.*?)</td>', row)) for row in re.findall(r"<tr>(.*?)</tr>",
                                                                                                  trades)[1:]]
    assert [(c["side"], c["thread"]) for c in cells] == [("buy", "2"), ("sell", "1"), ("buy", "1")]  # newest first
    db = MarketDB(f"sqlite:///{tmp_path / 'market.db'}")
    buy, sale = db.journal_row("buy-1"), db.journal_row("sell-1")
    db.close()
    assert cells[1]["fee (EUR)"] == f"{sale['fee']:f}"
    paid = buy["cost"] + buy["fee"]
    basis = paid if sale["filled"] >= buy["filled"] else paid * sale["filled"] / buy["filled"]   # its share
    assert cells[1]["P&amp;L (EUR)"] == f"{sale['cost'] - sale['fee'] - basis:+.2f}"
    assert cells[0]["P&amp;L (EUR)"] == cells[2]["P&amp;L (EUR)"] == ""


def test_a_sale_and_the_rebuy_of_the_same_minute_both_show(tmp_path):
    """Live markers (filled) at one time and price: the buy's green lies wholly below the sell's red."""
    from includes.plots import draw_market

    candles = [Candle(1_700_000_000 + 60 * i, D(100), D(101), D(99), D(100 + i % 7), D(1)) for i in range(300)]
    at, price = candles[150].ts, candles[150].close
    orders = [{"side": side, "mode": "live", "price": price, "result_at": at, "intent_at": at}
              for side in ("sell", "buy")]
    draw_market(tmp_path / "m.png", "BTC/EUR", candles, {}, orders, 5)
    with Image.open(tmp_path / "m.png") as picture:
        rgb = picture.convert("RGB")
        width, height = rgb.size
        pixels = rgb.load()

        def rows_of(colour: tuple[int, int, int]) -> set[int]:
            return {y for x in range(width // 3, 2 * width // 3) for y in range(height)   # not the legend
                    if all(abs(a - b) < 40 for a, b in zip(pixels[x, y][:3], colour, strict=True))}
        green, red = rows_of((0x1a, 0x96, 0x41)), rows_of((0xd7, 0x19, 0x1c))
    assert green and red and min(green) > max(red), (sorted(green)[:3], sorted(red)[-3:])
