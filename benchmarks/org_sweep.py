"""One rotator sweep over an organization against a sequential per-account loop, in the
same run: N accounts x M users behind a proxy that adds a fixed latency to every AWS call
(moto and the proxy in a child process, as in ``sweep_vs_script``).

Both sides are rotator's ``OrgSweep`` with the same policy; the baseline sweeps one account
at a time (``max_accounts = 1``), as a loop over accounts running one rotator per account
would. The proxy stamps every IAM request with the account its credentials act in, so the
figures include the busiest second of any one account: it must never exceed
``[accounts] per_account_rate``. Not part of the test run.

    .venv/bin/python -m benchmarks.org_sweep [--accounts 50] [--users 20]
        [--latency-ms 50] [--max-accounts 16] [--per-account 4] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import boto3

from rotator import app
from rotator.settings import load_config
from tests.support.moto import MotoSandbox

ROLE = "rotator-member"
POLICY = """
max_concurrency = 128
[journal]
url = "sqlite:///{tmp}/journal.db"
[audit]
stream = "none"
[verify]
initial_delay = "1s"
attempts = 12
[accounts]
role_name = "{role}"
max_accounts = {max_accounts}
per_account_concurrency = {per_account}
{rate}
[accounts.organization]
[[rules]]
name = "bench"
kind = "access-key"
max_age = "0s"
deactivate_after = "0s"
delete_after = "0s"
select = {{ path_prefix = "/bench/" }}
sink = {{ type = "file", path = "{tmp}/secrets/{{account}}/{{user}}.json" }}
"""

# moto and the latency proxy in a child process. On "stamps" it answers, since the last
# "reset", every IAM request's (time, account) - the account its credentials act in.
SERVE = """
import json, logging, re, sys, time
from moto.server import ThreadedMotoServer
from moto.iam.models import get_account_id_from
from tests.support.faults import FaultPlan, FaultProxy
logging.getLogger("werkzeug").setLevel(logging.ERROR)
SCOPE = re.compile(r"Credential=([A-Z0-9]+)/[0-9]+/[^/]+/([a-z0-9-]+)/")
stamps = []

class Stamping(FaultProxy):
    def _decide(self, request):
        found = SCOPE.search(request.headers.get("authorization", ""))
        if found and found.group(2) == "iam":
            stamps.append((time.monotonic(), found.group(1)))
        return super()._decide(request)

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
latency = float(sys.argv[1])
proxy = Stamping(f"http://{host}:{port}", FaultPlan(latency=(latency, latency)))
proxy.start()
print(f"http://{host}:{port} {proxy.url}", flush=True)
for line in sys.stdin:
    if line.strip() == "reset":
        stamps.clear()
        print("ok", flush=True)
    else:
        keys = {}
        out = []
        for at, key in list(stamps):
            if key not in keys:
                keys[key] = get_account_id_from(key)
            out.append((at, keys[key]))
        print(json.dumps(out), flush=True)
"""


class Server:
    def __init__(self, latency: float) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.child.stdout is not None
        self.upstream, self.proxy_url = self.child.stdout.readline().split()

    def ask(self, what: str) -> str:
        assert self.child.stdin is not None
        assert self.child.stdout is not None
        self.child.stdin.write(what + "\n")
        self.child.stdin.flush()
        return self.child.stdout.readline().strip()

    def stamps(self) -> list[tuple[float, str]]:
        return [(float(at), str(account)) for at, account in json.loads(self.ask("stamps"))]

    def close(self) -> None:
        self.child.kill()


def seed(sandbox: MotoSandbox, accounts: int, users: int) -> list[str]:
    """A fresh organization: ``accounts`` members with the member role and ``users`` users
    with one key each (all due: max_age 0s)."""
    sandbox.reset()
    org = sandbox.client("organizations")
    org.create_organization(FeatureSet="ALL")
    made = []
    for i in range(accounts):
        status = org.create_account(AccountName=f"bench-{i:03d}", Email=f"b{i}@example.com")
        account = str(status["CreateAccountStatus"]["AccountId"])
        made.append(account)
        creds = sandbox.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/{ROLE}", RoleSessionName="seed"
        )["Credentials"]
        iam = boto3.client(
            "iam",
            endpoint_url=sandbox.url,
            region_name=sandbox.region,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
        iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument="{}")
        for u in range(users):
            iam.create_user(UserName=f"bench-{u:03d}", Path="/bench/")
            iam.create_access_key(UserName=f"bench-{u:03d}")
    time.sleep(1.1)
    return made


async def sweep(config_path: Path) -> tuple[int, int]:
    config = load_config(config_path)
    close = app.configure_audit(config)
    try:
        async with app.open_engine(config) as engine:
            assert engine.org is not None
            result = await engine.org.run()
        counts = result.counts()
        return counts["completed"], counts["accounts_failed"]
    finally:
        close()


def busiest_second(stamps: list[tuple[float, str]]) -> tuple[int, float]:
    """The most IAM requests any one account sent within one second, and the mean rate
    per account over the run."""
    by_account: dict[str, list[float]] = defaultdict(list)
    for at, account in stamps:
        by_account[account].append(at)
    peak = 0
    rates = []
    for times in by_account.values():
        times.sort()
        start = 0
        for end, at in enumerate(times):
            while at - times[start] >= 1.0:
                start += 1
            peak = max(peak, end - start + 1)
        span = max(times[-1] - times[0], 1e-9)
        rates.append(len(times) / span if len(times) > 1 else 0.0)
    return peak, sum(rates) / max(len(rates), 1)


def run(server: Server, sandbox: MotoSandbox, args: Any, max_accounts: int) -> dict[str, Any]:
    seed(sandbox, args.accounts, args.users)
    tmp = Path(tempfile.mkdtemp(prefix="rotator-org-bench-"))
    config = tmp / "rotator.toml"
    rate = f"per_account_rate = {args.rate}" if args.rate else ""
    config.write_text(
        POLICY.format(
            tmp=tmp,
            role=ROLE,
            max_accounts=max_accounts,
            per_account=args.per_account,
            rate=rate,
        )
    )
    server.ask("reset")
    wall, cpu = time.perf_counter(), time.process_time()
    completed, failed = asyncio.run(sweep(config))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stamps = server.stamps()
    peak, mean = busiest_second(stamps)
    return {
        "wall": wall,
        "cpu": cpu,
        "completed": completed,
        "failed": failed,
        "iam_requests": len(stamps),
        "peak": peak,
        "mean_rate": mean,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--max-accounts", type=int, default=16)
    parser.add_argument("--per-account", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20.0, help="per_account_rate; 0: none")
    args = parser.parse_args()
    server = Server(args.latency_ms / 1000)
    try:
        os.environ.update(
            AWS_ENDPOINT_URL=server.proxy_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        sandbox = MotoSandbox(server.upstream)
        loop = run(server, sandbox, args, max_accounts=1)
        fan = run(server, sandbox, args, max_accounts=args.max_accounts)
    finally:
        server.close()
    users = args.accounts * args.users
    limit = f"{args.rate:g}/s" if args.rate else "none"
    print(
        f"accounts={args.accounts} users/account={args.users} latency={args.latency_ms:.0f}ms "
        f"per_account_concurrency={args.per_account} per_account_rate={limit}"
    )
    for name, figures in (("per-account loop", loop), (f"org sweep x{args.max_accounts}", fan)):
        print(
            f"{name:>18}: {figures['wall']:7.1f}s wall  "
            f"{figures['cpu'] / users * 1000:5.1f} ms CPU/user  "
            f"{figures['iam_requests'] / users:4.1f} IAM requests/user  "
            f"busiest account-second {figures['peak']} IAM requests  "
            f"({figures['completed']}/{users} completed, {figures['failed']} accounts failed)"
        )
    print(f"speed-up: {loop['wall'] / fan['wall']:.1f}x")
    if args.rate:
        worst = max(loop["peak"], fan["peak"])
        # rotator spaces an account's requests 1/rate apart when they leave; the proxy
        # stamps their arrival, a few ms of jitter later: one more may fall in a window.
        verdict = "within" if worst <= args.rate + 1 else "ABOVE"
        print(
            f"per-account IAM rate: busiest second {worst} requests, {verdict} the limit "
            f"{limit} (+1 for arrival jitter at the proxy)"
        )


if __name__ == "__main__":
    main()
