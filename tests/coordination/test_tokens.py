"""The shared OAuth token slot: many replicas, one token request; a refused token is refreshed once."""
from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import pytest
from sqlalchemy import Engine, event

from reconciler.coordination.tokens import IssuedToken, TokenSlot, TokenUnavailable
from reconciler.engine.db import make_engine

from tests.coordination.token_server import TokenRequestRefused, TokenServer, fetch_token

KEY = "zoho"


@pytest.fixture
def server() -> Iterator[TokenServer]:
    server = TokenServer()
    yield server
    server.close()


def make_slot(engine, server: TokenServer, worker: str = "w1", refresh: Callable[[], IssuedToken] | None = None,
              **options) -> TokenSlot:
    return TokenSlot(engine, KEY, worker, refresh or (lambda: fetch_token(server.url)), **options)


def on_first_read(engine: Engine, then: Callable[[], object]) -> None:
    """Each thread using `engine` runs `then` once its first statement (the slot's read) is done, with no
    transaction open: the pause a slow network or a GC gives a replica between reading the row and taking
    the refresh. Racers that all wait here have all seen the empty slot before any of them takes it."""
    seen = threading.local()

    @event.listens_for(engine.pool, "checkin")
    def pause(*_: object) -> None:
        if not getattr(seen, "done", False):
            seen.done = True
            then()


def test_eight_threads_with_an_empty_slot_make_one_token_request(engine, server):
    server.delay_seconds = 0.3  # the first request is still open while the others ask
    slots = [make_slot(engine, server, f"w{i}") for i in range(8)]
    start, all_read = threading.Barrier(8), threading.Barrier(8)
    on_first_read(engine, lambda: all_read.wait(30))

    def ask(slot: TokenSlot) -> str:
        start.wait(30)
        return slot.token()

    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(ask, slots, timeout=30))
    assert server.calls == 1
    assert tokens == ["tok-1"] * 8


def _ask_in_process(db_url: str, token_url: str, worker: str, start, all_read, results) -> None:
    engine = make_engine(db_url)
    engine.connect().close()
    slot = TokenSlot(engine, KEY, worker, lambda: fetch_token(token_url))
    on_first_read(engine, lambda: all_read.wait(60))
    start.wait(60)  # all three imported and connected: now they really race
    results.put(slot.token())
    engine.dispose()


def test_three_processes_make_one_token_request(engine, db_url, server):
    server.delay_seconds = 0.3
    spawn = multiprocessing.get_context("spawn")
    results, start, all_read = spawn.Queue(), spawn.Barrier(3), spawn.Barrier(3)
    workers = [spawn.Process(target=_ask_in_process, args=(db_url, server.url, f"p{i}", start, all_read, results))
               for i in range(3)]
    for w in workers:
        w.start()
    try:
        tokens = [results.get(timeout=60) for _ in workers]
    finally:
        for w in workers:
            w.join(10)
            if w.is_alive():
                w.kill()
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert server.calls == 1
    assert tokens == ["tok-1"] * 3


def test_a_replica_that_read_the_empty_slot_before_another_refreshed_it_uses_that_token(engine, db_url, server):
    slow = make_engine(db_url)
    has_read, go_on = threading.Event(), threading.Event()
    on_first_read(slow, lambda: (has_read.set(), go_on.wait(30)))
    with ThreadPoolExecutor(1) as pool:
        stalled = pool.submit(make_slot(slow, server, "slow").token)
        assert has_read.wait(30)
        assert make_slot(engine, server, "fast").token() == "tok-1"
        go_on.set()
        assert stalled.result(30) == "tok-1"
    slow.dispose()
    assert server.calls == 1


def test_token_is_reused_while_valid_and_refreshed_once_ahead_of_expiry(engine, server, clock):
    slot, other = make_slot(engine, server, "w1", clock=clock), make_slot(engine, server, "w2", clock=clock)
    assert slot.token() == "tok-1"
    clock.advance(3600 - 300 - 1)  # tokens live 3600 s; refreshed 300 s ahead
    assert [slot.token(), other.token()] == ["tok-1", "tok-1"]
    assert server.calls == 1
    clock.advance(2)
    assert [slot.token(), other.token(), slot.token()] == ["tok-2", "tok-2", "tok-2"]
    assert server.calls == 2


def test_a_token_shorter_than_the_refresh_ahead_time_is_refreshed_at_half_its_life(engine, server, clock):
    def short() -> IssuedToken:  # a provider issuing 120 s tokens while the slot refreshes 300 s ahead
        return IssuedToken(fetch_token(server.url).access_token, 120.0)

    slot, other = (make_slot(engine, server, worker, refresh=short, clock=clock) for worker in ("w1", "w2"))
    assert [slot.token(), other.token(), slot.token()] == ["tok-1"] * 3
    clock.advance(59)
    assert other.token() == "tok-1" and server.calls == 1
    clock.advance(2)
    assert [other.token(), slot.token()] == ["tok-2", "tok-2"]
    assert server.calls == 2


def test_a_refused_token_reported_by_many_replicas_is_refreshed_once(engine, server, clock):
    slots = [make_slot(engine, server, f"w{i}", clock=clock) for i in range(10)]
    assert slots[0].token() == "tok-1"
    for slot in slots:
        slot.invalidate("tok-1")
    assert [slot.token() for slot in slots] == ["tok-2"] * 10
    assert server.calls == 2


def test_a_late_report_of_an_old_token_keeps_the_new_one(engine, server, clock):
    slot, late = make_slot(engine, server, "w1", clock=clock), make_slot(engine, server, "w2", clock=clock)
    slot.token()
    slot.invalidate("tok-1")
    assert slot.token() == "tok-2"
    late.invalidate("tok-1")  # w2 still held tok-1 when the provider refused it
    assert late.token() == "tok-2"
    assert server.calls == 2


class StuckRefresh:
    """A refresh that hangs until released, like a replica stuck in (or dead during) its token request."""

    def __init__(self, server: TokenServer) -> None:
        self.server = server
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self) -> IssuedToken:
        self.entered.set()
        assert self.release.wait(30)
        return fetch_token(self.server.url)


def test_others_wait_for_a_refresh_in_progress_and_take_it_over_when_its_lease_expires(engine, server, clock):
    stuck = StuckRefresh(server)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(make_slot(engine, server, "stuck", stuck, lease_seconds=30, clock=clock).token)
        assert stuck.entered.wait(10)
        with pytest.raises(TokenUnavailable):  # no token yet, and the refresh is held for 30 s
            make_slot(engine, server, "w1", wait_seconds=0.2, clock=clock).token()
        assert server.calls == 0
        clock.advance(31)
        assert make_slot(engine, server, "w2", clock=clock).token() == "tok-1"
        stuck.release.set()  # the stuck replica comes back with tok-2: it lost its lease, so tok-1 stays
        assert first.result(30) == "tok-1"
    assert make_slot(engine, server, "w3", clock=clock).token() == "tok-1"
    assert server.calls == 2


def test_others_keep_the_valid_token_while_one_refreshes_ahead_of_expiry(engine, server, clock):
    make_slot(engine, server, clock=clock).token()
    clock.advance(3600 - 100)
    stuck = StuckRefresh(server)
    with ThreadPoolExecutor(1) as pool:
        refreshing = pool.submit(make_slot(engine, server, "w0", stuck, clock=clock).token)
        assert stuck.entered.wait(10)
        assert make_slot(engine, server, "w1", wait_seconds=0, clock=clock).token() == "tok-1"
        stuck.release.set()
        assert refreshing.result(30) == "tok-2"


def test_a_failed_refresh_reaches_the_caller_and_frees_the_refresh(engine, server, clock):
    server.refuse = True
    with pytest.raises(TokenRequestRefused):
        make_slot(engine, server, "w1", clock=clock).token()
    server.refuse = False
    assert make_slot(engine, server, "w2", wait_seconds=0, clock=clock).token() == "tok-2"  # no lease left behind


def test_the_token_never_reaches_a_log_an_error_or_a_repr(engine, server, clock, caplog):
    caplog.set_level(logging.DEBUG, logger="reconciler")
    issued = fetch_token(server.url)
    assert issued.access_token == "tok-1" and "tok-1" not in repr(issued) and "tok-1" not in str(issued)
    slot = make_slot(engine, server, "w1", clock=clock)
    slot.token()
    slot.invalidate(slot.token())
    stuck = StuckRefresh(server)
    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(make_slot(engine, server, "stuck", stuck, clock=clock).token)
        assert stuck.entered.wait(10)
        with pytest.raises(TokenUnavailable) as unavailable:
            make_slot(engine, server, "w2", wait_seconds=0, clock=clock).token()
        clock.advance(31)
        slot.token()
        stuck.release.set()
        late.result(30)
    logged = caplog.text
    assert "refreshed by w1" in logged and "forgot it" in logged and "taken over" in logged
    assert "tok-" not in logged and "tok-" not in str(unavailable.value)
