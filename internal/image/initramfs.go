package image

import (
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

// Paths inside the guest that the agent relies on.
const (
	// ModulesLoadPath lists the modules the agent loads, in order, one per
	// line: "<name> <absolute path of the .ko>".
	ModulesLoadPath = "/etc/hull/modules.load"
	// ReleasePath holds the kernel release the modules belong to.
	ReleasePath = "/etc/hull/image-release"
)

// Fixed modes, so the archive does not depend on the umask or on the modes
// of the files it was built from.
const (
	modeDir     = 0o040755
	modeTmpDir  = 0o041777
	modeFile    = 0o100644
	modeExec    = 0o100755
	modeCharDev = 0o020600
)

// emptyDirs are mount points and directories the agent expects before it has
// mounted anything.
var emptyDirs = []string{"dev", "etc", "mnt", "proc", "run", "sys", "tmp"}

// cpioEntry is one file of the initramfs.
type cpioEntry struct {
	name      string // without a leading '/'
	mode      uint32
	rdevMajor uint32
	rdevMinor uint32
	data      []byte
	file      string // read from this host file instead of data
	size      int64  // of file
}

// initramfsSpec is what goes into the initramfs.
type initramfsSpec struct {
	Release   string
	AgentPath string
	AgentSize int64
	// InitPath is hull-init's host file; empty leaves it out.
	InitPath string
	InitSize int64
	Modules  []module          // load order
	Data     map[string][]byte // module contents by module.Path
}

// modulePath is where a module lives in the guest.
func modulePath(release string, m module) string {
	return "/lib/modules/" + release + "/" + m.Path
}

// modulesLoad is the text of ModulesLoadPath.
func modulesLoad(release string, mods []module) []byte {
	var b strings.Builder
	for _, m := range mods {
		fmt.Fprintf(&b, "%s %s\n", m.Name, modulePath(release, m))
	}
	return []byte(b.String())
}

// entries lists every file of the initramfs, sorted by name, with a
// directory entry for every parent: the kernel unpacks the archive in order
// and cannot create a file whose directory does not exist yet.
func (s *initramfsSpec) entries() ([]cpioEntry, error) {
	es := []cpioEntry{
		{name: "init", mode: modeExec, file: s.AgentPath, size: s.AgentSize},
		// The kernel opens /dev/console for PID 1's stdio before anyone can
		// mount devtmpfs; without the node the agent starts with no console.
		{name: "dev/console", mode: modeCharDev, rdevMajor: 5, rdevMinor: 1},
		{name: strings.TrimPrefix(ModulesLoadPath, "/"), mode: modeFile, data: modulesLoad(s.Release, s.Modules)},
		{name: strings.TrimPrefix(ReleasePath, "/"), mode: modeFile, data: []byte(s.Release + "\n")},
	}
	if s.InitPath != "" {
		es = append(es, cpioEntry{name: strings.TrimPrefix(GuestInitPath, "/"), mode: modeExec, file: s.InitPath, size: s.InitSize})
	}
	for _, m := range s.Modules {
		data, ok := s.Data[m.Path]
		if !ok {
			return nil, fmt.Errorf("initramfs: no contents for module %s: %w", m.Name, errdefs.ErrInternal)
		}
		es = append(es, cpioEntry{name: strings.TrimPrefix(modulePath(s.Release, m), "/"), mode: modeFile, data: data})
	}
	dirs := map[string]bool{}
	for _, d := range emptyDirs {
		dirs[d] = true
	}
	for _, e := range es {
		for d := path.Dir(e.name); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		mode := uint32(modeDir)
		if d == "tmp" {
			mode = modeTmpDir
		}
		es = append(es, cpioEntry{name: d, mode: mode})
	}
	// Byte order puts every directory before its contents, since a parent's
	// name is a prefix of its children's.
	slices.SortFunc(es, func(a, b cpioEntry) int { return strings.Compare(a.name, b.name) })
	for i := 1; i < len(es); i++ {
		if es[i].name == es[i-1].name {
			return nil, fmt.Errorf("initramfs: two entries named %s: %w", es[i].name, errdefs.ErrInvalidArgument)
		}
	}
	return es, nil
}

// writeInitramfs writes the initramfs as an uncompressed newc archive:
// under TCG decompressing costs more boot time than reading the larger file.
// The output depends only on the spec: mtimes are 0, owners root, modes
// fixed and inode numbers assigned in order.
func writeInitramfs(w io.Writer, s *initramfsSpec) error {
	es, err := s.entries()
	if err != nil {
		return err
	}
	nw := &newcWriter{w: w}
	for i, e := range es {
		ino := uint32(i + 1)
		switch {
		case e.file != "":
			if err := nw.writeFile(e, ino); err != nil {
				return err
			}
		default:
			if err := nw.writeHeader(e, ino, int64(len(e.data))); err != nil {
				return err
			}
			if err := nw.writeData(e.data); err != nil {
				return err
			}
		}
	}
	return nw.close()
}

// newcWriter writes the "new ASCII" cpio format the kernel unpacks. It is
// written here because github.com/cavaliergopher/cpio cannot record a device
// node's major and minor numbers, which /dev/console needs.
type newcWriter struct {
	w   io.Writer
	off int64
}

const newcMaxSize = 1<<32 - 1

func (nw *newcWriter) write(p []byte) error {
	n, err := nw.w.Write(p)
	nw.off += int64(n)
	return err
}

func (nw *newcWriter) pad() error {
	if r := nw.off % 4; r != 0 {
		return nw.write(make([]byte, 4-r))
	}
	return nil
}

func (nw *newcWriter) writeHeader(e cpioEntry, ino uint32, size int64) error {
	if size > newcMaxSize {
		return fmt.Errorf("initramfs: %s is %d bytes, more than newc cpio can hold: %w", e.name, size, errdefs.ErrInvalidArgument)
	}
	nlink := 1
	if e.mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, e.mode, 0 /* uid */, 0 /* gid */, nlink, 0 /* mtime */, size,
		0, 0 /* dev */, e.rdevMajor, e.rdevMinor, len(e.name)+1, 0 /* check */)
	if err := nw.write([]byte(hdr + e.name + "\x00")); err != nil {
		return err
	}
	return nw.pad()
}

func (nw *newcWriter) writeData(p []byte) error {
	if err := nw.write(p); err != nil {
		return err
	}
	return nw.pad()
}

func (nw *newcWriter) writeFile(e cpioEntry, ino uint32) error {
	f, err := os.Open(e.file)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	if err := nw.writeHeader(e, ino, e.size); err != nil {
		return err
	}
	n, err := io.CopyN(writerFunc(nw.write), f, e.size)
	if err != nil {
		return fmt.Errorf("initramfs: copying %s (%d of %d bytes; did it change during the build?): %w", e.file, n, e.size, err)
	}
	return nw.pad()
}

func (nw *newcWriter) close() error {
	return nw.writeHeader(cpioEntry{name: "TRAILER!!!"}, 0, 0)
}

type writerFunc func([]byte) error

func (f writerFunc) Write(p []byte) (int, error) {
	if err := f(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
