"""The benchmark beside the library: experiments, studies, tables, reproduction and timing.

The library (everything in :mod:`bmclib` outside this package) never imports it. It reads and
writes the checkout's ``results/``, ``notebooks/`` and ``data/`` (or paths it is given):
:mod:`~bmclib.bench.benchmark` (pre-registered benchmark files), :mod:`~bmclib.bench.runs` (run names),
:mod:`~bmclib.bench.experiment` (the image benchmark), :mod:`~bmclib.bench.regime` (the keypoint regime map),
:mod:`~bmclib.bench.model_study`, :mod:`~bmclib.bench.wiring_study`, :mod:`~bmclib.bench.balance`,
:mod:`~bmclib.bench.controls` (metrics and conditions on controls), :mod:`~bmclib.bench.verdict` (a validated
test's verdict), :mod:`~bmclib.bench.lifting_runs`, :mod:`~bmclib.bench.report`, :mod:`~bmclib.bench.tables`,
:mod:`~bmclib.bench.reproduce` (notebooks through papermill), :mod:`~bmclib.bench.gpu_check`,
:mod:`~bmclib.bench.timing` (throughput) and :mod:`~bmclib.bench.fuzz` (the loss's gradient bound);
:mod:`~bmclib.bench.cli` is the ``bmc`` program.
"""
