// Package cli implements the hull command line: runc's verbs and flags, so
// that tools written for runc drive hull unchanged, plus hull's own verbs
// (check, image). One file per verb.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/version"
)

// Main runs the command line and returns the process exit status.
// logTimeFormat is RFC 3339 with milliseconds.
const logTimeFormat = "2006-01-02T15:04:05.000Z07:00"

func Main(args []string) int {
	app := cli.NewApp()
	app.Name = "hull"
	app.Usage = "run OCI containers, each pod in its own lightweight virtual machine"
	app.Version = version.Version
	// --version and -v, as runc has them (podman asks the runtime for its
	// version that way).
	cli.VersionPrinter = func(c *cli.Context) { printVersion(c.App.Writer) }
	app.ErrWriter = os.Stderr
	app.Flags = []cli.Flag{
		cli.BoolFlag{Name: "debug", Usage: "enable debug logging"},
		cli.StringFlag{Name: "log", Usage: "write logs to this file instead of stderr"},
		cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json"},
		cli.StringFlag{Name: "root", Usage: "root directory for container state (default: runtime.root of the config, /run/hull)"},
		cli.StringFlag{Name: "config", Usage: "configuration file (default: $" + config.EnvPath + " or " + config.DefaultPath + ")"},
		cli.BoolFlag{Name: "systemd-cgroup", Usage: "linux.cgroupsPath is systemd's slice:prefix:name; hull then leaves the host cgroup to the caller (limits apply in the guest)"},
		cli.StringFlag{Name: "criu", Usage: "not supported: checkpoints of VMs are not implemented", Hidden: true},
		cli.StringFlag{Name: "rootless", Value: "auto", Usage: "accepted for runc compatibility; hull needs root", Hidden: true},
	}
	app.Commands = []cli.Command{
		createCommand,
		startCommand,
		runCommand,
		stateCommand,
		killCommand,
		deleteCommand,
		listCommand,
		specCommand,
		execCommand,
		psCommand,
		pauseCommand,
		resumeCommand,
		updateCommand,
		featuresCommand,
		checkCommand,
		imageCommand,
		versionCommand,
		superviseCommand,
	}
	app.Before = setupLogging
	// runc's verbs that hull has not (events, checkpoint, restore) fail
	// with a word and status 1, as unknown verbs do under runc.
	app.CommandNotFound = func(c *cli.Context, name string) {
		fmt.Fprintf(os.Stderr, "hull: no command %q (checkpoint and restore of VMs and events are not implemented)\n", name)
		os.Exit(1)
	}
	// urfave/cli prints usage errors itself; runtime errors are printed
	// once, below, so that the exit status and message are ours.
	exit := 0
	app.ExitErrHandler = func(*cli.Context, error) {}
	if err := app.Run(args); err != nil {
		printError(err)
		exit = 1
		if e, ok := err.(exitCoder); ok && e.ExitCode() != 0 {
			exit = e.ExitCode()
		}
	}
	return exit
}

type exitCoder interface{ ExitCode() int }

func printError(err error) {
	msg := err.Error()
	if logToFile && msg != "" {
		// As runc: the --log file gets the error (podman reads a failed
		// runtime's error from there).
		log.L.Error(msg)
	} else {
		log.L.WithError(err).Debug("command failed")
	}
	if msg == "" {
		return
	}
	if logJSON && !logToFile {
		// As runc: with --log-format json and no --log, the error is a
		// JSON line on stderr, for a caller that parses it.
		logrus.Error(msg)
		return
	}
	fmt.Fprintf(os.Stderr, "hull: %s\n", msg)
}

// logToFile is set when --log names a file, which then gets the errors;
// logJSON when --log-format is json.
var logToFile, logJSON bool

func setupLogging(c *cli.Context) error {
	level := logrus.WarnLevel
	if c.GlobalBool("debug") {
		level = logrus.DebugLevel
	}
	logrus.SetLevel(level)
	switch f := c.GlobalString("log-format"); f {
	// Milliseconds tell where a start's time goes; seconds did not.
	case "text":
		// logfmt, as runc's: values with spaces quoted.
		logrus.SetFormatter(&logrus.TextFormatter{TimestampFormat: logTimeFormat})
	case "json":
		logrus.SetFormatter(&logrus.JSONFormatter{TimestampFormat: logTimeFormat})
		logJSON = true
	default:
		return fmt.Errorf("--log-format %q: must be text or json", f)
	}
	var out io.Writer = os.Stderr
	if p := c.GlobalString("log"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0o644)
		if err != nil {
			return fmt.Errorf("--log %s: %w", p, err)
		}
		out = f
		logToFile = true
	}
	logrus.SetOutput(out)
	return nil
}

// loadConfig reads the configuration the global flags point at. A file
// named by --config or $HULL_CONFIG must exist; the default one need not.
func loadConfig(c *cli.Context) (config.Config, error) {
	path := configPath(c)
	cfg, err := config.Load(path, path != config.DefaultPath)
	if err != nil {
		return cfg, err
	}
	if root := c.GlobalString("root"); root != "" {
		cfg.Runtime.Root = root
	}
	if c.GlobalBool("debug") {
		cfg.Runtime.LogLevel = "debug"
	}
	return cfg, nil
}

func configPath(c *cli.Context) string { return config.Path(c.GlobalString("config")) }

func commandContext() context.Context {
	return log.WithLogger(context.Background(), log.L)
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
