"""Files no input can crash or fool: deep nesting, non-finite numbers, gzip bombs, over-long lines, truncated
archives, files that read as nothing, and a full disk (issue 12, findings 3, 4, 9, 10, 11)."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agentwatch.collector.ingest.pipeline import FilesNotIngested, ingest_files
from agentwatch.collector.ingest.screen import NON_FINITE_MESSAGE
from agentwatch.collector.ingest.sources import read_jsonl
from agentwatch.core.home import Home
from agentwatch.core.limits import Limits
from agentwatch.store.datasets import ACTIONS
from agentwatch.store.reader import open_reader
from tests.cli_support import run_cli

CLI_TIMEOUT_S = 300


def event(number: int, **changes: object) -> dict:
    return {"event_id": f"e{number}", "ts": "2026-10-18T10:00:00Z", "agent_id": "lead-router",
            "action": "lead.route", "resource": {"type": "lead", "id": f"L-{number}"}, "status": "ok", **changes}


def line(number: int, **changes: object) -> str:
    return json.dumps(event(number, **changes))


def nested(depth: int) -> str:
    """A JSON object `depth` objects deep."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def with_inputs(number: int, inputs_json: str) -> str:
    """An event line whose `inputs` is the JSON text given as is (NaN, deep nesting, ...)."""
    return line(number)[:-1] + f', "inputs": {inputs_json}}}'


def stored(home: Home) -> list[str]:
    con = open_reader(home)
    try:
        return [row[0] for row in con.execute("SELECT event_id FROM actions ORDER BY ts, event_id").fetchall()]
    finally:
        con.close()


def stored_ids(home: Home) -> set[str]:
    return set(stored(home))


def write_flat(path: Path, rows: list[dict[str, str]], fmt: str) -> Path:
    """Rows in the flat layout (nested objects as JSON text) as CSV or Parquet."""
    columns = ["event_id", "ts", "agent_id", "action", "resource.type", "resource.id", "status", "inputs"]
    flat = [{"event_id": r["event_id"], "ts": r["ts"], "agent_id": r["agent_id"], "action": r["action"],
             "resource.type": "lead", "resource.id": r["event_id"], "status": "ok", "inputs": r["inputs"]}
            for r in rows]
    if fmt == "csv":
        with open(path, "w", newline="") as out:
            writer = csv.DictWriter(out, columns)
            writer.writeheader()
            writer.writerows(flat)
    else:
        pq.write_table(pa.Table.from_pylist(flat), path)
    return path


def write_events(path: Path, texts: list[str], fmt: str) -> Path:
    """Event JSON texts as a file of `fmt` (the flat formats keep `inputs` as JSON text)."""
    if fmt == "jsonl":
        path.write_text("\n".join(texts) + "\n")
    elif fmt == "json":
        path.write_text("[" + ",\n".join(texts) + "]")
    else:
        rows = []
        for text in texts:
            head, _, inputs = text.partition(', "inputs": ')
            row = json.loads(head + "}" if inputs else text)
            rows.append({**row, "inputs": inputs[:-1] if inputs else "{}"})
        write_flat(path, rows, fmt)
    return path


# -- finding 3: nesting depth -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_an_event_too_deep_is_refused_alone_and_later_files_are_read(tmp_path: Path, fmt: str) -> None:
    """Events nested deeper than limits.max_depth (100,000 deep, or 100 deep in `inputs`) are each refused
    with their line and the bound; the events around them and the next file are stored (a RecursionError
    traceback lost the whole command, and deep `inputs` were stored)."""
    home = Home.resolve(tmp_path / "home")
    texts = [line(1), with_inputs(2, nested(100)), with_inputs(3, nested(100_000)), line(4)]
    if fmt in ("jsonl", "json"):
        texts.append(nested(100_000))  # the whole event that deep
    first = write_events(tmp_path / f"deep.{fmt}", texts, fmt)
    second = write_events(tmp_path / f"next.{fmt}", [line(9)], fmt)
    report = ingest_files(home, ACTIONS, [first, second])
    assert stored_ids(home) == {"e1", "e4", "e9"}
    assert report.accepted == 3
    refused = {r.number: r for r in report.sample}
    first_number = 2 if fmt == "csv" else 1  # a CSV's line 1 is its header
    assert set(refused) == {first_number + i for i in range(1, len(texts)) if i != 3}
    for rejection in refused.values():
        assert rejection.source == str(first)
        assert "limits.max_depth" in rejection.describe() and "64" in rejection.describe()


def test_the_depth_bound_is_a_setting(tmp_path: Path) -> None:
    """max_depth counts the event object as level 1: an event at the bound is stored, one level more refused."""
    home = Home.resolve(tmp_path / "home")
    path = write_events(tmp_path / "d.jsonl", [with_inputs(1, nested(4)), with_inputs(2, nested(5))], "jsonl")
    report = ingest_files(home, ACTIONS, [path], limits=Limits(max_depth=5))
    assert stored_ids(home) == {"e1"}
    assert [r.number for r in report.sample] == [2]
    assert "6 levels deep" in report.sample[0].describe()


# -- finding 10: non-finite numbers, truncated archives ----------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_non_finite_numbers_are_refused_like_the_api(tmp_path: Path, fmt: str) -> None:
    """NaN, Infinity and 1e999 are refused per event with the field and the API's message; the same words in
    strings and large finite numbers are kept."""
    home = Home.resolve(tmp_path / "home")
    texts = [with_inputs(1, '{"x": NaN}'), with_inputs(2, '{"deal": {"size": Infinity}}'),
             with_inputs(3, '{"y": [1, -Infinity]}'), with_inputs(4, '{"z": 1e999}'),
             with_inputs(5, '{"note": "NaN Infinity 1e999", "big": 1e308}'), line(6)]
    path = write_events(tmp_path / f"n.{fmt}", texts, fmt)
    report = ingest_files(home, ACTIONS, [path])
    assert stored_ids(home) == {"e5", "e6"}
    first_number = 2 if fmt == "csv" else 1
    fields = {r.number - first_number + 1: [(e.field, e.message) for e in r.errors] for r in report.sample}
    assert fields == {1: [("inputs.x", NON_FINITE_MESSAGE)], 2: [("inputs.deal.size", NON_FINITE_MESSAGE)],
                      3: [("inputs.y.1", NON_FINITE_MESSAGE)], 4: [("inputs.z", NON_FINITE_MESSAGE)]}


def test_a_truncated_gzip_keeps_every_complete_event(tmp_path: Path) -> None:
    """A .gz cut short stores every complete line it holds, then one error says after which line it ends."""
    home = Home.resolve(tmp_path / "home")
    text = ("\n".join(line(n) for n in range(1, 2001)) + "\n").encode()
    compressed = gzip.compress(text)
    cut = compressed[: len(compressed) * 2 // 3]
    inflated = zlib.decompressobj(wbits=31).decompress(cut)
    complete = inflated.count(b"\n")
    assert 0 < complete < 2000
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(cut)
    good = tmp_path / "good.jsonl"
    good.write_text(line(5000) + "\n")
    with pytest.raises(FilesNotIngested) as caught:
        ingest_files(home, ACTIONS, [path, good])
    assert stored_ids(home) == {f"e{n}" for n in range(1, complete + 1)} | {"e5000"}
    assert caught.value.report.accepted == complete + 1
    message = str(caught.value)
    assert str(path) in message and f"truncated after line {complete:,}" in message


# -- finding 4: gzip bombs and over-long lines ---------------------------------------------------------------


def test_inflating_stops_at_the_bound_keeping_the_events_before(tmp_path: Path) -> None:
    """A .gz that inflates past limits.max_decompressed_bytes stops there with one error naming the file, the
    bound and the setting; the complete events before the bound are stored."""
    home = Home.resolve(tmp_path / "home")
    lines = [line(n) for n in range(100_000, 120_000)]  # equal lengths
    size = len(lines[0]) + 1
    path = tmp_path / "bomb.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    bound = 300_000
    with pytest.raises(FilesNotIngested) as caught:
        ingest_files(home, ACTIONS, [path], limits=Limits(max_decompressed_bytes=bound))
    assert len(stored(home)) == bound // size
    message = str(caught.value)
    assert str(path) in message and "limits.max_decompressed_bytes" in message and "300,000" in message
    assert message.count("\n") == 0


def test_a_bomb_without_newlines_is_one_refused_line_and_one_error(tmp_path: Path) -> None:
    """Zeros without a newline: the line is refused once it passes max_event_bytes, reading stops at the
    decompression bound."""
    home = Home.resolve(tmp_path / "home")
    path = tmp_path / "zeros.jsonl.gz"
    path.write_bytes(gzip.compress(line(1).encode() + b"\n" + b"0" * (3 << 20)))
    with pytest.raises(FilesNotIngested) as caught:
        ingest_files(home, ACTIONS, [path], limits=Limits(max_decompressed_bytes=2 << 20, max_event_bytes=10_000))
    report = caught.value.report
    assert stored_ids(home) == {"e1"}
    assert report.rejected == 1 and "limits.max_event_bytes" in report.sample[0].describe()
    assert "limits.max_decompressed_bytes" in str(caught.value)


def test_an_over_long_line_is_skipped_without_being_held_whole(tmp_path: Path) -> None:
    """A line longer than max_event_bytes is refused while reading it in blocks: no chunk holds more than a
    block plus the bound, and the lines after it are read."""
    path = tmp_path / "long.jsonl"
    path.write_bytes(line(1).encode() + b"\n" + b"x" * 500_000 + b"\n" + line(2).encode() + b"\n")
    chunks = list(read_jsonl(path, Limits(max_event_bytes=10_000), chunk_bytes=4096))
    assert max(chunk.texts.buffers()[2].size for chunk in chunks) <= 4096 + 10_000 + 4096
    refused = [r for chunk in chunks for r in chunk.refused]
    assert [(number, "more than 10,000 bytes" in problem) for number, problem, _, _ in refused] == [(2, True)]
    texts = [t for chunk in chunks for t in chunk.texts.to_pylist() if t]
    assert [json.loads(t)["event_id"] for t in texts] == ["e1", "e2"]


# -- finding 11: files that read as nothing ------------------------------------------------------------------


def test_files_that_read_as_nothing_are_errors_and_the_others_are_stored(tmp_path: Path) -> None:
    """An empty file, a file of blank lines and a .csv holding JSONL each give an error naming the file and
    the fix; the good file of the same command is stored."""
    home = Home.resolve(tmp_path / "home")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n\n")
    disguised = tmp_path / "events.csv"
    disguised.write_text(line(7) + "\n" + line(8) + "\n")
    good = tmp_path / "good.jsonl"
    good.write_text(line(1) + "\n")
    with pytest.raises(FilesNotIngested) as caught:
        ingest_files(home, ACTIONS, [empty, blank, disguised, good])
    assert stored_ids(home) == {"e1"}
    problems = {Path(str(f.path)).name: f.problem for f in caught.value.failures}
    assert set(problems) == {"empty.jsonl", "blank.jsonl", "events.csv"}
    assert "empty" in problems["empty.jsonl"]
    assert "no events" in problems["blank.jsonl"]
    assert "looks like JSONL" in problems["events.csv"] and "--format jsonl" in problems["events.csv"]


def test_cli_names_each_file_that_read_as_nothing(tmp_path: Path) -> None:
    """`ingest actions good.jsonl --format csv` and an empty file end in `error:` lines and a non-zero exit."""
    home = tmp_path / "home"
    good = tmp_path / "good.jsonl"
    good.write_text(line(1) + "\n" + line(2) + "\n")
    code, _, stderr = run_cli("ingest", "actions", good, "--format", "csv", "--home", home)
    assert code != 0
    assert "error:" in stderr and str(good) in stderr and "--format jsonl" in stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, stdout, stderr = run_cli("ingest", "actions", empty, good, "--home", home)
    assert code != 0 and "Traceback" not in stderr
    assert [ln for ln in stderr.splitlines() if ln.startswith("error:")] == [
        ln for ln in stderr.splitlines() if str(empty) in ln]
    assert "2 accepted" in stdout


def test_cli_takes_the_bounds_from_the_config(tmp_path: Path) -> None:
    """The `limits:` section of agentwatch.yaml sets the bounds file ingest applies."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "agentwatch.yaml").write_text("limits:\n  max_depth: 3\n")
    path = write_events(tmp_path / "d.jsonl", [line(1), with_inputs(2, nested(3))], "jsonl")
    code, stdout, stderr = run_cli("ingest", "actions", path, "--home", home)
    assert code == 1, stderr
    assert "limits.max_depth" in stderr and "1 accepted" in stdout


# -- finding 9: a full disk ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0,
                    reason="needs root to mount a 2 MiB tmpfs as a full disk")
def test_a_full_disk_ends_file_ingest_with_one_error_line(tmp_path: Path) -> None:
    """Ingest onto a disk that fills up ends with one `error:` line naming the home and what was stored, and a
    non-zero exit; no traceback."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        home = mount / "home"
        noise = [os.urandom(3000).hex() for _ in range(200)]
        files = []
        for number in range(6):  # 1.2 MB of random hex per file (about half that in Parquet): the disk fills
            path = tmp_path / f"f{number}.jsonl"
            path.write_text("\n".join(line(number * 1000 + n, rationale=noise[n]) for n in range(200)) + "\n")
            files.append(path)
        completed = subprocess.run(
            [sys.executable, "-m", "agentwatch.app.cli", "ingest", "actions", *map(str, files), "--home", str(home)],
            capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
        assert completed.returncode not in (0, 1), completed
        assert "Traceback" not in completed.stderr, completed.stderr
        errors = [ln for ln in completed.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, completed.stderr
        assert str(home) in errors[0] and "full" in errors[0] and "nothing after" in errors[0]
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# -- large events: the validator's memory ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_chunk_of_large_events_fits_the_validators_memory(tmp_path: Path) -> None:
    """1,100 valid events of 60 KB (66 MB, one read chunk) are stored: in one Arrow batch, DuckDB ran out of
    its 1 GB validating them and the command ended in a traceback."""
    home = Home.resolve(tmp_path / "home")
    path = tmp_path / "large.jsonl"
    path.write_text("\n".join(line(n, rationale="r" * 60_000) for n in range(1100)) + "\n")
    report = ingest_files(home, ACTIONS, [path])
    assert (report.accepted, report.rejected) == (1100, 0)


def test_csv_and_json_files_are_read_in_pieces(tmp_path: Path) -> None:
    """A large CSV or JSON file comes as several chunks (never one table of the whole file), numbered on."""
    from agentwatch.collector.ingest.sources import TABLE_CHUNK_ROWS, read_source

    count = TABLE_CHUNK_ROWS * 2 + 7
    texts = [line(n) for n in range(count)]
    for fmt, first in (("csv", 2), ("json", 1)):
        path = write_events(tmp_path / f"big.{fmt}", texts, fmt)
        chunks = list(read_source(path, ACTIONS))
        assert len(chunks) >= 2 and sum(len(c) for c in chunks) == count
        assert all(len(c) < 2 * TABLE_CHUNK_ROWS for c in chunks)
        numbers = np.concatenate([c.numbers for c in chunks])
        assert (numbers == np.arange(first, first + count)).all()


def test_a_refused_event_keeps_its_id_and_text_in_the_rejects_file(tmp_path: Path) -> None:
    """An event refused for a non-finite number is written whole to the rejects file, with its event_id."""
    home = Home.resolve(tmp_path / "home")
    path = write_events(tmp_path / "n.jsonl", [with_inputs(1, '{"x": NaN}'), line(2)], "jsonl")
    report = ingest_files(home, ACTIONS, [path])
    assert report.rejects_file is not None
    [record] = [json.loads(text) for text in report.rejects_file.read_text().splitlines()]
    assert (record["number"], record["event_id"], record["raw"]) == (1, "e1", with_inputs(1, '{"x": NaN}'))


# Inside one recheck batch; across batches; and a cap the batches of 10,000 refusals reach exactly (the file then
# stops at the last refusal of the batch before).
@pytest.mark.parametrize("cap", [7, 25_000, 20_000])
def test_a_file_over_the_reject_cap_stops_there_keeping_what_came_before(tmp_path: Path, cap: int) -> None:
    """A flood of refused events (3 GiB of `{}` lines took days to explain one by one) stops at
    limits.max_rejects_per_file: every valid event before the cap-th refusal is stored, none after it, each
    refusal up to the cap is in the rejects file, the error names the setting and the line, and the next file
    of the command is read."""
    home = Home.resolve(tmp_path / "home")
    flood = tmp_path / "flood.jsonl"
    rows = []
    for n in range(3 * cap):  # every third line valid, the others refused
        rows.append(line(n) if n % 3 == 0 else "{}")
    flood.write_text("\n".join(rows) + "\n")
    after = tmp_path / "after.jsonl"
    after.write_text(line(10**7) + "\n")
    with pytest.raises(FilesNotIngested) as caught:
        ingest_files(home, ACTIONS, [flood, after], limits=Limits(max_rejects_per_file=cap))
    # The cap-th refusal is on line 3*(cap-1)/2+... : count lines until `cap` refusals have been seen.
    refusals, stop_line = 0, 0
    for number, text in enumerate(rows, start=1):
        refusals += text == "{}"
        if refusals == cap:
            stop_line = number
            break
    expected = {f"e{n}" for n in range(3 * cap) if n % 3 == 0 and n + 1 < stop_line} | {f"e{10**7}"}
    assert stored_ids(home) == expected
    assert caught.value.report.rejected == cap
    message = str(caught.value)
    assert "limits.max_rejects_per_file" in message and f"line {stop_line:,}" in message and str(flood) in message
    written = sum(1 for path in home.rejects.glob("*.jsonl") for _ in path.open())
    assert written == cap
