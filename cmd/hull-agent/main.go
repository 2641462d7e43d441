// Command hull-agent is the init of hull's sandbox VMs: the guest image
// holds it as /init, and it serves the agent API to the host. Build it
// static (CGO_ENABLED=0) and stamp it:
//
//	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=v0.1.0 -X main.commit=$(git rev-parse HEAD)" ./cmd/hull-agent
package main

import "github.com/hull-runtime/hull/internal/guest/agent"

// Set at build time with -ldflags -X.
var (
	version = "dev"
	commit  = ""
)

func main() {
	agent.Main(version, commit)
}
