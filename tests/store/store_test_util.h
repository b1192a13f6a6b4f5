/*
 * A fixture for the store's tests: a fresh signed store in a temporary directory per test,
 * one key (`test_key`) holding every role of policy 1, and pseudo-random bytes to push.
 */
#ifndef STORE_TEST_UTIL_H
#define STORE_TEST_UTIL_H

#include "store/store_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* One release/deploy/root key for every test: the store refuses unsigned writes. */
static imgstore_sign_key *test_key;
static const imgstore_sign_key *test_keys[1];
#define TEST_SIGNERS                                                                               \
    {                                                                                              \
        test_keys, 1                                                                               \
    }

typedef struct {
    char dir[400];
    char path[512];
    imgstore_store *store;
    uint64_t rng; /* next_random's state */
} fixture;

static inline int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("IMGSTORE_TEST_TMP");

    unsetenv("IMGSTORE_GC_AUTO"); /* the default threshold, unless a test sets one */
    snprintf(f->dir, sizeof(f->dir), "%s/store-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/s.git", f->dir);
    if (!test_key) {
        assert_int_equal(imgstore_sign_key_generate(&test_key, "test"), 0);
        test_keys[0] = test_key;
    }
    assert_int_equal(imgstore_store_init_trusted(&f->store, f->path, test_key, "test"), 0);
    f->rng = 0x1dea5eedULL;
    *state = f;
    return 0;
}

/* The same, on a store made as an older imgstore made it: imgstore/1, versions at
 * images/<name>/<version> (docs/format.md). */
static inline int setup_flat(void **state)
{
    fixture *f;
    char cmd[600];

    setup(state);
    f = *state;
    imgstore_store_free(f->store);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->path);
    (void)!system(cmd);
    assert_int_equal(
        imgstore_store__init_layout(&f->store, f->path, test_key, "test", IMGSTORE_STORE__FLAT), 0);
    return 0;
}

/* "main:<path>" of a version (and `suffix` in it, may be NULL) in the store's layout: what
 * git_revparse_single takes. */
static inline const char *version_rev(char out[600], const fixture *f, const char *name,
                                      const char *version, const char *suffix)
{
    char path[560];

    imgstore_store__version_path(path, sizeof(path), f->store, name, version, suffix);
    snprintf(out, 600, "main:%s", path);
    return out;
}

static inline int teardown(void **state)
{
    fixture *f = *state;
    char cmd[1100];

    imgstore_store_free(f->store);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    (void)!system(cmd);
    free(f);
    unsetenv("IMGSTORE_GC_AUTO");
    return 0;
}

/* `len` bytes of a fixed pseudo-random sequence (malloc'd). */
static inline uint8_t *pseudo_random(size_t len, uint64_t seed)
{
    uint8_t *buf = malloc(len);

    for (size_t i = 0; i < len; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        buf[i] = (uint8_t)(seed >> 56);
    }
    return buf;
}

/* A writer into a fixed buffer (imgstore_store_file_read's imgstore_write_fn). */
typedef struct {
    uint8_t *buf;
    size_t len, cap;
} membuf;

/* Pushes version `version` of "app": one file app.img of `len` (at most 8,000) bytes of
 * `fill`, signed by the test key. */
static inline void push_filled(fixture *f, const char *version, char fill, size_t len)
{
    imgstore_signers signers = TEST_SIGNERS;
    imgstore_push_opts opts = {.name = "app", .version = version, .signers = signers};
    imgstore_manifest *m = NULL;
    imgstore_push *p = NULL;
    bool created;
    char bytes[8000];

    assert_true(len <= sizeof(bytes));
    memset(bytes, fill, len);
    assert_int_equal(imgstore_store_push_begin(&p, f->store, &opts), 0);
    assert_int_equal(imgstore_store_push_file_begin(p, "app.img", "unknown", 0), 0);
    assert_int_equal(imgstore_store_push_write(p, bytes, len), 0);
    assert_int_equal(imgstore_store_push_file_end(p, NULL), 0);
    assert_int_equal(imgstore_store_push_commit(p, &m, &created), 0);
    assert_true(created);
    imgstore_manifest_free(m);
    imgstore_store_push_free(p);
}

static inline int mem_write(const void *buf, size_t len, void *payload)
{
    membuf *m = payload;

    assert_true(m->len + len <= m->cap);
    memcpy(m->buf + m->len, buf, len);
    m->len += len;
    return 0;
}

#endif
