// Package chart holds the tests of the Helm chart in charts/ferry: helm lint,
// the rendered manifests checked object by object (replicas, leader
// election, probes, security, RBAC against test/bed/rbac-ferry.yaml, no
// secret in a ConfigMap), the values schema, ferry's own validation of the
// rendered configuration, and an install on the local test bed checked
// with `kubectl auth can-i`.
//
// The tests run the pinned helm (and, on the bed, kubectl) that
// test/bed/build-tools.sh builds into test/tools/bin; FERRY_HELM names
// another helm binary. Without helm the tests skip under -short and fail
// otherwise, saying what is missing.
package chart
