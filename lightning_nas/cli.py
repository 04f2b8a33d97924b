"""`lightning-nas`: the entry point. Dispatches each command to the module that runs it, one way (no
module below imports this one), and turns what the user can fix into one line with exit code 2.

    lightning-nas fit     --config configs/fits/nb201/gin.yaml
    lightning-nas search  --config configs/methods/re.yaml --config configs/protocols/nb201-cifar10.yaml
    lightning-nas convert ../shared/benchmarks/nb201_200ep.csv.gz -o checkpoints/nb201.npz
    lightning-nas bench   --config configs/methods/re.yaml --config configs/protocols/nb201-cifar10.yaml --seeds 100
"""
from __future__ import annotations

import sys
import traceback
from argparse import ArgumentError
from pathlib import Path

import torch
import yaml

from lightning_nas.errors import ConfigError, MissingFileError, UserError, one_line

#: command -> what it does (the top-level help)
COMMANDS = {
    "fit": "train a predictor (LightningCLI: Trainer.fit)",
    "validate": "validate a predictor (LightningCLI: Trainer.validate)",
    "test": "test a predictor (LightningCLI: Trainer.test)",
    "predict": "predict with a predictor (LightningCLI: Trainer.predict)",
    "search": "run a search: a strategy asks, an oracle answers within a budget of queries",
    "convert": "convert benchmark files (official formats, CSV tables) into one native .npz archive",
    "bench": "run one search config over many seeds in parallel and summarise it",
    "report": "run every method x protocol and write the benchmark report",
}


def usage() -> str:
    lines = ["usage: lightning-nas COMMAND [options]   (`lightning-nas COMMAND --help` for its options)", "",
             "Predictor-guided neural architecture search on PyTorch Lightning.", "", "commands:"]
    lines += [f"  {name:<9} {what}" for name, what in COMMANDS.items()]
    return "\n".join(lines)


def run(command: str, args: list[str]) -> int:
    """Run one command (the modules are imported only when their command runs)."""
    if command == "convert":
        from lightning_nas.benchmarks.convert import convert_main

        return convert_main(args)
    if command == "bench":
        from lightning_nas.bench import bench_main

        return bench_main(args)
    if command == "report":
        from lightning_nas.report import report_main

        return report_main(args)
    _check_config_files(args)
    if command == "search":
        from lightning_nas.lightning_cli import run_search

        run_search(args)
        return 0
    from lightning_nas.lightning_cli import run_lightning

    return run_lightning([command, *args])


def main(argv: list[str] | None = None) -> int:
    from lightning_nas.search.stopping import SearchStopped

    argv = list(sys.argv[1:] if argv is None else argv)
    torch.set_float32_matmul_precision("high")
    command, args = (argv[0], argv[1:]) if argv else (None, [])
    if command in (None, "-h", "--help"):
        print(usage(), file=sys.stdout if command else sys.stderr)
        return 0 if command else 2
    try:
        if command not in COMMANDS:
            raise ConfigError(f"unknown command {command!r}; choose one of {', '.join(COMMANDS)}")
        return run(command, args)
    except SearchStopped as e:
        print(f"lightning-nas: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C during a search: no checkpoint of the round in progress
        print("lightning-nas: interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    except Exception as e:
        if not isinstance(e, ArgumentError) and not _user_error(e):
            traceback.print_exc()
            print("lightning-nas: this is a bug in lightning-nas, not a problem with your input: please report "
                  "it to the lightning-nas issue tracker with the traceback above and the command you ran",
                  file=sys.stderr)
            return 1
        help_command = f"lightning-nas {command} --help" if command in COMMANDS else "lightning-nas --help"
        hint = f"; see `{help_command}` for the accepted options" if isinstance(e, ArgumentError) else ""
        print(f"lightning-nas: error: {one_line(str(e))}{hint}", file=sys.stderr)
        return 2


def _user_error(e: BaseException | None) -> bool:
    """Whether `e` is a `UserError`, or wraps one: jsonargparse re-raises what a class raised while
    it was built as a `ValueError` (`raise ... from` the original)."""
    while e is not None:
        if isinstance(e, UserError):
            return True
        e = e.__cause__
    return False


def _check_config_files(args: list[str]) -> None:
    """Every config file exists and is YAML (jsonargparse's own message names neither file nor line)."""
    for i, arg in enumerate(args):
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg in ("--config", "-c") and i + 1 < len(args):
            path = args[i + 1]
        else:
            continue
        if not Path(path).is_file():
            raise MissingFileError(f"config file {path} does not exist")
        try:
            yaml.safe_load(Path(path).read_text())
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {path} is not text ({e.reason}): give a YAML file") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e)
            raise ConfigError(f"config file {path}{where}: not valid YAML ({problem}); fix it and rerun") from None


if __name__ == "__main__":
    sys.exit(main())
