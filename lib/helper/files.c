/* The avatar's files: written, deleted, listed, compared and read back. Every function
 * here runs with the avatar's uid as the file-system uid (become_avatar_fs), opens each
 * path one segment at a time and never follows a link, so what an avatar planted leads
 * nowhere it could not already write. */
#include "helper.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


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
int write_files(int root, char **deleted, size_t n_deleted, file_t *files, size_t n_files) {
    for (size_t i = 0; i < n_deleted; i++) delete_file(root, deleted[i]);
    for (size_t i = 0; i < n_files; i++) {
        if (write_file(root, &files[i]) != 0) {
            emitf("failed", "write", "%s: %s", files[i].name, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* ---------- a sandbox made to hold exactly a set of files ---------- */

static int by_string(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int by_file(const void *a, const void *b) { return strcmp((*(file_t *const *)a)->name, (*(file_t *const *)b)->name); }
static int name_vs_file(const void *name, const void *file) { return strcmp(*(char *const *)name, (*(file_t *const *)file)->name); }

typedef struct { char **names; size_t n; } names_t;

static int has(const names_t *set, const char *name) {
    return set->n && bsearch(&name, set->names, set->n, sizeof(char *), by_string) != NULL;
}

static int same_content(int dir, const char *name, const file_t *f) {
    struct stat st;
    if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size != f->len) return 0;
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[65536];
    size_t at = 0;
    int same = 1;
    while (same && at < f->len) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || memcmp(buf, f->content + at, (size_t)n) != 0) same = 0;
        else at += (size_t)n;
    }
    close(fd);
    return same;
}

/* Walks the sandbox below path (len bytes of it, dir its fd): keeps the folders on the
 * way to a file of the set and the set's files whose content is already theirs (marked
 * in `done`), and removes everything else. */
static int sync_walk(int dir, char *path, size_t len, const names_t *folders, file_t **files, size_t n_files, char *done, int depth) {
    DIR *d = fdopendir(dir);
    if (!d) { close(dir); return 1; }
    int failures = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        size_t n = strlen(e->d_name);
        if (len + n + 2 > PATH_MAX) { failures++; continue; }
        memcpy(path + len, e->d_name, n + 1);
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) { failures++; continue; }
        if (S_ISDIR(st.st_mode) && has(folders, path) && depth < MAX_DEPTH) {
            if ((st.st_mode & 0700) != 0700) fchmodat(dirfd(d), e->d_name, st.st_mode | 0700, 0);
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            path[len + n] = '/';
            failures += sub < 0 ? 1 : sync_walk(sub, path, len + n + 1, folders, files, n_files, done, depth + 1);
        } else {
            const char *key = path;
            file_t **found = S_ISREG(st.st_mode) && n_files ? bsearch(&key, files, n_files, sizeof(file_t *), name_vs_file) : NULL;
            if (found && same_content(dirfd(d), e->d_name, *found)) {
                done[found - files] = 1;
            } else if (S_ISDIR(st.st_mode)) {
                if ((st.st_mode & 0700) != 0700) fchmodat(dirfd(d), e->d_name, 0700, 0);
                int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                failures += sub < 0 ? 1 : remove_below(sub, depth + 1);
                if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) != 0) failures++;
            } else if (!found && unlinkat(dirfd(d), e->d_name, 0) != 0) {
                failures++;
            }
        }
        path[len] = 0;
    }
    closedir(d);
    return failures;
}

int sync_files(int root, file_t *files, size_t n_files) {
    file_t **sorted = xmalloc(sizeof(file_t *) * (n_files + 1));
    for (size_t i = 0; i < n_files; i++) sorted[i] = &files[i];
    if (n_files) qsort(sorted, n_files, sizeof(file_t *), by_file);
    names_t folders = { xmalloc(sizeof(char *) * (n_files * 8 + 1)), 0 };
    size_t cap = n_files * 8 + 1;
    for (size_t i = 0; i < n_files; i++) {
        for (char *slash = strchr(files[i].name, '/'); slash; slash = strchr(slash + 1, '/')) {
            if (folders.n == cap) {
                cap *= 2;
                folders.names = realloc(folders.names, sizeof(char *) * cap);
                if (!folders.names) fail("realloc");
            }
            folders.names[folders.n++] = strndup(files[i].name, (size_t)(slash - files[i].name));
        }
    }
    if (folders.n) qsort(folders.names, folders.n, sizeof(char *), by_string);
    char *done = calloc(n_files + 1, 1);
    if (!done) fail("calloc");
    static char path[PATH_MAX];
    path[0] = 0;
    int dir = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0 || sync_walk(dir, path, 0, &folders, sorted, n_files, done, 0) != 0) {
        emitf("failed", "write", "the sandbox could not be emptied of what the files do not hold");
        return -1;
    }
    for (size_t i = 0; i < n_files; i++) {
        if (done[i]) continue;
        if (write_file(root, sorted[i]) != 0) {
            emitf("failed", "write", "%s: %s", sorted[i]->name, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* Removes everything below dir (an fd, closed here); answers the number of failures. */
int remove_below(int dir, int depth) {
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

int open_dir(const char *path) {
    return open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* The avatar's sandbox and home (mount points it owns) are 0700, however it left them. */
int open_own(const char *path) {
    if (chmod(path, 0700) != 0) return -1;
    return open_dir(path);
}

/* ---------- snapshots of a sandbox ---------- */


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

snapshot_t snapshot(int root, int hash) {
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
void collect(int root, snapshot_t *before, unsigned long max_files, unsigned long max_deleted) {
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


/* What uid left in a folder the kata's avatars share (its uid is reused): not its
 * failure when something there cannot go, it may be another's. */
void remove_owned(const char *dirpath, uid_t uid) {
    int dir = open_dir(dirpath);
    if (dir < 0) return;
    DIR *d = fdopendir(dir);
    if (!d) { close(dir); return; }
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
}
