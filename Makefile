# URDM Unmixing for QGIS — the one place for project commands.
#   make demo   set up, then unmix the built-in demo scene headless with qgis_process
#   make test   set up, then run the whole test suite on QGIS 3.22 (host) and QGIS 3.40 LTR
#               (Debian 13 root under build/, built on first use; scripts/qgis340_root.sh)
#   make test-fast  the same on QGIS 3.22 only (URDM_SKIP_QGIS340=1; CI never skips)
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST_ARGS ?=
QGIS_TMP_PROFILE := build/qgis-config
DEPLOY_PROFILE ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default

.PHONY: setup test test-fast qgis340-root translations plugin-checks qt6-fix demo qgis package deploy bench bench-full audit prior lint clean

setup:
	@bash scripts/setup.sh

test: setup
	@bash scripts/run_tests.sh $(PYTEST_ARGS)

test-fast: setup
	@URDM_SKIP_QGIS340=1 bash scripts/run_tests.sh $(PYTEST_ARGS)

# Build (or check the stamps of) the QGIS 3.40 root and its venv without testing.
qgis340-root:
	@bash scripts/qgis340_root.sh build

lint: setup
	$(PY) -m ruff check urdm_plugin tests benchmarks scripts

demo: setup
	@bash scripts/demo.sh

package: setup
	$(PY) scripts/package.py zip

# The translation template urdm_plugin/i18n/urdm_plugin.ts (pylupdate5).
translations: setup
	@bash scripts/make_translations.sh

# The plugin repository's upload checks (structure, bandit, detect-secrets) on the zip.
plugin-checks: package
	$(PY) scripts/plugin_checks.py dist/urdm_plugin.zip

# Qt6/QGIS 4: rewrite unscoped Qt and QGIS enums and exec_() in urdm_plugin/ (scoped forms
# work on QGIS 3.22 too). tests/test_qt6_clean.py fails while an edit is left to make.
qt6-fix: setup
	QT_QPA_PLATFORM=offscreen $(PY) scripts/qt6_scoped.py --fix urdm_plugin

deploy: setup
	$(PY) scripts/package.py deploy "$(DEPLOY_PROFILE)"

# The real QGIS desktop with the plugin deployed into a throwaway profile.
qgis: setup
	rm -rf $(QGIS_TMP_PROFILE)
	$(PY) scripts/package.py deploy $(QGIS_TMP_PROFILE)/profiles/default
	mkdir -p $(QGIS_TMP_PROFILE)/profiles/default/QGIS
	printf '[PythonPlugins]\nurdm_plugin=true\n' > $(QGIS_TMP_PROFILE)/profiles/default/QGIS/QGIS3.ini
	source scripts/qgis_env.sh && unset QT_QPA_PLATFORM && qgis --profiles-path $(QGIS_TMP_PROFILE) --noversioncheck $(QGIS_ARGS)

bench: setup
	$(PY) -m benchmarks.run_all --profile quick

bench-full: setup
	$(PY) -m benchmarks.run_all --profile full

# The issue-#13 list of bad inputs and faults against the CLI (bench_results/fault_audit.json).
audit: setup
	$(PY) scripts/fault_audit.py

# Retrain the shipped prior from its seed (resumes from build/prior if interrupted).
PRIOR_STEPS ?= $(shell $(PY) -c 'import json;print(json.load(open("urdm_plugin/weights/model_card.json"))["recipe"]["steps"])' 2>/dev/null || echo 40000)
PRIOR_CHANNELS ?= $(shell $(PY) -c 'import json;print(json.load(open("urdm_plugin/weights/model_card.json"))["architecture"]["base_channels"])' 2>/dev/null || echo 16)
prior: setup
	$(PY) -m urdm_plugin.core.diffusion.train --steps $(PRIOR_STEPS) --channels $(PRIOR_CHANNELS) --out build/prior --export build/prior/export
	@echo "Weights in build/prior/export; copy them to urdm_plugin/weights/ to ship them."

clean:
	@if findmnt -rn -o TARGET | grep -q "^$(CURDIR)/build/"; then \
	  echo "clean: something is still mounted under build/ (a QGIS 3.40 run?); not deleting through it" >&2; exit 2; fi
	rm -rf build dist .pytest_cache demo_output bench_results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
