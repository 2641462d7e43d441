package cli

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli"

	agent "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/version"
)

var versionCommand = cli.Command{
	Name:  "version",
	Usage: "print the version",
	Action: func(c *cli.Context) error {
		fmt.Printf("hull version %s\n", version.Version)
		if version.Commit != "" {
			fmt.Printf("commit: %s\n", version.Commit)
		}
		fmt.Printf("agent api: %d\n", agent.APIVersion)
		fmt.Printf("go: %s\n", runtime.Version())
		return nil
	},
}
