package cli

import (
	"encoding/json"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"github.com/urfave/cli"
)

// The lists below are what the guest's container engine (libcontainer,
// and hull-init for what it takes over) accepts; features_test.go checks
// them against the libcontainer that the agent links, so that a runc
// update that adds one shows here. The CLI does not link libcontainer
// itself for them.
var (
	featureMountOptions = []string{"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
		"iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion",
		"nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "nosymfollow", "private", "ratime",
		"rbind", "rdev", "rdiratime", "relatime", "remount", "rexec", "rnoatime", "rnodev", "rnodiratime",
		"rnoexec", "rnorelatime", "rnostrictatime", "rnosuid", "rnosymfollow", "ro", "rprivate", "rrelatime",
		"rro", "rrw", "rshared", "rslave", "rstrictatime", "rsuid", "rsymfollow", "runbindable", "rw", "shared",
		"silent", "slave", "strictatime", "suid", "symfollow", "sync", "tmpcopyup", "unbindable"}
	// Not SCMP_ACT_NOTIFY: its listener would be on the host, and the
	// notification's descriptor cannot leave the VM.
	featureSeccompActions = []string{"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
		"SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"}
	featureSeccompOperators = []string{"SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
		"SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"}
	featureSeccompArchs = []string{"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_MIPS",
		"SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32",
		"SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_RISCV64", "SCMP_ARCH_S390",
		"SCMP_ARCH_S390X", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"}
	featureSeccompFlags = []string{"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
		"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"}
	featureCapabilities = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
		"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
		"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
		"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
		"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
		"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
		"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"}
)

var featuresCommand = cli.Command{
	Name:  "features",
	Usage: "print what this runtime supports, as the OCI features JSON",
	Action: func(c *cli.Context) error {
		yes := true
		f := features.Features{
			OCIVersionMin: "1.0.0",
			OCIVersionMax: specs.Version,
			// On the host, but startContainer's, in the container
			// (docs/architecture.md).
			Hooks:        []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
			MountOptions: featureMountOptions,
			Linux: &features.Linux{
				Namespaces:   []string{"cgroup", "ipc", "mount", "network", "pid", "uts", "user"},
				Capabilities: featureCapabilities,
				// The guest's cgroups are v2, whatever the host has.
				Cgroup: &features.Cgroup{V1: new(bool), V2: &yes},
				Seccomp: &features.Seccomp{Enabled: &yes, Actions: featureSeccompActions,
					Operators: featureSeccompOperators, Archs: featureSeccompArchs, KnownFlags: featureSeccompFlags,
					SupportedFlags: featureSeccompFlags},
			},
			Annotations: map[string]string{"org.hull.vm": "one VM per container"},
		}
		b, _ := json.MarshalIndent(f, "", "    ")
		fmt.Println(string(b))
		return nil
	},
}
