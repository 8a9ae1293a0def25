/*
 * kata-helper: the runner's one program inside a kata container.
 *
 * The runner copies this static binary into every kata (root-only, /.cyber-dojo-runner/)
 * and starts it once per kata and runner process, as root, through the engine's exec API:
 * `kata-helper serve`. It then reads framed requests on stdin and answers on stdout, each
 * request in a worker process of its own, until stdin ends. It needs nothing of the image:
 * no shell, no libc, no tools.
 *
 * Frames, both ways: u32 length (of what follows), u32 request id, u8 type, then fields,
 * each u32 length + bytes; all integers big-endian, numbers in fields as decimal text.
 *   requests: 'r' run, 'n' avatar_new, 'o' avatar_old, 'e' avatar_exists, 'k' kill
 *             (fields: avatar, uid, gid, lock seconds, sandbox, home, then the command's
 *             own: see each cmd_*); 'p' prepare (the avatars' folders, see cmd_prepare)
 *   answers:  'h' hello (id 0, once: version, shell, Landlock ABI), 's' started (a run's
 *             script began), 'a' the answer: records of four fields: kind, name, flag, content.
 *
 * What it relies on, and its limits:
 * - Root in the kata has only CAP_SETUID, CAP_SETGID and CAP_SYS_NICE, under
 *   no_new_privs. Root never touches an avatar's files: every sandbox and home access is
 *   made with the avatar's uid as the file-system uid (files.c), and killing needs no
 *   CAP_KILL (confine.c).
 * - Each run's worker is its script's clock (at nice -20), reads its output (the first
 *   51200 bytes of each stream are kept) and is the kata's memory guard (memory.c); it
 *   never waits for an end of file that another process could withhold. After the run,
 *   nothing of the avatar's is left but its files: no process, no IPC object.
 * - Linux 5.3 or later (pidfd_open); Landlock (5.13, and later ABIs) confines each run as
 *   far as the kernel allows. Per-avatar serialisation is an flock in /run/cyber-dojo, so
 *   several runner processes may serve one kata at once.
 */
#include "helper.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>


/* ---------- users ---------- */

static int lock_file(const char *name, unsigned seconds) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, STATE "/%s.lock", name);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) fail("open lock");
    alarm(seconds);
    int rc = flock(fd, LOCK_EX);
    alarm(0);
    if (rc != 0) { close(fd); return -1; }
    return fd;
}

/* Is "avatar:x:uid:gid:" a line of /etc/passwd? */
static int entered(const char *avatar, uid_t uid, gid_t gid) {
    char want[128];
    int n = snprintf(want, sizeof want, "%s:x:%u:%u:", avatar, uid, gid);
    FILE *f = fopen("/etc/passwd", "re");
    if (!f) return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) found = !strncmp(line, want, (size_t)n);
    fclose(f);
    return found;
}

static const char *shell(void);

static int append_line(const char *path, const char *line) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    size_t n = strlen(line);
    ssize_t w = write(fd, line, n);
    int rc = (w == (ssize_t)n) ? 0 : -1;
    if (close(fd) != 0) rc = -1;
    return rc;
}

/* Rewrites path without the lines that begin with prefix. */
static int drop_lines(const char *path, const char *prefix) {
    FILE *in = fopen(path, "re");
    if (!in) return errno == ENOENT ? 0 : -1;
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.cyber-dojo", path);
    FILE *out = fopen(tmp, "we");
    if (!out) { fclose(in); return -1; }
    char line[4096];
    size_t n = strlen(prefix);
    while (fgets(line, sizeof line, in)) if (strncmp(line, prefix, n)) fputs(line, out);
    fclose(in);
    if (fchmod(fileno(out), 0644) != 0 || fclose(out) != 0) return -1;
    return rename(tmp, path);
}

static int add_user(const char *avatar, uid_t uid) {
    int lock = lock_file("passwd", 60);
    if (lock < 0) return -1;
    char line[PATH_MAX + 128];
    snprintf(line, sizeof line, "%s:x:%u:%u::" HOMES "/%s:%s\n", avatar, uid, uid, avatar, shell());
    int rc = append_line("/etc/passwd", line);
    snprintf(line, sizeof line, "%s:x:%u:\n", avatar, uid);
    if (rc == 0) rc = append_line("/etc/group", line);
    close(lock);
    return rc;
}

static int remove_user(const char *avatar) {
    int lock = lock_file("passwd", 60);
    if (lock < 0) return -1;
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s:", avatar);
    int rc = drop_lines("/etc/passwd", prefix) | drop_lines("/etc/group", prefix);
    close(lock);
    return rc;
}

/* ---------- the interpreter ---------- */

/* bash when the image has one, else sh: /bin's, or the first on the image's PATH. */
static const char *shell(void) {
    static char found[PATH_MAX];
    if (found[0]) return found;
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    const char *names[] = { "bash", "sh" };
    for (int k = 0; k < 2; k++) {
        snprintf(found, sizeof found, "/bin/%s", names[k]);
        if (access(found, X_OK) == 0) return found;
        for (const char *p = path; *p;) {
            const char *colon = strchr(p, ':');
            size_t n = colon ? (size_t)(colon - p) : strlen(p);
            if (n && n + strlen(names[k]) + 2 < sizeof found) {
                snprintf(found, sizeof found, "%.*s/%s", (int)n, p, names[k]);
                if (access(found, X_OK) == 0) return found;
            }
            p += n + (colon ? 1 : 0);
        }
    }
    strcpy(found, "/bin/sh");
    return found;
}

/* ---------- commands ---------- */

/* Every request's first fields: the user (its name, uid and gid), how long to wait for its
 * lock, and its sandbox and home (/sandboxes/<avatar> and /home/<avatar> for an avatar;
 * /sandbox and /home/sandbox for cyber-dojo's own images' user). */
typedef struct { const char *avatar, *sandbox, *home; uid_t uid; gid_t gid; unsigned lock_seconds; } who_t;

static const char *field_path(cursor_t *c) {
    field_t f = next_field(c);
    if (f.n < 2 || f.n > 128 || f.p[0] != '/' || memmem(f.p, f.n, "..", 2) || memchr(f.p, 0, f.n)) c->bad = 1;
    return field_string(f);
}

static int who(cursor_t *c, who_t *w) {
    field_t name = next_field(c);
    unsigned long uid = field_number(c, 0x7FFFFFFEul), gid = field_number(c, 0x7FFFFFFEul);
    w->lock_seconds = (unsigned)field_number(c, 3600);
    w->sandbox = field_path(c);
    w->home = field_path(c);
    if (c->bad || name.n == 0 || name.n > 32 || uid < 1000 || gid < 1000 || w->lock_seconds == 0) return -1;
    for (size_t i = 0; i < name.n; i++) if (name.p[i] < 'a' || name.p[i] > 'z') return -1;
    w->avatar = field_string(name);
    w->uid = (uid_t)uid;
    w->gid = (gid_t)gid;
    return 0;
}

static void ensure_tmp(const who_t *w) {
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s/tmp", w->home);
    chmod(w->home, 0700);
    mkdir(tmp, 0700);
}

static void cmd_avatar_new(cursor_t *c, const who_t *w) {
    size_t n_files;
    file_t *files = read_files(c, &n_files, 1);
    if (c->bad) { emit("failed", "request"); return; }
    int lock = lock_file(w->avatar, w->lock_seconds);
    if (lock < 0) { emit("busy", w->avatar); return; }
    if (entered(w->avatar, w->uid, w->gid)) { emit("exists", w->avatar); return; }
    if (add_user(w->avatar, w->uid) != 0) { emitf("failed", "passwd", "%s", strerror(errno)); return; }
    become_avatar_fs(w->uid, w->gid);
    int root = open_own(w->sandbox);
    if (root < 0) { emitf("failed", "sandbox", "%s: %s", w->sandbox, strerror(errno)); become_root(); return; }
    ensure_tmp(w);
    int rc = write_files(root, NULL, 0, files, n_files);
    become_root();
    if (rc == 0) emit("ok", w->avatar);
    close(lock);
}

static void cmd_avatar_old(const who_t *w) {
    int lock = lock_file(w->avatar, w->lock_seconds);
    if (lock < 0) { emit("busy", w->avatar); return; }
    if (!entered(w->avatar, w->uid, w->gid)) { emit("missing", w->avatar); return; }
    if (!kill_avatar(w->uid)) { emit("failed", "kill"); return; }
    become_avatar_fs(w->uid, w->gid);
    int failures = 0;
    const char *dirs[] = { w->sandbox, w->home };
    for (int i = 0; i < 2; i++) {
        int dir = open_own(dirs[i]);
        if (dir < 0) { failures++; continue; }
        failures += remove_below(dir, 0);
    }
    remove_owned("/tmp", w->uid);
    remove_owned("/var/tmp", w->uid);
    remove_ipc(w->uid);
    become_root();
    if (failures) { emitf("failed", "files", "%d files or folders of %s could not be removed", failures, w->avatar); return; }
    if (remove_user(w->avatar) != 0) { emitf("failed", "passwd", "%s", strerror(errno)); return; }
    emit("ok", w->avatar);
    close(lock);
}

/* ---------- the run ---------- */

typedef struct { int fd; char data[TEXT_LIMIT]; size_t len; int more; } output_t;

/* Reads what is there; 0 at the end of the stream. */
static int drain(output_t *o) {
    static char scratch[65536];
    for (;;) {
        char *into = o->len < TEXT_LIMIT ? o->data + o->len : scratch;
        size_t room = o->len < TEXT_LIMIT ? TEXT_LIMIT - o->len : sizeof scratch;
        ssize_t n = read(o->fd, into, room);
        if (n > 0) {
            if (into == scratch) o->more = 1;
            else o->len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return 1;
        return 0;
    }
}

/* After the guard kills an avatar, the kata's memory takes a moment to be freed: until
 * then, no other run's guard may take that pressure for its own avatar's (each worker's
 * clock is CLOCK_MONOTONIC, the same for all of them). */
#define GUARD_COOLING_MS 1000
static const char *GUARD_MARK = STATE "/guard-killed";

static int guard_cooling(int64_t now) {
    long long at = 0;
    FILE *f = fopen(GUARD_MARK, "re");
    if (!f) return 0;
    if (fscanf(f, "%lld", &at) != 1) at = 0;
    fclose(f);
    return now - at < GUARD_COOLING_MS;
}

static void guard_killed(int64_t now) {
    FILE *f = fopen(GUARD_MARK, "we");
    if (!f) return;
    fprintf(f, "%lld\n", (long long)now);
    fclose(f);
}

/* A run's own ways, beyond the avatar's defaults. */
enum { RUN_SYNC = 1, RUN_CLEAN_HOME = 2, RUN_BASH_ONLY = 4 };
typedef struct {
    unsigned port_low, port_high; /* its TCP ports; 0-0: TCP is not confined */
    unsigned flags;               /* RUN_SYNC: the sandbox holds exactly the files sent;
                                   * RUN_CLEAN_HOME: home and /tmp emptied first;
                                   * RUN_BASH_ONLY: no bash is a fault, not sh */
    mode_t umask;                 /* of the files written and of the script */
    char **writable;              /* folders it may write in, besides sandbox and home */
    size_t n_writable;
    file_t *home_files;           /* written into its home before the run */
    size_t n_home_files;
    /* its processes' limits (per uid; per process; bytes; bytes; bytes; per process); 0: the kata's */
    unsigned long nproc, nofile, fsize, data, stack, locks;
} run_options_t;

/* A limit of the script's, hard and soft, set while the child is still root. */
static void limit(int resource, unsigned long value) {
    struct rlimit r = { value, value };
    if (value && setrlimit(resource, &r) != 0) _exit(126);
}

/* The script's child side: becomes the avatar, in its sandbox, and execs the shell. */
static void start_script(const who_t *w, const run_options_t *o, char **env, int out, int err) {
    static const int signals[] = { SIGPIPE, SIGXFSZ, SIGALRM, SIGCHLD, SIGHUP, SIGTERM, SIGINT };
    for (size_t i = 0; i < sizeof signals / sizeof *signals; i++) signal(signals[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) _exit(126);
    /* Its oom_score_adj stays the helper's (0), the floor an unprivileged process may set. */
    if (setsid() < 0 || setpriority(PRIO_PROCESS, 0, 0) != 0) _exit(126);
    /* The kata's own ulimits hold too, where its engine could set them (Swarm cannot). */
    limit(RLIMIT_NPROC, o->nproc);
    limit(RLIMIT_NOFILE, o->nofile);
    limit(RLIMIT_FSIZE, o->fsize);
    limit(RLIMIT_DATA, o->data);
    limit(RLIMIT_STACK, o->stack);
    limit(RLIMIT_LOCKS, o->locks);
    struct rlimit none_core = { 0, 0 };
    if (setrlimit(RLIMIT_CORE, &none_core) != 0) _exit(126);
    if (setgroups(0, NULL) != 0 || setresgid(w->gid, w->gid, w->gid) != 0 || setresuid(w->uid, w->uid, w->uid) != 0) _exit(126);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) _exit(126);
    confine(w->sandbox, w->home, o->writable, o->n_writable, o->port_low, o->port_high);
    if (chdir(w->sandbox) != 0) { dprintf(2, "cyber-dojo: cannot enter %s: %s\n", w->sandbox, strerror(errno)); _exit(126); }
    umask(o->umask);
    if (syscall(SYS_close_range, 3u, ~0u, 0) != 0) for (int fd = 3; fd < 1024; fd++) close(fd);
    const char *sh = shell();
    char *argv[] = { (char *)sh, "./cyber-dojo.sh", NULL };
    execve(sh, argv, env);
    dprintf(2, "cyber-dojo: cannot run %s: %s\n", sh, strerror(errno));
    _exit(127);
}

/* The script's environment: the image's (this process's), then the run's own. */
static char **script_env(char **extra, size_t n_extra) {
    extern char **environ;
    size_t n = 0;
    while (environ[n]) n++;
    char **env = xmalloc(sizeof(char *) * (n + n_extra + 1));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t len = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int replaced = 0;
        for (size_t j = 0; j < n_extra && !replaced; j++) replaced = !strncmp(extra[j], environ[i], len) && extra[j][len] == '=';
        if (!replaced) env[k++] = environ[i];
    }
    for (size_t j = 0; j < n_extra; j++) env[k++] = extra[j];
    env[k] = NULL;
    return env;
}

/* Fields: max_seconds, max_files, max_deleted, the run's options (its lowest and highest
 * TCP port, flags, umask in octal, writable folders, home files, nproc, nofile, fsize, data,
 * stack, locks; see run_options_t), the environment (count, then VAR=value each), deleted names, changed files. */
static void cmd_run(cursor_t *c, const who_t *w) {
    unsigned long max_seconds = field_number(c, 3600);
    unsigned long max_files = field_number(c, 100000);
    unsigned long max_deleted = field_number(c, 100000);
    run_options_t o = { 0 };
    o.port_low = (unsigned)field_number(c, 65535);
    o.port_high = (unsigned)field_number(c, 65535);
    o.flags = (unsigned)field_number(c, 7);
    char *umask_text = field_string(next_field(c));
    o.umask = (mode_t)strtoul(umask_text, NULL, 8) & 0777;
    o.n_writable = field_number(c, 16);
    o.writable = xmalloc(sizeof(char *) * (o.n_writable + 1));
    for (size_t i = 0; i < o.n_writable; i++) o.writable[i] = (char *)field_path(c);
    o.home_files = read_files(c, &o.n_home_files, 1);
    o.nproc = field_number(c, 1ul << 20);
    o.nofile = field_number(c, 1ul << 20);
    o.fsize = field_number(c, 1ul << 40);
    o.data = field_number(c, 1ul << 40);
    o.stack = field_number(c, 1ul << 32);
    o.locks = field_number(c, 1ul << 20);
    unsigned long n_env = field_number(c, 1000);
    char **extra = xmalloc(sizeof(char *) * (n_env + 1));
    for (size_t i = 0; i < n_env; i++) {
        extra[i] = field_string(next_field(c));
        if (!strchr(extra[i], '=')) c->bad = 1;
    }
    size_t n_deleted, n_changed;
    file_t *deleted = read_files(c, &n_deleted, 0);
    file_t *changed = read_files(c, &n_changed, 1);
    if (c->bad || max_seconds == 0) { emit("failed", "request"); return; }
    char **deleted_names = xmalloc(sizeof(char *) * (n_deleted + 1));
    for (size_t i = 0; i < n_deleted; i++) deleted_names[i] = deleted[i].name;

    int lock = lock_file(w->avatar, w->lock_seconds);
    if (lock < 0) { emit("busy", w->avatar); return; }
    if ((o.flags & RUN_BASH_ONLY) && strcmp(strrchr(shell(), '/'), "/bash")) { emitf("failed", "shell", "exec bash failed: No such file or directory"); return; }
    if (!entered(w->avatar, w->uid, w->gid)) { emit("missing", w->avatar); return; }
    /* Nothing of the avatar's may run while its files are written: a worker that died
     * (say, to the OOM killer) could have left some. */
    if (!kill_avatar(w->uid)) { emit("failed", "kill"); return; }

    become_avatar_fs(w->uid, w->gid);
    umask(o.umask);
    int root = open_own(w->sandbox);
    if (root < 0) { become_root(); emitf("failed", "sandbox", "%s: %s", w->sandbox, strerror(errno)); return; }
    if (o.flags & RUN_CLEAN_HOME) {
        int home = open_own(w->home);
        if (home >= 0) remove_below(home, 0);
        remove_owned("/tmp", w->uid);
    }
    ensure_tmp(w);
    int home = open_own(w->home);
    if (home < 0) emitf("failed", "write", "%s: %s", w->home, strerror(errno));
    int written = home >= 0 && write_files(home, NULL, 0, o.home_files, o.n_home_files) == 0;
    if (home >= 0) close(home);
    written = written && ((o.flags & RUN_SYNC) ? sync_files(root, changed, n_changed) : write_files(root, deleted_names, n_deleted, changed, n_changed)) == 0;
    if (!written) { umask(077); become_root(); return; }
    umask(077);
    snapshot_t before = snapshot(root, 1);
    become_root();

    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) { emitf("failed", "pipe", "%s", strerror(errno)); return; }
    char **env = script_env(extra, n_env);
    long ooms_before = oom_kills();
    buf_t started = { 0 };
    send_frame('s', &started);

    int64_t began = now_ms(), deadline = began + (int64_t)max_seconds * 1000;
    script_pid = fork();
    if (script_pid < 0) { emitf("failed", "fork", "%s", strerror(errno)); return; }
    if (script_pid == 0) start_script(w, &o, env, out[1], err[1]);
    close(out[1]);
    close(err[1]);
    int pidfd = (int)syscall(SYS_pidfd_open, script_pid, 0);
    if (pidfd < 0) fail("pidfd_open");
    output_t outs[2] = { { .fd = out[0] }, { .fd = err[0] } };
    for (int i = 0; i < 2; i++) if (fcntl(outs[i].fd, F_SETFL, O_NONBLOCK) != 0) fail("fcntl");

    /* The clock must not stall when the kata is short of memory and the kernel takes the
     * page cache: its own code (the only file-backed pages it has; without swap, the rest
     * stays) is locked in. The kata's default 8 MiB of locked memory is plenty. */
    extern char __executable_start, edata;
    if (mlock(&__executable_start, (size_t)(&edata - &__executable_start)) != 0) dprintf(2, "kata-helper: mlock: %s\n", strerror(errno));
    const char *why = NULL; /* the clock's verdict: NULL (the script ended), "timed_out" or "memory_guard" */
    int64_t ended = 0, next_guard = began;
    for (;;) {
        int64_t now = now_ms();
        if (now >= deadline) { why = "timed_out"; break; }
        if (now >= next_guard) {
            int percent;
            int pressed = memory_pressed(&percent);
            next_guard = now + (percent >= 75 ? 10 : 100);
            if (pressed && !guard_cooling(now) && largest_running_holder() == w->uid) {
                guard_killed(now);
                why = "memory_guard";
                break;
            }
        }
        int64_t wait = (deadline < next_guard ? deadline : next_guard) - now;
        struct pollfd p[3] = { { pidfd, POLLIN, 0 }, { outs[0].fd, POLLIN, 0 }, { outs[1].fd, POLLIN, 0 } };
        int n = poll(p, 3, (int)(wait > 0 ? wait : 0));
        if (n < 0 && errno != EINTR) fail("poll");
        if (n <= 0) continue;
        for (int i = 0; i < 2; i++) {
            if (outs[i].fd >= 0 && (p[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) && !drain(&outs[i])) {
                close(outs[i].fd);
                outs[i].fd = -1;
            }
        }
        if (p[0].revents & POLLIN) { ended = now_ms(); break; }
    }
    if (!ended) ended = now_ms();
    /* Every process of the avatar goes, the script's children too; then what they
     * wrote before is read, and no more: whoever else holds the pipes is not waited for. */
    int killed = kill_avatar(w->uid);
    while (script_status < 0) {
        int status;
        pid_t pid = waitpid(script_pid, &status, 0);
        if (pid == script_pid) script_status = status;
        else if (pid < 0 && errno != EINTR) break;
    }
    for (int i = 0; i < 2; i++) if (outs[i].fd >= 0) { drain(&outs[i]); close(outs[i].fd); }
    close(pidfd);

    int status = WIFEXITED(script_status) ? WEXITSTATUS(script_status) : WIFSIGNALED(script_status) ? 128 + WTERMSIG(script_status) : 1;
    char duration[32], code[16];
    snprintf(duration, sizeof duration, "%lld", (long long)(ended - began));
    snprintf(code, sizeof code, "%d", status);
    record("finished", duration, strlen(duration), code, "", 0);
    if (why) emit(why, w->avatar);
    if (!killed) emit("failed", "kill");
    char count[32];
    snprintf(count, sizeof count, "%ld", oom_kills() - ooms_before);
    emit("oom_kills", count);
    record("stdout", "", 0, outs[0].more ? "1" : "0", outs[0].data, outs[0].len);
    record("stderr", "", 0, outs[1].more ? "1" : "0", outs[1].data, outs[1].len);

    become_avatar_fs(w->uid, w->gid);
    remove_ipc(w->uid);
    collect(root, &before, max_files, max_deleted);
    become_root();
    close(lock);
}

/* Where the engine cannot mount each avatar's own tmpfs (Swarm's have no owner and no
 * exec), each avatar's sandbox and home are folders it makes itself in the kata's own
 * file system, in /sandboxes and /home made mode 1733 by root (no one lists them, no one
 * removes another's), before any avatar enters. Fields: a count, then each avatar's
 * name, uid, sandbox and home. */
static void cmd_prepare(cursor_t *c) {
    static const char *parents[] = { SANDBOXES, HOMES };
    for (int k = 0; k < 2; k++) {
        struct stat st;
        if ((mkdir(parents[k], 01733) != 0 && errno != EEXIST) || lstat(parents[k], &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0 || chmod(parents[k], 01733) != 0) {
            emitf("failed", "prepare", "%s: %s", parents[k], strerror(errno));
            return;
        }
    }
    unsigned long n = field_number(c, 64);
    for (unsigned long i = 0; i < n && !c->bad; i++) {
        field_t name = next_field(c);
        uid_t uid = (uid_t)field_number(c, 0x7FFFFFFEul);
        const char *sandbox = field_path(c); /* read in order: an initialiser list's are not */
        const char *home = field_path(c);
        const char *dirs[] = { sandbox, home };
        if (c->bad || uid < 1000) break;
        become_avatar_fs(uid, uid);
        for (int k = 0; k < 2; k++) {
            struct stat st;
            if (mkdir(dirs[k], 0700) != 0 && errno != EEXIST) { emitf("failed", "prepare", "%s: %s", dirs[k], strerror(errno)); become_root(); return; }
            if (lstat(dirs[k], &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != uid) { emitf("failed", "prepare", "%s is not %.*s's", dirs[k], (int)name.n, name.p); become_root(); return; }
        }
        become_root();
    }
    if (c->bad) emit("failed", "request");
    else emit("ok", "");
}

static void cmd_kill(const who_t *w) {
    if (kill_avatar(w->uid)) emit("ok", w->avatar);
    else emit("failed", "kill");
}

/* ---------- serving ---------- */

static void on_alarm(int sig) { (void)sig; }

static void serve_one(const unsigned char *frame, size_t len, int lock_fd) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", lock_fd);
    answer_lock = open(path, O_RDWR | O_CLOEXEC);
    if (answer_lock < 0) fail("open answer lock");
    request_id = (uint32_t)frame[0] << 24 | (uint32_t)frame[1] << 16 | (uint32_t)frame[2] << 8 | frame[3];
    char type = (char)frame[4];
    cursor_t c = { frame + 5, frame + len, 0 };
    who_t w;
    signal(SIGCHLD, SIG_DFL);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) fail("prctl subreaper");
    if (type == 'p') cmd_prepare(&c);
    else if (who(&c, &w) != 0) emit("failed", "request");
    else if (type == 'r') cmd_run(&c, &w);
    else if (type == 'n') cmd_avatar_new(&c, &w);
    else if (type == 'o') cmd_avatar_old(&w);
    else if (type == 'e') emit(entered(w.avatar, w.uid, w.gid) ? "yes" : "no", w.avatar);
    else if (type == 'k') cmd_kill(&w);
    else emit("failed", "request");
    send_answer();
    _exit(0);
}

static int read_all(int fd, unsigned char *p, size_t n) {
    while (n) {
        ssize_t got = read(fd, p, n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "version")) { puts(VERSION); return 0; }
    if (argc != 2 || strcmp(argv[1], "serve")) { fputs("usage: kata-helper serve | version\n", stderr); return 2; }
    if (geteuid() != 0) { fputs("kata-helper: must run as root\n", stderr); return 2; }
    umask(077);
    if (setgroups(0, NULL) != 0) fail("setgroups");
    /* The clock of every run is ahead of the avatars' processes. */
    if (setpriority(PRIO_PROCESS, 0, -20) != 0) fail("setpriority");
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* the kata's fsize limit is the avatars'; a write says EFBIG */
    struct sigaction alarm_action = { .sa_handler = on_alarm };
    if (sigaction(SIGALRM, &alarm_action, NULL) != 0) fail("sigaction");
    struct sigaction child_action = { .sa_handler = SIG_IGN, .sa_flags = SA_NOCLDWAIT };
    if (sigaction(SIGCHLD, &child_action, NULL) != 0) fail("sigaction");
    if (mkdir(STATE, 0700) != 0 && errno != EEXIST) fail("mkdir " STATE);
    int lock_fd = open(STATE, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (lock_fd < 0) fail("open answer lock");
    answer_lock = lock_fd;
    if (fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK) != 0) fail("fcntl stdout");
    buf_t hello = { 0 };
    buf_field(&hello, VERSION, strlen(VERSION));
    buf_field(&hello, shell(), strlen(shell()));
    char abi[16];
    snprintf(abi, sizeof abi, "%d", landlock_abi());
    buf_field(&hello, abi, strlen(abi));
    if (send_frame('h', &hello) != 0) fail("hello");
    for (;;) {
        unsigned char head[4];
        if (read_all(0, head, 4) != 0) return 0; /* the runner closed the session */
        uint32_t len = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 | head[3];
        if (len < 5 || len > MAX_FRAME) { fputs("kata-helper: bad frame\n", stderr); return 2; }
        unsigned char *frame = xmalloc(len);
        if (read_all(0, frame, len) != 0) return 0;
        pid_t pid = fork();
        if (pid < 0) {
            /* The kata cannot start a process now: say so, and go on. */
            request_id = (uint32_t)frame[0] << 24 | (uint32_t)frame[1] << 16 | (uint32_t)frame[2] << 8 | frame[3];
            emitf("failed", "fork", "%s", strerror(errno));
            send_answer();
        } else if (pid == 0) {
            serve_one(frame, len, lock_fd);
        }
        free(frame);
    }
}
