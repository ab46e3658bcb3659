"""The link across processes: the click that sends a signal in one process, and
the span of the run it resumes in a worker process (another OpenTelemetry SDK,
exporting to a file), days of parking apart in real use."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tarry

WORKER = Path(__file__).with_name("traced_worker.py")


def spans_in(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def until(check: Any, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_the_resumed_run_in_a_worker_process_links_to_the_senders_span(
    spans: InMemorySpanExporter, database_url: str, tmp_path: Path
) -> None:
    written = tmp_path / "worker-spans.jsonl"
    log = (tmp_path / "worker.log").open("wb")
    app = tarry.App(database_url)
    await app._open()  # the schema exists before the worker process opens it
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), "--db", database_url, "--spans", str(written)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        tracer = trace.get_tracer("the-shop")
        with tracer.start_as_current_span("POST /orders"):
            run_id = await app.start("approve", {"order": 5})

        async def parked() -> bool:
            return (await app.get_run(run_id)).status == "waiting"

        await until(parked, "the run to park in the worker process")
        with tracer.start_as_current_span("POST /approve (the click)"):
            await app.send_signal("approve:5", {"approved": True, "by": "ana"})

        async def done() -> bool:
            return (await app.get_run(run_id)).status == "completed"

        await until(done, "the run to resume and complete")
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
        await app.close()
    here = {span.name: span for span in spans.get_finished_spans()}
    start, send = here["tarry start"], here["tarry send_signal"]
    there = spans_in(written)
    attempts = [s for s in there if s["name"] == "run approve"]
    assert len(attempts) == 2, (there, (tmp_path / "worker.log").read_text())
    for attempt in attempts:  # the worker's spans are in the trace of the start, made here
        assert attempt["trace_id"] == f"{start.context.trace_id:032x}"
        assert attempt["parent"] == f"{start.context.span_id:016x}"
        assert attempt["attributes"]["tarry.run_id"] == run_id
    (wait,) = [s for s in there if s["name"] == "wait signal"]
    click = {"trace_id": f"{send.context.trace_id:032x}", "span_id": f"{send.context.span_id:016x}"}
    assert wait["links"] == [click]
    assert click in attempts[1]["links"]
    assert wait["attributes"]["tarry.wait.woken_by"] == "signal"
