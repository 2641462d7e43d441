package cli

import (
	"encoding/json"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"github.com/urfave/cli"
)

var featuresCommand = cli.Command{
	Name:  "features",
	Usage: "print what this runtime supports, as the OCI features JSON",
	Action: func(c *cli.Context) error {
		yes := true
		f := features.Features{
			OCIVersionMin: "1.0.0",
			OCIVersionMax: specs.Version,
			// Every hook runs on the host (see docs/architecture.md).
			Hooks: []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
			MountOptions: []string{"ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec", "relatime",
				"strictatime", "private", "rprivate", "shared", "rshared", "slave", "rslave"},
			Linux: &features.Linux{
				Namespaces: []string{"cgroup", "ipc", "mount", "network", "pid", "uts", "user"},
				Cgroup:     &features.Cgroup{V1: new(bool), V2: &yes},
				Seccomp:    &features.Seccomp{Enabled: &yes},
			},
			Annotations: map[string]string{"org.hull.vm": "one VM per container"},
		}
		b, _ := json.MarshalIndent(f, "", "    ")
		fmt.Println(string(b))
		return nil
	},
}
