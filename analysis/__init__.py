"""Run directories -> paper figures and tables (numpy, pandas, pyarrow, matplotlib; never rlexp).

Modules: `metrics` (Pass@K, Maj@K, bootstrap CIs), `load` (run, sweep, eval and study directories
-> DataFrames), `style` (the paper style), `plots` (figures), `study` (the DeepSeekMath Pass@K /
Maj@K study and its report), `cli` (``rlexp-analyze PATH``).
"""
