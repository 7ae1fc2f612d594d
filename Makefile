PYTHON ?= python

.PHONY: setup test run smoke bench

# the two install lines of the README
setup:
	$(PYTHON) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PYTHON) -m pip install -e ".[dev]"

test:
	$(PYTHON) -m pytest -q

run:
	$(PYTHON) -m longtail.run

smoke:
	$(PYTHON) -m longtail.run experiment=ce_cifar10 debug=smoke

bench:
	$(PYTHON) -m longtail.bench --method erm,ldam_drw,balanced_softmax,crt,lws,ride,drolt,diffnet,diffnet_las,bns,ipdpp --json bench.json
