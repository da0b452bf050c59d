"""`python -m devstack up|down|status|env`: start, stop and describe the local emulator stack."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from devstack.certs import served_by
from devstack.stack import (
    HOST,
    Ports,
    ServiceState,
    StackError,
    identity_mode_from_env,
    settings_for,
    stack_status,
    start_stack,
    stop_stack,
)


def _describe(state: ServiceState) -> str:
    ports = ",".join(str(p) for p in state.ports)
    parts = [f"{state.name:<10} {state.status:<8} ports {ports}"]
    if state.pid is not None:
        parts.append(f"pid {state.pid}")
    if state.log is not None:
        parts.append(f"log {state.log}")
    if state.detail:
        parts.append(f"({state.detail})")
    return "  ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Local emulators: Azurite (blob/queue/table), Cosmos DB, Web PubSub. Ports "
        "from AZURITE_BLOB_PORT, AZURITE_QUEUE_PORT, AZURITE_TABLE_PORT, COSMOS_PORT, "
        "WEBPUBSUB_PORT, IDENTITY_PORT; state (logs, pids) in DEVSTACK_DIR or .devstack/. "
        "Identity mode (--identity or DEVSTACK_MODE=identity): the keyless configuration of "
        "the deployment, with a local managed identity.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the emulators (reusing running ones), wait until ready")
    up.add_argument("--only", help="comma-separated subset of azurite,cosmos,webpubsub")
    up.add_argument("--timeout", type=float, help="seconds to wait for readiness (default 15)")
    up.add_argument("--identity", action="store_true", help="identity mode: no key anywhere")
    sub.add_parser("down", help="stop the emulators started from the state directory")
    sub.add_parser("status", help="show what is running (exit 1 unless all are)")
    env = sub.add_parser("env", help="print the connection settings as KEY=VALUE lines")
    env.add_argument("--export", action="store_true", help="print shell `export` lines")
    env.add_argument("--identity", action="store_true", help="identity mode's settings")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            began = time.monotonic()
            only = [s.strip() for s in args.only.split(",")] if args.only else None
            info = start_stack(services=only, timeout=args.timeout, identity=args.identity or None)
            for state in info.services.values():
                print(_describe(state))
            print(f"ready in {time.monotonic() - began:.1f}s; settings: python -m devstack env")
        elif args.command == "down":
            stopped = stop_stack()
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.command == "status":
            states = stack_status()
            for state in states.values():
                print(_describe(state))
            return 0 if all(s.status in ("running", "external") for s in states.values()) else 1
        elif args.command == "env":
            ports = Ports.from_env()
            settings = settings_for(ports, identity=args.identity or identity_mode_from_env())
            if served_by(HOST, ports.cosmos, Path(settings["COSMOS_CA_CERT"])) is False:
                # Someone else's Cosmos DB server (as `up` reports): not our certificate.
                del settings["COSMOS_CA_CERT"]
            for key, value in settings.items():
                if args.export:
                    print(f"export {key}={shlex.quote(value)}")
                else:
                    print(f"{key}={value}")
    except StackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
