// Package agent is hull-agent: the PID 1 of every sandbox VM and the server
// of the agent API. Main runs the boot sequence (file systems, console and
// logging, kernel modules, reaper, channels) and then serves the API on each
// channel the VM has until the host asks for the power-off.
//
// PID 1 must never exit, since the kernel panics when it does: every fatal
// error ends in a power-off instead.
package agent
