"""`python -m lib config`: print the resolved configuration of a run, or the grid of a profile."""

import argparse

import yaml

from lib.arguments import add_config_arguments, config_from_args
from lib.config import load_grid


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--grid", action="store_true", help="print the profile's grid (methods, sizes, seeds)")


def run(args: argparse.Namespace) -> None:
    if args.grid:
        grid = load_grid(args.profile)
        print(yaml.safe_dump({"methods": list(grid.methods), "sizes": list(grid.sizes), "seeds": list(grid.seeds)},
                             sort_keys=False), end="")
        return
    print(yaml.safe_dump(config_from_args(args).to_dict(), allow_unicode=True, sort_keys=False), end="")
