"""Running the work: open the inputs (:mod:`.sources`), one streaming pass
(:mod:`.pipeline`), partial results that merge (:mod:`.partial`), the Dask engine
(:mod:`.dask_engine`), and what each command does (:mod:`.commands`). Every engine ends
in a :class:`~ce_cli.run.summary.Summary` for :func:`ce_cli.report.finish`.
"""
