"""`lightning-nas report`: every search method on every protocol, the predictors' Kendall tau, the costs.

- `protocols`: the report's protocols and methods, read from configs/protocols/ and configs/methods/
  (with `protocols.yaml` beside it: section order, partial tables, per-seed fits, extra budgets).
- `searches`: each (protocol, method) through `lightning-nas bench`; finished runs are reused.
- `fits`: the checkpoints a search loads, fitted where missing (CR-LSO: once per seed).
- `records`: finished runs kept in committed .tar.gz files, so a report resumes on another machine.
- `tau`: the predictors' Kendall tau on NAS-Bench-201; `performance`: costs beside their baselines.
- `render`: REPORT.md, report_data.json and the plots, with the papers' figures from `paper.yaml`.
- `main`: `report_main(argv)`, which `lightning-nas report` calls.
"""
