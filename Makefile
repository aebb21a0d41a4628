# litesam-pl: every entry point a user needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
RECIPE ?=
ARGS ?=
DEVICE ?= cpu
SHARED ?= ../shared
# PyTorch wheel variant for make install: empty = what pip finds by default; cpu, cu126, cu128, cu130 = that build
TORCH_VARIANT ?=
TORCH_INDEX = $(if $(TORCH_VARIANT),--index-url https://download.pytorch.org/whl/$(TORCH_VARIANT),)

.DEFAULT_GOAL := help
.PHONY: help install lock test test-fast smoke demo train-backbone train-autoppn train-litesam table2-smoke \
        real-data real-smoke bench-complexity bench-dataloader bench-segevery bench-coco bench-lvis bench-bsds bench-ci bench-train-step gpu-check app browser clean

help: ## list every target with one line each
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-18s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install the package editable with dev extras, pinned (idempotent)

$(STAMP): setup.cfg pyproject.toml requirements/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# torch first, pinned, from pip's configured index (a local wheel cache or PyPI);
	@# TORCH_VARIANT=cpu|cu126|cu128|cu130 takes PyTorch's own wheel index instead (docs/training.md: which driver each needs)
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1 $(TORCH_INDEX)
	$(PIP) install -q -c requirements/constraints.txt -e '.[dev]'
	@# lvis without its dependencies: they would pull the GUI opencv-python over the headless one
	$(PIP) install -q --no-deps lvis==0.5.3
	@touch $(STAMP)
	@echo "installed into $(VENV)"

lock: install ## rewrite requirements/constraints.txt from the current venv
	@{ echo "# Full pin set (pip constraints) for make install; regenerate with: make lock"; \
	  $(PIP) freeze | grep -v -E '^(-e|litesam)'; } > requirements/constraints.txt

test: install ## install if needed, then run the whole test suite
	$(PY) -m pytest -q

test-fast: install ## the suite without tests marked slow
	$(PY) -m pytest -q -m "not slow"

data/smoke/shards/val/manifest.json: | install
	$(PY) -m data_prep.synthetic --out data/smoke/raw/train --num-images 960 --seed 1 --images-per-tar 120 --size 192 192 --preset smoke
	$(PY) -m data_prep.synthetic --out data/smoke/raw/val --num-images 48 --seed 2 --images-per-tar 24 --size 192 192 --preset smoke
	$(PY) -m data_prep.sa1b --src data/smoke/raw/train --out data/smoke/shards/train --max-side 512 --fraction 1.0 --shard-size 120 --workers 2
	$(PY) -m data_prep.sa1b --src data/smoke/raw/val --out data/smoke/shards/val --max-side 512 --fraction 1.0 --shard-size 24 --workers 2

smoke-data: data/smoke/shards/val/manifest.json ## synthetic SA-1B-format data -> WebDataset shards for the smoke recipes

smoke: install smoke-data ## the three paper recipes at smoke scale on CPU (runs/smoke/<backbone|autoppn|litesam>/)
	$(VENV)/bin/litesam fit --config recipes/backbone_1box.yaml --config recipes/smoke/backbone_1box.yaml $(ARGS)
	$(VENV)/bin/litesam fit --config recipes/autoppn.yaml --config recipes/smoke/autoppn.yaml $(ARGS)
	$(VENV)/bin/litesam fit --config recipes/litesam.yaml --config recipes/smoke/litesam.yaml $(ARGS)

# Real photographs (DATA= the folder holding bsds500/ and coco2017_subset/, default ../shared/data): BSDS500
# train+val human segmentations and COCO train2017 instances -> SA-1B-format tars -> 512-px shards, split by hash
# (train 0-0.9, val 0.9-1; BSDS test and COCO val stay held out for the benchmarks).
REAL_DATA = $(or $(DATA),$(SHARED)/data)
REAL_PREP = --max-side 512 --shard-size 100 --workers 2 --no-progress

data/real/shards/val/manifest.json: | install
	@test -d $(REAL_DATA)/bsds500 -a -d $(REAL_DATA)/coco2017_subset || \
	  { echo "error: make real-data needs $(REAL_DATA)/bsds500 and $(REAL_DATA)/coco2017_subset (set DATA=)"; exit 2; }
	$(PY) -m data_prep.bsds_to_sa1b --root $(REAL_DATA)/bsds500 --splits train val --out data/real/raw/bsds --no-progress
	$(PY) -m data_prep.coco_to_sa1b --ann $(REAL_DATA)/coco2017_subset/annotations/instances_train2017_subset.json \
	  --images $(REAL_DATA)/coco2017_subset/train2017 --out data/real/raw/coco --prefix coco --no-progress
	$(PY) -m data_prep.sa1b --src data/real/raw/bsds data/real/raw/coco --out data/real/shards/train --hash-range 0 0.9 $(REAL_PREP)
	$(PY) -m data_prep.sa1b --src data/real/raw/bsds data/real/raw/coco --out data/real/shards/val --hash-range 0.9 1 $(REAL_PREP)

real-data: data/real/shards/val/manifest.json ## real photos (BSDS500 train+val, COCO train; DATA=) -> shards for make real-smoke

real-smoke: install real-data ## the three paper recipes on real photos, CPU scale (runs/real-smoke/<backbone|autoppn|litesam>/)
	$(VENV)/bin/litesam fit --config recipes/backbone_1box.yaml --config recipes/real/backbone_1box.yaml $(ARGS)
	$(VENV)/bin/litesam fit --config recipes/autoppn.yaml --config recipes/real/autoppn.yaml $(ARGS)
	$(VENV)/bin/litesam fit --config recipes/litesam.yaml --config recipes/real/litesam.yaml $(ARGS)

table2-smoke: install smoke-data ## Table 2's eight AutoPPN combinations at smoke scale (after make smoke) -> results/table2.json
	$(PY) -m benchmarks.table2 --json results/table2.json $(ARGS)

SKIMAGE_DATA = $(shell $(PY) -c "import os, skimage.data; print(os.path.dirname(skimage.data.__file__))")
DEMO_PHOTOS = $(addprefix $(SKIMAGE_DATA)/,astronaut.png coffee.png chelsea.png rocket.jpg motorcycle_left.png) \
  $(wordlist 1,3,$(sort $(wildcard $(SHARED)/data/coco2017_subset/val2017/*.jpg))) \
  $(wordlist 1,2,$(sort $(wildcard $(SHARED)/data/bsds500/images/test/*.jpg)))
# the demo's own run folder: training (both overlays below write their checkpoints and logs here), SegEvery and
# the latency table; make smoke's runs/smoke/ is read (after make smoke), never written
DEMO_RUN = runs/demo
DEMO_EPOCHS ?= 2
# the smoke recipe's schedule (2 x 960 samples); fewer (e.g. DEMO_SAMPLES=720) is faster but too short to show masks
DEMO_SAMPLES ?= 960
# a minutes-old model is not confident yet: show masks above looser filters than SAM's 0.88 / 0.95
DEMO_FILTERS ?= --pred-iou-thresh 0.5 --stability-score-thresh 0.8 --score-threshold 0
# the joint recipe at smoke scale from the AutoPPN smoke run when there is one (recipes/smoke/demo_from_smoke.yaml:
# recipes/smoke/litesam.yaml in the demo's run folder), else from scratch at the demo's scale (recipes/smoke/demo.yaml:
# 128 px, lr 5e-4); both overlays change only scale, the loss is the paper recipe's
DEMO_OVERLAY = $(if $(wildcard runs/smoke/autoppn/last.ckpt),recipes/smoke/demo_from_smoke.yaml,recipes/smoke/demo.yaml)

demo: install smoke-data ## the newcomer's demo: synthetic SA-1B -> shards -> train Lite-SAM -> SegEvery on photos -> latency vs grid
	@echo "== [1/4] synthetic SA-1B-format data and WebDataset shards: data/smoke/ (done)"
	@echo "== [2/4] training joint Lite-SAM: recipes/litesam.yaml + $(DEMO_OVERLAY)"
	$(VENV)/bin/litesam fit --config recipes/litesam.yaml --config $(DEMO_OVERLAY) --trainer.accelerator=auto \
	  --trainer.default_root_dir=$(DEMO_RUN) --trainer.max_epochs=$(DEMO_EPOCHS) \
	  --trainer.check_val_every_n_epoch=$(DEMO_EPOCHS) --data.epoch_samples=$(DEMO_SAMPLES) $(ARGS)
	@echo "== [3/4] SegEvery with the trained model on real photographs"
	$(VENV)/bin/litesam segment-everything $(DEMO_PHOTOS) --ckpt $(DEMO_RUN)/last.ckpt --out $(DEMO_RUN)/segevery \
	  $(DEMO_FILTERS)
	@echo "== [4/4] latency: AutoPPN vs grid search on the same model (make bench-ci)"
	$(PY) -m benchmarks.ci --json $(DEMO_RUN)/bench-ci.json --md $(DEMO_RUN)/bench-ci.md
	@$(PY) -m benchmarks.demo_report --run $(DEMO_RUN) --segevery $(DEMO_RUN)/segevery --bench $(DEMO_RUN)/bench-ci.json

# train-*: the stage's paper recipe (BASE= replaces it), then each overlay of RECIPE= in order (later files win), then
# ARGS=, e.g. make train-autoppn RECIPE=recipes/ablations/table2/stem-conv_gt-gaussian_groups-1.yaml
#      make train-litesam RECIPE="recipes/litesam_r1024.yaml recipes/smoke/litesam.yaml"
train-backbone: install ## backbone-only 1-box prompt training (paper recipe; RECIPE= overlays, BASE=, ARGS=)
	$(VENV)/bin/litesam fit $(foreach c,$(or $(BASE),recipes/backbone_1box.yaml) $(RECIPE),--config $(c)) $(ARGS)

train-autoppn: install ## AutoPPN training (paper recipe; RECIPE= overlays, BASE=, ARGS=)
	$(VENV)/bin/litesam fit $(foreach c,$(or $(BASE),recipes/autoppn.yaml) $(RECIPE),--config $(c)) $(ARGS)

train-litesam: install ## joint Lite-SAM training (paper recipe; RECIPE= overlays, BASE=, ARGS=)
	$(VENV)/bin/litesam fit $(foreach c,$(or $(BASE),recipes/litesam.yaml) $(RECIPE),--config $(c)) $(ARGS)

bench-complexity: install ## params and MACs of every registry model vs the paper -> results/complexity.json
	$(PY) -m benchmarks.complexity --json results/complexity.json $(ARGS)

bench-dataloader: install smoke-data ## loader samples/s with AutoPPN targets at 640 for 0/1/2 workers
	$(PY) -m benchmarks.dataloader --shards data/smoke/shards/train --json results/dataloader.json $(ARGS)

bench-segevery: install ## SegEvery latency: AutoPPN vs grid search, per phase (DEVICE=cpu|cuda)
	$(PY) -m benchmarks.segevery --device $(DEVICE) --json results/segevery-$(DEVICE).json $(ARGS)

bench-coco: install ## COCO val2017 mIoU / AP / AR@1000 (ARGS='--ann ... --images ... --ckpt ...')
	$(PY) -m benchmarks.coco --ann $(or $(ANN),$(SHARED)/data/coco2017_subset/annotations/instances_val2017_subset.json) \
	  --images $(or $(IMAGES),$(SHARED)/data/coco2017_subset/val2017) --json results/coco.json $(ARGS)

bench-lvis: install ## LVIS val mIoU / AP (ARGS='--ann ... --images ... --ckpt ...')
	$(PY) -m benchmarks.lvis --ann $(or $(ANN),$(SHARED)/data/lvis_v0.5_val100/annotations/lvis_v0.5_val100_subset.json) \
	  --images $(or $(IMAGES),$(SHARED)/data/lvis_v0.5_val100/val2017) --json results/lvis.json $(ARGS)

bench-bsds: install ## BSDS500 edge ODS/OIS/AP/R50 (DATA= folder holding bsds500/; ARGS='--detector canny' or '--ckpt ...')
	$(PY) -m benchmarks.bsds --data $(or $(DATA),$(SHARED)/data)/bsds500 --split test --json results/bsds.json \
	  --plot results/bsds_pr.png $(or $(ARGS),--detector canny)

bench-train-step: install smoke-data ## training-step cost of the 3 paper recipes: ms/step, samples/s, memory, ops (DEVICE=cpu|cuda; ARGS=)
	$(PY) -m benchmarks.train_step --shards data/smoke/shards/train --device $(DEVICE) --json results/train_step.json $(ARGS)

gpu-check: install ## one-shot GPU check (env, SegEvery, training steps, DDP, loader) -> OUT=results/gpu_check (CPU mode without a GPU)
	$(PY) -m benchmarks.gpu_check --out $(or $(OUT),results/gpu_check) $(ARGS)

bench-ci: install ## fast CPU regression guard: AutoPPN >= 2.5x faster than grid search (results/bench-ci.*)
	$(PY) -m benchmarks.ci --json results/bench-ci.json --md results/bench-ci.md $(ARGS)

# the page's model: CKPT= (a `litesam export` file or a Lightning checkpoint; random weights without it), e.g.
#   make app CKPT=runs/demo/last.ckpt ARGS='--compare runs/smoke/litesam/last.ckpt --port 7861'
app: install ## a local web page to look at a model: SegEvery, prompts, compare (CKPT=, ARGS=; http://127.0.0.1:7860)
	$(VENV)/bin/litesam app $(if $(CKPT),--ckpt $(CKPT),) $(ARGS)

browser: ## optional, root + Debian: Chromium + chromedriver so tests/web/test_browser.py runs (it skips without them)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	else (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "make browser: could not install Debian's chromium (the browser test will skip and say so)"; fi

clean: ## remove run outputs and caches (keeps .venv)
	rm -rf runs results data/smoke data/real .pytest_cache wandb lightning_logs
