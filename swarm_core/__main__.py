"""Command line: `python -m swarm_core demo [--auto-answer] "GOAL"` runs a swarm in-process."""

import sys

from swarm_core import demo


def main() -> int:
    args = sys.argv[1:]
    if not args or args[0] != "demo":
        print('usage: python -m swarm_core demo [--auto-answer] [--seed N] "GOAL"', file=sys.stderr)
        return 2
    return demo.main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
