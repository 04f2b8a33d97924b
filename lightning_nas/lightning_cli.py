"""The Lightning commands of `lightning-nas`: fit / validate / test / predict (LightningCLI) and search.

`search` is a method of `NASTrainer`, parsed by its own `LightningCLI(run=False)` (a search has no
optimizer, and its model and data are optional) and called here; the entry module (`cli.py`)
dispatches to `run_lightning` or `run_search`.
"""
from __future__ import annotations

import importlib
import inspect
import logging
import os
import pkgutil
import signal
import sys
import types
import typing
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from jsonargparse import Namespace
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_nas.benchmarks.oracle import Oracle
from lightning_nas.data.datamodule import ArchitectureDataModule
from lightning_nas.errors import ConfigError, UserError
from lightning_nas.predictors.base import check_checkpoint_matches, read_checkpoint
from lightning_nas.search.fits import check_model_checkpoints
from lightning_nas.search.strategy import Strategy

#: packages whose modules define strategies and oracles: imported before `search` builds its parser,
#: so that `search --help` lists every strategy and oracle and configs may name them by class name
SEARCH_PLUGINS = ("lightning_nas.search", "lightning_nas.proxies", "lightning_nas.benchmarks")


class NASTrainer(Trainer):
    def search(
        self,
        model: LightningModule | None = None,
        datamodule: ArchitectureDataModule | None = None,
        strategy: Strategy | None = None,
        budget: int = 100,
        report: list[str] | str | None = None,
        run_dir: str = "checkpoints/search",
        ask_batch: int = 1,
        ckpt_path: str | None = None,
        finetune_epochs: int = 20,
        progress: bool = True,
        oracle: Oracle | None = None,
        table_only: bool = False,
        auto_fit: str | None = None,
        fit_cache: str | None = None,
        objectives: list[dict[str, Any] | str] | None = None,
        constraints: list[str] | None = None,
        costs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run a search: the strategy asks, the oracle answers within `budget` queries.

        The oracle is the data's benchmark table (objective = its `target`) unless `oracle` names
        another (live training, a zero-cost proxy); `model` + `ckpt_path` give the predictor. With a
        multi-process strategy (`--trainer.strategy ddp --trainer.devices N`, or SLURM's tasks)
        Lightning's launcher starts the ranks and each runs the same search. Every query (score,
        reported metrics, best so far) and what the strategy reports of each round go to the
        trainer's loggers: a CSVLogger in `<run_dir>/logs` unless `--trainer.logger` names others
        (`false`: none); results.json stays the record.

        Args:
            model: the predictor of a predictor-guided strategy (a class path and its init_args);
                none for random search and regularized evolution
            datamodule: the benchmark table that answers queries (`data:`); none when `oracle` is given
            strategy: the search method: a class path with its init_args (listed under `--strategy.help`)
            budget: the number of oracle queries; labels a fitted predictor was trained on count as queries
            report: metrics of the table recorded beside the objective for every query, e.g.
                [cifar10_test_acc] (one name alone is read as a one-element list)
            run_dir: the folder of the search's checkpoint and results.json; the same command resumes
                the search from it
            ask_batch: architectures the strategy proposes per round; the predictor is fine-tuned
                once per round
            ckpt_path: the predictor checkpoint written by `lightning-nas fit`
            finetune_epochs: epochs of each fine-tune of the predictor on the labels gathered so far
            progress: show a progress bar and print the best architecture at the end
            oracle: what answers a query instead of the table: live training or a zero-cost proxy
                (listed under `--oracle.help`)
            table_only: search only the table's architectures (for a table that samples its space,
                such as NB101's 30k cells): predictor-guided methods rank only what the oracle can answer
            auto_fit: a `lightning-nas fit` config of the predictor (e.g. Delta-NAS's) or of its label-free
                first stage (DCL-ENAS's stage 1), run on first use when no checkpoint gives it
            fit_cache: the folder auto_fit keeps its fits in, one per resolved fit config, shared by
                every search that uses it (default checkpoints/fits)
            objectives: several objectives, each {name, direction: max|min, ideal, reference}: the search
                keeps the Pareto front and its hypervolume (docs/multi_objective.md); a name is `score`,
                a table column, a reported metric, or a cost of the network (params_m, flops_m, latency_ms)
            constraints: limits such as "latency_ms <= 5": a query that breaks one is charged but is
                never best nor on the front
            costs: settings of the costs computed from the network (lightning_nas.proxies.costs.NetworkCosts:
                input_shape, num_classes, network, convention, store, device, batch_size, warmup, repeats)
        """
        kwargs = dict(
            datamodule=datamodule, strategy=strategy, model=model, ckpt_path=ckpt_path, budget=budget,
            report=[report] if isinstance(report, str) else report or [], run_dir=run_dir, ask_batch=ask_batch,
            finetune_epochs=finetune_epochs, seed=int(os.environ.get("PL_GLOBAL_SEED", 0)), progress=progress,
            config=getattr(self, "search_config", {}), oracle=oracle, table_only=table_only, loggers=self.loggers,
            auto_fit=auto_fit, **({"fit_cache": fit_cache} if fit_cache is not None else {}),
            objectives=objectives, constraints=constraints, costs=costs,
        )
        launcher = self.strategy.launcher
        if launcher is not None:
            return launcher.launch(self._search_on_this_rank, trainer=self, **kwargs)
        return self._search_on_this_rank(**kwargs)

    def _search_on_this_rank(self, **kwargs: Any) -> dict[str, Any]:
        from lightning_nas.search.runner import run_search
        from lightning_nas.search.stopping import StopRequests

        self.strategy.setup_environment()  # DDP: joins the process group
        try:
            return run_search(**kwargs, stop_requests=StopRequests(self._slurm()))
        finally:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()

    def _slurm(self) -> SLURMEnvironment | None:
        """The SLURM environment whose requeue signal the search answers: the strategy's (DDP), or, on
        one device (whose strategy keeps none), the one Lightning detects from the job's variables."""
        environment = getattr(self.strategy, "cluster_environment", None)
        if environment is None and SLURMEnvironment.detect():
            environment = SLURMEnvironment()
        return environment if isinstance(environment, SLURMEnvironment) else None


class _InputChecks:
    """What jsonargparse lets through but the classes cannot use, refused as a `ConfigError`."""

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        try:
            super().parse_arguments(parser, args)
        except AttributeError as e:  # jsonargparse's failure on a `config:` key inside a config file
            raise ConfigError(f"the config cannot be parsed ({e}): does a config file set `config:`? remove that key") from None
        subcommand = self.config.get("subcommand")  # `self.subcommand` is set after parsing
        seed = (self.config[subcommand] if subcommand else self.config).get("seed_everything")
        if not isinstance(seed, bool) and isinstance(seed, int) and not 0 <= seed < 2**32:
            # Lightning seeds numpy too, which raises a ValueError inside LightningCLI's constructor
            raise ConfigError(f"`seed_everything: {seed}` is out of range: give an integer from 0 to {2**32 - 1}")

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as e:  # jsonargparse wraps what a class raised: bad input, or a package it needs is missing
            cause: BaseException | None = e
            while cause is not None and not isinstance(cause, (UserError, ModuleNotFoundError)):
                cause = cause.__cause__
            if isinstance(cause, UserError):
                raise cause from None
            if cause is None:
                raise
            raise ConfigError(f"{str(cause).splitlines()[0]} (needed by a class of the config): install it, or "
                              "choose another class (e.g. `--trainer.logger CSVLogger` for TensorBoardLogger)") from None

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        _refuse_nulls(config.get("trainer"), self.trainer_class, "trainer")
        for key, value in vars(config).items():
            if key != "trainer":
                _refuse_nulls(value, None, key)


class FitInterrupted(Callback):
    """Ctrl-C during a fit: Lightning stops with exit code 1; say how to resume."""

    def __init__(self) -> None:
        self.interrupted = False

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.interrupted = isinstance(exception, KeyboardInterrupt)


class NASCLI(_InputChecks, LightningCLI):
    """fit / validate / test / predict, as Lightning has them."""


class SearchCLI(_InputChecks, LightningCLI):
    """The parser of `search`: trainer, optional model and data, and the arguments of `NASTrainer.search`."""

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.add_lightning_class_args(LightningModule, "model", subclass_mode=True, required=False)
        parser.add_lightning_class_args(ArchitectureDataModule, "data", subclass_mode=True, required=False)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        self.search_arguments = parser.add_method_arguments(NASTrainer, "search", skip={"model", "datamodule"})

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        _check_search_config(self.config)
        self._model_from_checkpoint()

    def _model_from_checkpoint(self) -> None:
        """As LightningCLI does for `fit --ckpt_path`: the model is rebuilt with the hyper-parameters
        stored in the checkpoint (after `_check_search_config` made sure they are of the same class)."""
        ckpt_path = self.config.get("ckpt_path")
        if not ckpt_path or not os.path.isfile(ckpt_path):
            return  # the search reports the missing file
        hparams = dict(read_checkpoint(ckpt_path).get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        self.config = self.parser.parse_object({"model": hparams}, self.config)

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        # the search's trainer only fine-tunes: its start-up lines are noise
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.search_config = _plain(self.config.as_dict())  # as given (results.json), before the default below
        trainer = self.config["trainer"]
        if trainer.get("logger") in (None, True):  # Lightning's default would log into ./lightning_logs
            trainer["logger"] = Namespace(class_path="lightning.pytorch.loggers.CSVLogger",
                                          init_args=Namespace(save_dir=self.config["run_dir"], name="logs"))

    def search(self) -> dict[str, Any]:
        self.trainer.search_config = self.search_config
        kwargs = {k: v for k, v in self.config_init.items() if k in self.search_arguments}
        return self.trainer.search(model=self.model, datamodule=self.datamodule, **kwargs)


def _check_search_config(search: Namespace) -> None:
    """What jsonargparse lets through for `search` but the search cannot use."""
    if not isinstance(search.get("trainer"), Namespace):
        raise ConfigError(f"`trainer:` must be a mapping of Trainer options, not {search.get('trainer')!r}: fix or delete it")
    for name, parameter in inspect.signature(NASTrainer.search).parameters.items():
        if parameter.default not in (None, inspect.Parameter.empty) and search.get(name, parameter.default) is None:
            raise ConfigError(f"`{name}:` is null in the config: give it a value (default {parameter.default!r}) or delete it")
    if isinstance(search.get("model"), Namespace) and isinstance(search["model"].get("init_args"), Namespace):
        check_model_checkpoints(search["model"]["init_args"].as_dict())  # a missing stage-1 encoder
    if search.get("ckpt_path") and search.get("model"):  # before the checkpoint's hyper-parameters replace `model:`
        init_args = search["model"].get("init_args")
        check_checkpoint_matches(search["ckpt_path"], search["model"]["class_path"], init_args.as_dict() if init_args else {})


def _refuse_nulls(node: Any, cls: type | None, where: str) -> None:
    """jsonargparse lets `null` through for an init argument whose type does not allow it (e.g.
    `population_size: null` for an `int`); the class would then fail inside. Refuse it here, in
    `node` (a class's `init_args` when `cls` is given) and in every class config below it."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _refuse_nulls(item, None, f"{where}[{i}]")
        return
    if not isinstance(node, Namespace):
        return
    if cls is None and isinstance(node.get("class_path"), str):
        try:
            cls = getattr(importlib.import_module(node.class_path.rsplit(".", 1)[0]), node.class_path.rsplit(".", 1)[1])
        except (ImportError, AttributeError, ValueError, IndexError):
            return  # jsonargparse has resolved it; nothing to check against here
        node, where = node.get("init_args"), f"{where}.init_args"
        if not isinstance(node, Namespace):
            return
    if cls is not None:
        try:
            signature = inspect.signature(cls.__init__)
            hints = typing.get_type_hints(cls.__init__)
        except (TypeError, ValueError, NameError):
            signature, hints = None, {}
        for name, value in vars(node).items():
            parameter = signature.parameters.get(name) if signature is not None else None
            if value is None and parameter is not None and not _null_allowed(parameter, hints.get(name)):
                default = "" if parameter.default is inspect.Parameter.empty else f" (default {parameter.default!r})"
                raise ConfigError(f"`{where}.{name}:` is null in the config: give it a value{default} or delete it")
    for name, value in vars(node).items():
        _refuse_nulls(value, None, f"{where}.{name}")


def _null_allowed(parameter: inspect.Parameter, hint: Any) -> bool:
    if hint is None:  # not annotated: only a None default says that None is meant
        return parameter.default is None or parameter.default is inspect.Parameter.empty
    if hint is Any or hint is type(None):
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_null_allowed(parameter, h) for h in typing.get_args(hint))
    return False


def _plain(obj: Any) -> Any:
    """Config namespaces -> JSON-ready dicts (for results.json)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items() if k not in ("__default_config__",)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def import_search_plugins() -> None:
    for package in SEARCH_PLUGINS:
        for module in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
            importlib.import_module(module.name)


@contextmanager
def _args_from_the_command_line() -> Iterator[None]:
    """The entry passes the command line minus the command: not the mistake LightningCLI warns about."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        yield


def run_search(args: list[str]) -> dict[str, Any]:
    """`lightning-nas search ARGS`: parse, build the parts, search; returns the results."""
    import_search_plugins()
    description = inspect.getdoc(NASTrainer.search).split("\n\nArgs:")[0]
    parser_kwargs = {"exit_on_error": False, "prog": "lightning-nas search", "description": description}
    with _args_from_the_command_line():
        cli = SearchCLI(trainer_class=NASTrainer, datamodule_class=None, save_config_callback=None, args=args,
                        parser_kwargs=parser_kwargs, run=False, auto_configure_optimizers=False,
                        load_from_checkpoint_support=False)
    return cli.search()


def run_lightning(args: list[str]) -> int:
    """`lightning-nas fit|validate|test|predict ARGS`, as LightningCLI runs them. Returns the exit code:
    130 after Ctrl-C during a fit, with a line saying how to resume."""
    interrupt_handler = signal.getsignal(signal.SIGINT)
    hint = FitInterrupted()
    try:
        with _args_from_the_command_line():
            NASCLI(datamodule_class=None, subclass_mode_model=True, save_config_kwargs={"overwrite": True}, args=args,
                   trainer_defaults={"callbacks": [hint] if args[:1] == ["fit"] else []},
                   parser_kwargs={"exit_on_error": False, "prog": "lightning-nas"})
    except SystemExit:
        if not hint.interrupted:
            raise
        signal.signal(signal.SIGINT, interrupt_handler)  # Lightning ignores further Ctrl-C while it shuts down
        print("lightning-nas: interrupted; to resume from the newest checkpoint, run the same command with "
              "`--ckpt_path last`", file=sys.stderr)
        return 130
    return 0
