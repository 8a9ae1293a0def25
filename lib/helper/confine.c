/* Who the helper is at each step, how it kills an avatar, and what an avatar's run may
 * reach (see kata-helper.c for the whole).
 *
 * - File access as the avatar: effective uid and gid U (the file-system ids follow),
 *   real uid K = 2^31 + the worker's pid, saved uid 0. K is no process's uid: no avatar
 *   process can signal or trace the worker meanwhile, and the saved 0 brings root back.
 * - Killing, with no CAP_KILL: in that same state, kill(-1, SIGKILL) reaches exactly the
 *   processes whose real or saved uid is U or K; it is atomic against fork and needs no
 *   fork. It is repeated until /proc shows no process with real uid U, zombies included
 *   (the kernel counts them against U's process limit until they are reaped).
 * - A run's script is confined with Landlock (Linux 5.13+; each part as far as the
 *   kernel's ABI goes, none when it has none): reading and executing anywhere, writing
 *   only in the avatar's sandbox, its home, /dev/shm and the harmless devices; TCP bind
 *   and connect only to the avatar's own ports (ABI 4); no connecting to abstract unix
 *   sockets, nor signalling processes, outside the run (ABI 6). So no avatar can reach
 *   another's sockets or ports, pass it descriptors, or fill space it needs.
 * - And with seccomp: no memfd_create (memory no limit bounds and no process's size
 *   shows), and no system call of another architecture's (i386, x32) that could go
 *   around that.
 */
#include "helper.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static uid_t killer_uid(void) { return 0x80000000u + (uid_t)getpid(); }

void become_avatar_fs(uid_t uid, gid_t gid) {
    if (setresgid(-1, gid, -1) != 0) fail("setresgid avatar");
    if (setresuid(killer_uid(), uid, 0) != 0) fail("setresuid avatar");
}

void become_root(void) {
    if (setresuid(0, 0, 0) != 0) fail("setresuid root");
    if (setresgid(-1, 0, -1) != 0) fail("setresgid root");
}

pid_t script_pid = -1;
int script_status = -1;

/* Reaps every exited child (a worker is the subreaper of its avatar's orphans). */
void reap(void) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == script_pid) script_status = status;
    }
}

/* The real uid of a process, from /proc (a process cannot hide it there); -1 if gone. */
static long real_uid(const char *pid) {
    char path[300], text[1024];
    snprintf(path, sizeof path, "/proc/%s/status", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return -1;
    text[n] = 0;
    char *line = strstr(text, "\nUid:");
    return line ? strtol(line + 5, NULL, 10) : -1;
}

int has_processes(uid_t uid) {
    DIR *proc = opendir("/proc");
    if (!proc) fail("opendir /proc");
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(proc)) != NULL) {
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9') found = real_uid(e->d_name) == (long)uid;
    }
    closedir(proc);
    return found;
}

int kill_avatar(uid_t uid) {
    int ok = 0;
    if (setresuid(killer_uid(), uid, 0) != 0) fail("setresuid killer");
    for (int i = 0; i < 2000; i++) {
        kill(-1, SIGKILL);
        reap();
        if (!has_processes(uid)) { ok = 1; break; }
        sleep_ms(1);
    }
    become_root();
    return ok;
}

/* The ids of the System V objects of one kind that uid owns or created. Each line of
 * /proc/sysvipc/<kind> after the header holds: key id perms, then `before_uid` numbers,
 * then uid gid cuid. */
static int owned_ids(const char *kind, int before_uid, uid_t uid, int *ids, int max) {
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/sysvipc/%s", kind);
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    int n = 0;
    if (!fgets(line, sizeof line, f)) { fclose(f); return 0; }
    while (n < max && fgets(line, sizeof line, f)) {
        char *at = line, *end;
        long values[16];
        int count = 0;
        while (count < 16 && (values[count] = strtol(at, &end, 10), end != at)) { at = end; count++; }
        int u = 3 + before_uid;
        if (count > u + 2 && (values[u] == (long)uid || values[u + 2] == (long)uid)) ids[n++] = (int)values[1];
    }
    fclose(f);
    return n;
}

void remove_ipc(uid_t uid) {
    int ids[1024], n;
    n = owned_ids("shm", 4, uid, ids, 1024); /* size cpid lpid nattch */
    for (int i = 0; i < n; i++) shmctl(ids[i], IPC_RMID, NULL);
    n = owned_ids("msg", 4, uid, ids, 1024); /* cbytes qnum lspid lrpid */
    for (int i = 0; i < n; i++) msgctl(ids[i], IPC_RMID, NULL);
    n = owned_ids("sem", 1, uid, ids, 1024); /* nsems */
    for (int i = 0; i < n; i++) semctl(ids[i], 0, IPC_RMID);
    remove_owned("/dev/mqueue", uid);
    remove_owned("/dev/shm", uid);
}

/* ---------- Landlock (its uapi, which Debian 12's headers predate) ---------- */

struct ruleset_attr { uint64_t handled_access_fs, handled_access_net, scoped; };
struct path_beneath_attr { uint64_t allowed_access; int32_t parent_fd; } __attribute__((packed));
struct net_port_attr { uint64_t allowed_access, port; };

enum {
    FS_EXECUTE = 1 << 0, FS_WRITE_FILE = 1 << 1, FS_READ_FILE = 1 << 2, FS_READ_DIR = 1 << 3,
    FS_REMOVE_DIR = 1 << 4, FS_REMOVE_FILE = 1 << 5, FS_MAKE_CHAR = 1 << 6, FS_MAKE_DIR = 1 << 7,
    FS_MAKE_REG = 1 << 8, FS_MAKE_SOCK = 1 << 9, FS_MAKE_FIFO = 1 << 10, FS_MAKE_BLOCK = 1 << 11,
    FS_MAKE_SYM = 1 << 12, FS_REFER = 1 << 13, FS_TRUNCATE = 1 << 14, FS_IOCTL_DEV = 1 << 15,
    NET_BIND_TCP = 1 << 0, NET_CONNECT_TCP = 1 << 1,
    SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0, SCOPE_SIGNAL = 1 << 1,
    RULE_PATH_BENEATH = 1, RULE_NET_PORT = 2,
};

int landlock_abi(void) {
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, 1 /* LANDLOCK_CREATE_RULESET_VERSION */);
    return abi < 0 ? 0 : (int)abi;
}

static void allow_path(int ruleset, const char *path, uint64_t access, uint64_t handled) {
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) return; /* not in this image */
    struct stat st;
    /* A file (not a folder) takes only the rights a file can have. */
    if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode)) access &= FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV;
    struct path_beneath_attr rule = { access & handled, fd };
    if (syscall(SYS_landlock_add_rule, ruleset, RULE_PATH_BENEATH, &rule, 0) != 0) _exit(126);
    close(fd);
}

/* ---------- seccomp (its uapi too) ---------- */

struct sock_filter { uint16_t code; uint8_t jt, jf; uint32_t k; };
struct sock_fprog { unsigned short len; struct sock_filter *filter; };
#define BPF_STMT(code, k) { (uint16_t)(code), 0, 0, k }
#define BPF_JUMP(code, k, jt, jf) { (uint16_t)(code), jt, jf, k }
enum { LD_ABS = 0x20, JEQ = 0x15, AND = 0x54, RET = 0x06 };
#define RET_ALLOW 0x7fff0000u
#define RET_EPERM (0x00050000u | 1)
#if defined(__x86_64__)
#define NATIVE_ARCH 0xC000003Eu /* AUDIT_ARCH_X86_64 */
#define X32_BIT 0x40000000u
#elif defined(__aarch64__)
#define NATIVE_ARCH 0xC00000B7u /* AUDIT_ARCH_AARCH64 */
#define X32_BIT 0u
#else
#error "kata-helper: seccomp filter for this architecture"
#endif

static void deny_memfd(void) {
    struct sock_filter filter[] = {
        BPF_STMT(LD_ABS, 4),                             /* seccomp_data.arch */
        BPF_JUMP(JEQ, NATIVE_ARCH, 1, 0),
        BPF_STMT(RET, RET_EPERM),
        BPF_STMT(LD_ABS, 0),                             /* seccomp_data.nr */
        BPF_STMT(AND, ~X32_BIT),
        BPF_JUMP(JEQ, SYS_memfd_create, 0, 1),
        BPF_STMT(RET, RET_EPERM),
        BPF_STMT(RET, RET_ALLOW),
    };
    struct sock_fprog program = { sizeof filter / sizeof *filter, filter };
    if (prctl(PR_SET_SECCOMP, 2 /* SECCOMP_MODE_FILTER */, &program, 0, 0) != 0) _exit(126);
}

void confine(const char *sandbox, const char *home, char **writable, size_t n_writable, unsigned port_low, unsigned port_high) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(126);
    deny_memfd();
    int abi = landlock_abi();
    if (abi < 1) return;
    uint64_t fs = (1ull << 13) - 1;
    if (abi >= 2) fs |= FS_REFER;
    if (abi >= 3) fs |= FS_TRUNCATE;
    if (abi >= 5) fs |= FS_IOCTL_DEV;
    struct ruleset_attr attr = { fs, abi >= 4 && port_low ? NET_BIND_TCP | NET_CONNECT_TCP : 0, abi >= 6 ? SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL : 0 };
    size_t size = abi >= 6 ? sizeof attr : abi >= 4 ? 2 * sizeof(uint64_t) : sizeof(uint64_t);
    int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (ruleset < 0) _exit(126);
    const uint64_t read = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR;
    allow_path(ruleset, "/", read, fs);
    allow_path(ruleset, sandbox, fs, fs);
    allow_path(ruleset, home, fs, fs);
    for (size_t i = 0; i < n_writable; i++) allow_path(ruleset, writable[i], fs, fs);
    /* POSIX shared memory and semaphores live there; what a run leaves goes after it. */
    allow_path(ruleset, "/dev/shm", read | FS_WRITE_FILE | FS_MAKE_REG | FS_MAKE_DIR | FS_REMOVE_FILE | FS_REMOVE_DIR | FS_TRUNCATE, fs);
    static const char *devices[] = { "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty" };
    for (size_t i = 0; i < sizeof devices / sizeof *devices; i++) allow_path(ruleset, devices[i], FS_READ_FILE | FS_WRITE_FILE | FS_IOCTL_DEV, fs);
    for (unsigned port = port_low; attr.handled_access_net && port <= port_high; port++) {
        struct net_port_attr rule = { NET_BIND_TCP | NET_CONNECT_TCP, port };
        if (syscall(SYS_landlock_add_rule, ruleset, RULE_NET_PORT, &rule, 0) != 0) _exit(126);
    }
    if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) _exit(126);
    close(ruleset);
}
