/* What the kata helper's files share (see kata-helper.c for what the helper is). */
#ifndef KATA_HELPER_H
#define KATA_HELPER_H
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define VERSION "2"
#define STATE "/run/cyber-dojo"     /* root-only tmpfs: the avatars' locks */
#define TEXT_LIMIT 51200            /* bytes of stdout, stderr and each returned file */
#define MAX_FRAME (1u << 30)        /* no request is larger (the runner's body limit is less) */
#define SANDBOXES "/sandboxes"
#define HOMES "/home"
#define MAX_DEPTH 256               /* folders below a sandbox that are walked */

/* ---- protocol.c: utilities, requests, answers ---- */

void fail(const char *what);                 /* says why on stderr, and ends this process */
void *xmalloc(size_t n);
int64_t now_ms(void);                        /* CLOCK_MONOTONIC */
void sleep_ms(long ms);

typedef struct { char *data; size_t len, cap; } buf_t;
void buf_add(buf_t *b, const void *p, size_t n);
void buf_u32(buf_t *b, uint32_t v);
void buf_field(buf_t *b, const void *p, size_t n);

typedef struct { const unsigned char *at, *end; int bad; } cursor_t;
typedef struct { const char *p; size_t n; } field_t;
field_t next_field(cursor_t *c);
unsigned long field_number(cursor_t *c, unsigned long max);
char *field_string(field_t f);

typedef struct { char *name; const char *content; size_t len; } file_t;
file_t *read_files(cursor_t *c, size_t *count, int with_content);

extern int answer_lock;                      /* this worker's own open of the session's lock */
extern uint32_t request_id;
void record(const char *kind, const char *name, size_t name_len, const char *flag, const void *content, size_t content_len);
void emit(const char *kind, const char *name);
void emitf(const char *kind, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int send_frame(char type, const buf_t *body);
int send_answer(void);                       /* the records so far, as the 'a' frame */

/* ---- confine.c: identities, killing, what an avatar may reach ---- */

void become_avatar_fs(uid_t uid, gid_t gid); /* file access as the avatar; no avatar can signal us */
void become_root(void);
extern pid_t script_pid;
extern int script_status;
void reap(void);
int has_processes(uid_t uid);
int kill_avatar(uid_t uid);                  /* 1 when no process of uid is left */
void remove_ipc(uid_t uid);                  /* as the avatar: its IPC objects and /dev/shm files */
int landlock_abi(void);
/* In the script's child, as the avatar: confines it and its children (see confine.c).
 * writable: more folders it may write in; ports 0-0: TCP is not confined. */
void confine(const char *sandbox, const char *home, char **writable, size_t n_writable, unsigned port_low, unsigned port_high);

/* ---- files.c: the avatar's files (all called as the avatar) ---- */

int open_dir(const char *path);
int open_own(const char *path);              /* the avatar's mount point, made 0700 again */
int write_files(int root, char **deleted, size_t n_deleted, file_t *files, size_t n_files);
int sync_files(int root, file_t *files, size_t n_files);   /* the folder holds these files, exactly */
int remove_below(int dir, int depth);        /* answers the number of failures */
void remove_owned(const char *dir, uid_t uid);

typedef struct {
    char *path;
    off_t size;
    struct timespec mtime, ctime;
    ino_t ino;
    uint64_t hash;
    int hashed, seen;
} entry_t;
typedef struct { entry_t *e; size_t n, cap; } snapshot_t;
snapshot_t snapshot(int root, int hash);
void collect(int root, snapshot_t *before, unsigned long max_files, unsigned long max_deleted);

/* ---- memory.c: the kata's memory guard ---- */

long oom_kills(void);
int memory_pressed(int *percent);            /* sets the percent of the kata's limit it cannot reclaim */
uid_t largest_running_holder(void);

#endif
