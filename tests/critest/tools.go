//go:build tools

// Package critest pins cri-tools v1.37.0 for the critest and crictl builds
// (run.sh). Nothing imports these packages outside this file: it keeps
// `go mod tidy` from dropping the test-only dependencies of cmd/critest
// (ginkgo, gomega, pkg/benchmark), which `go test -c` needs.
package critest

import (
	_ "github.com/onsi/ginkgo/v2"
	_ "github.com/onsi/gomega"
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
	_ "sigs.k8s.io/cri-tools/pkg/benchmark"
	_ "sigs.k8s.io/cri-tools/pkg/validate"
)
