// Command hull is the runc-compatible command line of the hull runtime.
package main

import (
	"os"

	"github.com/hull-runtime/hull/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args)) }
