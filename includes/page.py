"""The HTML page of the charts (index.html): what it shows of the threads and how it is written.

Apart from the drawing (includes/plots.py), which fills a Page and writes
index_html(page) next to the charts.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from includes.rules import net_gain
from includes.storage.state import ACTIVE, SELLING

if TYPE_CHECKING:
    from includes.storage.state import Thread

SIZE = (9, 4.2)                                       # the charts, inches at 100 dpi: 900 x 420 pixels


@dataclass
class Page:
    """What index.html shows: plot_all fills it as it draws."""

    charts: list[tuple[str, str, str]] = field(default_factory=list)     # (section, file name, caption)
    threads: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    summary: list[tuple[str, str]] = field(default_factory=list)     # status.headline, and what needs attention
    trades: list[dict[str, str]] = field(default_factory=list)       # the latest fills, newest first


def gain(thread: Thread, price: Decimal, fee_percent: Decimal) -> Decimal | None:
    """Net gain of an active thread sold at `price`, as the agent reckons it (rules.net_gain)."""
    if thread.value <= 0:
        return None
    return net_gain(thread.value, thread.volume, price, fee_percent)


def thread_row(t: Thread, price: Decimal | None, fee_percent: Decimal) -> dict[str, str]:
    held = t.state in (ACTIVE, SELLING) and price is not None
    g = gain(t, price, fee_percent) if held and price is not None else None
    return {"thread": str(t.n), "state": t.state, "currency": t.currency or "",
            "invested": f"{t.value:f}" if t.value else "", "volume": f"{t.volume:f}" if t.volume else "",
            "buy price": f"{t.lastbuyvalue:f}" if t.lastbuyvalue is not None else "",
            "last sell": f"{t.lastsellvalue:f}" if t.lastsellvalue is not None else "",
            "bid now": f"{price:f}" if held else "", "net gain": f"{g:+.2f}%" if g is not None else "",
            "updated": utc(t.updated) if t.updated else "", "order": t.order_ref}


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


STYLE = """body{font-family:sans-serif;margin:1em 2em;color:#222;background:#fff}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em}figure{display:inline-block;margin:.5em}
img{max-width:100%;height:auto;border:1px solid #ddd}table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}.note{color:#a00}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}dd{margin:0}
@media (max-width:420px){body{margin:.5em}dl{grid-template-columns:auto}dd{margin-bottom:.4em}
table,tr,td{display:block}tr:first-child{display:none}tr{border:1px solid #ccc;margin:.4em 0}
td{border:none;text-align:left;overflow-wrap:anywhere}td:empty{display:none}
td::before{content:attr(data-label) ": ";font-weight:bold}figure{margin:.5em 0}}"""


def index_html(page: Page, now: int, hours: int) -> str:
    """The page: every value escaped, every chart by a name chart_path made safe."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<meta http-equiv="refresh" content="600">', "<title>crontrader</title>",
           f"<style>{STYLE}</style></head><body>", "<h1>crontrader</h1>",
           f'<p>Last update: <time datetime="{e(datetime.fromtimestamp(now, UTC).isoformat())}">'
           f"{e(utc(now))}</time>; charts cover the last {hours} h.</p>"]
    out += [f'<p class="note">{e(note)}</p>' for note in page.notes]
    if page.summary:
        out.append("<h2>Summary</h2><dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in page.summary)
                   + "</dl>")
    out.append("<h2>Threads</h2>")
    if not page.threads:
        out.append("<p>No thread yet.</p>")
    for ns, rows in page.threads.items():
        out.append(f"<h3>{e(ns)}</h3><table><tr>" + "".join(f"<th>{e(k)}</th>" for k in rows[0]) + "</tr>")
        out += ["<tr>" + "".join(f'<td data-label="{e(k)}">{e(v)}</td>' for k, v in row.items()) + "</tr>"
                for row in rows]
        out.append("</table>")
    if page.trades:
        out.append("<h2>Recent trades</h2><table><tr>" + "".join(f"<th>{e(k)}</th>" for k in page.trades[0])
                   + "</tr>")
        out += ["<tr>" + "".join(f'<td data-label="{e(k)}">{e(v)}</td>' for k, v in row.items()) + "</tr>"
                for row in page.trades]
        out.append("</table>")
    section = None
    for title, name, caption in page.charts:
        if title != section:
            out.append(f"<h2>{e(title)}</h2>")
            section = title
        out.append(f'<figure><img src="{e(name)}?v={now}" alt="{e(caption)}" width="{SIZE[0] * 100:.0f}">'
                   f"<figcaption>{e(caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
