// Package agent is the ttRPC API between the hull host side and hull-agent,
// the PID 1 of every sandbox VM. It is generated from agent.proto by
// `make proto`; this file holds the hand-written constants both sides share.
package agent

// APIVersion is the level of this API. An agent answers Version with the
// level it implements and the host refuses a level it does not know.
const APIVersion = 1

// SerialPortName is the name of the virtio-serial port that carries the API;
// the guest finds the port by this name under /sys/class/virtio-ports.
const SerialPortName = "hull.agent.0"

// VsockPort is the vsock port the agent listens on when the VM has vsock.
const VsockPort = 1024
