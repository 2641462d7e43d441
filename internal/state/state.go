// Package state keeps the state of containers run by the hull command
// line: one directory per container under the runtime root, a state file
// written atomically, and a flock that serialises the commands that change
// it. A container whose supervisor died is reported as stopped.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Status values, as the OCI runtime spec names them.
const (
	Creating = "creating"
	Created  = "created"
	Running  = "running"
	// Paused is runc's status of a frozen container (not in the spec).
	Paused  = "paused"
	Stopped = "stopped"
)

// File names inside a container's directory.
const (
	stateFile = "state.json"
	lockFile  = "lock"
	// SocketFile is the supervisor's control socket.
	SocketFile = "supervisor.sock"
	// SpecFile is the container's spec as it was created: delete runs the
	// poststop hooks and finds the host cgroup from it, as runc does from
	// the config it keeps, not from a bundle that may have changed or gone
	// since. It is read with oci.LoadBundle(Store.Dir(id)).
	SpecFile = "config.json"
)

// State is what hull remembers of a container.
type State struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Status      string            `json:"status"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Supervisor is the pid of the process that owns the VM and stands for
	// the container's process on the host; SupervisorStart is its start
	// time in clock ticks since boot, which tells a reused pid apart.
	Supervisor      int    `json:"supervisor"`
	SupervisorStart uint64 `json:"supervisorStart"`
	// QEMU and Virtiofsd are the pids of the VM's processes, for cleanup
	// after a supervisor crash.
	QEMU      int `json:"qemu,omitempty"`
	Virtiofsd int `json:"virtiofsd,omitempty"`
	// ExitStatus is set once the container stopped.
	ExitStatus *int `json:"exitStatus,omitempty"`
	Owner      int  `json:"owner"`
	// OCIVersion and Rootfs are the spec's ociVersion and root path (made
	// absolute), which `state` reports as runc does.
	OCIVersion string `json:"ociVersion,omitempty"`
	Rootfs     string `json:"rootfs,omitempty"`
}

var validID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.+-]{0,253}$`)

// ValidID reports whether id can name a container.
func ValidID(id string) error {
	if !validID.MatchString(id) || strings.Contains(id, "..") {
		return fmt.Errorf("invalid container id %q: use letters, digits and _.+-: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Store is the runtime root.
type Store struct{ root string }

// Open returns the store at root, creating it.
func Open(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("runtime root %s: %w", root, err)
	}
	return &Store{root: root}, nil
}

// Dir returns the directory of container id.
func (s *Store) Dir(id string) string { return filepath.Join(s.root, id) }

// Create makes the directory of a new container and locks it; it fails
// with ErrAlreadyExists if the id is taken.
func (s *Store) Create(id string) (*Handle, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	if err := os.Mkdir(s.Dir(id), 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("container %q already exists: %w", id, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	return s.lock(id, true)
}

// Lock locks an existing container's directory. A container removed while
// Lock waited for it (Remove unlinks the lock file before it lets go of
// the lock) is not found: the lock taken is then on a file no longer in
// the store, and whatever has the id now is another container.
func (s *Store) Lock(id string) (*Handle, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.Dir(id)); err != nil {
		return nil, fmt.Errorf("container %q does not exist: %w", id, errdefs.ErrNotFound)
	}
	return s.lock(id, false)
}

// LockLeftover locks the directory of id when it holds no state: what a
// crash or a failed removal left, which may lack its lock file too.
func (s *Store) LockLeftover(id string) (*Handle, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.Dir(id)); err != nil {
		return nil, fmt.Errorf("container %q does not exist: %w", id, errdefs.ErrNotFound)
	}
	return s.lock(id, true)
}

// lock takes the container's lock file, creating it only for a new
// container: opening an existing container's with O_CREAT could make a
// second lock file in a directory being removed, which nobody holds.
func (s *Store) lock(id string, create bool) (*Handle, error) {
	path := filepath.Join(s.Dir(id), lockFile)
	flags := os.O_RDWR | unix.O_CLOEXEC
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("container %q does not exist: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("container %s: lock: %w", id, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("container %s: lock: %w", id, err)
	}
	var held, now unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &held); err != nil {
		f.Close()
		return nil, fmt.Errorf("container %s: lock: %w", id, err)
	}
	if err := unix.Stat(path, &now); err != nil || now.Dev != held.Dev || now.Ino != held.Ino {
		f.Close()
		return nil, fmt.Errorf("container %q does not exist (removed while waiting for its lock): %w", id, errdefs.ErrNotFound)
	}
	return &Handle{store: s, id: id, lock: f}, nil
}

// List returns the ids of all containers, sorted.
func (s *Store) List() ([]string, error) {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && ValidID(e.Name()) == nil {
			if _, err := os.Stat(filepath.Join(s.root, e.Name(), stateFile)); err == nil {
				ids = append(ids, e.Name())
			}
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Read returns a container's state without locking, with the status
// corrected for a supervisor that is gone.
func (s *Store) Read(id string) (*State, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(s.Dir(id), stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("container %q does not exist: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("container %s: corrupt state: %w", id, err)
	}
	if st.Status != Stopped && !Alive(st.Supervisor, st.SupervisorStart) {
		st.Status = Stopped
	}
	return &st, nil
}

// Handle is a locked container directory.
type Handle struct {
	store *Store
	id    string
	lock  *os.File
}

// Dir returns the container's directory.
func (h *Handle) Dir() string { return h.store.Dir(h.id) }

// Save writes the state atomically.
func (h *Handle) Save(st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return h.write(stateFile, b)
}

// SaveSpec keeps the spec the container was created from (SpecFile).
func (h *Handle) SaveSpec(spec any) error {
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return h.write(SpecFile, b)
}

// write replaces the file name in the container's directory atomically.
func (h *Handle) write(name string, b []byte) error {
	tmp, err := os.CreateTemp(h.Dir(), ".state-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(h.Dir(), name))
}

// Unlock releases the lock.
func (h *Handle) Unlock() { h.lock.Close() }

// Remove deletes the container's directory: only the files hull puts
// there, then the directory itself. A directory that still holds anything
// else (a mount, say) is not removed and the error says why.
func (h *Handle) Remove() error {
	dir := h.Dir()
	_ = os.Remove(filepath.Join(dir, SocketFile))
	for _, sub := range []string{"vm", "shared"} {
		if err := os.Remove(filepath.Join(dir, sub)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("container %s: %w", h.id, err)
		}
	}
	// The state goes last: while anything else is left, the container
	// stays listed, and delete --force can find it again.
	for _, name := range []string{SpecFile, stateFile, lockFile} {
		_ = os.Remove(filepath.Join(dir, name))
	}
	h.lock.Close()
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("container %s: %w", h.id, err)
	}
	return nil
}

// StartTime returns a process's start time in clock ticks since boot.
func StartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Alive reports whether pid runs and is the process that started at start.
func Alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	got, err := StartTime(pid)
	if err != nil {
		return false
	}
	// A zombie is not alive: it will never act again.
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		i := strings.LastIndexByte(string(b), ')')
		if i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return false
		}
	}
	// No recorded start time: the pid alone could be anyone's by now.
	return start != 0 && got == start
}
