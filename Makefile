# Convenience targets; the README's commands work without make.
.PHONY: demo test lint bench

.venv/bin/outreach: pyproject.toml
	python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'

demo: .venv/bin/outreach
	.venv/bin/outreach demo

test: .venv/bin/outreach
	.venv/bin/python -m pytest -q -n auto

lint: .venv/bin/outreach
	.venv/bin/ruff check outreach_cli tests bench db && .venv/bin/mypy outreach_cli

bench: .venv/bin/outreach
	.venv/bin/python -m bench
