/* The kata's memory guard. The kernel counts memory per container, not per uid, and its
 * OOM killer takes the largest process, whoever owns it: so each run's worker watches the
 * kata's memory, and when what the kernel cannot reclaim passes 90% of the limit, the
 * avatar charged with the most is the one killed. An avatar is charged with all it holds:
 * its processes' resident memory, the memfds they hold open, the System V segments it
 * created, its files in /dev/shm, and its own sandbox and home (tmpfs is memory). Only an
 * avatar with processes can be killed, so only those are candidates. The worker looks
 * every 100 ms, and every 10 ms past 75%: memory fills fast. */
#include "helper.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

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

long oom_kills(void) {
    long v = read_number("/sys/fs/cgroup/memory.events", "oom_kill");
    if (v < 0) v = read_number("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill");
    return v < 0 ? 0 : v;
}

typedef struct { const char *limit, *usage, *stat, *active, *inactive; } cgroup_t;
static const cgroup_t CGROUPS[] = {
    { "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat", "active_file", "inactive_file" },
    { "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory/memory.stat", "total_active_file", "total_inactive_file" },
};

/* Unreclaimable memory past 90% of the limit; or past 85% with the kata at its limit:
 * then the kernel is taking the last page cache (the programs' own code), and the kata
 * crawls short of an OOM kill, never reaching 90%. */
int memory_pressed(int *percent) {
    const cgroup_t *g = access(CGROUPS[0].usage, R_OK) == 0 ? &CGROUPS[0] : &CGROUPS[1];
    long limit = read_number(g->limit, NULL), usage = read_number(g->usage, NULL);
    *percent = 0;
    if (limit <= 0 || usage < 0) return 0;
    long active = read_number(g->stat, g->active), inactive = read_number(g->stat, g->inactive);
    long unreclaimable = usage - (active > 0 ? active : 0) - (inactive > 0 ? inactive : 0);
    *percent = (int)(unreclaimable / (limit / 100));
    return *percent >= 90 || (*percent >= 85 && usage >= limit / 100 * 97);
}

#define MAX_HOLDERS 256
#define MAX_PROCESSES 8192
#define MAX_MEMFDS 4096

typedef struct { uid_t uid; long long bytes; int running; } holder_t;
static holder_t holders[MAX_HOLDERS];
static int n_holders;

static holder_t *holder(uid_t uid) {
    for (int i = 0; i < n_holders; i++) if (holders[i].uid == uid) return &holders[i];
    if (n_holders == MAX_HOLDERS) return NULL;
    holders[n_holders] = (holder_t){ uid, 0, 0 };
    return &holders[n_holders++];
}

static void charge(uid_t uid, long long bytes) {
    holder_t *h = holder(uid);
    if (h) h->bytes += bytes;
}

/* An avatar's uid: not root's, nor a worker's while it kills (2^31 and up). */
static int is_avatar(long uid) { return uid > 0 && uid < 0x80000000L; }

typedef struct { pid_t pid; uid_t uid; gid_t gid; } process_t;

static int by_uid(const void *a, const void *b) {
    uid_t x = ((const process_t *)a)->uid, y = ((const process_t *)b)->uid;
    return x < y ? -1 : x > y;
}

/* Resident memory, by the real uid in each process's status; answers the processes. */
static int charge_processes(process_t *found) {
    int n = 0;
    DIR *proc = opendir("/proc");
    if (!proc) return 0;
    struct dirent *e;
    while ((e = readdir(proc)) != NULL && n < MAX_PROCESSES) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        long uid = -1, gid = -1, kb = 0;
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "Uid:", 4)) uid = strtol(line + 4, NULL, 10);
            else if (!strncmp(line, "Gid:", 4)) gid = strtol(line + 4, NULL, 10);
            else if (!strncmp(line, "VmRSS:", 6)) kb = strtol(line + 6, NULL, 10);
        }
        fclose(f);
        if (!is_avatar(uid)) continue;
        holder_t *h = holder((uid_t)uid);
        if (!h) continue;
        h->bytes += kb * 1024LL;
        h->running = 1;
        found[n++] = (process_t){ (pid_t)atoi(e->d_name), (uid_t)uid, (gid_t)gid };
    }
    closedir(proc);
    return n;
}

/* Memfds (and deleted tmpfs files) the processes hold open, each counted once. Only a
 * process's own uid may list its descriptors: the worker takes each uid in turn. */
static void charge_open_files(process_t *processes, int n) {
    static ino_t seen[MAX_MEMFDS];
    int n_seen = 0;
    qsort(processes, (size_t)n, sizeof *processes, by_uid);
    for (int i = 0; i < n; i++) {
        if (i == 0 || processes[i].uid != processes[i - 1].uid || processes[i].gid != processes[i - 1].gid) {
            become_root(); /* only root may take another uid */
            become_avatar_fs(processes[i].uid, processes[i].gid);
        }
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd", processes[i].pid);
        DIR *fds = opendir(path);
        if (!fds) continue;
        struct dirent *e;
        while ((e = readdir(fds)) != NULL) {
            char link[340], target[64];
            snprintf(link, sizeof link, "%s/%s", path, e->d_name);
            ssize_t len = readlink(link, target, sizeof target - 1);
            if (len <= 0) continue;
            target[len] = 0;
            struct stat st;
            if ((strncmp(target, "/memfd:", 7) && !strstr(target, " (deleted)")) || stat(link, &st) != 0 || !S_ISREG(st.st_mode)) continue;
            int known = 0;
            for (int k = 0; k < n_seen && !known; k++) known = seen[k] == st.st_ino;
            if (known) continue;
            if (n_seen < MAX_MEMFDS) seen[n_seen++] = st.st_ino;
            charge(processes[i].uid, (long long)st.st_blocks * 512);
        }
        closedir(fds);
    }
    become_root();
}

/* System V segments, by their creator: its rss column (bytes resident). */
static void charge_segments(void) {
    FILE *f = fopen("/proc/sysvipc/shm", "re");
    if (!f) return;
    char line[512];
    if (fgets(line, sizeof line, f)) {
        while (fgets(line, sizeof line, f)) {
            long values[16];
            int count = 0;
            char *at = line, *end;
            while (count < 16 && (values[count] = strtol(at, &end, 10), end != at)) { at = end; count++; }
            if (count >= 15 && is_avatar(values[9])) charge((uid_t)values[9], values[14]);
        }
    }
    fclose(f);
}

static void charge_shm_files(void) {
    DIR *d = opendir("/dev/shm");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) && is_avatar(st.st_uid)) {
            charge(st.st_uid, (long long)st.st_blocks * 512);
        }
    }
    closedir(d);
}

/* Each avatar's sandbox and home are tmpfs mounts of their own: what they hold is used. */
static void charge_mounts(void) {
    FILE *f = fopen("/etc/passwd", "re");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char name[64];
        unsigned long uid;
        if (sscanf(line, "%63[a-z]:x:%lu:", name, &uid) != 2 || !is_avatar((long)uid)) continue;
        const char *roots[] = { SANDBOXES, HOMES };
        for (int i = 0; i < 2; i++) {
            char path[128];
            struct statfs fs;
            snprintf(path, sizeof path, "%s/%s", roots[i], name);
            if (statfs(path, &fs) == 0) charge((uid_t)uid, (long long)(fs.f_blocks - fs.f_bfree) * fs.f_bsize);
        }
    }
    fclose(f);
}

uid_t largest_running_holder(void) {
    static process_t processes[MAX_PROCESSES];
    n_holders = 0;
    int n = charge_processes(processes);
    charge_open_files(processes, n);
    charge_segments();
    charge_shm_files();
    charge_mounts();
    uid_t top = 0;
    long long most = -1;
    for (int i = 0; i < n_holders; i++) {
        if (holders[i].running && holders[i].bytes > most) { most = holders[i].bytes; top = holders[i].uid; }
    }
    return top;
}
