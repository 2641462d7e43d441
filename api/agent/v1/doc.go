// Package agent is the ttRPC API between the hull host side and hull-agent,
// the PID 1 of every sandbox VM. It is generated from agent.proto by
// `make proto`; this file holds the hand-written constants both sides share.
package agent

// APIVersion is the level of this API. An agent answers Version with the
// level it implements and the host refuses a level it does not know.
//
// Level 2: DestroySandbox answers only after the guest has flushed what it
// holds for the host's files (the host then ends the VM at once), and
// StartContainer only once the container's program runs.
//
// Level 3: CreateContainer may carry the sandbox's set-up (sandbox) and
// the start of the process (start), and WaitProcess a flush (sync). An
// agent of level 2 would drop those fields unread, leaving a container
// that never starts.
//
// Level 4: the spec in CreateContainer keeps its startContainer hooks,
// which the guest runs in the container (with bundle, the host's bundle
// path, for their state). An agent of level 3 would drop them.
// ListProcesses answers with what `ps -ef` shows of each process too.
const APIVersion = 4

// SerialPortName is the name of the virtio-serial port that carries the API;
// the guest finds the port by this name under /sys/class/virtio-ports.
const SerialPortName = "hull.agent.0"

// VsockPort is the vsock port the agent listens on when the VM has vsock.
const VsockPort = 1024

// IOPortName is the virtio-serial port that carries the IO session: a
// yamux session whose streams are the standard streams of processes, each
// flow-controlled on its own so that a slow reader slows only its writer.
// Keeping it off the API port keeps control calls quick under heavy output.
const IOPortName = "hull.io.0"

// IOVsockPort is the vsock port of the IO session when the VM has vsock.
const IOVsockPort = 1025

// SharedMountPoint is where the agent mounts the sandbox's shared
// directory; container rootfs and bind mount sources are below it.
const SharedMountPoint = "/run/hull/shared"

// MaxStreamHeader bounds a StreamHeader message.
const MaxStreamHeader = 4096

// AutomountAnnotation, in a spec the host sends, lists (one per line) the
// guest paths of virtio-fs submounts below a read-only bind's source: the
// agent opens each before it creates the container, so that the guest
// mounts them while the source is still writable where the host says so.
// A submount the guest mounts later, on first use through the
// container's read-only bind, would take that bind's read-only flag
// (runc's "ro" is the top mount's only).
const AutomountAnnotation = "org.hull-runtime.automount"

// MaxAutomounts bounds the paths of AutomountAnnotation.
const MaxAutomounts = 256
