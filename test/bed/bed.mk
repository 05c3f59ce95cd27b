# Makefile fragment for ferry's local test bed (test/bed/), included from the
# top Makefile. The bed is a real Kubernetes control plane with ECI-like
# virtual nodes (kwok), redis-server and a registry, all on loopback; tests
# find it through test/.bed/env (package test/testbed).

TESTBED_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

.PHONY: testbed-tools testbed-up testbed-down testbed-status

testbed-tools: ## Build the test bed's binaries (etcd, Kubernetes, kwok, helm) into test/tools/bin
	$(TESTBED_MK_DIR)/build-tools.sh

testbed-up: testbed-tools ## Start the local test bed (Kubernetes + virtual nodes, Redis, registry); idempotent
	$(TESTBED_MK_DIR)/bed.sh up

testbed-down: ## Stop every process of the local test bed
	$(TESTBED_MK_DIR)/bed.sh down

testbed-status: ## Show the local test bed's processes, addresses and health
	$(TESTBED_MK_DIR)/bed.sh status
