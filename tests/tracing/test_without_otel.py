"""Without ``tarry[otel]`` installed, a worker runs as before and never imports
OpenTelemetry; the first look for it is the only one."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import asyncio, sys

    looked = []

    class NoOpenTelemetry:
        # As if the package were not installed.
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                looked.append(name)
                raise ImportError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoOpenTelemetry())

    import tarry
    from tarry import tracing
    from tarry.testing import Environment

    app = tarry.App()

    @app.workflow("greet")
    async def greet(ctx, step):
        name = await step.run("name", lambda: "ana")
        data = await step.wait_for_signal("go", signal="go", timeout="1h")
        return f"{data['greeting']} {name}"

    async def main():
        async with Environment(app) as env:
            run_id = await env.start("greet")
            await env.run_until_idle()
            await env.send_signal("go", {"greeting": "hello"})
            assert await env.result(run_id) == "hello ana"
        assert tracing.tracer() is None
        with tracing.sending("start") as context:
            assert context is None

    asyncio.run(main())
    assert not [m for m in sys.modules if m.startswith("opentelemetry")], sys.modules
    assert looked == ["opentelemetry"], looked
    print("ok")
    """
)


def test_a_worker_without_opentelemetry_installed_runs_and_never_imports_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
