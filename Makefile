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

.DEFAULT_GOAL := help
.PHONY: help install lock test test-fast smoke demo train-backbone train-autoppn train-litesam \
        bench-complexity bench-dataloader bench-segevery bench-coco bench-lvis bench-bsds bench-ci clean

help: ## list every target with one line each
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-18s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install the package editable with dev extras, pinned (idempotent)

$(STAMP): setup.cfg pyproject.toml requirements/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# torch first: plain pip with Python 3.11 finds these on this machine's disk (other set-ups download them)
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
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

smoke: install smoke-data ## train the three smoke recipes on CPU (runs/smoke/<backbone|autoppn|litesam>/)
	$(VENV)/bin/litesam fit --config recipes/smoke/backbone_1box.yaml $(ARGS)
	$(VENV)/bin/litesam fit --config recipes/smoke/autoppn.yaml $(ARGS)
	$(VENV)/bin/litesam fit --config recipes/smoke/litesam.yaml $(ARGS)

SKIMAGE_DATA = $(shell $(PY) -c "import os, skimage.data; print(os.path.dirname(skimage.data.__file__))")
DEMO_PHOTOS = $(addprefix $(SKIMAGE_DATA)/,astronaut.png coffee.png chelsea.png rocket.jpg motorcycle_left.png) \
  $(wordlist 1,3,$(sort $(wildcard $(SHARED)/data/coco2017_subset/val2017/*.jpg))) \
  $(wordlist 1,2,$(sort $(wildcard $(SHARED)/data/bsds500/images/test/*.jpg)))
DEMO_RUN = runs/smoke/litesam
DEMO_EPOCHS ?= 2
# the smoke recipe's schedule (2 x 960 samples); fewer (e.g. DEMO_SAMPLES=720) is faster but too short to show masks
DEMO_SAMPLES ?= 960
# a minutes-old model is not confident yet: show masks above looser filters than SAM's 0.88 / 0.95
DEMO_FILTERS ?= --pred-iou-thresh 0.5 --stability-score-thresh 0.8 --score-threshold 0
# without the earlier smoke stages the joint recipe starts from scratch; from scratch the recipe's 192 px / box loss
# in grid cells lets the AutoPPN box term swamp the mask loss (0 masks on photos after 480 steps), so the demo trains
# from scratch in the 128 px set-up measured before (box loss in units of S, lr 5e-4, both prompts per mask)
DEMO_SCRATCH = --model.init_args.init_from=null --model.init_args.lr=0.0005 --model.init_args.ppn_box_unit=image \
  --model.init_args.prompt_split=false --model.init_args.focal_alpha=0.25 --model.init_args.min_train_mask_area=16 \
  --model.init_args.ppn_box_weighting=uniform \
  --data.img_size=128 --model.init_args.model_kwargs='{"img_size": 128}'
DEMO_INIT = $(if $(wildcard runs/smoke/autoppn/last.ckpt),,$(DEMO_SCRATCH))

demo: install smoke-data ## the newcomer's demo: synthetic SA-1B -> shards -> train Lite-SAM -> SegEvery on photos -> latency vs grid
	@echo "== [1/4] synthetic SA-1B-format data and WebDataset shards: data/smoke/ (done)"
	@echo "== [2/4] training the joint Lite-SAM smoke recipe (recipes/smoke/litesam.yaml)"
	$(VENV)/bin/litesam fit --config recipes/smoke/litesam.yaml --trainer.accelerator=auto --trainer.max_epochs=$(DEMO_EPOCHS) \
	  --trainer.check_val_every_n_epoch=$(DEMO_EPOCHS) --data.epoch_samples=$(DEMO_SAMPLES) $(DEMO_INIT) $(ARGS)
	@echo "== [3/4] SegEvery with the trained model on real photographs"
	$(VENV)/bin/litesam segment-everything $(DEMO_PHOTOS) --ckpt $(DEMO_RUN)/last.ckpt --out $(DEMO_RUN)/segevery \
	  $(DEMO_FILTERS)
	@echo "== [4/4] latency: AutoPPN vs grid search on the same model (make bench-ci)"
	$(PY) -m benchmarks.ci --json results/bench-ci.json --md results/bench-ci.md
	@$(PY) -m benchmarks.demo_report --run $(DEMO_RUN) --segevery $(DEMO_RUN)/segevery --bench results/bench-ci.json

train-backbone: install ## backbone-only 1-box prompt training (paper recipe; RECIPE=, ARGS= override)
	$(VENV)/bin/litesam fit --config $(or $(RECIPE),recipes/backbone_1box.yaml) $(ARGS)

train-autoppn: install ## AutoPPN training (paper recipe; RECIPE=, ARGS= override)
	$(VENV)/bin/litesam fit --config $(or $(RECIPE),recipes/autoppn.yaml) $(ARGS)

train-litesam: install ## joint Lite-SAM training (paper recipe; RECIPE=, ARGS= override)
	$(VENV)/bin/litesam fit --config $(or $(RECIPE),recipes/litesam.yaml) $(ARGS)

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

bench-bsds: install ## BSDS500 edge ODS/OIS/AP/R50 (ARGS='--detector canny' or '--ckpt ...')
	$(PY) -m benchmarks.bsds --data $(or $(DATA),$(SHARED)/data/bsds500) --split test --json results/bsds.json \
	  --plot results/bsds_pr.png $(or $(ARGS),--detector canny)

bench-ci: install ## fast CPU regression guard: AutoPPN >= 2.5x faster than grid search (results/bench-ci.*)
	$(PY) -m benchmarks.ci --json results/bench-ci.json --md results/bench-ci.md $(ARGS)

clean: ## remove run outputs and caches (keeps .venv)
	rm -rf runs results data/smoke .pytest_cache wandb lightning_logs
