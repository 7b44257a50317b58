#!/usr/bin/env python
"""Regenerate ``docs/benchmarks.md``: localisation, faithfulness, sanity and
speed of every mmxai method on the three synthetic benchmark recognizers.

    .venv/bin/python tools/benchmarks/run_benchmarks.py [--clips 12]
        [--jobs 2] [--skip-speed] [--reuse] [--out docs/benchmarks.md]
        [--methods M ... | --methods new] [--partial] [--data-seed N]
        [--skip-sanity]

Steps: (1) write the held-out split of the synthetic benchmark data
(deterministic; ``data/benchmark_synthetic/test.txt``); (2) for each model
(``configs/benchmark/NAME_synthetic.py`` + ``checkpoints/benchmark/
NAME_synthetic.pth``, trained by ``train_benchmark_models.py`` or, for the
pure transformers, ``train_benchmark_transformer.py``; ``--models NAME``
takes any such pair, default i3d tsm transformer) explain ``--clips`` held-out clips
with every registered method and the baseline maps, score each map and run
the model parameter randomisation test (``suite/evaluation.py``); (3) run
``bench_speed.py``; (4) write the report (``suite/report.py``,
``templates/benchmarks.md.tmpl``) and the figures (``suite/figures.py``,
``docs/figures/benchmark_*.png``). The models and the speed benchmark run
``--jobs`` at a time, each in a fresh process, one torch thread per model.
Results are kept in ``--work-dir``; ``--reuse`` takes them from there.
``--partial`` scores only ``--methods`` (and the baselines) and writes their
rows as a fragment (``<work-dir>/partial.md``) instead of the whole page;
``--data-seed N`` explains fresh held-out clips generated at seed ``N``
(the fresh-seed check: the goals must hold on clips never looked at).
"""
import json
import os
import os.path as osp
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))

from suite.evaluation import (evaluate_to_file, result_path,  # noqa: E402
                              reusable, run_jobs)
from suite.figures import save_figures  # noqa: E402
from suite.report import (machine_line, partial_report,  # noqa: E402
                          render_report)
from suite.settings import ROOT, parse_args  # noqa: E402


def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    if args.worker:  # one model in this process (debugging)
        evaluate_to_file(args.worker, args)
        return 0
    t0 = time.time()
    load_start = os.getloadavg()[0]
    machine = machine_line()
    from mmxai.datasets.synthetic_benchmark import (
        BENCHMARK_SPLITS, generate_benchmark_dataset)
    sizes = None
    if args.data_seed is not None:  # fresh clips, same size and settings
        sizes = dict(test=(BENCHMARK_SPLITS['test'][0], args.data_seed))
    generate_benchmark_dataset(args.data_root, 'medium', splits=['test'],
                               sizes=sizes)
    missing = [n for n in args.models if not osp.isfile(
        osp.join(args.ckpt_dir, f'{n}_synthetic.pth'))]
    if missing:
        print(f'error: no checkpoint for {", ".join(missing)} in '
              f'{args.ckpt_dir}: run tools/benchmarks/'
              'train_benchmark_models.py first', file=sys.stderr)
        return 2
    os.makedirs(args.work_dir, exist_ok=True)
    queue = [n for n in args.models if not (args.reuse and reusable(n, args))]
    reused = [n for n in args.models if n not in queue]
    speed_out = osp.join(args.work_dir, 'speed.md')
    speed_reused = args.reuse and osp.isfile(speed_out)
    speed_cmd = None
    if not (args.skip_speed or speed_reused):
        if osp.isfile(speed_out):
            os.remove(speed_out)  # a failed run must not report old times
        speed_cmd = [sys.executable, osp.join(HERE, 'bench_speed.py'),
                     '--out', speed_out, *args.speed_args.split()]
    failed, speed_rc = run_jobs(queue, args, speed_cmd)
    if failed:
        print(f'error: the evaluation of {", ".join(failed)} failed',
              file=sys.stderr)
        return 1
    speed_md = ''
    if (speed_reused or speed_rc == 0) and osp.isfile(speed_out):
        with open(speed_out) as f:
            speed_md = f.read()
    results = {}
    for name in args.models:
        with open(result_path(args, name)) as f:
            results[name] = json.load(f)
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = ru.ru_utime + ru.ru_stime + sum(
        results[n].get('cpu_seconds', 0) for n in reused)
    acc_path = osp.join(args.ckpt_dir, 'accuracy.json')
    accuracy = {}
    if osp.isfile(acc_path):
        with open(acc_path) as f:
            accuracy = json.load(f)
    figs = save_figures(results, args.fig_dir, args.fig_prefix)
    elapsed = time.time() - t0
    elapsed += sum(results[n]['seconds'] for n in reused)
    if args.partial:
        report = partial_report(args, results, accuracy, elapsed, machine,
                                load_start, os.getloadavg()[0], cpu_s)
    else:
        report = render_report(args, results, accuracy, speed_md, elapsed,
                               machine, load_start, os.getloadavg()[0],
                               cpu_s, reused)
    os.makedirs(osp.dirname(args.out) or '.', exist_ok=True)
    with open(args.out, 'w') as f:
        f.write(report)
    print(report)
    print(f'[run_benchmarks] wrote {args.out} and {len(figs)} figures in '
          f'{elapsed / 60:.1f} min', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
