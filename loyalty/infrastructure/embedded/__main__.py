"""`python -m loyalty.infrastructure.embedded stop DATA_DIR`: the last resort CI uses to kill
servers a killed test run left behind."""

from __future__ import annotations

import argparse
from pathlib import Path

from loyalty.infrastructure.embedded.processes import stop_pids_in


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loyalty.infrastructure.embedded")
    sub = parser.add_subparsers(dest="command", required=True)
    stop = sub.add_parser("stop", help="kill postgres/redis servers whose pidfiles are in DIR")
    stop.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    args = parser.parse_args(argv)
    if args.command == "stop":
        stop_pids_in(args.data_dir)


if __name__ == "__main__":
    main()
