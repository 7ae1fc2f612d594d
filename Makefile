PYTHON ?= python

.PHONY: setup lint test test-fast run smoke bench table

# the two install lines of the README
setup:
	$(PYTHON) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PYTHON) -m pip install -e ".[dev]"

# pyflakes, pycodestyle and import order over the whole tree (pyproject.toml [tool.ruff]); CI runs it first
lint:
	$(PYTHON) -m ruff check .

# the README's test command (CI: PYTEST_ARGS=--durations=20 prints the 20 slowest tests)
test:
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

# the edit loop: every module, no test marked slow (training runs, subprocesses, DDP, real data, the bench)
test-fast:
	$(PYTHON) -m pytest -q -m "not slow" $(PYTEST_ARGS)

run:
	$(PYTHON) -m longtail.run

smoke:
	$(PYTHON) -m longtail.run experiment=ce_cifar10 debug=smoke

bench:
	$(PYTHON) -m longtail.bench --method erm,ldam_drw,balanced_softmax,crt,lws,ride,drolt,diffnet,diffnet_las,bns,ipdpp --json bench.json

# the committed CIFAR-10-LT table: every method, seeds 0 and 1, suite=cifar10_lt_cpu (benchmarks/results/; README "Measured here")
table:
	bash benchmarks/suite_cpu.sh
