"""The benchmark behind ``docs/benchmarks.md`` (``run_benchmarks.py``):
``settings`` (models, methods, arguments), ``evaluation`` (per-model scores,
worker pool), ``report`` (Markdown from ``templates/benchmarks.md.tmpl``),
``figures``."""
