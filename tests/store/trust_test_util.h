/*
 * A fixture for the store's trust tests: a fresh signed store in a temporary directory,
 * created with `root` (every role of policy 1), and `other`, a key in no role.
 */
#ifndef TRUST_TEST_UTIL_H
#define TRUST_TEST_UTIL_H

#include "store/store_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
    char dir[400];
    char path[512];
    imgstore_store *store;
    imgstore_sign_key *root;  /* init key: every role */
    imgstore_sign_key *other; /* a second key, in no role until a test adds it */
} fixture;

static inline int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("IMGSTORE_TEST_TMP");

    snprintf(f->dir, sizeof(f->dir), "%s/trust-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/s.git", f->dir);
    assert_int_equal(imgstore_sign_key_generate(&f->root, "root"), 0);
    assert_int_equal(imgstore_sign_key_generate(&f->other, "other"), 0);
    assert_int_equal(imgstore_store_init_trusted(&f->store, f->path, f->root, "test"), 0);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    fixture *f = *state;
    char cmd[1100];

    imgstore_store_free(f->store);
    imgstore_sign_key_free(f->root);
    imgstore_sign_key_free(f->other);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    (void)!system(cmd);
    free(f);
    return 0;
}

#endif
