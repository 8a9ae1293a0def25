/* The helper's utilities, and its side of the frames (see kata-helper.c). */
#include "helper.h"
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define WRITE_TIMEOUT_MS 30000 /* an answer nobody reads is abandoned */

void fail(const char *what) {
    dprintf(2, "kata-helper: %s: %s\n", what, strerror(errno));
    _exit(2);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) fail("malloc");
    return p;
}

int64_t now_ms(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_MONOTONIC, &t) != 0) fail("clock_gettime");
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void sleep_ms(long ms) {
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000 };
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {}
}

void buf_add(buf_t *b, const void *p, size_t n) {
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

void buf_u32(buf_t *b, uint32_t v) {
    unsigned char be[4] = { v >> 24, v >> 16, v >> 8, v };
    buf_add(b, be, 4);
}

void buf_field(buf_t *b, const void *p, size_t n) {
    buf_u32(b, (uint32_t)n);
    buf_add(b, p, n);
}

/* ---------- requests ---------- */

field_t next_field(cursor_t *c) {
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

unsigned long field_number(cursor_t *c, unsigned long max) {
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

char *field_string(field_t f) {
    char *s = xmalloc(f.n + 1);
    memcpy(s, f.p, f.n);
    s[f.n] = 0;
    return s;
}

/* The runner checked every name (relative, no empty, . or .. segment, no NUL); they are
 * checked here again, as cheaply, since a name is a path the helper opens. */
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

/* A count, then its names (and, with_content, each name's content). */
file_t *read_files(cursor_t *c, size_t *count, int with_content) {
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

/* ---------- answers ---------- */

int answer_lock = -1;
uint32_t request_id;
static buf_t answer; /* the records of this request's answer */

void record(const char *kind, const char *name, size_t name_len, const char *flag, const void *content, size_t content_len) {
    buf_field(&answer, kind, strlen(kind));
    buf_field(&answer, name, name_len);
    buf_field(&answer, flag, strlen(flag));
    buf_field(&answer, content, content_len);
}

void emit(const char *kind, const char *name) { record(kind, name, strlen(name), "", "", 0); }

void emitf(const char *kind, const char *name, const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    record(kind, name, strlen(name), "", text, n < 0 ? 0 : (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
}

/* Writes a whole frame under the session's lock: workers share stdout. stdout is
 * non-blocking, so a reader that went away costs at most WRITE_TIMEOUT_MS. */
int send_frame(char type, const buf_t *body) {
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

int send_answer(void) {
    emit("end", "");
    int rc = send_frame('a', &answer);
    answer.len = 0;
    return rc;
}
