"""Several single messages in one run of ``send_sms`` when the worker is busy.

A ``send_sms`` task carries one message id. Run one by one, each message pays the whole
per-task cost: Celery's trace, a claim transaction, a gateway call, an outcome
transaction. When a worker is already busy, more messages are waiting behind the one it
just received, and they can share that cost the way the bulk path's ``send_batch`` does:
one claim statement, concurrent calls, outcomes recorded as the calls end.

:class:`GatheringTask` keeps Celery's own strategy for everything a task message needs on
arrival (decoding, revocation, the ``task-received`` event, countdowns, the worker's
bookkeeping) and changes only what happens to a request that is ready to run:

- the worker is idle (no run of this task in flight): the request runs at once, on its
  own, through Celery's ordinary path;
- the worker is busy: the request waits up to ``gather_window`` seconds for others to
  join it, or until ``gather_size`` have gathered, then all of them run together as one
  pool job.

A gathered run acknowledges its messages only after it returns (late acknowledgement: the
outcomes are in the ledger by then), whether it succeeded or failed; a message whose run
died is recovered by the sweep from the ledger, as with any task. Each message still gets
its own ``task-succeeded`` event (Flower sees every id) and ``task_postrun`` signal (the
worker's task metrics count it), but no ``task-started``.

Requests with a countdown are left to Celery: when due they run on their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Task, signals
from celery.worker.state import task_accepted, task_ready
from celery.worker.strategy import default as default_strategy

log = logging.getLogger("fibosms.gather")

#: the results of one gathered run: message id → a word saying what happened
Results = dict[int, str]


class GatheringTask(Task):  # type: ignore[misc]
    """A task of one message id whose ready requests may run several at a time."""

    #: most requests in one gathered run; 1: every request runs on its own
    gather_size: int = 1
    #: seconds a busy worker holds a request for others to join it
    gather_window: float = 0.0

    def run_many(self, message_ids: list[int]) -> Results:
        """Run the task for several message ids at once; what happened to each."""
        raise NotImplementedError

    def Strategy(self, task: Task, app: Any, consumer: Any) -> Callable[..., Any]:
        """Celery's strategy, with ready requests handed to a :class:`_Gatherer`."""
        view = consumer
        if task.gather_size > 1:
            gatherer = _Gatherer(task, consumer)
            view = _ConsumerView(consumer, gatherer.add, gatherer.events)
        handler: Callable[..., Any] = default_strategy(task, app, view)
        return handler


class _ConsumerView:
    """The worker's consumer, except where a ready request goes and how it is announced."""

    def __init__(
        self, consumer: Any, on_task_request: Callable[[Any], None], event_dispatcher: Any
    ) -> None:
        self._consumer = consumer
        self.on_task_request = on_task_request
        self.event_dispatcher = event_dispatcher

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


class _HeldEvents:
    """The worker's event dispatcher, holding ``task-received`` events back a little.

    The worker publishes the events buffered at each turn of its loop as one message; a
    busy worker's loop turns once per task message, so each ``task-received`` went out on
    its own. Held until the gathering they belong to runs (or ``window`` seconds pass),
    they go out together. Every other event passes straight through.
    """

    def __init__(self, dispatcher: Any, timer: Any, window: float) -> None:
        self._dispatcher = dispatcher
        self._timer = timer
        self._window = window
        self._lock = threading.Lock()
        self._held: list[dict[str, Any]] = []

    def send(self, type: str, **fields: Any) -> Any:
        if type != "task-received":
            return self._dispatcher.send(type, **fields)
        with self._lock:
            self._held.append(fields)
            first = len(self._held) == 1
        if first:
            self._timer.call_after(self._window, self.release)
        return None

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for fields in held:
            self._dispatcher.send("task-received", **fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dispatcher, name)


def _message_id(request: Any) -> int | None:
    args = request.args
    if len(args) == 1 and not request.kwargs and type(args[0]) is int:
        return int(args[0])
    return None


class _Gatherer:
    """Collects ready requests of one task and hands them to the pool."""

    def __init__(self, task: GatheringTask, consumer: Any) -> None:
        self.task = task
        self.consumer = consumer
        self.run_alone = consumer.on_task_request
        self.size = task.gather_size
        self.window = task.gather_window
        self.lock = threading.Lock()
        self.waiting: list[Any] = []
        self.timer_entry: Any = None
        #: runs of this task handed to the pool and not yet returned
        self.in_flight = 0
        dispatcher = consumer.event_dispatcher
        self.held: _HeldEvents | None = None
        if dispatcher is not None and dispatcher.enabled and task.send_events:
            self.held = _HeldEvents(dispatcher, consumer.timer, self.window)

    @property
    def events(self) -> Any:
        """What the strategy and the requests announce through."""
        return self.held if self.held is not None else self.consumer.event_dispatcher

    def _release_events(self) -> None:
        if self.held is not None:
            self.held.release()

    def add(self, request: Any) -> None:
        """A request is ready to run (called on the consumer's thread)."""
        if _message_id(request) is None:
            self._alone(request)  # not a plain message id: Celery's own path reports it
            return
        with self.lock:
            if self.in_flight == 0 and not self.waiting:
                self.in_flight += 1
                idle = True
            else:
                idle = False
                self.waiting.append(request)
                full = len(self.waiting) >= self.size
                start_timer = len(self.waiting) == 1 and not full
        if idle:
            self._alone(request, counted=True)
        elif full:
            self.flush()
        elif start_timer:
            entry = self.consumer.timer.call_after(self.window, self.flush)
            with self.lock:
                self.timer_entry = entry

    def flush(self) -> None:
        """Run what has gathered (from the timer, a full gathering or a returned run)."""
        with self.lock:
            requests, self.waiting = self.waiting, []
            entry, self.timer_entry = self.timer_entry, None
            if requests:
                self.in_flight += 1
        if entry is not None:
            entry.cancel()
        if not requests:
            return
        if len(requests) == 1:
            self._alone(requests[0], counted=True)
            return
        self._release_events()
        try:
            self._together(requests)
        except Exception:
            log.exception("could not hand %d gathered messages to the pool", len(requests))
            self._finished(requests, None, time.monotonic())

    def _alone(self, request: Any, counted: bool = False) -> None:
        self._release_events()  # its task-received goes before anything else of it
        if counted:
            # the run ends with an acknowledgement or a rejection: either frees the worker
            returned = _once(self._returned)
            request._on_ack = _after(request._on_ack, returned)
            request.on_reject = _after(request.on_reject, returned)
        self.run_alone(request)

    def _returned(self) -> None:
        with self.lock:
            self.in_flight -= 1
            # an idle worker never holds a message
            more = self.in_flight == 0 and bool(self.waiting)
        if more:
            self.flush()

    def _together(self, requests: list[Any]) -> None:
        for request in requests:
            task_accepted(request)
        items = [(_message_id(r), r.id) for r in requests]
        started = time.monotonic()
        self.consumer.pool.apply_async(
            _run_gathered,
            (self.task, items),
            callback=lambda results: self._finished(requests, results, started),
            error_callback=lambda _exc: self._finished(requests, None, started),
            soft_timeout=self.task.soft_time_limit,
            timeout=self.task.time_limit,
        )

    def _finished(
        self, requests: list[Any], results: Results | None, started: float
    ) -> None:
        """Acknowledge every request of a gathered run, successful or not."""
        try:
            for request in requests:
                message_id = _message_id(request)
                if results is not None and message_id in results:
                    request.send_event(
                        "task-succeeded",
                        result=repr(results[message_id]),
                        runtime=time.monotonic() - started,
                    )
                task_ready(request, successful=results is not None)
                request.acknowledge()
        finally:
            self._returned()


def _after(ack: Callable[..., Any], then: Callable[[], None]) -> Callable[..., Any]:
    """``ack``, then ``then``: a request run on its own reports its end this way."""

    def acknowledged(*args: Any, **kwargs: Any) -> Any:
        try:
            return ack(*args, **kwargs)
        finally:
            then()

    return acknowledged


def _once(fn: Callable[[], None]) -> Callable[[], None]:
    lock = threading.Lock()
    called = False

    def call_once() -> None:
        nonlocal called
        with lock:
            if called:
                return
            called = True
        fn()

    return call_once


def _run_gathered(task: GatheringTask, items: list[tuple[int, str]]) -> Results | None:
    """Runs in the pool: the messages of ``items`` (message id, task id) together.

    Never raises: the caller acknowledges either way. Each message ends with its own
    ``task_postrun`` signal, as if it had run alone (the worker's task metrics count it).
    """
    results: Results | None
    try:
        results = task.run_many([mid for mid, _ in items])
    except Exception:
        log.exception("gathered run of %d messages failed; the sweep recovers them",
                      len(items))
        results = None
    for mid, task_id in items:
        word = None if results is None else results.get(mid)
        signals.task_postrun.send(
            sender=task, task_id=task_id, task=task, args=(mid,), kwargs={}, retval=word,
            state="FAILURE" if results is None else "SUCCESS",
        )
    return results
