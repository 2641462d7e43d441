package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/network"
	"github.com/hull-runtime/hull/internal/state"
	"github.com/hull-runtime/hull/internal/storage"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

// RecordFile is the name, in a sandbox's run directory, of its Record.
const RecordFile = "sandbox.json"

// recordVersion is the Record layout this code writes and reads.
const recordVersion = 1

// maxRecordSize bounds the record file that Reclaim reads.
const maxRecordSize = 1 << 20

// Record is what a sandbox holds on the host, written by Boot to
// RecordFile as it acquires each thing (before it changes the host where
// it can: the shared directory and the network namespace are recorded
// before they are set up, processes as soon as they run), so that Reclaim
// can release it all after the process that owns the sandbox died.
type Record struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	// QEMU and Virtiofsd are the VM's processes.
	QEMU      *ProcessRecord `json:"qemu,omitempty"`
	Virtiofsd *ProcessRecord `json:"virtiofsd,omitempty"`
	// SharedDir is Options.SharedDir; View is the read-only view mounted
	// in it, which virtiofsd serves (container mounts are below it).
	SharedDir string `json:"sharedDir,omitempty"`
	View      string `json:"view,omitempty"`
	// Network is what network.Restore needs to put the namespace back.
	Network *network.Record `json:"network,omitempty"`
}

// ProcessRecord names a process so that a recycled pid is never taken for
// it: Start is its start time in clock ticks since boot (state.StartTime).
type ProcessRecord struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// processRecord records a running process, or nil if it is gone already.
func processRecord(pid int) *ProcessRecord {
	start, err := state.StartTime(pid)
	if err != nil || pid <= 0 {
		return nil
	}
	return &ProcessRecord{Pid: pid, Start: start}
}

// validate checks a record read back: it says what Reclaim unmounts and
// removes, so it must name nothing else.
func (r *Record) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("sandbox record: %s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
	}
	if r.Version != recordVersion {
		return bad("version %d, want %d", r.Version, recordVersion)
	}
	if r.SharedDir != "" {
		if !filepath.IsAbs(r.SharedDir) || filepath.Clean(r.SharedDir) != r.SharedDir || r.SharedDir == "/" {
			return bad("shared directory %q", r.SharedDir)
		}
	}
	if r.View != "" && filepath.Dir(r.View) != r.SharedDir {
		return bad("view %q is not in the shared directory %q", r.View, r.SharedDir)
	}
	return nil
}

// writeRecord replaces the record in runDir atomically, readable by its
// owner only. It is not synced: what it describes does not outlive the
// host's boot.
func writeRecord(runDir string, r *Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(runDir, ".sandbox-*.json") // 0600
	if err != nil {
		return fmt.Errorf("sandbox record: %w", err)
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(runDir, RecordFile))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("sandbox record: %w", err)
	}
	return nil
}

// ReadRecord reads the record in runDir; errdefs.ErrNotFound (and
// os.ErrNotExist) when there is none. The file must be a regular file of
// this user that no one else can write.
func ReadRecord(runDir string) (*Record, error) {
	path := filepath.Join(runDir, RecordFile)
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("sandbox record %s: %w: %w", path, err, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox record: %w", err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("sandbox record: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("sandbox record %s: not a regular file of uid %d writable by it alone: %w", path, os.Geteuid(), errdefs.ErrInvalidArgument)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxRecordSize+1))
	if err != nil {
		return nil, fmt.Errorf("sandbox record: %w", err)
	}
	if len(b) > maxRecordSize {
		return nil, fmt.Errorf("sandbox record %s: over %d bytes: %w", path, maxRecordSize, errdefs.ErrInvalidArgument)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("sandbox record %s: %w: %w", path, err, errdefs.ErrInvalidArgument)
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// saveRecord writes the sandbox's record as it stands.
func (s *Sandbox) saveRecord() error { return writeRecord(s.runDir, &s.rec) }

// Reclaim releases what a sandbox whose owner died holds on the host,
// from the record in runDir (the sandbox's Options.RunDir): it kills QEMU
// and virtiofsd if they still run (a recycled pid is never killed: the
// start time must match), unmounts everything in the shared directory and
// removes it, puts the network namespace back (network.Restore), and
// removes the run directory's files and the directory. Without a record
// there is nothing to release and only the run directory goes. Where a
// step fails, the record stays for another call, which retries it all;
// once everything is released a call is a no-op. The caller must know the
// sandbox's owner is gone and run no other Reclaim of the same directory
// at the same time.
func Reclaim(ctx context.Context, runDir string) error {
	rec, err := ReadRecord(runDir)
	if errdefs.IsNotFound(err) {
		return removeRunDir(runDir)
	}
	if err != nil {
		return err
	}
	logger := log.G(ctx).WithField("sandbox", rec.ID)
	var errs []error
	for _, p := range []struct {
		what string
		rec  *ProcessRecord
	}{{"qemu", rec.QEMU}, {"virtiofsd", rec.Virtiofsd}} {
		if err := killRecorded(ctx, p.rec); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.what, err))
		}
	}
	if rec.SharedDir != "" {
		errs = append(errs, reclaimShared(rec.SharedDir))
	}
	// After QEMU: its taps go with it.
	if rec.Network != nil {
		errs = append(errs, network.Restore(*rec.Network))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reclaiming sandbox %s: %w", rec.ID, err)
	}
	logger.Debug("sandbox reclaimed")
	return removeRunDir(runDir)
}

// reclaimShared unmounts everything in a shared directory (the view and
// the container mounts in it), then the directory's bind on itself, and
// removes the directory's tree.
func reclaimShared(dir string) error {
	if err := storage.UnmountUnder(dir); err != nil {
		return err
	}
	if err := storage.UnmountSelf(dir); err != nil {
		return err
	}
	// Detached mounts leave the namespace at once; a mount that is still
	// there (a second one on dir itself, one that came back) stops the
	// removal.
	if left, err := storage.MountsAt(dir); err != nil {
		return err
	} else if len(left) > 0 {
		return fmt.Errorf("shared directory %s: %s is still mounted", dir, left[0])
	}
	if err := storage.RemoveEmptyTree(dir); err != nil {
		return fmt.Errorf("shared directory: %w", err)
	}
	return nil
}

// removeRunDir removes the files the sandbox makes in its run directory,
// the record last, then the directory; a directory that holds anything
// else stays, and the error says so.
func removeRunDir(dir string) error {
	tmps, _ := filepath.Glob(filepath.Join(dir, ".sandbox-*.json"))
	for _, f := range append(tmps, filepath.Join(dir, qemu.ConsoleLog), filepath.Join(dir, storage.VirtiofsdSocket), filepath.Join(dir, qemu.GDBSocket), filepath.Join(dir, RecordFile)) {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("sandbox run directory: %w", err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sandbox run directory: %w", err)
	}
	return nil
}

// killTimeout bounds the wait for a killed process to exit.
const killTimeout = 10 * time.Second

// killRecorded kills the recorded process, if it is still that process
// and alive, and waits, bounded, for it to exit.
func killRecorded(ctx context.Context, p *ProcessRecord) error {
	if p == nil || p.Pid <= 0 || p.Start == 0 {
		return nil
	}
	// The pidfd pins the process that had the pid when it was opened;
	// checking its start time after the open makes the signal go to the
	// recorded process or to none.
	fd, err := unix.PidfdOpen(p.Pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pid %d: pidfd: %w", p.Pid, err)
	}
	defer unix.Close(fd)
	if !state.Alive(p.Pid, p.Start) {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("pid %d: kill: %w", p.Pid, err)
	}
	// A pidfd polls readable once its process has exited, child or not.
	deadline := time.Now().Add(killTimeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 100)
		if n > 0 {
			return nil
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("pid %d: poll: %w", p.Pid, err)
		}
	}
	return fmt.Errorf("pid %d did not exit after SIGKILL", p.Pid)
}
