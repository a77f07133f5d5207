"""Load the rendered charging plan into CGRateS through its JSON-RPC API (the loader Job).

usage: python3 load_plan.py PLAN_JSON API_URL [--wait SECONDS]

PLAN_JSON is what components/render/cgrates.py `plan_json` renders: the tenant and a list of
{method, params} calls. Calls marked `if_account_missing` (initial balances) run only when
APIerSv2.GetAccount says the account does not exist, so a re-run never resets a balance a
subscriber has spent from. Every other call sets the same data again: running the Job twice
changes nothing. Any error from CGRateS stops the Job with that error (exit 1), naming the call.

Python standard library only: the Job runs it in a stock python image.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

NOT_FOUND = "NOT_FOUND"


class ApiError(RuntimeError):
    pass


def call(url: str, method: str, params: dict, request_id: int = 1, timeout: float = 10.0):
    """One JSON-RPC 1.0 call as CGRateS' HTTP endpoint takes it; returns its result."""
    body = json.dumps({"method": method, "params": [params], "id": request_id}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if answer.get("error"):
        raise ApiError(f"{method}: {answer['error']}")
    return answer.get("result")


def wait_for_api(url: str, seconds: float) -> None:
    """CGRateS may still be starting (or its databases): ping until it answers."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if call(url, "APIerSv1.Ping", {}) == "Pong":
                return
        except (OSError, ApiError, ValueError) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"CGRateS API at {url} not answering after {seconds:.0f}s: {exc}") from exc
        time.sleep(1)


def account_exists(url: str, tenant: str, account: str) -> bool:
    try:
        call(url, "APIerSv2.GetAccount", {"Tenant": tenant, "Account": account})
        return True
    except ApiError as exc:
        if NOT_FOUND in str(exc):
            return False
        raise


def load(url: str, document: dict, log=print) -> dict[str, int]:
    """Make every call of the plan; returns counts of calls made and balances left alone."""
    counts = {"calls": 0, "balances_set": 0, "balances_kept": 0}
    for n, step in enumerate(document["calls"], start=1):
        params = step["params"]
        if step.get("if_account_missing"):
            if account_exists(url, params["Tenant"], params["Account"]):
                counts["balances_kept"] += 1
                log(f"account {params['Account']}: exists, balance left as it is")
                continue
            counts["balances_set"] += 1
        result = call(url, step["method"], params, request_id=n)
        counts["calls"] += 1
        log(f"{step['method']} {params.get('ID') or params.get('Account') or params.get('TPid')}: {result}")
    return counts


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan")
    parser.add_argument("url")
    parser.add_argument("--wait", type=float, default=120)
    args = parser.parse_args(argv)
    with open(args.plan, encoding="utf-8") as fh:
        document = json.load(fh)
    wait_for_api(args.url, args.wait)
    try:
        counts = load(args.url, document)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"plan loaded: {counts['calls']} calls, {counts['balances_set']} new accounts, "
          f"{counts['balances_kept']} existing accounts kept")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
