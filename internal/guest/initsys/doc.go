// Package initsys does what the kernel expects of PID 1 and what a minimal
// initramfs leaves undone: it mounts the pseudo file systems, gives /dev the
// links programs take for granted, reaps orphaned processes without stealing
// the exit statuses of the processes the agent starts, and ends the VM.
//
// Everything here acts on the whole guest; nothing is safe to run on a
// developer's machine except the reaper.
package initsys
