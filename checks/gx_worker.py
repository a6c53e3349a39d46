"""Great Expectations in a child process: the user's suites validate there, the other checks run meanwhile.

Importing GX takes about 3 s of single-threaded Python (it pulls in scipy.stats, altair and pandas; the child
defers the first two until an expectation uses them, which leaves about 2 s). Imported in
the checking process, that time adds to every run that validates, and a background thread made it worse: the
import holds the GIL the other checks' Python needs (measured on the 10M-event store: 8.3 s with the thread, 7.1 s
without, 3.5 s with no suite). In a child started when the check is prepared, the import runs on the other core
while the checks scan the store, and a long-lived `serve` pays it once. GX's pandas and scipy also stay out of the
checking process's memory, and a GX crash fails this check, not the run.

The protocol, over the child's stdin and stdout, one request answered at a time and in order:

1. The parent sends a message: a 4-byte big-endian length, then that many bytes of JSON (the request); a
   ``validate`` request is followed by a second message, the rows as an Arrow IPC stream.
2. ``suite`` (``key``, ``entries``: expectation, arguments, where): the child builds the suite named `key` and
   answers ``{}``, or ``{"error": ..., "kind": "config"}`` naming the entry GX refused (its name or arguments).
3. ``validate`` (``key``, ``result_format``): the child validates the rows against that suite and answers
   ``{"results": [{"index", "success", "result", "exception"}]}``, values as plain JSON.
4. End of input: the child exits. The parent closing its end (or dying) is what stops it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from datetime import date, datetime
from typing import IO, Any

import pyarrow as pa

from agentwatch.checks.deferred_modules import defer
from agentwatch.core.errors import ConfigError, WorkerError

# A request or answer larger than this is refused: the rows are at most `max_rows` (200k by default) of a few
# columns, answers carry at most 20 sample values per expectation.
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
# A child that does not answer within this long is stopped and the check fails: GX's import plus 200k rows take
# seconds; minutes mean it hangs.
ANSWER_TIMEOUT_S = 600.0
# Suites the child keeps (a serve whose config is reloaded sends new ones; each is a few expectations). A validate
# of one it dropped is answered "unknown suite", and the parent, which remembers more, sends it again.
MAX_SUITES = 64
PARENT_SUITES = 1024
# Modules GX imports at startup and only a few expectations (KL divergence, KS tests) and its charts use: the
# child defers them until used (`agentwatch.checks.deferred_modules`), a third of its import.
DEFERRED_MODULES = ("scipy.stats", "altair")
_LENGTH = struct.Struct(">I")
_DATE, _DATETIME = "$agentwatch.date", "$agentwatch.datetime"


class GxWorker:
    """The parent's handle on one child process. Requests are written at once; answers are read in order when
    they are needed, so the child's import overlaps whatever the parent does in between. Suites are named by a
    key (a digest of their entries) and remembered, so the checks of several configs (serve after a reload, a
    test session) share one child, and one import, and a child that died is replaced with its suites sent again.
    A lock keeps each request and its answer together; any failure of the protocol stops the child, so the next
    request starts from a clean one."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._pending: list[tuple[str, str]] = []  # (op, suite key) of requests sent and not yet answered
        self._suites: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()  # key -> entries, newest last
        self._sent: set[str] = set()  # the keys the running child was sent
        self._refused: dict[str, str] = {}  # suite key -> why GX refused it (a ConfigError's message)
        self._failed: dict[str, str] = {}  # suite key -> why the child could not build it (not the config's fault)
        self._stop: weakref.finalize | None = None
        self._lock = threading.RLock()
        self._owner = os.getpid()

    @property
    def running(self) -> bool:
        """Whether this process's child is alive (after a fork, the parent's child is not this process's)."""
        return self.process is not None and self._owner == os.getpid() and self.process.poll() is None

    def start(self) -> None:
        """Start the child unless it is running (it imports GX at once)."""
        with self._lock:
            if self.running:
                return
            self.close()
            # Appending: the child writes its end while the parent reads the tail (a shared offset would clash).
            stderr = tempfile.TemporaryFile(mode="a+b")  # noqa: SIM115 - lives as long as the child; see _stop_process
            env = {**os.environ, "GX_ANALYTICS_ENABLED": os.environ.get("GX_ANALYTICS_ENABLED", "False")}
            try:
                # -P: the module comes from the installed package, never from the working directory.
                self.process = subprocess.Popen([sys.executable, "-P", "-m", "agentwatch.checks.gx_worker"],
                                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env)
            except BaseException:
                stderr.close()
                raise
            assert self.process.stdin is not None
            os.set_blocking(self.process.stdin.fileno(), False)  # writes wait with a deadline (_write_all)
            self._stderr = stderr
            self._stop = weakref.finalize(self, _stop_process, self.process, self._stderr, self._owner)

    def send_suite(self, entries: list[dict[str, Any]]) -> str:
        """Have the child (started if it is not running) build a suite from entries (expectation, arguments,
        where); returns its key. A refusal comes back as a ConfigError from `wait` or `validate` on that key."""
        for entry in entries:
            try:
                _encode(entry)
            except TypeError as exc:
                raise ConfigError(f"{entry.get('where', 'an expectation')}: {exc}") from None
        key = hashlib.sha256(_encode(entries)).hexdigest()[:16]
        with self._lock:
            self._suites[key] = entries
            self._suites.move_to_end(key)
            while len(self._suites) > PARENT_SUITES:
                self._suites.popitem(last=False)
            self._sent.discard(key)  # sent again: it may have been the child's oldest, about to be dropped
            self._ensure(key)
            if len(self._pending) > MAX_SUITES:  # answers nobody read (runs that failed before evaluating)
                self.wait([])
        return key

    def validate(self, key: str, rows: pa.Table, result_format: dict[str, Any]) -> list[dict[str, Any]]:
        """The results of the suite `key` over the rows (one dict per expectation, in the suite's order)."""
        payload = _ipc_bytes(rows)
        with self._lock:
            for _ in range(2):  # once more if the child had dropped the suite: it is sent again first
                self.wait([key])
                self._send({"op": "validate", "key": key, "result_format": result_format}, payload)
                answer = self._answer()
                if "results" in answer:
                    return list(answer["results"])
                self._sent.discard(key)
            raise WorkerError(f"the Great Expectations process lost the suite {key} twice in a row")

    def wait(self, keys: list[str]) -> None:
        """Make sure the child holds the suites `keys` and read every answer still due (waiting for the import if
        it is not done); raises the ConfigError of a suite among `keys` that GX refused."""
        with self._lock:
            for key in keys:
                self._ensure(key)
            while self._pending:
                self._answer()
            for key in keys:
                if key in self._refused:
                    raise ConfigError(self._refused[key])
                if key in self._failed:
                    raise WorkerError(self._failed[key])

    def close(self) -> None:
        """Stop the child (it is stopped too when this handle is collected, or at exit)."""
        with self._lock:
            if self._stop is not None:
                self._stop()
            self.process, self._stderr, self._stop = None, None, None
            self._pending, self._sent, self._failed = [], set(), {}

    def forget(self) -> None:
        """In a forked copy: the parent's child is not this process's; start afresh (never stop it)."""
        self._lock = threading.RLock()
        self.process, self._stderr, self._stop, self._owner = None, None, None, os.getpid()
        self._pending, self._sent, self._failed = [], set(), {}

    def _ensure(self, key: str) -> None:
        """A running child that was sent the suite `key` (a new child is sent it again)."""
        if key not in self._suites:
            raise WorkerError(f"the suite {key} is no longer remembered (over {PARENT_SUITES} others were sent "
                              "since); the check's next run sends it again")
        self.start()
        if key not in self._sent:
            self._refused.pop(key, None)
            self._failed.pop(key, None)
            self._send({"op": "suite", "key": key, "entries": self._suites[key]})
            self._sent.add(key)

    def _send(self, request: dict[str, Any], payload: bytes | None = None) -> None:
        assert self.process is not None and self.process.stdin is not None
        body = _encode(request)
        _check_size(body)  # both, before anything is written: a half-sent request puts the protocol out of step
        if payload is not None:
            _check_size(payload)
        message = [_LENGTH.pack(len(body)), body]
        if payload is not None:
            message += [_LENGTH.pack(len(payload)), payload]
        try:
            _write_all(self.process.stdin.fileno(), b"".join(message), time.monotonic() + ANSWER_TIMEOUT_S)
        except TimeoutError:
            self.close()
            raise WorkerError(f"the Great Expectations process read no {request['op']} request within "
                              f"{ANSWER_TIMEOUT_S:.0f} s and was stopped") from None
        except OSError as exc:
            raise self._failure(f"could not be sent a request ({exc})") from None
        except BaseException:  # interrupted halfway: the child would read the rest as the next request
            self.close()
            raise
        self._pending.append((request["op"], request["key"]))

    def _answer(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        op, key = self._pending.pop(0)
        try:
            raw = _read_message(self.process.stdout, time.monotonic() + ANSWER_TIMEOUT_S)
            if raw is None:
                raise self._failure(f"exited before answering {op}")
            answer = json.loads(raw)
        except TimeoutError:
            self.close()
            raise WorkerError(f"the Great Expectations process gave no answer to {op} within "
                              f"{ANSWER_TIMEOUT_S:.0f} s and was stopped") from None
        except (WorkerError, ValueError, OSError) as exc:  # a broken answer: the next request starts a new child
            if self.process is not None:
                raise self._failure(f"answered {op} with something unreadable ({exc})") from None
            raise
        except BaseException:  # interrupted halfway through an answer
            self.close()
            raise
        if op == "suite":  # kept for the check that sent it (whoever reads the answer), raised by its `wait`
            if answer.get("kind") == "config":
                self._refused[key] = answer["error"]
            elif "error" in answer:
                self._sent.discard(key)
                self._failed[key] = f"Great Expectations could not build the suite {key}: {answer['error']}"
            return {}
        if answer.get("kind") == "unknown_suite":
            return {}
        if "error" in answer:
            raise WorkerError(f"Great Expectations failed on {op}: {answer['error']}")
        return dict(answer)

    def _failure(self, what: str) -> WorkerError:
        """An error saying the child failed, with its exit code and the last line it printed; the child stopped."""
        code = None
        if self.process is not None:
            self.process.kill()  # it failed us either way; killed, its exit is known at once
            code = self.process.wait()
        tail = ""
        if self._stderr is not None:
            self._stderr.seek(0, io.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - 2000))
            lines = [line for line in self._stderr.read().decode(errors="replace").splitlines() if line.strip()]
            tail = f": {lines[-1].strip()}" if lines else ""
        self.close()
        exited = f" (exit code {code})" if code is not None else ""
        return WorkerError(f"the Great Expectations process {what}{exited}{tail}")


_SHARED = GxWorker()
os.register_at_fork(after_in_child=_SHARED.forget)


def shared_worker() -> GxWorker:
    """This process's one Great Expectations child (started on first use): every check and run shares it."""
    return _SHARED


def _stop_process(process: subprocess.Popen[bytes], stderr: IO[bytes], owner: int) -> None:
    if os.getpid() != owner:  # at exit of a forked copy: the child is the parent's
        return
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout, stderr):
        if stream is not None:
            with contextlib.suppress(OSError):  # bytes left to flush to a dead child
                stream.close()


def _ipc_bytes(rows: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    return bytes(sink.getvalue())


def _check_size(body: bytes) -> None:
    if len(body) > MAX_MESSAGE_BYTES:
        raise WorkerError(f"a message of {len(body):,} bytes is over the {MAX_MESSAGE_BYTES:,}-byte bound "
                          "(fewer rows: lower the expectation check's max_rows)")


def _write_message(stream: IO[bytes], body: bytes) -> None:
    _check_size(body)
    stream.write(_LENGTH.pack(len(body)))
    stream.write(body)


def _write_all(fd: int, data: bytes, deadline: float) -> None:
    """Write every byte to the (non-blocking) descriptor, waiting for room until the deadline: a child that stops
    reading must not hold the check's thread forever."""
    view, poller = memoryview(data), select.poll()
    poller.register(fd, select.POLLOUT)
    while view:
        if not poller.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            raise TimeoutError
        try:
            view = view[os.write(fd, view[: 1 << 20]):]
        except BlockingIOError:  # room for less than asked: wait again
            continue


def _encode(value: Any) -> bytes:
    """JSON, with the dates and times YAML gives (`min_value: 2020-01-01`) tagged so the child gets them back."""
    def tagged(item: Any) -> Any:
        if isinstance(item, datetime):
            return {_DATETIME: item.isoformat()}
        if isinstance(item, date):
            return {_DATE: item.isoformat()}
        raise TypeError(f"{type(item).__name__} {item!r} cannot be sent to Great Expectations")
    return json.dumps(value, sort_keys=True, default=tagged).encode()


def _decode(raw: bytes) -> Any:
    def untagged(item: dict[str, Any]) -> Any:
        if len(item) == 1 and _DATETIME in item:
            return datetime.fromisoformat(item[_DATETIME])
        if len(item) == 1 and _DATE in item:
            return date.fromisoformat(item[_DATE])
        return item
    return json.loads(raw, object_hook=untagged)


def _read_message(stream: IO[bytes], deadline: float | None = None) -> bytes | None:
    """One message, or None at the end of input; TimeoutError past the deadline."""
    head = _read_exact(stream, _LENGTH.size, deadline)
    if head is None:
        return None
    (length,) = _LENGTH.unpack(head)
    if length > MAX_MESSAGE_BYTES:
        raise WorkerError(f"a message of {length:,} bytes is over the {MAX_MESSAGE_BYTES:,}-byte bound")
    body = _read_exact(stream, length, deadline)
    if body is None:
        raise WorkerError("the input ended inside a message")
    return body


def _read_exact(stream: IO[bytes], size: int, deadline: float | None) -> bytes | None:
    """`size` bytes read straight from the file descriptor (waiting at most until the deadline), or None when the
    input ends before the first byte."""
    chunks, got, fd = [], 0, stream.fileno()
    while got < size:
        if deadline is not None:  # poll, not select: a busy serve's descriptors pass 1024
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
            if not poller.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                raise TimeoutError
        chunk = os.read(fd, min(size - got, 1 << 20))
        if not chunk:
            if got == 0:
                return None
            raise WorkerError("the input ended inside a message")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def json_safe(value: Any) -> Any:
    """A GX result value as plain JSON: numpy numbers as numbers, NaN as null, anything else as text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    if getattr(value, "ndim", 0) and hasattr(value, "tolist"):
        return json_safe(value.tolist())  # a numpy array
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalar
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


# --- the child ---------------------------------------------------------------------------------------------


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """Answer requests until the input ends (the child's whole life)."""
    import logging  # the child's own imports: GX first, while the parent works

    defer(DEFERRED_MODULES)  # imported by GX at startup, used by few expectations: loaded when one runs
    import great_expectations as gx  # the 2-second import this process exists for
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("agentwatch")
    suites: OrderedDict[str, tuple[Any, Any]] = OrderedDict()  # key -> (batch definition, suite), newest last
    while (raw := _read_message(requests)) is not None:
        request = _decode(raw)
        body = _read_message(requests) if request["op"] == "validate" else None  # framing errors end the child
        if request["op"] == "validate" and body is None:
            return
        try:
            if request["op"] == "suite":
                suites[request["key"]] = _suite(gx, source, request["key"], request["entries"])
                suites.move_to_end(request["key"])
                while len(suites) > MAX_SUITES:  # configs reloaded many times: the oldest suites go
                    old_key, _ = suites.popitem(last=False)
                    source.delete_asset(old_key)
                answer: dict[str, Any] = {}
            elif request["key"] not in suites:  # dropped (MAX_SUITES): the parent sends it again
                answer = {"kind": "unknown_suite"}
            else:
                rows = pa.ipc.open_stream(body).read_all().to_pandas()
                batch_definition, suite = suites[request["key"]]
                answer = {"results": _validate(batch_definition, suite, rows, request["result_format"])}
        except ConfigError as exc:
            answer = {"error": str(exc), "kind": "config"}
        except Exception as exc:  # GX's own failure: reported to the parent, the child keeps serving
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        _write_message(answers, json.dumps(answer).encode())
        answers.flush()


def _suite(gx: Any, source: Any, key: str, entries: list[dict[str, Any]]) -> tuple[Any, Any]:
    from great_expectations.exceptions import ExpectationNotFoundError  # in the child only: GX is loaded
    from great_expectations.expectations.registry import get_expectation_impl

    expectations = []
    for index, entry in enumerate(entries):
        name, where = entry["expectation"], entry["where"]
        try:
            expectations.append(get_expectation_impl(name)(**entry["arguments"], meta={"index": index}))
        except ExpectationNotFoundError:
            raise ConfigError(f"{where}: {name!r} is not a Great Expectations expectation") from None
        except Exception as exc:  # GX's own (pydantic v1) validation of the arguments
            raise ConfigError(f"{where} ({name}): {_first_line(exc)}") from None
    if key in {asset.name for asset in source.assets}:
        source.delete_asset(key)
    batch_definition = source.add_dataframe_asset(key).add_batch_definition_whole_dataframe("window")
    return batch_definition, gx.ExpectationSuite(name=key, expectations=expectations)


def _validate(batch_definition: Any, suite: Any, rows: Any, result_format: dict[str, Any]) -> list[dict[str, Any]]:
    batch = batch_definition.get_batch(batch_parameters={"dataframe": rows})
    result = batch.validate(suite, result_format=result_format)
    out = []
    for outcome in result.results:
        info = outcome.exception_info or {}
        raised = info.get("raised_exception")
        out.append({"index": outcome.expectation_config.meta["index"], "success": bool(outcome.success),
                    "result": json_safe(outcome.result),
                    "exception": info.get("exception_message") if raised else None})
    return out


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines[1:3]) if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)


def main() -> int:
    # The answers go to the real stdout; anything GX prints goes to stderr, never into the protocol.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
