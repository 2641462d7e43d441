/*
 * hull-init: the first process of a container in hull's guest.
 *
 * Why it exists: under software emulation (TCG) every instruction executed
 * for the first time is translated, and libcontainer's init re-executes the
 * 9 MB Go agent (Go runtime, package inits, nsexec's three stages) for
 * every container: 400 ms of a `hull run`. This small static program does
 * the same container set-up in about 30 ms there.
 *
 * It does no policy: the agent (internal/guest/container/plan.go) turns
 * the spec, through libcontainer's own conversion, into a plan of steps,
 * and this program carries them out in order. The agent has already made
 * the namespaces the clone could make and put the process in its cgroup.
 *
 * File descriptors, set by the agent:
 *   0-2  the process's stdio (not used with a terminal)
 *   3    the plan: records of NUL-terminated fields, read to EOF
 *   4    sync (write end of a pipe): "R" once ready to start; "E<text>" on
 *        an error, then exit; EOF (close-on-exec) once the program runs
 *   5    start (read end of a pipe): one byte starts the program; EOF means
 *        the container is removed before its start
 *   6    the console socket, with a terminal (runc's protocol: the pty
 *        master goes over it with SCM_RIGHTS)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <net/if.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#define PLAN_FD 3
#define SYNC_FD 4
#define START_FD 5
#define CONSOLE_FD 6

#define MAX_PLAN (4 << 20)
#define MAX_ARGS 65536

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static int rootfd = -1;
/* The rootfs as the kernel names it (for the /proc checks). */
static char rootfs_path[4096];
/* The process's user's home, once the user step looked it up. */
static char *proc_home = "/";
/* Seccomp filter to load after the start, when no_new_privs allows it. */
static struct sock_fprog late_filter;
static unsigned int late_flags;
static int have_late_filter;

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static unsigned long kept_flags(const char *path);
static char *home(uid_t uid);

/* err is errno's text as Go words it ("no such file or directory"): the
 * agent's callers (podman, Docker) match those words. musl's own texts
 * differ for many codes ("Symbolic link loop", "Resource busy"), so the
 * codes a container's set-up can meet are spelled out as Go's syscall
 * package has them; any other is musl's, lower-cased. */
static const char *err(void)
{
	static const struct {
		int code;
		const char *text;
	} go_texts[] = {
		{EPERM, "operation not permitted"},
		{ENOENT, "no such file or directory"},
		{ESRCH, "no such process"},
		{EINTR, "interrupted system call"},
		{EIO, "input/output error"},
		{ENXIO, "no such device or address"},
		{E2BIG, "argument list too long"},
		{ENOEXEC, "exec format error"},
		{EBADF, "bad file descriptor"},
		{ECHILD, "no child processes"},
		{EAGAIN, "resource temporarily unavailable"},
		{ENOMEM, "cannot allocate memory"},
		{EACCES, "permission denied"},
		{EFAULT, "bad address"},
		{ENOTBLK, "block device required"},
		{EBUSY, "device or resource busy"},
		{EEXIST, "file exists"},
		{EXDEV, "invalid cross-device link"},
		{ENODEV, "no such device"},
		{ENOTDIR, "not a directory"},
		{EISDIR, "is a directory"},
		{EINVAL, "invalid argument"},
		{ENFILE, "too many open files in system"},
		{EMFILE, "too many open files"},
		{ENOTTY, "inappropriate ioctl for device"},
		{ETXTBSY, "text file busy"},
		{EFBIG, "file too large"},
		{ENOSPC, "no space left on device"},
		{ESPIPE, "illegal seek"},
		{EROFS, "read-only file system"},
		{EMLINK, "too many links"},
		{EPIPE, "broken pipe"},
		{ERANGE, "numerical result out of range"},
		{ENAMETOOLONG, "file name too long"},
		{ENOSYS, "function not implemented"},
		{ENOTEMPTY, "directory not empty"},
		{ELOOP, "too many levels of symbolic links"},
		{EOVERFLOW, "value too large for defined data type"},
		{EOPNOTSUPP, "operation not supported"},
		{ESTALE, "stale file handle"},
		{EDQUOT, "disk quota exceeded"},
		{ENOKEY, "required key not available"},
	};
	static char buf[128];
	size_t i;

	for (i = 0; i < sizeof(go_texts) / sizeof(go_texts[0]); i++)
		if (go_texts[i].code == errno)
			return go_texts[i].text;
	snprintf(buf, sizeof(buf), "%s", strerror(errno));
	if (buf[0] >= 'A' && buf[0] <= 'Z')
		buf[0] += 'a' - 'A';
	return buf;
}

static void fail(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n;

	buf[0] = 'E';
	va_start(ap, fmt);
	n = vsnprintf(buf + 1, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	if (write(SYNC_FD, buf, n + 1) < 0) {
		/* Nobody to tell. */
	}
	_exit(1);
}

/* The plan's fields, one after the other. */
struct plan {
	char *p, *end;
};

static char *field(struct plan *pl)
{
	char *s = pl->p;
	char *nul;

	if (s >= pl->end)
		fail("plan: truncated");
	nul = memchr(s, '\0', pl->end - s);
	if (!nul)
		fail("plan: unterminated field");
	pl->p = nul + 1;
	return s;
}

static unsigned long long num(struct plan *pl)
{
	char *s = field(pl), *e;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &e, 0);
	if (errno || *s == '\0' || *e != '\0')
		fail("plan: bad number %.64s", s);
	return v;
}

static void read_plan(struct plan *pl)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);

	if (!buf)
		fail("plan: out of memory");
	for (;;) {
		ssize_t n;

		if (len == cap) {
			if (cap >= MAX_PLAN)
				fail("plan: over %d bytes", MAX_PLAN);
			cap *= 2;
			buf = realloc(buf, cap);
			if (!buf)
				fail("plan: out of memory");
		}
		n = read(PLAN_FD, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail("plan: read: %s", err());
		if (n == 0)
			break;
		len += n;
	}
	close(PLAN_FD);
	pl->p = buf;
	pl->end = buf + len;
}

static void fdpath(char *buf, size_t size, int fd)
{
	snprintf(buf, size, "/proc/self/fd/%d", fd);
}

/* open_in_root opens path inside the container's root, as the container
 * would see it: symlinks cannot lead out of it. */
static int open_in_root(const char *path, int flags)
{
	struct open_how how = {
		.flags = flags | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};

	while (*path == '/')
		path++;
	if (*path == '\0')
		path = ".";
	return syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
}

/* parent_in_root creates the directories of path's parent inside the root
 * (mode 0755) and returns the parent opened, with *base at the last name. */
static int parent_in_root(const char *path, char *buf, size_t size, const char **base)
{
	char *slash, *p;
	int fd;

	if (snprintf(buf, size, "%s", path) >= (int)size)
		fail("path too long: %.64s...", path);
	while (strlen(buf) > 1 && buf[strlen(buf) - 1] == '/')
		buf[strlen(buf) - 1] = '\0';
	slash = strrchr(buf, '/');
	if (!slash) {
		*base = path;
		return open_in_root("/", O_PATH | O_DIRECTORY);
	}
	*base = path + (slash - buf) + 1;
	*slash = '\0';
	/* Walk the prefixes: each is opened through the root again, so a
	 * symlink anywhere resolves inside it. */
	for (p = buf + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;

			*p = '\0';
			fd = open_in_root(buf, O_PATH | O_DIRECTORY);
			if (fd < 0 && errno == ENOENT) {
				const char *name;
				char pbuf[4096];
				int pfd = parent_in_root(buf, pbuf, sizeof(pbuf), &name);

				if (mkdirat(pfd, name, 0755) < 0 && errno != EEXIST)
					fail("mkdir %s: %s", buf, err());
				close(pfd);
				fd = open_in_root(buf, O_PATH | O_DIRECTORY);
			}
			if (fd < 0)
				fail("open %s in the container: %s", buf, err());
			*p = c;
			if (c == '\0')
				return fd;
			close(fd);
		}
	}
}

/* target opens the mount point dst in the root, creating it as a
 * directory ('d') or an empty file ('f') when missing; *existed tells
 * which, when not NULL. */
static int target_ex(const char *dst, char kind, int *existed)
{
	int fd = open_in_root(dst, O_PATH);

	if (existed)
		*existed = fd >= 0;
	if (fd < 0 && errno == ENOENT) {
		char buf[4096];
		const char *base;
		int pfd = parent_in_root(dst, buf, sizeof(buf), &base);

		if (kind == 'f') {
			int f = openat(pfd, base, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);

			if (f < 0 && errno != EEXIST)
				fail("create %s: %s", dst, err());
			if (f >= 0)
				close(f);
		} else if (mkdirat(pfd, base, 0755) < 0 && errno != EEXIST) {
			fail("mkdir %s: %s", dst, err());
		}
		close(pfd);
		fd = open_in_root(dst, O_PATH);
	}
	if (fd < 0)
		fail("open mount point %s in the container: %s", dst, err());
	return fd;
}

static int target(const char *dst, char kind)
{
	return target_ex(dst, kind, NULL);
}

/* check_proc refuses, as runc does, a mount that resolves into the
 * container's /proc (but for the files lxcfs emulates), and on /proc
 * itself anything but a procfs. fd is the mount point. */
static void check_proc(const char *dst, int fd, const char *fstype, const char *src, int bind)
{
	static const char *lxcfs[] = {"/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat",
				      "/proc/swaps", "/proc/uptime", "/proc/loadavg", "/proc/slabinfo",
				      "/proc/sys/kernel/ns_last_pid", "/proc/sys/crypto/fips_enabled"};
	char link[64], real[4096];
	const char *rel;
	size_t n = strlen(rootfs_path), i;
	ssize_t len;

	if (n == 1) /* "/" */
		n = 0;
	fdpath(link, sizeof(link), fd);
	len = readlink(link, real, sizeof(real) - 1);
	if (len < 0)
		fail("mount point %s: %s", dst, err());
	real[len] = '\0';
	if (strncmp(real, rootfs_path, n) != 0 || (real[n] != '/' && real[n] != '\0'))
		fail("mount point %s resolves outside the rootfs", dst);
	if (real[n] == '\0')
		fail("mount point %s is the rootfs itself", dst);
	rel = real + n;
	if (strncmp(rel, "/proc", 5) != 0 || (rel[5] != '/' && rel[5] != '\0'))
		return;
	if (rel[5] == '\0') {
		struct statfs sf;

		if (!bind && !strcmp(fstype, "proc"))
			return;
		if (bind && statfs(src, &sf) == 0 && sf.f_type == PROC_SUPER_MAGIC)
			return;
		fail("\"%s\" cannot be mounted because it is not of type proc", dst);
	}
	for (i = 0; i < sizeof(lxcfs) / sizeof(lxcfs[0]); i++)
		if (!strcmp(rel, lxcfs[i]))
			return;
	fail("\"%s\" cannot be mounted because it is inside /proc", dst);
}


/* propagate <dst> <flag>: one propagation change, in the spec's order. */
static void op_propagate(struct plan *pl)
{
	const char *dst = field(pl);
	unsigned long flag = num(pl);
	char p[64];
	int fd = open_in_root(dst, O_PATH);

	if (fd < 0)
		fail("open %s: %s", dst, err());
	fdpath(p, sizeof(p), fd);
	if (mount(NULL, p, NULL, flag, NULL) < 0)
		fail("propagation of %s: %s", dst, err());
	close(fd);
}

/* bound_identity sets *st to what a bind of the directory src shows at
 * its root. A virtio-fs submount is mounted when a path walk crosses it,
 * and stat of the mount point itself does not cross it: it reports the
 * parent file system's device, where the bind shows the submount's. */
static void bound_identity(const char *src, struct stat *st)
{
	char inside[PATH_MAX];

	if (snprintf(inside, sizeof(inside), "%s/.", src) >= (int)sizeof(inside))
		fail("path too long: %.64s...", src);
	if (stat(inside, st) < 0)
		fail("bind mount source %s: %s", src, err());
}

/* reopen_bound opens dst again after a bind of the file want describes
 * went on it, to remount the new mount. dst is resolved anew (the
 * descriptor the bind went through holds the dentry under the new
 * mount), so it must lead to the bound file still: a container sharing a
 * volume with this one could otherwise swap dst for a link between the
 * two, and have the flags (read-only, say) go on another mount while this
 * one stays writable. */
static int reopen_bound(const char *dst, const struct stat *want)
{
	struct stat st;
	int fd = open_in_root(dst, O_PATH);

	if (fd < 0)
		fail("open %s: %s", dst, err());
	if (fstat(fd, &st) < 0)
		fail("stat %s: %s", dst, err());
	if (st.st_dev != want->st_dev || st.st_ino != want->st_ino)
		fail("bind mount %s: the destination changed while it was mounted", dst);
	return fd;
}

/* mount <src> <dst> <fstype> <flags> <data> <kind> <fallback> <cleared>: kind is 'b' for a bind mount (dir or file after the source),
 * 'd' for another file system, 'p' for proc and sysfs, which go only on a
 * directory that is no symlink; fallback is a bind source to use when the
 * file system cannot be mounted here (sysfs, cgroup2, mqueue); cleared are
 * flags a bind's remount drops from those it keeps. */
static void op_mount(struct plan *pl)
{
	const char *src = field(pl), *dst = field(pl), *fstype = field(pl);
	unsigned long flags = num(pl);
	const char *data = field(pl), *kind = field(pl), *fallback = field(pl);
	unsigned long cleared = num(pl);
	char p[64];
	int fd;

	if (kind[0] == 'b') {
		struct stat st;
		unsigned long extra = flags & ~(MS_BIND | MS_REC | MS_REMOUNT);

		if (stat(src, &st) < 0)
			fail("bind mount source %s: %s", src, err());
		if (S_ISDIR(st.st_mode) && (extra || cleared))
			bound_identity(src, &st);
		fd = target(dst, S_ISDIR(st.st_mode) ? 'd' : 'f');
		check_proc(dst, fd, fstype, src, 1);
		fdpath(p, sizeof(p), fd);
		if (mount(src, p, NULL, MS_BIND | (flags & MS_REC), NULL) < 0)
			fail("bind mount %s on %s: %s", src, dst, err());
		close(fd);
		if (extra || cleared) {
			/* The new mount, not the one the old descriptor holds. As
			 * runc: "mount --bind -o" sets just the requested flags;
			 * where the kernel refuses (flags locked on the source),
			 * the source's lockable flags stay and the request goes on
			 * top, unless it clears a locked one. */
			fd = reopen_bound(dst, &st);
			fdpath(p, sizeof(p), fd);
			if (mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | extra, NULL) < 0) {
				unsigned long locked = kept_flags(p) & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY);

				if (locked & cleared)
					fail("bind mount %s: cannot clear locked flags %#lx", dst, locked & cleared);
				if (mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | extra | locked, NULL) < 0)
					fail("remount %s: %s", dst, err());
			}
			close(fd);
		}
	} else {
		if (kind[0] == 'p') {
			struct stat st;

			if (fstatat(rootfd, dst[0] == '/' ? dst + 1 : dst, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
				fail("%s must be mounted on ordinary directory: %s is not one", fstype, dst);
		}
		char tdata[4096];
		int existed;

		fd = target_ex(dst, 'd', &existed);
		check_proc(dst, fd, fstype, src, 0);
		/* As runc: a tmpfs on a directory of the image keeps its mode
		 * unless the options set one. */
		if (!strcmp(fstype, "tmpfs") && existed) {
			struct stat st;

			if (fstat(fd, &st) == 0) {
				snprintf(tdata, sizeof(tdata), "mode=%04o%s%s", st.st_mode & 07777, data[0] ? "," : "", data);
				data = tdata;
			}
		}
		fdpath(p, sizeof(p), fd);
		if (mount(src, p, fstype, flags, data[0] ? data : NULL) < 0) {
			struct stat fst;

			if (!fallback[0] || (errno != EPERM && errno != EBUSY))
				fail("mount %s (%s) on %s: %s", src, fstype, dst, err());
			if (stat(fallback, &fst) < 0)
				fail("bind mount source %s: %s", fallback, err());
			if (S_ISDIR(fst.st_mode))
				bound_identity(fallback, &fst);
			if (mount(fallback, p, NULL, MS_BIND | MS_REC, NULL) < 0)
				fail("bind mount %s on %s: %s", fallback, dst, err());
			close(fd);
			fd = reopen_bound(dst, &fst);
			fdpath(p, sizeof(p), fd);
			if (mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | (flags & ~MS_REC), NULL) < 0)
				fail("remount %s: %s", dst, err());
		}
		close(fd);
	}
}

/* mknod <path> <type c|b|p> <major> <minor> <mode> <uid> <gid> */
static void op_mknod(struct plan *pl)
{
	const char *path = field(pl), *type = field(pl);
	unsigned major = num(pl), minor = num(pl), mode = num(pl);
	uid_t uid = num(pl);
	gid_t gid = num(pl);
	char buf[4096];
	const char *base;
	int pfd = parent_in_root(path, buf, sizeof(buf), &base);
	mode_t t = type[0] == 'b' ? S_IFBLK : type[0] == 'p' ? S_IFIFO : S_IFCHR;

	/* As runc: a node (or a mount) already there stays. */
	if (mknodat(pfd, base, t | (mode & 07777), makedev(major, minor)) < 0) {
		if (errno != EEXIST)
			fail("mknod %s: %s", path, err());
	} else if (fchownat(pfd, base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
		fail("chown %s: %s", path, err());
	}
	close(pfd);
}

/* symlink <target> <path> <replace 0|1> */
static void op_symlink(struct plan *pl)
{
	const char *to = field(pl), *path = field(pl);
	int replace = num(pl);
	char buf[4096];
	const char *base;
	int pfd = parent_in_root(path, buf, sizeof(buf), &base);

	if (replace && unlinkat(pfd, base, 0) < 0 && errno != ENOENT)
		fail("remove %s: %s", path, err());
	if (symlinkat(to, pfd, base) < 0 && errno != EEXIST)
		fail("symlink %s: %s", path, err());
	close(pfd);
}

/* The mount flags a remount must keep (statvfs's, in mount(2)'s terms). */
static unsigned long kept_flags(const char *path)
{
	struct statvfs s;
	unsigned long f = 0;

	if (statvfs(path, &s) < 0)
		return 0;
	if (s.f_flag & ST_RDONLY)
		f |= MS_RDONLY;
	if (s.f_flag & ST_NOSUID)
		f |= MS_NOSUID;
	if (s.f_flag & ST_NODEV)
		f |= MS_NODEV;
	if (s.f_flag & ST_NOEXEC)
		f |= MS_NOEXEC;
	if (s.f_flag & ST_NOATIME)
		f |= MS_NOATIME;
	if (s.f_flag & ST_NODIRATIME)
		f |= MS_NODIRATIME;
	if (s.f_flag & ST_RELATIME)
		f |= MS_RELATIME;
	return f;
}

/* parent_not_shared makes the mount the rootfs lies on private or slave
 * (as runc's rootfsParentMountPropagation): pivot_root refuses a shared
 * parent, and the rootfs's bind must not propagate out of the container. */
static void parent_not_shared(const char *rootfs, unsigned long flags)
{
	char path[4096];

	if (snprintf(path, sizeof(path), "%s", rootfs) >= (int)sizeof(path))
		fail("rootfs path too long");
	for (;;) {
		char *slash;

		if (mount(NULL, path, NULL, flags, NULL) == 0)
			return;
		if (errno != EINVAL || !strcmp(path, "/"))
			fail("propagation of the rootfs's parent mount %s: %s", path, err());
		slash = strrchr(path, '/');
		if (slash == path)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
}

static void pivot(void)
{
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		fail("pivot_root: %s", err());
	if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
		fail("making the old root a slave: %s", err());
	if (umount2(".", MNT_DETACH) < 0)
		fail("unmounting the old root: %s", err());
	if (chdir("/") < 0)
		fail("chdir /: %s", err());
}

/* After the pivot: paths are the container's own. */
static void readonly_path(const char *path)
{
	if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
		if (errno == ENOENT)
			return;
		fail("bind %s read-only: %s", path, err());
	}
	if (mount(path, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | kept_flags(path), NULL) < 0)
		fail("remount %s read-only: %s", path, err());
}

/* devnull is the container's /dev/null, opened once and checked, bound
 * from its descriptor: a shared /dev cannot swap it between the check and
 * the binds (runc's CVE-2025-31133). */
static int devnull = -1;
static char devnull_path[64];

static const char *dev_null(void)
{
	struct stat st;

	if (devnull >= 0)
		return devnull_path;
	devnull = open("/dev/null", O_PATH | O_CLOEXEC | O_NOFOLLOW);
	if (devnull < 0 || fstat(devnull, &st) < 0)
		fail("/dev/null: %s", err());
	if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
		fail("/dev/null is not the null device");
	fdpath(devnull_path, sizeof(devnull_path), devnull);
	/* A container without a procfs has no /proc/self/fd: the node just
	 * checked is then named by its path (/dev is this container's own
	 * tmpfs, and nothing of the container runs yet). */
	if (access(devnull_path, F_OK) < 0)
		snprintf(devnull_path, sizeof(devnull_path), "/dev/null");
	return devnull_path;
}

static void mask_path(const char *path)
{
	if (mount(dev_null(), path, NULL, MS_BIND, NULL) == 0 || errno == ENOENT)
		return;
	if (errno != ENOTDIR)
		fail("mask %s: %s", path, err());
	if (mount("tmpfs", path, "tmpfs", MS_RDONLY, "nr_blocks=1,nr_inodes=1") < 0)
		fail("mask %s: %s", path, err());
}

/* reopen_null gives the process the container's /dev/null for the stdio
 * that was the guest's (runc's reOpenDevNull). */
static void reopen_null(void)
{
	int fd;

	for (fd = 0; fd < 3; fd++) {
		struct stat st;
		int n;

		if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
			continue;
		n = open(dev_null(), O_RDWR | O_CLOEXEC);
		if (n < 0 || dup3(n, fd, 0) < 0)
			fail("reopening /dev/null: %s", err());
		close(n);
	}
}

static void sysctl(const char *key, const char *value)
{
	char path[512];
	size_t i, n;
	int fd;

	n = snprintf(path, sizeof(path), "/proc/sys/%s", key);
	if (n >= sizeof(path) || strstr(key, ".."))
		fail("sysctl %s: bad name", key);
	for (i = strlen("/proc/sys/"); i < n; i++)
		if (path[i] == '.')
			path[i] = '/';
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail("sysctl %s: %s", key, err());
	if (write(fd, value, strlen(value)) < 0)
		fail("sysctl %s=%s: %s", key, value, err());
	close(fd);
}

/* console <cols> <rows>: the pty of the container's devpts; the master
 * goes to the console socket, the slave becomes stdio and the terminal. */
static void console(unsigned cols, unsigned rows)
{
	char name[128];
	char ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov;
	struct msghdr msg = {0};
	struct cmsghdr *c;
	int master, slave;

	struct statfs sf;
	struct stat st;
	char slavefd[64];
	int console_fd;

	/* As runc's safeAllocPty: the container's own devpts, no symlink. */
	{
		int h = open("/dev/pts/ptmx", O_PATH | O_NOFOLLOW | O_CLOEXEC);
		char hp[64];

		if (h < 0)
			fail("open /dev/pts/ptmx: %s", err());
		if (fstatfs(h, &sf) < 0 || sf.f_type != DEVPTS_SUPER_MAGIC || fstat(h, &st) < 0 ||
		    !S_ISCHR(st.st_mode) || st.st_rdev != makedev(5, 2) || st.st_ino != 2)
			fail("/dev/pts/ptmx is not a devpts ptmx");
		fdpath(hp, sizeof(hp), h);
		master = open(hp, O_RDWR | O_NOCTTY | O_CLOEXEC);
		close(h);
		if (master < 0)
			fail("open /dev/pts/ptmx: %s", err());
	}
	if (unlockpt(master) < 0 || ptsname_r(master, name, sizeof(name)) != 0)
		fail("pty: %s", err());
	slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0)
		fail("opening the pty's peer: %s", err());
	/* /dev/console is the terminal too (runc's mountConsole). */
	console_fd = open("/dev/console", O_NOFOLLOW | O_CREAT | O_CLOEXEC | O_RDONLY, 0666);
	if (console_fd < 0)
		fail("create /dev/console: %s", err());
	fdpath(slavefd, sizeof(slavefd), slave);
	{
		char cpath[64];

		fdpath(cpath, sizeof(cpath), console_fd);
		if (mount(slavefd, cpath, NULL, MS_BIND, NULL) < 0)
			fail("bind mount the pty on /dev/console: %s", err());
	}
	close(console_fd);
	if (cols && rows) {
		struct winsize ws = {.ws_row = rows, .ws_col = cols};

		ioctl(slave, TIOCSWINSZ, &ws);
	}
	memset(ctl, 0, sizeof(ctl));
	iov.iov_base = name;
	iov.iov_len = strlen(name);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = ctl;
	msg.msg_controllen = sizeof(ctl);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &master, sizeof(int));
	if (sendmsg(CONSOLE_FD, &msg, 0) < 0)
		fail("sending the pty master: %s", err());
	close(master);
	close(CONSOLE_FD);
	if (ioctl(slave, TIOCSCTTY, 0) < 0)
		fail("controlling terminal: %s", err());
	if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0)
		fail("pty stdio: %s", err());
	close(slave);
}

static struct sock_fprog decode_filter(const char *hex)
{
	struct sock_fprog prog;
	size_t n = strlen(hex), i;
	unsigned char *b;

	if (n == 0 || n % (2 * sizeof(struct sock_filter)) || n / 2 / sizeof(struct sock_filter) > BPF_MAXINSNS)
		fail("seccomp: bad program length %zu", n);
	b = malloc(n / 2);
	if (!b)
		fail("seccomp: out of memory");
	for (i = 0; i < n / 2; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			fail("seccomp: bad program");
		b[i] = v;
	}
	prog.len = n / 2 / sizeof(struct sock_filter);
	prog.filter = (struct sock_filter *)b;
	return prog;
}

static void load_filter(struct sock_fprog *prog, unsigned int flags)
{
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, prog) < 0)
		fail("loading the seccomp filter: %s", err());
}

/* Every capability number a 64-bit mask can name: the kernel refuses
 * those past its own last with EINVAL, which the loops skip. The last one
 * is not read from /proc/sys/kernel/cap_last_cap: by then that path is the
 * container's, whose image may put a file there when the spec mounts no
 * procfs, and a small number would leave the bounding set whole. */
#define MAX_CAP 63

/* fix_stdio gives the process's stdio to its user, as runc does, so that
 * it can reopen them (/dev/stdout, its terminal); /dev/null is left be. */
static void fix_stdio(uid_t uid)
{
	int fd;

	for (fd = 0; fd < 3; fd++) {
		struct stat st;

		if (fstat(fd, &st) < 0)
			fail("fstat of fd %d: %s", fd, err());
		if (st.st_uid == uid || (S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3)))
			continue;
		if (fchown(fd, uid, -1) < 0 && errno != EPERM && errno != EROFS)
			fail("chown of fd %d: %s", fd, err());
	}
}

/* user <uid> <gid> <cwd> <bounding> <effective> <permitted> <inheritable>
 * <ambient> <ngroups> <gid>...: capability sets as 64-bit masks. */
static void op_user(struct plan *pl)
{
	uid_t uid = num(pl);
	gid_t gid = num(pl);
	const char *cwd = field(pl);
	unsigned long long bset = num(pl), eff = num(pl), perm = num(pl), inh = num(pl), amb = num(pl);
	size_t n = num(pl), i;
	gid_t *groups;
	int c, cwd_done;
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];

	if (n > 65536)
		fail("user: %zu groups", n);
	groups = calloc(n + 1, sizeof(gid_t));
	if (!groups)
		fail("user: out of memory");
	for (i = 0; i < n; i++)
		groups[i] = num(pl);

	fix_stdio(uid);
	/* Read as root, before the switch (HOME, when the spec sets none). */
	proc_home = home(uid);
	cwd_done = chdir(cwd) == 0;
	for (c = 0; c <= MAX_CAP; c++) {
		if (!(bset & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			fail("dropping capability %d: %s", c, err());
	}
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		fail("keepcaps: %s", err());
	if (setgroups(n, groups) < 0)
		fail("setgroups: %s", err());
	if (setresgid(gid, gid, gid) < 0)
		fail("setgid %u: %s", gid, err());
	if (setresuid(uid, uid, uid) < 0)
		fail("setuid %u: %s", uid, err());
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		fail("keepcaps: %s", err());
	memset(data, 0, sizeof(data));
	data[0].effective = eff;
	data[1].effective = eff >> 32;
	data[0].permitted = perm;
	data[1].permitted = perm >> 32;
	data[0].inheritable = inh;
	data[1].inheritable = inh >> 32;
	if (syscall(SYS_capset, &hdr, data) < 0)
		fail("setting capabilities: %s", err());
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	for (c = 0; c <= MAX_CAP; c++) {
		/* As runc: ambient capabilities are best effort. */
		if (amb & (1ULL << c))
			prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0);
	}
	if (!cwd_done && chdir(cwd) < 0)
		fail("chdir to cwd (%s) set in config.json: %s", cwd, err());
	free(groups);
}

/* keyring joins a session keyring of the container's own, searchable by
 * its owner, as runc does; a kernel without keyrings is no failure. */
static void keyring(const char *name)
{
	char desc[512];
	unsigned perm;
	long id = syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name);

	if (id < 0) {
		if (errno == ENOSYS)
			return;
		fail("joining the session keyring: %s", err());
	}
	if (syscall(SYS_keyctl, KEYCTL_DESCRIBE, id, desc, sizeof(desc) - 1) < 0)
		fail("describing the session keyring: %s", err());
	desc[sizeof(desc) - 1] = '\0';
	/* "type;uid;gid;perm;description" */
	if (sscanf(desc, "%*[^;];%*[^;];%*[^;];%x;", &perm) != 1)
		fail("session keyring: bad description");
	if (syscall(SYS_keyctl, KEYCTL_SETPERM, id, perm | 0x80000) < 0)
		fail("session keyring permissions: %s", err());
}

/* The program's path, looked up in the container's PATH as runc does. */
static char *lookup(const char *name, char **env, char *buf, size_t size)
{
	const char *path = NULL, *p, *e;
	char **v;

	if (strchr(name, '/')) {
		struct stat st;

		if (stat(name, &st) < 0)
			fail("exec: \"%s\": stat %s: %s", name, name, err());
		if (S_ISDIR(st.st_mode) || !(st.st_mode & 0111))
			fail("exec: \"%s\": permission denied", name);
		return (char *)name;
	}
	for (v = env; *v; v++)
		if (strncmp(*v, "PATH=", 5) == 0)
			path = *v + 5;
	for (p = path; p && *p; p = *e ? e + 1 : e) {
		struct stat st;

		e = strchrnul(p, ':');
		/* Go's LookPath, which runc uses, refuses relative results. */
		if (e == p || *p != '/')
			continue;
		snprintf(buf, size, "%.*s/%s", (int)(e - p), p, name);
		if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
			return buf;
	}
	fail("exec: \"%s\": executable file not found in $PATH", name);
}

/* MAX_PASSWD bounds the container's /etc/passwd that home reads. */
#define MAX_PASSWD (16 << 20)

/* home is uid's home in the container's /etc/passwd ("/" when it has
 * none), as runc's prepareEnv: the first entry with the uid. The file is
 * the image's, read as root before the container's limits apply: only a
 * regular file of bounded size is read, so that a FIFO there cannot hang
 * the creation and /dev/zero cannot grow a line without end. */
static char *home(uid_t uid)
{
	char *line = NULL;
	size_t cap = 0;
	struct stat st;
	FILE *f;
	int fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0)
		return "/";
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_PASSWD) {
		close(fd);
		return "/";
	}
	f = fdopen(fd, "re");
	if (!f) {
		close(fd);
		return "/";
	}
	while (getline(&line, &cap, f) >= 0) {
		char *fld[7], *p = line, *end;
		int n = 0;

		line[strcspn(line, "\n")] = '\0';
		while (n < 7) {
			fld[n++] = p;
			p = strchr(p, ':');
			if (!p)
				break;
			*p++ = '\0';
		}
		if (n < 6 || !fld[2][0])
			continue;
		errno = 0;
		if (strtoul(fld[2], &end, 10) == uid && !errno && *end == '\0') {
			char *h = strdup(fld[5]);

			fclose(f);
			free(line);
			return h ? h : "/";
		}
	}
	fclose(f);
	free(line);
	return "/";
}

/* exec <argc> <envc> <needhome> <arg>... <env>...: ready, wait for the
 * start, run. needhome: the environment has no HOME, which comes from the
 * container's /etc/passwd. */
static void op_exec(struct plan *pl)
{
	size_t argc = num(pl), envc = num(pl), i;
	int needhome = num(pl);
	char **argv, **envp, *path, buf[4096], b;
	ssize_t n;

	if (argc == 0 || argc > MAX_ARGS || envc > MAX_ARGS)
		fail("exec: %zu arguments, %zu variables", argc, envc);
	argv = calloc(argc + 1, sizeof(char *));
	envp = calloc(envc + 2, sizeof(char *));
	if (!argv || !envp)
		fail("exec: out of memory");
	for (i = 0; i < argc; i++)
		argv[i] = field(pl);
	for (i = 0; i < envc; i++)
		envp[i] = field(pl);
	if (needhome) {
		const char *h = proc_home;
		char *kv = malloc(strlen(h) + 6);

		if (!kv)
			fail("exec: out of memory");
		sprintf(kv, "HOME=%s", h);
		envp[envc] = kv;
	}
	path = lookup(argv[0], envp, buf, sizeof(buf));

	if (write(SYNC_FD, "R", 1) != 1)
		_exit(1);
	do
		n = read(START_FD, &b, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		_exit(0); /* removed before its start */
	close(START_FD);
	if (have_late_filter)
		load_filter(&late_filter, late_flags);
	execve(path, argv, envp);
	fail("exec %s: %s", path, err());
}

/* Nothing of the agent's reaches the program: every descriptor past stdio
 * closes with the execve (those hull-init opens later are close-on-exec). */
static void cloexec_all(void)
{
	struct rlimit rl;
	unsigned fd, max = 65536;

	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
		return;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < max)
		max = rl.rlim_cur;
	for (fd = 3; fd < max; fd++)
		fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* loopback_up brings up lo in a network namespace of the container's own. */
static void loopback_up(void)
{
	struct ifreq ifr = {0};
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		fail("loopback: socket: %s", err());
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		fail("loopback: %s", err());
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		fail("bringing up loopback: %s", err());
	close(s);
}

static void die(int sig)
{
	_exit(128 + sig);
}

/* As the first process of its pid namespace, hull-init would ignore every
 * signal it has no handler for, but a signal sent to a created container
 * ends it (libcontainer's Go init dies of those the Go runtime does not
 * ignore). The handlers go with the execve. */
static void die_of_signals(void)
{
	struct sigaction sa = {.sa_handler = die};
	int sig;

	for (sig = 1; sig < NSIG; sig++) {
		switch (sig) {
		case SIGKILL: case SIGSTOP: case SIGCHLD: case SIGCONT: case SIGURG:
		case SIGWINCH: case SIGPIPE: case SIGTSTP: case SIGTTIN: case SIGTTOU:
			continue;
		}
		sigaction(sig, &sa, NULL); /* glibc's own (32, 33) refuse */
	}
}

int main(void)
{
	struct plan pl;

	die_of_signals();
	/* Modes as the plan gives them; the umask step sets the process's. */
	umask(0);
	read_plan(&pl);
	cloexec_all();
	while (pl.p < pl.end) {
		const char *op = field(&pl);

		if (!strcmp(op, "setns")) {
			const char *path = field(&pl);
			int type = num(&pl);
			int fd = open(path, O_RDONLY | O_CLOEXEC);

			if (fd < 0 || setns(fd, type) < 0)
				fail("joining namespace %s: %s", path, err());
			close(fd);
		} else if (!strcmp(op, "unshare")) {
			if (unshare(num(&pl)) < 0)
				fail("unshare: %s", err());
		} else if (!strcmp(op, "loopback")) {
			loopback_up();
		} else if (!strcmp(op, "rootfs")) {
			const char *rootfs = field(&pl);
			unsigned long prop = num(&pl), parent = num(&pl);

			if (mount(NULL, "/", NULL, prop, NULL) < 0)
				fail("root propagation: %s", err());
			parent_not_shared(rootfs, parent);
			if (!realpath(rootfs, rootfs_path))
				fail("rootfs %s: %s", rootfs, err());
			if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
				fail("bind mount of the rootfs %s: %s", rootfs, err());
			if (chdir(rootfs) < 0)
				fail("chdir %s: %s", rootfs, err());
			rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (rootfd < 0)
				fail("open %s: %s", rootfs, err());
		} else if (!strcmp(op, "mount")) {
			op_mount(&pl);
		} else if (!strcmp(op, "propagate")) {
			op_propagate(&pl);
		} else if (!strcmp(op, "mkdir")) {
			close(target(field(&pl), 'd'));
		} else if (!strcmp(op, "rootprop")) {
			if (mount(NULL, "/", NULL, num(&pl), NULL) < 0)
				fail("unable to apply root propagation flags: %s", err());
		} else if (!strcmp(op, "remountro")) {
			const char *path = field(&pl);
			unsigned long flags = num(&pl);

			int tries = 0, rc;

			/* The mount, not its file system (runc's remountReadonly). */
			while ((rc = mount(NULL, path, NULL, flags | MS_BIND | MS_REMOUNT | MS_RDONLY, NULL)) < 0 &&
			       errno == EBUSY && ++tries < 5)
				usleep(100000);
			if (rc < 0)
				fail("remount %s read-only: %s", path, err());
		} else if (!strcmp(op, "mknod")) {
			op_mknod(&pl);
		} else if (!strcmp(op, "symlink")) {
			op_symlink(&pl);
		} else if (!strcmp(op, "pivot")) {
			pivot();
			reopen_null();
		} else if (!strcmp(op, "rootro")) {
			if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | kept_flags("/"), NULL) < 0)
				fail("read-only root: %s", err());
		} else if (!strcmp(op, "readonly")) {
			readonly_path(field(&pl));
		} else if (!strcmp(op, "mask")) {
			mask_path(field(&pl));
		} else if (!strcmp(op, "sysctl")) {
			const char *k = field(&pl);

			sysctl(k, field(&pl));
		} else if (!strcmp(op, "hostname")) {
			const char *h = field(&pl);

			if (sethostname(h, strlen(h)) < 0)
				fail("sethostname: %s", err());
		} else if (!strcmp(op, "domainname")) {
			const char *d = field(&pl);

			if (setdomainname(d, strlen(d)) < 0)
				fail("setdomainname: %s", err());
		} else if (!strcmp(op, "console")) {
			unsigned cols = num(&pl);

			console(cols, num(&pl));
		} else if (!strcmp(op, "rlimit")) {
			int res = num(&pl);
			struct rlimit rl;

			rl.rlim_cur = num(&pl);
			rl.rlim_max = num(&pl);
			if (setrlimit(res, &rl) < 0)
				fail("rlimit %d: %s", res, err());
		} else if (!strcmp(op, "oom")) {
			const char *score = field(&pl);
			int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);

			if (fd < 0 || write(fd, score, strlen(score)) < 0)
				fail("oom_score_adj %s: %s", score, err());
			close(fd);
		} else if (!strcmp(op, "keyring")) {
			keyring(field(&pl));
		} else if (!strcmp(op, "umask")) {
			umask(num(&pl));
		} else if (!strcmp(op, "nnp")) {
			if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
				fail("no_new_privs: %s", err());
		} else if (!strcmp(op, "seccomp")) {
			int late = num(&pl);
			unsigned int flags = num(&pl);
			struct sock_fprog prog = decode_filter(field(&pl));

			if (late) {
				late_filter = prog;
				late_flags = flags;
				have_late_filter = 1;
			} else {
				load_filter(&prog, flags);
			}
		} else if (!strcmp(op, "user")) {
			op_user(&pl);
		} else if (!strcmp(op, "exec")) {
			op_exec(&pl);
		} else {
			fail("plan: unknown step %.32s", op);
		}
	}
	fail("plan: no exec step");
}
