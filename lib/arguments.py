"""The command-line options that every stage's command shares: which configuration, which grid.

Each command's module adds them in its `add_arguments(parser)`; lib.cli only dispatches to the
command named on the command line.
"""

from __future__ import annotations

import argparse


def add_config_arguments(parser: argparse.ArgumentParser, method: bool = True) -> None:
    """The options that select a configuration: profile, method, variants, overrides."""
    parser.add_argument("--profile", default="paper", help="experiments/profiles/<profile>.yaml (default: paper)")
    if method:
        parser.add_argument("--method", default=None, help="experiments/<method>.yaml, e.g. lora or qlora")
    parser.add_argument("--variant", action="append", default=[], help="experiments/variants/<name>.yaml (repeatable)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config field (repeatable)")


def add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    """The grid a summary or report expects (lib.config.requested_grid): experiments/grid.yaml, narrowed."""
    parser.add_argument("--methods", nargs="+", help="methods of the expected grid (default: experiments/grid.yaml)")
    parser.add_argument("--sizes", nargs="+", help="sizes of the expected grid, e.g. 10k 20k")
    parser.add_argument("--seeds", nargs="+", type=int,
                        help="seeds of the expected grid (runs of grid.yaml's first seed have no -s<seed> suffix)")


def config_from_args(args: argparse.Namespace):
    from lib.config import load_config

    return load_config(args.profile, getattr(args, "method", None), tuple(args.variant), args.overrides)
