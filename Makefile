# The README's two commands: `make demo` (set up, export EdgeViT-XXS to every target, verify, benchmark
# on this host) and `make test` (set up, run the whole test suite).
.PHONY: setup demo test
setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/edgevit-export --model edgevit_xxs --target all --out out/edgevit_xxs

test: setup
	.venv/bin/python -m pytest -q
