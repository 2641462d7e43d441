package cli

import (
	"fmt"
	"io"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli"

	agent "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/version"
)

var versionCommand = cli.Command{
	Name:  "version",
	Usage: "print the version",
	Action: func(c *cli.Context) error {
		printVersion(c.App.Writer)
		return nil
	},
}

// printVersion writes what `runc --version` writes, in its format (tools
// such as podman show it as the runtime's version), plus the agent API.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "hull version %s\n", version.Version)
	if version.Commit != "" {
		fmt.Fprintf(w, "commit: %s\n", version.Commit)
	}
	fmt.Fprintf(w, "spec: %s\n", specs.Version)
	fmt.Fprintf(w, "agent api: %d\n", agent.APIVersion)
	fmt.Fprintf(w, "go: %s\n", runtime.Version())
}
