# The two commands of the README: `make demo` and `make test`.
# Both create .venv (once), install everything into it and run.
PYTHON ?= python3
# The torch version installed first; override for another Python: make test TORCH=2.5.1
TORCH ?= 2.13.0
# Where that torch comes from. Empty (default): pip's own configuration, which on
# this project's machines finds the local CPU wheel (pip config list: find-links).
# Elsewhere the public index's torch==$(TORCH) is the CUDA build (gigabytes of
# nvidia-* packages); opt in to the CPU build with
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
TORCH_PIP_ARGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mmxai-installed
PYTEST_ARGS ?=

.PHONY: demo test test-full install benchmark benchmark-models coverage clean

$(STAMP): setup.py requirements/runtime.txt requirements/tests.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIP_ARGS) "torch==$(TORCH)"
	$(PY) -m pip install -q -e ".[tests]"
	$(PY) -c "import mmxai, mmaction.models, torch; print('mmxai', mmxai.__version__, 'torch', torch.__version__)"
	touch $(STAMP)

install: $(STAMP)

# Two runs: one clip (Grad-CAM, work_dirs/demo/) and a whole 91 s surgical
# procedure window by window (saliency) and over its whole feature sequence
# (which moments drive each window's phase: occlusion, IG, frame Shapley),
# combined in work_dirs/demo_surgical/: timeline, overlay video, index.html,
# sequence/ (demo/README.md says what the files are).
demo: $(STAMP)
	$(PY) tools/explain.py configs/demo/i3d_tiny_synthetic.py demo/i3d_tiny_synthetic.pth demo/demo.mp4 \
		--method gradcam --out-dir work_dirs/demo
	@echo "explaining the bundled procedure demo/surgical/video11.mp4 window by window and over its whole sequence ..."
	$(PY) tools/explain.py configs/surgical/resnet18s2_tcn_procedures.py \
		demo/surgical/phase_tcn_procedures.pth demo/surgical/video11.mp4 --windows --sequence \
		--gt demo/surgical/video11-phase.txt --method saliency --stride 2s --batch-size 8 \
		--no-resume --no-progress --out-dir work_dirs/demo_surgical

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests

# The slow sweeps: every family, every recognition config shipped with
# MMAction2 (CI runs it after `test`).
test-full: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "sweep or full_coverage" $(PYTEST_ARGS) tests

# Regenerate docs/benchmarks.md and docs/figures/ (< 30 min on 2 cores).
benchmark: $(STAMP)
	$(PY) tools/benchmarks/run_benchmarks.py

# Retrain the three benchmark models (checkpoints/benchmark/).
benchmark-models: $(STAMP)
	$(PY) tools/benchmarks/train_benchmark_models.py --jobs 3 --threads 1

# Regenerate docs/coverage.md (families x methods).
coverage: $(STAMP)
	$(PY) tools/coverage_matrix.py

clean:
	rm -rf $(VENV) work_dirs
