"""The experiment harness of lightning-nas, kept in the repository beside the library it measures:
`lightning-nas report` (the `report` package) and the per-method measurement scripts (bench_*.py).
It is not installed with the package; a clone or an editable install runs it."""
