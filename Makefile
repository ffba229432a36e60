# One command each: set up, run the offline demo, run the tests.
PY ?= .venv/bin/python

setup:
	python3 -m venv .venv
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt

demo:
	$(PY) train.py --config configs/demo_ko.py

test:
	$(PY) -m pytest -q -n 2

.PHONY: setup demo test
