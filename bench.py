#!/usr/bin/env python
"""freepoint-bench entry point: `python bench.py --help`."""

from freepoint_bench.cli import main

if __name__ == "__main__":
    main()
