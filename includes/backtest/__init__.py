"""Backtest: the live agent replayed over historical candles.

Each decision is the live agent's own (includes/agent.py): its orders fill
on the paper platform, so fees, rounding and minimums are those of dry-run
live, against a replay platform whose clock the loop moves.  The state store
and the market DB live in memory, and the DB hands the agent's trends only
the candles they use (ReplayAgent).

Speed comes from not calling the agent when it provably would do nothing.
Between two runs that trade, its threads, balances and budget stand still and
only prices move; so a run is needed only when a price crosses a held thread's
sell threshold, when a hold time runs out, or when a currency it may buy
shows a rising buy-window trend while a thread and the funds are free.  The
Gate checks that on floats, with a margin that errs towards calling the
agent, which then decides exactly, in Decimal.  `every_step=True` calls it at
every decision instead; a test checks that both trade alike.
"""
