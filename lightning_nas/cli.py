"""`lightning-nas`: LightningCLI (fit / validate / test / predict / search) plus convert and bench.

    lightning-nas fit     --config configs/nb201/gin_fit.yaml
    lightning-nas search  --config configs/nb201/re.yaml
    lightning-nas convert ../shared/benchmarks/nb201_200ep.csv.gz -o checkpoints/nb201.npz
    lightning-nas bench   --config configs/nb201/re.yaml --seeds 100 --budgets 50 100 150
"""
from __future__ import annotations

import inspect
import logging
import os
import sys
from pathlib import Path
from argparse import ArgumentError
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_nas.benchmarks.oracle import Oracle
from lightning_nas.data.datamodule import ArchitectureDataModule
from lightning_nas.io import WriteError
from lightning_nas.search.stopping import SearchStopped
from lightning_nas.search.strategy import Strategy

DESCRIPTION = (
    "lightning-nas: predictor-guided neural architecture search. Lightning subcommands below, and: "
    "`lightning-nas convert` (benchmark archives), `lightning-nas bench` (one config over many seeds), "
    "`lightning-nas report` (every method x protocol; benchmarks/REPORT.md). Each takes --help."
)
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, RuntimeError)


class UserError(Exception):
    """A problem with the user's input: reported in one line with exit code 2."""


class NASTrainer(Trainer):
    def search(
        self,
        model: LightningModule | None = None,
        datamodule: ArchitectureDataModule | None = None,
        strategy: Strategy | None = None,
        budget: int = 100,
        report: list[str] | None = None,
        run_dir: str = "checkpoints/search",
        ask_batch: int = 1,
        ckpt_path: str | None = None,
        finetune_epochs: int = 20,
        progress: bool = True,
        oracle: Oracle | None = None,
        table_only: bool = False,
    ) -> dict[str, Any]:
        """Run a search: the strategy asks, the oracle answers within `budget` queries.

        The oracle is the datamodule's benchmark table (objective = its `target`) unless `oracle`
        names another (live training, a zero-cost proxy); `model` + `ckpt_path` give the predictor.
        `table_only`: the search space is the table's architectures (a table that samples its space,
        such as NB101's 30k cells): predictor-guided methods rank only what the oracle can answer.
        With a multi-process strategy (`--trainer.strategy ddp --trainer.devices N`, or SLURM's
        tasks) Lightning's launcher starts the ranks and each runs the same search."""
        kwargs = dict(
            datamodule=datamodule, strategy=strategy, model=model, ckpt_path=ckpt_path, budget=budget,
            report=report or [], run_dir=run_dir, ask_batch=ask_batch, finetune_epochs=finetune_epochs,
            seed=int(os.environ.get("PL_GLOBAL_SEED", 0)), progress=progress,
            config=getattr(self, "search_config", {}), oracle=oracle, table_only=table_only,
        )
        launcher = self.strategy.launcher
        if launcher is not None:
            return launcher.launch(self._search_on_this_rank, trainer=self, **kwargs)
        return self._search_on_this_rank(**kwargs)

    def _search_on_this_rank(self, **kwargs: Any) -> dict[str, Any]:
        from lightning_nas.search.runner import run_search
        from lightning_nas.search.stopping import StopRequests

        self.strategy.setup_environment()  # DDP: joins the process group
        environment = self._accelerator_connector.cluster_environment
        slurm = environment if isinstance(environment, SLURMEnvironment) else None
        try:
            return run_search(**kwargs, stop_requests=StopRequests(slurm))
        finally:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()


class NASCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "search": {"model", "datamodule"}}

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        self._building = subcommand
        return super()._prepare_subcommand_parser(klass, subcommand, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        try:
            super().parse_arguments(parser, args)
        except AttributeError as e:  # jsonargparse's failure on a `config:` key inside a config file
            raise UserError(f"the config cannot be parsed ({e}): does a config file set `config:`? remove that key") from None
        if self.config.get("subcommand") == "search":
            _check_search_config(self.config["search"])

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        if getattr(self, "_building", None) != "search":
            return super().add_core_arguments_to_parser(parser)
        # a search needs a benchmark; a predictor only for predictor-guided strategies
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.add_lightning_class_args(LightningModule, "model", subclass_mode=True, required=False)
        parser.add_lightning_class_args(ArchitectureDataModule, "data", subclass_mode=True, required=False)

    def _dump_config(self) -> None:
        # With `data: null` (a search answered by `oracle:`) Lightning's datamodule instantiator reads
        # None as the hparams of any LightningDataModule it builds, so one nested in the oracle failed.
        super()._dump_config()
        for key in ("model", "data"):
            if isinstance(self.config_dump, dict) and self.config_dump.get(key) is None:
                self.config_dump[key] = {}

    def before_instantiate_classes(self) -> None:
        if self.subcommand == "search":  # the search's trainer only fine-tunes: its start-up lines are noise
            for name in ("lightning.pytorch", "lightning.fabric"):
                logging.getLogger(name).setLevel(logging.WARNING)
            self.config["search"]["trainer"]["logger"] = False

    def before_search(self) -> None:
        config = self.config["search"]
        self.trainer.search_config = _plain(config.as_dict() if hasattr(config, "as_dict") else config)


def _check_search_config(search: Namespace) -> None:
    """What jsonargparse lets through for `search` but the search cannot use."""
    if not isinstance(search.get("trainer"), Namespace):
        raise UserError(f"`trainer:` must be a mapping of Trainer options, not {search.get('trainer')!r}: fix or delete it")
    for name, parameter in inspect.signature(NASTrainer.search).parameters.items():
        if parameter.default not in (None, inspect.Parameter.empty) and search.get(name, parameter.default) is None:
            raise UserError(f"`{name}:` is null in the config: give it a value (default {parameter.default!r}) or delete it")
    if search.get("ckpt_path") and search.get("model"):  # before Lightning swaps in the checkpoint's model
        from lightning_nas.predictors.base import check_checkpoint_matches

        init_args = search["model"].get("init_args")
        check_checkpoint_matches(search["ckpt_path"], search["model"]["class_path"], init_args.as_dict() if init_args else {})


def _plain(obj: Any) -> Any:
    """Config namespaces -> JSON-ready dicts (for results.json)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items() if k not in ("__default_config__",)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def run_cli(args: list[str] | None = None) -> NASCLI:
    return NASCLI(
        trainer_class=NASTrainer,
        datamodule_class=None,
        subclass_mode_model=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        parser_kwargs={"exit_on_error": False, "description": DESCRIPTION},
    )


def main(argv: list[str] | None = None) -> int:
    explicit = argv is not None
    argv = list(sys.argv[1:] if argv is None else argv)
    torch.set_float32_matmul_precision("high")
    command = argv[0] if argv else None
    try:
        if command == "convert":
            from lightning_nas.benchmarks.convert import convert_main

            return convert_main(argv[1:])
        if command == "bench":
            from lightning_nas.search.bench import bench_main

            return bench_main(argv[1:])
        if command == "report":
            from lightning_nas.report import report_main

            return report_main(argv[1:])
        _check_config_files(argv)
        run_cli(argv if explicit else None)
        return 0
    except SearchStopped as e:
        print(f"lightning-nas: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C during a search: no checkpoint of the round in progress
        print("lightning-nas: interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    except (UserError, ArgumentError, WriteError) as e:
        usage = f"lightning-nas {command} --help" if command in NASCLI.subcommands() else "lightning-nas --help"
        hint = f"; see `{usage}` for the accepted options" if isinstance(e, ArgumentError) else ""
        print(f"lightning-nas: error: {one_line(str(e))}{hint}", file=sys.stderr)
        return 2
    except USER_ERRORS as e:
        print(f"lightning-nas: error: {type(e).__name__}: {one_line(str(e))}", file=sys.stderr)
        return 2


def one_line(message: str) -> str:
    """jsonargparse reports a failed class init as a list of union alternatives; keep the cause."""
    noise = ("Does not validate", "Subtypes:", "Errors:", "Expected a <class 'NoneType'>", "Given value")
    lines = [line.strip(" -") for line in message.splitlines() if line.strip()]
    useful = [line.rstrip(":") for line in lines if not line.startswith(noise)]
    return "; ".join(useful or lines[:1])


def _check_config_files(argv: list[str]) -> None:
    for i, arg in enumerate(argv):
        path = arg.split("=", 1)[1] if arg.startswith("--config=") else argv[i + 1] if arg == "--config" and i + 1 < len(argv) else None
        if path is not None and not Path(path).is_file():
            raise UserError(f"config file {path} does not exist")


if __name__ == "__main__":
    sys.exit(main())
