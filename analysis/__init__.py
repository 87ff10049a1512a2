"""Run directories -> paper figures and tables (numpy, scipy, pandas, pyarrow, matplotlib; never
rlexp).

Modules: `metrics` (Pass@K, Maj@K, bootstrap CIs), `load` (run, sweep, eval and study directories,
and W&B runs -> DataFrames), `style` (the paper style), `plots` (figures), `study` (the
DeepSeekMath Pass@K / Maj@K study and its report), `sweep` (a multirun sweep's tables and figures:
`sweep_plots`, `tables`), `scaling` (the saturating compute-scaling fit), `cli`
(``rlexp-analyze PATH``).
"""
