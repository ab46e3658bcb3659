"""Test workflows on virtual time: ``Environment``, step doubles and a pytest plugin.

    async with tarry.testing.Environment(app) as env:
        run_id = await env.start("fulfill-order", {"order_id": 42})
        await env.advance("7d")          # the approval's timeout fires
        with pytest.raises(tarry.RunCancelled):
            await env.result(run_id)

See the README's "Testing your workflows".
"""

from ..errors import NeverIdle, WorkerCrash
from .doubles import Call, StepDouble
from .environment import DEFAULT_START, Environment, NotEnded

__all__ = [
    "DEFAULT_START",
    "Call",
    "Environment",
    "NeverIdle",
    "NotEnded",
    "StepDouble",
    "WorkerCrash",
]
