# meshd: the two commands a person needs are `make demo` and `make test`.
# Both set up what they need first, idempotently (npm ci when a lockfile
# changed, apt-get for missing Debian packages when root).
SHELL := /bin/bash
.DEFAULT_GOAL := help
NPM := npm --no-audit --no-fund --loglevel=error

.PHONY: help setup deps apt gen check test test-unit test-integration test-vm demo

help:
	@echo "make test   set up, then type check + lint + every test tier (unit on Node 20 and 24, integration, vm)"
	@echo "make demo   set up, then run a 3-host mesh in network namespaces (KEEP=1 leaves it running)"
	@echo "make check  type check + lint + generated-code freshness only"

setup: deps apt

deps: node_modules/.stamp scripts/node24/node_modules/.stamp

# `npm ci` refuses a lockfile that lacks other platforms' optional packages
# (biome, buf and esbuild ship one per platform), and a registry that serves
# only this platform's packages produces exactly such a lockfile. Then
# `npm install --no-save` installs the same locked versions without rewriting it.
node_modules/.stamp: package-lock.json
	$(NPM) ci 2>/dev/null || $(NPM) install --no-save
	@touch $@

scripts/node24/node_modules/.stamp: scripts/node24/package-lock.json
	cd scripts/node24 && $(NPM) ci
	@touch $@

apt:
	@bash scripts/setup-apt.sh

gen: deps
	npm run -s gen

check: deps
	npm run -s check

test: setup
	npm run -s check
	npm run -s test:unit
	npm run -s test:unit:node24
	npm run -s test:integration
	npm run -s test:vm

test-unit: deps
	npm run -s test:unit

test-integration: setup
	npm run -s test:integration

test-vm: setup
	npm run -s test:vm

# KEEP=1 leaves the cluster running (the environment carries it to the script).
demo: setup
	KEEP="$(KEEP)" node --import tsx scripts/demo/demo.ts
