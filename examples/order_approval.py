"""Order fulfilment with a human approval: the pause at the centre of tarry.

Orders over 50,000 wait up to 7 days for a decision shaped as ``tarry.Approval``
(approved, by, comment), which arrives either way: the signal
``approval:order-<id>`` from another system, or the approve link e-mailed to the
approvers (a callback token's URL, which needs no API token and opens a page with
Approve and Reject). The dashboard's inbox lists the order with the same buttons.
Run it with no arguments for the whole story on the embedded SQLite default
(./.tarry/tarry.db): an order parks, another process approves it, and the run
resumes where it left off. The other process is this same file:

    python examples/order_approval.py approve 42 --by alice
    python examples/order_approval.py reject 42 --by bob
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import tarry

app = tarry.App()


def load_order(order_id: int) -> dict[str, Any]:
    # A real service would read the order from its database here.
    return {"id": order_id, "total": 72_000 if order_id % 2 == 0 else 1_200}


def charge(order: dict[str, Any]) -> str:
    print(f"  [step] charged order {order['id']}: {order['total']:,}")
    return f"charge-{order['id']}"


def email_approvers(order: dict[str, Any], link: str) -> str:
    # A real service would send this by e-mail (or Slack): the link is all it takes.
    print(f"  [mail] to approvers: approve order {order['id']} ({order['total']:,}) at {link}")
    return link


def ship(order: dict[str, Any]) -> str:
    print(f"  [step] shipped order {order['id']}")
    return f"parcel-{order['id']}"


@app.workflow("fulfill-order", retries=4)
async def fulfill_order(ctx: tarry.Context, step: tarry.Step) -> dict[str, Any]:
    order = await step.run("load-order", load_order, ctx.payload["order_id"])
    await step.run("charge", charge, order)
    if order["total"] > 50_000:
        link = await step.create_token("approve-link", timeout="7d", schema=tarry.Approval)
        await step.run("email-approvers", email_approvers, order, link.url)
        woken = await step.wait_for_any(
            "wait-approval",
            [
                tarry.signal(f"approval:order-{order['id']}", schema=tarry.Approval),
                tarry.token(link),
            ],
            timeout="7d",
        )
        if woken is None:
            step.bail("approval timed out - order held")
        decision: tarry.Approval = woken.value
        if not decision.approved:
            step.bail(f"rejected by {decision.by}")
    parcel = await step.run("ship", ship, order)
    return {"shipped": order["id"], "parcel": parcel}


def decide(order_id: int, approved: bool, by: str) -> None:
    """Send the awaited signal, as a separate process would (a web hook, a person)."""
    result = app.send_signal_sync(f"approval:order-{order_id}", {"approved": approved, "by": by})
    print(f"  [{by}] {'approved' if approved else 'rejected'} order {order_id}: {result.status}")
    app.close_sync()


async def parked(run_id: str) -> tarry.Run:
    """The run once it has parked (a person watching would refresh the dashboard)."""
    for _ in range(600):
        run = await app.get_run(run_id)
        if run.status == "waiting":
            return run
        await asyncio.sleep(0.05)
    raise SystemExit(f"run {run_id} did not park: {run.status}")


async def demo() -> None:
    order_id = int(time.time()) * 2  # even: over 50,000, so it needs approval
    print(f"tarry demo on {app.database}")
    async with app.worker():
        run_id = await app.start("fulfill-order", {"order_id": order_id})
        print(f"started run {run_id} for order {order_id}")
        run = await parked(run_id)
        waiting = run.waiting_for
        assert waiting is not None
        print(
            f"run is {run.status}: parked on {' or '.join(waiting.conditions)} until "
            f"{waiting.expires_at:%Y-%m-%d %H:%M} UTC; no worker holds it"
        )
        print("approving from another process ...")
        approver = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "approve", str(order_id), "--by", "alice"
        )
        if await approver.wait() != 0:
            raise SystemExit("the approving process failed")
        output = await app.result(run_id, timeout=30)
        print(f"run resumed and completed: {output}")
        run = await app.get_run(run_id)
        for step in run.steps:
            took = (step.ended_at - step.started_at).total_seconds() if step.ended_at else 0
            print(f"  {step.id:<16} {step.kind:<13} {step.status:<10} {took * 1000:9.1f} ms")
        # One more order for the dashboard: it stays parked until somebody decides.
        other = await parked(await app.start("fulfill-order", {"order_id": order_id + 2}))
        link = next(s.output for s in other.steps if s.id == "email-approvers")
        print(f"order {order_id + 2} is parked for you: approve it with the e-mailed link")
        print(f"  {link}")
        print(f"or in the dashboard's inbox: {link.split('/api/', 1)[0]}/inbox")
    await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    for name in ("approve", "reject"):
        cmd = sub.add_parser(name)
        cmd.add_argument("order_id", type=int)
        cmd.add_argument("--by", default="someone")
    args = parser.parse_args()
    if args.command is None:
        asyncio.run(demo())
    else:
        decide(args.order_id, args.command == "approve", args.by)


if __name__ == "__main__":
    main()
