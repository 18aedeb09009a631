"""python -m noisesearch_worker serve [--address 127.0.0.1:50151] [--config FILE]
python -m noisesearch_worker inspect MODEL   (state-dict keys and shapes as JSON, no weights allocated; --list)"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="noisesearch_worker", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the worker over gRPC")
    s.add_argument("--address", default="127.0.0.1:50151",
                   help="bind address (loopback by default; port 0 picks a free port, printed in the ready line)")
    s.add_argument("--config", default=None, help="JSON config (default: the embedded Fashion-MNIST bundle)")
    s.add_argument("--device", default=None, help="override the config's device: auto | cpu | cuda")
    s.add_argument("--parent-pid", type=int, default=None,
                   help="exit when this process (the spawning orchestrator) dies, even by SIGKILL "
                        "(default: NOISESEARCH_PARENT_PID, else never)")
    i = sub.add_parser("inspect", help="print a model's state-dict keys and shapes as JSON")
    i.add_argument("model", nargs="?", help="a model or verifier name (--list prints them all), e.g. sit-xl-2, flux-dev, "
                   "flux-ae, clip-vit-large-patch14, imagereward, dinov2-large, aesthetic, clipscore, dino-linearhead")
    i.add_argument("--list", action="store_true", help="print every known name with what it is, as JSON")
    args = ap.parse_args(argv)
    if args.command == "inspect":
        from .inspect_model import inspect, names
        if args.list or not args.model:
            print(json.dumps(names(), indent=1))
            return 0 if args.list else 2
        try:
            print(json.dumps(inspect(args.model)))
        except KeyError as e:
            print(f"error: {e.args[0]}", file=sys.stderr)
            return 2
        return 0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parent = args.parent_pid if args.parent_pid is not None else int(os.environ.get("NOISESEARCH_PARENT_PID", "0") or 0)
    if parent:
        from .parent_watch import watch_parent
        watch_parent(parent)
    from .config import WorkerConfig
    from .server import serve
    try:
        config = WorkerConfig.load(args.config)
        if args.device:
            config.device = args.device
        serve(config, args.address)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: worker cannot start: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
