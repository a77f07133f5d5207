"""Init-container scripts: wait for what a pod needs at start-up, with a deadline and a message.

Kamailio resolves the IMS/EPC names and, as P-CSCF or I-CSCF, opens its Valkey database when it
starts, and stops when it cannot: started too early it crash-loops and its log says little. The
pods therefore wait in init containers. Each wait says what it waits for while waiting, gives up
after a deadline with a message naming what is wrong and where to look (a pod in Init:Error
with that message instead of an endless loop), and stops at once on an answer that waiting will
not change (Valkey refusing the password). The scripts are plain busybox `sh`, as in the images.
"""

from __future__ import annotations

import shlex

# Long enough for a cold cluster to pull images and schedule the IMS DNS and Valkey pods.
DEADLINE_SECONDS = 300
# Exit codes: the wait timed out / an answer that waiting will not fix.
EXIT_TIMEOUT = 1
EXIT_REFUSED = 2


def _loop(check: str, waiting: str, timeout_message: str, deadline: int) -> str:
    """`check` sets $reply and breaks out of the loop on success (or exits on a fatal answer)."""
    return "\n".join(
        [
            f"end=$(( $(date +%s) + {deadline} ))",
            "while :; do",
            check,
            '  if [ "$(date +%s)" -ge "$end" ]; then',
            f"    echo {timeout_message}: \"$reply\" >&2",
            f"    exit {EXIT_TIMEOUT}",
            "  fi",
            f'  echo {waiting}: "$reply"',
            "  sleep 2",
            "done",
        ]
    )


def wait_for_dns(name: str, server: str, deadline: int = DEADLINE_SECONDS) -> str:
    """Waits until `server` (the IMS DNS) answers an A record for `name` (the pod's own FQDN,
    which only the IMS zone holds: an answer means the zone is loaded and served)."""
    q_name, q_server = shlex.quote(name), shlex.quote(server)
    check = "\n".join(
        [
            f"  reply=$(nslookup {q_name} {q_server} 2>&1 | tr '\\n' ' ')",
            f"  case \"$reply\" in *'Name:'*{name}*'Address'*) echo 'IMS DNS {server} answers {name}'; break ;; esac",
        ]
    )
    return _loop(
        check,
        shlex.quote(f"waiting for the IMS DNS at {server} to answer {name}"),
        shlex.quote(
            f"gave up after {deadline}s: the IMS DNS at {server} does not answer {name}; "
            "check the coredns pods (kubectl get pods -l app.kubernetes.io/name=coredns) and their log"
        ),
        deadline,
    )


def wait_for_valkey(host: str, port: int, secret: str, deadline: int = DEADLINE_SECONDS) -> str:
    """Waits until Valkey answers an authenticated PING (password in REDISCLI_AUTH, never argv).
    `secret` names the Kubernetes Secret the password comes from, for the message."""
    q_host = shlex.quote(host)
    check = "\n".join(
        [
            f"  reply=$(valkey-cli --no-auth-warning -h {q_host} -p {port} ping 2>&1 | tr '\\n' ' ')",
            '  case "$reply" in',
            "    PONG*) echo 'Valkey answers'; break ;;",
            "    *WRONGPASS*|*NOAUTH*|*'invalid password'*|*'invalid username-password'*)",
            "      echo "
            + shlex.quote(
                f"Valkey at {host}:{port} refuses the password from Secret {secret} (key password): "
                "the pod and Valkey hold different passwords; run pulumi up again so both use the stack's one"
            )
            + ': "$reply" >&2',
            f"      exit {EXIT_REFUSED} ;;",
            "  esac",
        ]
    )
    return _loop(
        check,
        shlex.quote(f"waiting for Valkey at {host}:{port}"),
        shlex.quote(
            f"gave up after {deadline}s: Valkey at {host}:{port} does not answer; "
            "check the valkey pod (kubectl get pods -l app.kubernetes.io/name=valkey) and its log"
        ),
        deadline,
    )


def wait_for_rtpengine(host: str, port: int, deadline: int = DEADLINE_SECONDS) -> str:
    """Waits until rtpengine answers an NG `ping` with `pong` through the address the P-CSCF
    uses (its Service), with the rtpengine image's own probe script (rtpengine-ng-ping). Kamailio
    pings its relay at start and, when that ping is lost, keeps the relay disabled: calls got
    503 on the node tier when the P-CSCF pod started before rtpengine's."""
    check = (
        f"  if reply=$(rtpengine-ng-ping {shlex.quote(host)} {port} 2>&1); "
        "then echo 'rtpengine answers'; break; fi"
    )
    return _loop(
        check,
        shlex.quote(f"waiting for rtpengine at {host}:{port} to answer an NG ping"),
        shlex.quote(
            f"gave up after {deadline}s: rtpengine at {host}:{port} does not answer an NG ping; "
            "check the rtpengine pod (kubectl get pods -l app.kubernetes.io/name=rtpengine) and its log"
        ),
        deadline,
    )
