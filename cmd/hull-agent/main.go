// Command hull-agent is the init of hull's sandbox VMs: the guest image
// holds it as /init, and it serves the agent API to the host. It is also
// the "runc init" of the containers it creates: libcontainer runs it again
// with the argument "init" in each new container.
//
// It links libcontainer's nsenter (cgo) and libseccomp, and must be built
// static, as the Makefile does:
//
//	CGO_ENABLED=1 go build -tags 'netgo osusergo seccomp' -trimpath \
//	  -ldflags '-s -w -linkmode external -extldflags "-static" -X main.version=v0.1.0' ./cmd/hull-agent
package main

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"

	_ "github.com/opencontainers/cgroups/devices"           // device cgroup rules (v1 and v2 eBPF)
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // cgo: joins namespaces before the Go runtime starts

	"github.com/hull-runtime/hull/internal/guest/agent"
)

// Set at build time with -ldflags -X.
var (
	version = "dev"
	commit  = ""
)

func init() {
	// A container's init, re-executed by libcontainer: nsenter's
	// constructor has set up the namespaces; Init finishes the setup and
	// executes the container's program. It does not return.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}

func main() {
	agent.Main(version, commit)
}
