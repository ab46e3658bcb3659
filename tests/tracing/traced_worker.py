"""A worker process with the OpenTelemetry SDK configured as an application would,
exporting each finished span as one JSON line to ``--spans``.

Workflow ``approve``: waits for the signal ``approve:<order>`` and returns its
data. SIGTERM stops the worker cleanly (and flushes the spans).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import tarry


class JsonLines(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                assert span.context is not None
                out.write(json.dumps({
                    "name": span.name,
                    "trace_id": f"{span.context.trace_id:032x}",
                    "span_id": f"{span.context.span_id:016x}",
                    "parent": None if span.parent is None else f"{span.parent.span_id:016x}",
                    "links": [{"trace_id": f"{link.context.trace_id:032x}",
                               "span_id": f"{link.context.span_id:016x}"}
                              for link in span.links],
                    "attributes": dict(span.attributes or {}),
                }) + "\n")  # fmt: skip
        return SpanExportResult.SUCCESS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--spans", required=True)
    args = parser.parse_args()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLines(args.spans)))
    trace.set_tracer_provider(provider)

    app = tarry.App(args.db, lease="5s")

    @app.workflow("approve")
    async def approve(ctx: tarry.Context, step: Any) -> Any:
        return await step.wait_for_signal(
            "decision", signal=f"approve:{ctx.payload['order']}", timeout="1h"
        )

    async def run() -> None:
        loop = asyncio.get_running_loop()
        worker = asyncio.ensure_future(app.run_worker(concurrency=4))
        loop.add_signal_handler(signal.SIGTERM, worker.cancel)
        try:
            await worker
        except asyncio.CancelledError:
            pass
        finally:
            await app.close()
            provider.shutdown()

    asyncio.run(run())


if __name__ == "__main__":
    main()
