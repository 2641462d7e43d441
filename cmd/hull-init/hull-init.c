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
#include <linux/capability.h>
#include <net/if.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
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
/* Seccomp filter to load after the start, when no_new_privs allows it. */
static struct sock_fprog late_filter;
static unsigned int late_flags;
static int have_late_filter;

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static unsigned long kept_flags(const char *path);

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
			fail("plan: read: %m");
		if (n == 0)
			break;
		len += n;
	}
	close(PLAN_FD);
	pl->p = buf;
	pl->end = buf + len;
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
					fail("mkdir %s: %m", buf);
				close(pfd);
				fd = open_in_root(buf, O_PATH | O_DIRECTORY);
			}
			if (fd < 0)
				fail("open %s in the container: %m", buf);
			*p = c;
			if (c == '\0')
				return fd;
			close(fd);
		}
	}
}

/* target opens the mount point dst in the root, creating it as a
 * directory ('d') or an empty file ('f') when missing. */
static int target(const char *dst, char kind)
{
	int fd = open_in_root(dst, O_PATH);

	if (fd < 0 && errno == ENOENT) {
		char buf[4096];
		const char *base;
		int pfd = parent_in_root(dst, buf, sizeof(buf), &base);

		if (kind == 'f') {
			int f = openat(pfd, base, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);

			if (f < 0 && errno != EEXIST)
				fail("create %s: %m", dst);
			if (f >= 0)
				close(f);
		} else if (mkdirat(pfd, base, 0755) < 0 && errno != EEXIST) {
			fail("mkdir %s: %m", dst);
		}
		close(pfd);
		fd = open_in_root(dst, O_PATH);
	}
	if (fd < 0)
		fail("open mount point %s in the container: %m", dst);
	return fd;
}

static void fdpath(char *buf, size_t size, int fd)
{
	snprintf(buf, size, "/proc/self/fd/%d", fd);
}

static void propagate(const char *dst, unsigned long pflags)
{
	static const unsigned long kinds[] = {MS_SHARED, MS_SLAVE, MS_PRIVATE, MS_UNBINDABLE};
	char p[64];
	size_t i;
	int fd;

	if (!pflags)
		return;
	fd = open_in_root(dst, O_PATH);
	if (fd < 0)
		fail("open %s: %m", dst);
	fdpath(p, sizeof(p), fd);
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (pflags & kinds[i] && mount(NULL, p, NULL, kinds[i] | (pflags & MS_REC), NULL) < 0)
			fail("propagation of %s: %m", dst);
	}
	close(fd);
}

/* mount <src> <dst> <fstype> <flags> <pflags> <data> <kind> <fallback>
 * <cleared>: kind is 'b' for a bind mount (dir or file after the source),
 * 'd' for another file system, 'p' for proc and sysfs, which go only on a
 * directory that is no symlink; fallback is a bind source to use when the
 * file system cannot be mounted here (sysfs, cgroup2, mqueue); cleared are
 * flags a bind's remount drops from those it keeps. */
static void op_mount(struct plan *pl)
{
	const char *src = field(pl), *dst = field(pl), *fstype = field(pl);
	unsigned long flags = num(pl), pflags = num(pl);
	const char *data = field(pl), *kind = field(pl), *fallback = field(pl);
	unsigned long cleared = num(pl);
	char p[64];
	int fd;

	if (kind[0] == 'b') {
		struct stat st;
		unsigned long extra = flags & ~(MS_BIND | MS_REC | MS_REMOUNT);

		if (stat(src, &st) < 0)
			fail("bind mount source %s: %m", src);
		fd = target(dst, S_ISDIR(st.st_mode) ? 'd' : 'f');
		fdpath(p, sizeof(p), fd);
		if (mount(src, p, NULL, MS_BIND | (flags & MS_REC), NULL) < 0)
			fail("bind mount %s on %s: %m", src, dst);
		close(fd);
		if (extra || cleared) {
			/* The new mount, not the one the old descriptor holds;
			 * "mount --bind -o" keeps the source's flags. */
			fd = open_in_root(dst, O_PATH);
			if (fd < 0)
				fail("open %s: %m", dst);
			fdpath(p, sizeof(p), fd);
			extra |= kept_flags(p) & ~cleared;
			if (mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | extra, NULL) < 0)
				fail("remount %s: %m", dst);
			close(fd);
		}
	} else {
		if (kind[0] == 'p') {
			struct stat st;

			if (fstatat(rootfd, dst[0] == '/' ? dst + 1 : dst, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
				fail("%s must be mounted on ordinary directory: %s is not one", fstype, dst);
		}
		fd = target(dst, 'd');
		fdpath(p, sizeof(p), fd);
		if (mount(src, p, fstype, flags, data[0] ? data : NULL) < 0) {
			if (!fallback[0] || (errno != EPERM && errno != EBUSY))
				fail("mount %s (%s) on %s: %m", src, fstype, dst);
			if (mount(fallback, p, NULL, MS_BIND | MS_REC, NULL) < 0)
				fail("bind mount %s on %s: %m", fallback, dst);
			close(fd);
			fd = open_in_root(dst, O_PATH);
			fdpath(p, sizeof(p), fd);
			if (fd < 0 || mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | (flags & ~MS_REC), NULL) < 0)
				fail("remount %s: %m", dst);
		}
		close(fd);
	}
	propagate(dst, pflags);
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

	if (unlinkat(pfd, base, 0) < 0 && errno != ENOENT)
		fail("remove %s: %m", path);
	if (mknodat(pfd, base, t | (mode & 07777), makedev(major, minor)) < 0)
		fail("mknod %s: %m", path);
	if (fchownat(pfd, base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
		fail("chown %s: %m", path);
	/* mknod applied the umask. */
	if (fchmodat(pfd, base, mode & 07777, 0) < 0)
		fail("chmod %s: %m", path);
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
		fail("remove %s: %m", path);
	if (symlinkat(to, pfd, base) < 0 && errno != EEXIST)
		fail("symlink %s: %m", path);
	close(pfd);
}

/* The mount flags a remount must keep (statvfs's, in mount(2)'s terms). */
static unsigned long kept_flags(const char *path)
{
	struct statvfs s;
	unsigned long f = 0;

	if (statvfs(path, &s) < 0)
		return 0;
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

static void pivot(void)
{
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		fail("pivot_root: %m");
	if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
		fail("making the old root a slave: %m");
	if (umount2(".", MNT_DETACH) < 0)
		fail("unmounting the old root: %m");
	if (chdir("/") < 0)
		fail("chdir /: %m");
}

/* After the pivot: paths are the container's own. */
static void readonly_path(const char *path)
{
	if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
		if (errno == ENOENT)
			return;
		fail("bind %s read-only: %m", path);
	}
	if (mount(path, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | kept_flags(path), NULL) < 0)
		fail("remount %s read-only: %m", path);
}

static void mask_path(const char *path)
{
	if (mount("/dev/null", path, NULL, MS_BIND, NULL) == 0 || errno == ENOENT)
		return;
	if (errno != ENOTDIR)
		fail("mask %s: %m", path);
	if (mount("tmpfs", path, "tmpfs", MS_RDONLY, NULL) < 0)
		fail("mask %s: %m", path);
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
		fail("sysctl %s: %m", key);
	if (write(fd, value, strlen(value)) < 0)
		fail("sysctl %s=%s: %m", key, value);
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

	master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		fail("open /dev/ptmx: %m");
	if (unlockpt(master) < 0 || ptsname_r(master, name, sizeof(name)) != 0)
		fail("pty: %m");
	slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0)
		fail("open %s: %m", name);
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
		fail("sending the pty master: %m");
	close(master);
	close(CONSOLE_FD);
	if (ioctl(slave, TIOCSCTTY, 0) < 0)
		fail("controlling terminal: %m");
	if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0)
		fail("pty stdio: %m");
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
		fail("loading the seccomp filter: %m");
}

static int cap_last(void)
{
	char buf[16] = {0};
	int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
	int last = CAP_LAST_CAP;

	if (fd >= 0) {
		if (read(fd, buf, sizeof(buf) - 1) > 0)
			last = atoi(buf);
		close(fd);
	}
	return last;
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
	int last = cap_last(), c, cwd_done;
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];

	if (n > 65536)
		fail("user: %zu groups", n);
	groups = calloc(n + 1, sizeof(gid_t));
	if (!groups)
		fail("user: out of memory");
	for (i = 0; i < n; i++)
		groups[i] = num(pl);

	cwd_done = chdir(cwd) == 0;
	for (c = 0; c <= last; c++) {
		if (!(bset & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			fail("dropping capability %d: %m", c);
	}
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		fail("keepcaps: %m");
	if (setgroups(n, groups) < 0)
		fail("setgroups: %m");
	if (setresgid(gid, gid, gid) < 0)
		fail("setgid %u: %m", gid);
	if (setresuid(uid, uid, uid) < 0)
		fail("setuid %u: %m", uid);
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		fail("keepcaps: %m");
	memset(data, 0, sizeof(data));
	data[0].effective = eff;
	data[1].effective = eff >> 32;
	data[0].permitted = perm;
	data[1].permitted = perm >> 32;
	data[0].inheritable = inh;
	data[1].inheritable = inh >> 32;
	if (syscall(SYS_capset, &hdr, data) < 0)
		fail("setting capabilities: %m");
	for (c = 0; c <= last; c++) {
		/* As runc: ambient capabilities are best effort. */
		if (amb & (1ULL << c))
			prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0);
	}
	if (!cwd_done && chdir(cwd) < 0)
		fail("chdir to cwd (%s) set in config.json: %m", cwd);
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
		fail("joining the session keyring: %m");
	}
	if (syscall(SYS_keyctl, KEYCTL_DESCRIBE, id, desc, sizeof(desc) - 1) < 0)
		fail("describing the session keyring: %m");
	desc[sizeof(desc) - 1] = '\0';
	/* "type;uid;gid;perm;description" */
	if (sscanf(desc, "%*[^;];%*[^;];%*[^;];%x;", &perm) != 1)
		fail("session keyring: bad description");
	if (syscall(SYS_keyctl, KEYCTL_SETPERM, id, perm | 0x80000) < 0)
		fail("session keyring permissions: %m");
}

/* The program's path, looked up in the container's PATH as runc does. */
static char *lookup(const char *name, char **env, char *buf, size_t size)
{
	const char *path = NULL, *p, *e;
	char **v;

	if (strchr(name, '/')) {
		if (access(name, X_OK) < 0)
			fail("exec: %s: %m", name);
		return (char *)name;
	}
	for (v = env; *v; v++)
		if (strncmp(*v, "PATH=", 5) == 0)
			path = *v + 5;
	for (p = path; p && *p; p = *e ? e + 1 : e) {
		struct stat st;

		e = strchrnul(p, ':');
		if (e == p)
			snprintf(buf, size, "./%s", name);
		else
			snprintf(buf, size, "%.*s/%s", (int)(e - p), p, name);
		if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
			return buf;
	}
	fail("exec: \"%s\": executable file not found in $PATH", name);
}

/* exec <argc> <envc> <arg>... <env>...: ready, wait for the start, run. */
static void op_exec(struct plan *pl)
{
	size_t argc = num(pl), envc = num(pl), i;
	char **argv, **envp, *path, buf[4096], b;
	ssize_t n;

	if (argc == 0 || argc > MAX_ARGS || envc > MAX_ARGS)
		fail("exec: %zu arguments, %zu variables", argc, envc);
	argv = calloc(argc + 1, sizeof(char *));
	envp = calloc(envc + 1, sizeof(char *));
	if (!argv || !envp)
		fail("exec: out of memory");
	for (i = 0; i < argc; i++)
		argv[i] = field(pl);
	for (i = 0; i < envc; i++)
		envp[i] = field(pl);
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
	fail("exec %s: %m", path);
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
		fail("loopback: socket: %m");
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		fail("loopback: %m");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		fail("bringing up loopback: %m");
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
	read_plan(&pl);
	cloexec_all();
	while (pl.p < pl.end) {
		const char *op = field(&pl);

		if (!strcmp(op, "setns")) {
			const char *path = field(&pl);
			int type = num(&pl);
			int fd = open(path, O_RDONLY | O_CLOEXEC);

			if (fd < 0 || setns(fd, type) < 0)
				fail("joining namespace %s: %m", path);
			close(fd);
		} else if (!strcmp(op, "unshare")) {
			if (unshare(num(&pl)) < 0)
				fail("unshare: %m");
		} else if (!strcmp(op, "loopback")) {
			loopback_up();
		} else if (!strcmp(op, "rootfs")) {
			const char *rootfs = field(&pl);
			unsigned long prop = num(&pl);

			if (mount(NULL, "/", NULL, prop, NULL) < 0)
				fail("root propagation: %m");
			if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
				fail("bind mount of the rootfs %s: %m", rootfs);
			if (chdir(rootfs) < 0)
				fail("chdir %s: %m", rootfs);
			rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (rootfd < 0)
				fail("open %s: %m", rootfs);
		} else if (!strcmp(op, "mount")) {
			op_mount(&pl);
		} else if (!strcmp(op, "mknod")) {
			op_mknod(&pl);
		} else if (!strcmp(op, "symlink")) {
			op_symlink(&pl);
		} else if (!strcmp(op, "pivot")) {
			pivot();
		} else if (!strcmp(op, "rootro")) {
			if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | kept_flags("/"), NULL) < 0)
				fail("read-only root: %m");
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
				fail("sethostname: %m");
		} else if (!strcmp(op, "domainname")) {
			const char *d = field(&pl);

			if (setdomainname(d, strlen(d)) < 0)
				fail("setdomainname: %m");
		} else if (!strcmp(op, "console")) {
			unsigned cols = num(&pl);

			console(cols, num(&pl));
		} else if (!strcmp(op, "rlimit")) {
			int res = num(&pl);
			struct rlimit rl;

			rl.rlim_cur = num(&pl);
			rl.rlim_max = num(&pl);
			if (setrlimit(res, &rl) < 0)
				fail("rlimit %d: %m", res);
		} else if (!strcmp(op, "oom")) {
			const char *score = field(&pl);
			int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);

			if (fd < 0 || write(fd, score, strlen(score)) < 0)
				fail("oom_score_adj %s: %m", score);
			close(fd);
		} else if (!strcmp(op, "keyring")) {
			keyring(field(&pl));
		} else if (!strcmp(op, "umask")) {
			umask(num(&pl));
		} else if (!strcmp(op, "nnp")) {
			if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
				fail("no_new_privs: %m");
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
