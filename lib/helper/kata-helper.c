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
 *             (fields: avatar, uid, then the command's own, see each cmd_*)
 *   answers:  'h' hello (id 0, once), 's' started (a run's script began), 'a' the answer:
 *             records of four fields each: kind, name, flag, content.
 *
 * What it relies on, and its limits:
 * - Root in the kata has only CAP_SETUID, CAP_SETGID and CAP_SYS_NICE, under
 *   no_new_privs. Root never touches an avatar's files: every sandbox and home access is
 *   made with the avatar's uid as the effective (file-system) uid, so the kernel keeps it
 *   inside what the avatar owns, whatever links it planted.
 * - Killing: with no CAP_KILL, root kills an avatar's processes by taking real uid K (a
 *   uid no process has: 2^31 + this worker's pid) and effective uid U (the avatar's),
 *   saved uid 0, and calling kill(-1, SIGKILL) until kill(-1, 0) finds none. kill(-1) is
 *   atomic against fork, needs no fork itself, and no avatar process can signal a worker
 *   in that state (their uids match neither K nor 0).
 * - Each run worker is its script's clock (at nice -20), reads its output (the first
 *   51200 bytes of each stream are kept), and is the kata's memory guard; it never waits
 *   for an end of file that another process could withhold.
 * - Linux 5.3 or later (pidfd_open). Per-avatar serialisation is an flock in
 *   /run/cyber-dojo, so several runner processes may serve one kata at once.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VERSION "1"
#define STATE "/run/cyber-dojo"
#define TEXT_LIMIT 51200            /* bytes of stdout, stderr and each returned file */
#define MAX_FRAME (1u << 30)        /* no request is larger (the runner's body limit is less) */
#define SANDBOXES "/sandboxes"
#define HOMES "/home"
#define WRITE_TIMEOUT_MS 30000      /* an answer nobody reads is abandoned */
#define GUARD_INTERVAL_MS 100
#define MAX_DEPTH 256

/* ---------- small utilities ---------- */

static void fail(const char *what) {
    dprintf(2, "kata-helper: %s: %s\n", what, strerror(errno));
    _exit(2);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) fail("malloc");
    return p;
}

static int64_t now_ms(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_MONOTONIC, &t) != 0) fail("clock_gettime");
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000 };
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {}
}

typedef struct { char *data; size_t len, cap; } buf_t;

static void buf_add(buf_t *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) fail("realloc");
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_u32(buf_t *b, uint32_t v) {
    unsigned char be[4] = { v >> 24, v >> 16, v >> 8, v };
    buf_add(b, be, 4);
}

static void buf_field(buf_t *b, const void *p, size_t n) {
    buf_u32(b, (uint32_t)n);
    buf_add(b, p, n);
}

/* ---------- answers ---------- */

static int answer_lock = -1;       /* this worker's own open of the session's lock file */
static uint32_t request_id;
static buf_t answer;               /* the records of this request's answer */

static void record(const char *kind, const char *name, size_t name_len, const char *flag, const void *content, size_t content_len) {
    buf_field(&answer, kind, strlen(kind));
    buf_field(&answer, name, name_len);
    buf_field(&answer, flag, strlen(flag));
    buf_field(&answer, content, content_len);
}

static void emit(const char *kind, const char *name) { record(kind, name, strlen(name), "", "", 0); }

static void emitf(const char *kind, const char *name, const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    record(kind, name, strlen(name), "", text, n < 0 ? 0 : (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
}

/* Writes a whole frame under the session's lock: workers share stdout. stdout is
 * non-blocking, so a reader that went away costs at most WRITE_TIMEOUT_MS. */
static int send_frame(char type, const buf_t *body) {
    buf_t frame = { 0 };
    buf_u32(&frame, (uint32_t)(4 + 1 + body->len));
    buf_u32(&frame, request_id);
    buf_add(&frame, &type, 1);
    buf_add(&frame, body->data, body->len);
    int rc = 0;
    while (flock(answer_lock, LOCK_EX) != 0) if (errno != EINTR) fail("flock answers");
    for (size_t at = 0; at < frame.len;) {
        ssize_t n = write(1, frame.data + at, frame.len - at);
        if (n > 0) { at += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        struct pollfd p = { 1, POLLOUT, 0 };
        if (n < 0 && errno == EAGAIN && poll(&p, 1, WRITE_TIMEOUT_MS) > 0 && !(p.revents & (POLLERR | POLLHUP))) continue;
        rc = -1;
        break;
    }
    flock(answer_lock, LOCK_UN);
    free(frame.data);
    return rc;
}

/* ---------- identities ---------- */

static uid_t killer_uid(void) { return 0x80000000u + (uid_t)getpid(); }

/* File-system access as the avatar: effective uid and gid U, real uid K, saved 0. */
static void become_avatar_fs(uid_t uid) {
    if (setresgid(-1, uid, -1) != 0) fail("setresgid avatar");
    if (setresuid(killer_uid(), uid, 0) != 0) fail("setresuid avatar");
}

static void become_root(void) {
    if (setresuid(0, 0, 0) != 0) fail("setresuid root");
    if (setresgid(-1, 0, -1) != 0) fail("setresgid root");
}

static pid_t script_pid = -1;
static int script_status = -1;

/* Reaps every exited child (a run worker is the subreaper of its avatar's orphans). */
static void reap(void) {
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

/* Does any process of the kata still have real uid U (zombies too: the kernel counts
 * them against U's process limit until they are reaped)? */
static int has_processes(uid_t uid) {
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

/* Kills every process of uid U and waits until the kernel has let go of them. */
static int kill_avatar(uid_t uid) {
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

/* ---------- requests ---------- */

typedef struct { const unsigned char *at, *end; int bad; } cursor_t;
typedef struct { const char *p; size_t n; } field_t;

static field_t next_field(cursor_t *c) {
    field_t f = { "", 0 };
    if (c->bad || c->end - c->at < 4) { c->bad = 1; return f; }
    uint32_t n = (uint32_t)c->at[0] << 24 | (uint32_t)c->at[1] << 16 | (uint32_t)c->at[2] << 8 | c->at[3];
    c->at += 4;
    if ((size_t)(c->end - c->at) < n) { c->bad = 1; return f; }
    f.p = (const char *)c->at;
    f.n = n;
    c->at += n;
    return f;
}

static unsigned long field_number(cursor_t *c, unsigned long max) {
    field_t f = next_field(c);
    unsigned long v = 0;
    if (f.n == 0 || f.n > 10) c->bad = 1;
    for (size_t i = 0; i < f.n && !c->bad; i++) {
        if (f.p[i] < '0' || f.p[i] > '9') c->bad = 1;
        else v = v * 10 + (unsigned long)(f.p[i] - '0');
    }
    if (v > max) c->bad = 1;
    return c->bad ? 0 : v;
}

/* A NUL-terminated copy of a field. */
static char *field_string(field_t f) {
    char *s = xmalloc(f.n + 1);
    memcpy(s, f.p, f.n);
    s[f.n] = 0;
    return s;
}

typedef struct { char *name; const char *content; size_t len; } file_t;

/* count, then (name, content) pairs. Names were checked by the runner (relative, no
 * empty, . or .. segment, no NUL); they are checked here again, as cheaply. */
static int valid_name(const char *name, size_t n) {
    if (n == 0 || n > 4096 || memchr(name, 0, n) || name[0] == '/') return 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || name[i] == '/') {
            size_t len = i - start;
            if (len == 0 || len > 255 || (len == 1 && name[start] == '.') || (len == 2 && name[start] == '.' && name[start + 1] == '.')) return 0;
            start = i + 1;
        }
    }
    return 1;
}

static file_t *read_files(cursor_t *c, size_t *count, int with_content) {
    *count = field_number(c, 100000);
    file_t *files = xmalloc(sizeof(file_t) * (*count ? *count : 1));
    for (size_t i = 0; i < *count && !c->bad; i++) {
        field_t name = next_field(c);
        if (!valid_name(name.p, name.n)) c->bad = 1;
        files[i].name = field_string(name);
        if (with_content) {
            field_t content = next_field(c);
            files[i].content = content.p;
            files[i].len = content.n;
        }
    }
    return files;
}

/* ---------- the avatar's files (all called as the avatar, see become_avatar_fs) ---------- */

/* Opens (creating when asked) the folder holding `path` below `root`, without following
 * a link: a link or file where a folder belongs is replaced when creating. Answers the
 * folder's fd and sets *leaf to the path's last segment, or -1 with errno. */
static int open_parent(int root, char *path, char **leaf, int create) {
    int dir = dup(root);
    if (dir < 0) return -1;
    char *segment = path;
    for (char *slash; (slash = strchr(segment, '/')) != NULL; segment = slash + 1) {
        *slash = 0;
        int next = openat(dir, segment, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && create && (errno == ENOENT || errno == ELOOP || errno == ENOTDIR)) {
            if (errno != ENOENT && unlinkat(dir, segment, 0) != 0) { *slash = '/'; close(dir); return -1; }
            if (mkdirat(dir, segment, 0755) != 0 && errno != EEXIST) { *slash = '/'; close(dir); return -1; }
            next = openat(dir, segment, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        *slash = '/';
        int saved = errno;
        close(dir);
        if (next < 0) { errno = saved; return -1; }
        dir = next;
    }
    *leaf = segment;
    return dir;
}

static int write_file(int root, const file_t *f) {
    char *leaf;
    int dir = open_parent(root, f->name, &leaf, 1);
    if (dir < 0) return -1;
    int fd = openat(dir, leaf, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0 && (errno == ELOOP || errno == ENXIO)) { /* a planted link or FIFO: replace it */
        if (unlinkat(dir, leaf, 0) == 0) fd = openat(dir, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    }
    int saved = errno;
    close(dir);
    if (fd < 0) { errno = saved; return -1; }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { close(fd); errno = EEXIST; return -1; }
    for (size_t at = 0; at < f->len;) {
        ssize_t n = write(fd, f->content + at, f->len - at);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { saved = n < 0 ? errno : ENOSPC; close(fd); errno = saved; return -1; }
        at += (size_t)n;
    }
    if (close(fd) != 0) return -1;
    return 0;
}

static void delete_file(int root, char *name) {
    char *leaf;
    int dir = open_parent(root, name, &leaf, 0);
    if (dir < 0) return;
    unlinkat(dir, leaf, 0); /* already gone, or a folder: nothing to do, as rm -f */
    close(dir);
}

/* Writes the caller's files into the avatar's sandbox. On failure, emits why. */
static int write_files(int root, char **deleted, size_t n_deleted, file_t *files, size_t n_files) {
    for (size_t i = 0; i < n_deleted; i++) delete_file(root, deleted[i]);
    for (size_t i = 0; i < n_files; i++) {
        if (write_file(root, &files[i]) != 0) {
            emitf("failed", "write", "%s: %s", files[i].name, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* Removes everything below dir (an fd, closed here); answers the number of failures. */
static int remove_below(int dir, int depth) {
    DIR *d = fdopendir(dir);
    if (!d) { close(dir); return 1; }
    int failures = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) { if (errno) failures++; break; }
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) { failures++; continue; }
        if (S_ISDIR(st.st_mode)) {
            /* Folders the avatar closed, even to itself, must be opened first. */
            if ((st.st_mode & 0700) != 0700 && fchmodat(dirfd(d), e->d_name, 0700, 0) != 0) { failures++; continue; }
            int sub = depth < MAX_DEPTH ? openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
            if (sub < 0) { failures++; continue; }
            failures += remove_below(sub, depth + 1);
            if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) != 0) failures++;
        } else if (unlinkat(dirfd(d), e->d_name, 0) != 0) {
            failures++;
        }
    }
    closedir(d);
    return failures;
}

static int open_dir(const char *path) {
    return open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* The avatar's sandbox and home (mount points it owns) are 0700, however it left them. */
static int open_own(const char *path) {
    if (chmod(path, 0700) != 0) return -1;
    return open_dir(path);
}

/* ---------- snapshots of a sandbox ---------- */

typedef struct {
    char *path;
    off_t size;
    struct timespec mtime, ctime;
    ino_t ino;
    uint64_t hash;
    int hashed, seen;
} entry_t;

typedef struct { entry_t *e; size_t n, cap; } snapshot_t;

static uint64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)p[i]; h *= 1099511628211ull; }
    return h;
}

/* Reads at most `max` bytes of a regular file, never following a link or blocking on a
 * FIFO; answers the bytes read (into buf) and sets *more when the file held more. */
static ssize_t read_head(int dir, const char *name, char *buf, size_t max, int *more) {
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { close(fd); return -1; }
    size_t got = 0;
    char extra;
    while (got < max) {
        ssize_t n = read(fd, buf + got, max - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    *more = 0;
    if (got == max) {
        ssize_t n;
        while ((n = read(fd, &extra, 1)) < 0 && errno == EINTR) {}
        *more = n > 0;
    }
    close(fd);
    return (ssize_t)got;
}

static void snap_walk(snapshot_t *s, int dir, char *path, size_t len, int depth, int hash) {
    DIR *d = fdopendir(dir);
    if (!d) { close(dir); return; }
    struct dirent *e;
    static char head[TEXT_LIMIT + 1];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        size_t n = strlen(e->d_name);
        if (len + n + 2 > PATH_MAX) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        memcpy(path + len, e->d_name, n + 1);
        if (S_ISDIR(st.st_mode) && depth < MAX_DEPTH) {
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) continue; /* what the avatar made unreadable is left out of both snapshots */
            path[len + n] = '/';
            snap_walk(s, sub, path, len + n + 1, depth + 1, hash);
            path[len] = 0;
        } else if (S_ISREG(st.st_mode)) {
            if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 64;
                s->e = realloc(s->e, s->cap * sizeof(entry_t));
                if (!s->e) fail("realloc");
            }
            entry_t *x = &s->e[s->n++];
            memset(x, 0, sizeof *x);
            x->path = strdup(path);
            if (!x->path) fail("strdup");
            x->size = st.st_size;
            x->mtime = st.st_mtim;
            x->ctime = st.st_ctim;
            x->ino = st.st_ino;
            int more;
            if (hash && st.st_size <= TEXT_LIMIT) {
                ssize_t got = read_head(dirfd(d), e->d_name, head, TEXT_LIMIT + 1, &more);
                if (got >= 0 && got <= TEXT_LIMIT) { x->hash = fnv1a(head, (size_t)got); x->hashed = 1; }
            }
        }
        path[len] = 0;
    }
    closedir(d);
}

static int by_path(const void *a, const void *b) { return strcmp(((const entry_t *)a)->path, ((const entry_t *)b)->path); }

static snapshot_t snapshot(int root, int hash) {
    snapshot_t s = { 0 };
    static char path[PATH_MAX];
    path[0] = 0;
    /* A new open of the folder: a dup would share the last listing's position. */
    int dir = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) snap_walk(&s, dir, path, 0, 0, hash);
    if (s.n) qsort(s.e, s.n, sizeof(entry_t), by_path);
    return s;
}

static int same_stamp(const entry_t *a, const entry_t *b) {
    return a->size == b->size && a->ino == b->ino && a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Valid UTF-8 with no NUL. A sequence the cut at `limit` split is allowed at the very end
 * when the file was truncated; *keep is set to the bytes to return. */
static int is_text(const unsigned char *p, size_t n, int truncated, size_t *keep) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t len;
        uint32_t min;
        if (c == 0) return 0;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; }
        else return 0;
        if (i + len > n) {
            for (size_t j = i + 1; j < n; j++) if ((p[j] & 0xC0) != 0x80) return 0;
            if (!truncated) return 0;
            *keep = i;
            return 1;
        }
        uint32_t cp = c & (0xFF >> (len + 1));
        for (size_t j = 1; j < len; j++) {
            if ((p[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (p[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    *keep = n;
    return 1;
}

static int name_is_utf8(const char *name) {
    size_t keep;
    return is_text((const unsigned char *)name, strlen(name), 0, &keep);
}

/* Emits, in name order, the first `max` text files of `paths` as `kind` records. */
static void emit_texts(int root, const char *kind, entry_t **paths, size_t n, unsigned long max) {
    static char content[TEXT_LIMIT];
    unsigned long count = 0;
    for (size_t i = 0; i < n && count < max; i++) {
        const char *path = paths[i]->path;
        if (!name_is_utf8(path)) continue;
        char *copy = strdup(path), *leaf;
        if (!copy) fail("strdup");
        int dir = open_parent(root, copy, &leaf, 0);
        if (dir >= 0) {
            int more;
            ssize_t got = read_head(dir, leaf, content, TEXT_LIMIT, &more);
            size_t keep;
            if (got >= 0 && is_text((unsigned char *)content, (size_t)got, more, &keep)) {
                record(kind, path, strlen(path), more ? "1" : "0", content, keep);
                count++;
            }
            close(dir);
        }
        free(copy);
    }
}

/* Compares the sandbox with `before` and emits what the run created, changed, deleted. */
static void collect(int root, snapshot_t *before, unsigned long max_files, unsigned long max_deleted) {
    snapshot_t after = snapshot(root, 0);
    entry_t **created = xmalloc(sizeof(entry_t *) * (after.n + 1));
    entry_t **changed = xmalloc(sizeof(entry_t *) * (after.n + 1));
    size_t n_created = 0, n_changed = 0;
    static char head[TEXT_LIMIT + 1];
    for (size_t i = 0; i < after.n; i++) {
        entry_t *now = &after.e[i];
        entry_t *was = before->n ? bsearch(now, before->e, before->n, sizeof(entry_t), by_path) : NULL;
        if (!was) { created[n_created++] = now; continue; }
        was->seen = 1;
        if (same_stamp(was, now)) continue;
        if (was->hashed && now->size <= TEXT_LIMIT) {
            /* Rewritten with the same content is not changed. */
            char *copy = strdup(now->path), *leaf;
            if (!copy) fail("strdup");
            int dir = open_parent(root, copy, &leaf, 0), more = 0;
            ssize_t got = dir >= 0 ? read_head(dir, leaf, head, TEXT_LIMIT + 1, &more) : -1;
            if (dir >= 0) close(dir);
            free(copy);
            if (got >= 0 && got <= TEXT_LIMIT && fnv1a(head, (size_t)got) == was->hash) continue;
        }
        changed[n_changed++] = now;
    }
    emit_texts(root, "created", created, n_created, max_files);
    emit_texts(root, "changed", changed, n_changed, max_files);
    unsigned long deleted = 0;
    for (size_t i = 0; i < before->n && deleted < max_deleted; i++) {
        if (before->e[i].seen || !name_is_utf8(before->e[i].path)) continue;
        emit("deleted", before->e[i].path);
        deleted++;
    }
}

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

/* Is "avatar:x:uid:uid:" a line of /etc/passwd? */
static int entered(const char *avatar, uid_t uid) {
    char want[128];
    int n = snprintf(want, sizeof want, "%s:x:%u:%u:", avatar, uid, uid);
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

/* Every request's first fields: the avatar, its uid, and how long to wait for its lock. */
typedef struct { const char *avatar; uid_t uid; unsigned lock_seconds; char sandbox[64], home[64]; } who_t;

static int who(cursor_t *c, who_t *w) {
    field_t name = next_field(c);
    unsigned long uid = field_number(c, 0x7FFFFFFEul);
    w->lock_seconds = (unsigned)field_number(c, 3600);
    if (c->bad || name.n == 0 || name.n > 32 || uid < 1000 || w->lock_seconds == 0) return -1;
    for (size_t i = 0; i < name.n; i++) if (name.p[i] < 'a' || name.p[i] > 'z') return -1;
    w->avatar = field_string(name);
    w->uid = (uid_t)uid;
    snprintf(w->sandbox, sizeof w->sandbox, SANDBOXES "/%s", w->avatar);
    snprintf(w->home, sizeof w->home, HOMES "/%s", w->avatar);
    return 0;
}

static void ensure_tmp(const who_t *w) {
    char tmp[80];
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
    if (entered(w->avatar, w->uid)) { emit("exists", w->avatar); return; }
    if (add_user(w->avatar, w->uid) != 0) { emitf("failed", "passwd", "%s", strerror(errno)); return; }
    become_avatar_fs(w->uid);
    int root = open_own(w->sandbox);
    if (root < 0) { emitf("failed", "sandbox", "%s: %s", w->sandbox, strerror(errno)); become_root(); return; }
    ensure_tmp(w);
    int rc = write_files(root, NULL, 0, files, n_files);
    become_root();
    if (rc == 0) emit("ok", w->avatar);
    close(lock);
}

/* What the avatar left in the kata's shared folders goes with it: its uid is reused. */
static int remove_owned(const char *dirpath, uid_t uid) {
    int dir = open_dir(dirpath);
    if (dir < 0) return 0;
    DIR *d = fdopendir(dir);
    if (!d) { close(dir); return 0; }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_uid != uid) continue;
        if (S_ISDIR(st.st_mode)) {
            if ((st.st_mode & 0700) != 0700) fchmodat(dirfd(d), e->d_name, 0700, 0);
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) remove_below(sub, 1);
            unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
        } else {
            unlinkat(dirfd(d), e->d_name, 0);
        }
    }
    closedir(d);
    return 0;
}

static void cmd_avatar_old(const who_t *w) {
    int lock = lock_file(w->avatar, w->lock_seconds);
    if (lock < 0) { emit("busy", w->avatar); return; }
    if (!entered(w->avatar, w->uid)) { emit("missing", w->avatar); return; }
    if (!kill_avatar(w->uid)) { emit("failed", "kill"); return; }
    become_avatar_fs(w->uid);
    int failures = 0;
    const char *dirs[] = { w->sandbox, w->home };
    for (int i = 0; i < 2; i++) {
        int dir = open_own(dirs[i]);
        if (dir < 0) { failures++; continue; }
        failures += remove_below(dir, 0);
    }
    /* Other avatars' files in its folders there may not be removable: not its failure. */
    remove_owned("/tmp", w->uid);
    remove_owned("/var/tmp", w->uid);
    remove_owned("/dev/shm", w->uid);
    become_root();
    if (failures) { emitf("failed", "files", "%d files or folders of %s could not be removed", failures, w->avatar); return; }
    if (remove_user(w->avatar) != 0) { emitf("failed", "passwd", "%s", strerror(errno)); return; }
    emit("ok", w->avatar);
    close(lock);
}

/* ---------- the run ---------- */

static long read_number(const char *path, const char *key) {
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    char line[256];
    long value = -1;
    size_t n = key ? strlen(key) : 0;
    while (fgets(line, sizeof line, f)) {
        if (!key) { value = strtol(line, NULL, 10); break; }
        if (!strncmp(line, key, n) && line[n] == ' ') { value = strtol(line + n + 1, NULL, 10); break; }
    }
    fclose(f);
    return value;
}

static long oom_kills(void) {
    long v = read_number("/sys/fs/cgroup/memory.events", "oom_kill");
    if (v < 0) v = read_number("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill");
    return v < 0 ? 0 : v;
}

typedef struct { const char *limit, *usage, *stat, *active, *inactive; } cgroup_t;
static const cgroup_t CGROUPS[] = {
    { "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat", "active_file", "inactive_file" },
    { "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory/memory.stat", "total_active_file", "total_inactive_file" },
};

/* The kata's memory the kernel cannot reclaim by dropping file caches, against its limit. */
static int memory_pressed(const cgroup_t *g) {
    long limit = read_number(g->limit, NULL), usage = read_number(g->usage, NULL);
    if (limit <= 0 || usage < 0) return 0;
    long active = read_number(g->stat, g->active), inactive = read_number(g->stat, g->inactive);
    long unreclaimable = usage - (active > 0 ? active : 0) - (inactive > 0 ? inactive : 0);
    return unreclaimable > limit / 10 * 9;
}

/* The uid, root not counted, whose processes hold the most resident memory. */
static uid_t largest_holder(void) {
    typedef struct { uid_t uid; long kb; } holder_t;
    holder_t holders[256];
    int n = 0;
    DIR *proc = opendir("/proc");
    if (!proc) return 0;
    struct dirent *e;
    while ((e = readdir(proc)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        uid_t uid = 0;
        long kb = 0;
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "Uid:", 4)) uid = (uid_t)strtoul(line + 4, NULL, 10);
            else if (!strncmp(line, "VmRSS:", 6)) kb = strtol(line + 6, NULL, 10);
        }
        fclose(f);
        if (uid == 0) continue;
        int i = 0;
        while (i < n && holders[i].uid != uid) i++;
        if (i == n) {
            if (n == 256) continue;
            holders[n].uid = uid;
            holders[n++].kb = 0;
        }
        holders[i].kb += kb;
    }
    closedir(proc);
    uid_t top = 0;
    long most = -1;
    for (int i = 0; i < n; i++) if (holders[i].kb > most) { most = holders[i].kb; top = holders[i].uid; }
    return top;
}

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

/* The script's child side: becomes the avatar, in its sandbox, and execs the shell. */
static void start_script(const who_t *w, char **env, int out, int err) {
    static const int signals[] = { SIGPIPE, SIGXFSZ, SIGALRM, SIGCHLD, SIGHUP, SIGTERM, SIGINT };
    for (size_t i = 0; i < sizeof signals / sizeof *signals; i++) signal(signals[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) _exit(126);
    /* Its oom_score_adj stays the helper's (0), the floor an unprivileged process may set. */
    if (setsid() < 0 || setpriority(PRIO_PROCESS, 0, 0) != 0) _exit(126);
    if (setgroups(0, NULL) != 0 || setresgid(w->uid, w->uid, w->uid) != 0 || setresuid(w->uid, w->uid, w->uid) != 0) _exit(126);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) _exit(126);
    if (chdir(w->sandbox) != 0) { dprintf(2, "cyber-dojo: cannot enter %s: %s\n", w->sandbox, strerror(errno)); _exit(126); }
    umask(077);
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

static void cmd_run(cursor_t *c, const who_t *w) {
    unsigned long max_seconds = field_number(c, 3600);
    unsigned long max_files = field_number(c, 100000);
    unsigned long max_deleted = field_number(c, 100000);
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
    if (!entered(w->avatar, w->uid)) { emit("missing", w->avatar); return; }
    /* Nothing of the avatar's may run while its files are written: a worker that died
     * (say, to the OOM killer) could have left some. */
    if (!kill_avatar(w->uid)) { emit("failed", "kill"); return; }

    become_avatar_fs(w->uid);
    int root = open_own(w->sandbox);
    if (root < 0) { become_root(); emitf("failed", "sandbox", "%s: %s", w->sandbox, strerror(errno)); return; }
    ensure_tmp(w);
    if (write_files(root, deleted_names, n_deleted, changed, n_changed) != 0) { become_root(); return; }
    snapshot_t before = snapshot(root, 1);
    become_root();

    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) { emitf("failed", "pipe", "%s", strerror(errno)); return; }
    char **env = script_env(extra, n_env);
    long ooms_before = oom_kills();
    const cgroup_t *cgroup = access(CGROUPS[0].usage, R_OK) == 0 ? &CGROUPS[0] : &CGROUPS[1];
    buf_t started = { 0 };
    send_frame('s', &started);

    int64_t began = now_ms(), deadline = began + (int64_t)max_seconds * 1000;
    script_pid = fork();
    if (script_pid < 0) { emitf("failed", "fork", "%s", strerror(errno)); return; }
    if (script_pid == 0) start_script(w, env, out[1], err[1]);
    close(out[1]);
    close(err[1]);
    int pidfd = (int)syscall(SYS_pidfd_open, script_pid, 0);
    if (pidfd < 0) fail("pidfd_open");
    output_t outs[2] = { { .fd = out[0] }, { .fd = err[0] } };
    for (int i = 0; i < 2; i++) if (fcntl(outs[i].fd, F_SETFL, O_NONBLOCK) != 0) fail("fcntl");

    const char *why = NULL; /* the clock's verdict: NULL (the script ended), "timed_out" or "memory_guard" */
    int64_t ended = 0, next_guard = began + GUARD_INTERVAL_MS;
    for (;;) {
        int64_t now = now_ms();
        if (now >= deadline) { why = "timed_out"; break; }
        if (now >= next_guard) {
            next_guard = now + GUARD_INTERVAL_MS;
            if (memory_pressed(cgroup) && largest_holder() == w->uid) { why = "memory_guard"; break; }
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

    become_avatar_fs(w->uid);
    collect(root, &before, max_files, max_deleted);
    become_root();
    close(lock);
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
    if (who(&c, &w) != 0) emit("failed", "request");
    else if (type == 'r') cmd_run(&c, &w);
    else if (type == 'n') cmd_avatar_new(&c, &w);
    else if (type == 'o') cmd_avatar_old(&w);
    else if (type == 'e') emit(entered(w.avatar, w.uid) ? "yes" : "no", w.avatar);
    else if (type == 'k') cmd_kill(&w);
    else emit("failed", "request");
    emit("end", "");
    send_frame('a', &answer);
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
            answer.len = 0;
            emitf("failed", "fork", "%s", strerror(errno));
            emit("end", "");
            send_frame('a', &answer);
            answer.len = 0;
        } else if (pid == 0) {
            serve_one(frame, len, lock_fd);
        }
        free(frame);
    }
}
