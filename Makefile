# The README's two commands:
#   make demo  set up, export EdgeViT-XXS to every target with parity checks, then benchmark it on this host
#   make test  set up, run the whole test suite
.PHONY: setup demo test bench-core lint
setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/edgevit-export --model edgevit_xxs --target all --out out/edgevit_xxs
	.venv/bin/edgevit-bench sweep --device local --models edgevit_xxs --targets onnx,tflite,executorch,torch \
		--precision fp32 --threads 1,2 --warmup 5 --iterations 30 \
		--store out/bench.sqlite --out out/bench

# two pytest-xdist workers (this machine's 2 cores): each test file stays on one worker, longest files first
# (tests/conftest.py orders them; --no-loadscope-reorder keeps that order)
PYTEST_WORKERS ?= 2
test: setup bench-core
	.venv/bin/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# android_app/bench-core: compiled with the JDK's javac and unit-tested with JUnit 4 (no Gradle, no network)
bench-core:
	bash scripts/build_bench_core.sh

# ruff (lint + format check) and mypy on the package (configured in pyproject.toml)
lint:
	.venv/bin/ruff check edgevit_deploy
	.venv/bin/ruff format --check edgevit_deploy
	.venv/bin/mypy edgevit_deploy
