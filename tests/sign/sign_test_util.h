/*
 * Helpers for the sign/ unit tests: a scratch directory under $IMGSTORE_TEST_TMP, small file
 * reads and writes, and running OpenSSH's own tools (ssh-keygen, ssh-agent, ssh-add) as the
 * reference implementation that imgstore's formats must agree with.
 */
#ifndef SIGN_TEST_UTIL_H
#define SIGN_TEST_UTIL_H

#include "sign/sign_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define TEST_PATH_MAX 512

/* A fresh directory per test, so tests never see each other's files. */
static inline void test_tmp_dir(char out[TEST_PATH_MAX], const char *name)
{
    const char *tmp = getenv("IMGSTORE_TEST_TMP");

    snprintf(out, TEST_PATH_MAX, "%s/%s-XXXXXX", tmp != NULL ? tmp : "/tmp", name);
    assert_non_null(mkdtemp(out));
}

static inline void test_path(char out[TEST_PATH_MAX], const char *dir, const char *name)
{
    int len = snprintf(out, TEST_PATH_MAX, "%s/%s", dir, name);

    assert_true(len > 0 && len < TEST_PATH_MAX);
}

/* Run a shell command; returns its exit status (-1 if it did not exit normally). */
static inline int test_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int test_run(const char *fmt, ...)
{
    char cmd[4 * TEST_PATH_MAX];
    va_list ap;
    int status;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    status = system(cmd);
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static inline bool test_have_tool(const char *tool)
{
    return test_run("command -v %s >/dev/null 2>&1", tool) == 0;
}

/* The whole file, NUL-terminated; free() it. NULL when it cannot be read. */
static inline char *test_read_file(const char *path, size_t *len_out)
{
    FILE *file = fopen(path, "rb");
    char *data;
    long len;

    if (file == NULL)
        return NULL;
    fseek(file, 0, SEEK_END);
    len = ftell(file);
    fseek(file, 0, SEEK_SET);
    data = malloc((size_t)len + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)len, file), (size_t)len);
    data[len] = '\0';
    fclose(file);
    if (len_out != NULL)
        *len_out = (size_t)len;
    return data;
}

static inline void test_write_file(const char *path, const void *data, size_t len)
{
    FILE *file = fopen(path, "wb");

    assert_non_null(file);
    assert_int_equal(fwrite(data, 1, len, file), len);
    assert_int_equal(fclose(file), 0);
    assert_int_equal(chmod(path, 0600), 0);
}

/* The first line of a command's output, newline stripped; free() it. */
static inline char *test_capture(const char *cmd)
{
    char line[4096];
    FILE *pipe = popen(cmd, "r");
    char *copy;

    assert_non_null(pipe);
    if (fgets(line, sizeof(line), pipe) == NULL)
        line[0] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    pclose(pipe);
    copy = strdup(line);
    assert_non_null(copy);
    return copy;
}

/* The public key line of `key` ("ssh-ed25519 AAAA... comment"); free() it. */
static inline char *test_pubkey_line(const imgstore_sign_key *key)
{
    imgstore_sign_pubkey pub;
    char *line = NULL;

    imgstore_sign_key_public(&pub, key);
    assert_int_equal(imgstore_sign_pubkey_format(&line, &pub), 0);
    return line;
}

static inline void assert_error(int rc, int code, const char *fragment)
{
    if (rc != code || strstr(imgstore_error_last(), fragment) == NULL)
        fail_msg("got %d '%s', expected %d with '%s'", rc, imgstore_error_last(), code, fragment);
}

/* Exit 77 (ctest's skip) when an OpenSSH tool the whole test file relies on is missing. */
static inline void test_require_tool(const char *tool)
{
    if (!test_have_tool(tool)) {
        fprintf(stderr, "skipping: %s is not installed (apt-get install openssh-client)\n", tool);
        exit(77);
    }
}

/* `ssh-keygen -q ARGS -f DIR/NAME` (ARGS gives -t, -N, -C ...); the key path goes to `out`. */
static inline void test_keygen(char out[TEST_PATH_MAX], const char *dir, const char *name,
                               const char *args)
{
    test_path(out, dir, name);
    assert_int_equal(test_run("ssh-keygen -q %s -f '%s' </dev/null >/dev/null 2>&1", args, out), 0);
}

/* Replace DIR/NAME with `len` bytes of `data` and load it; the file path goes to `path_out`. */
static inline int test_load_bytes(imgstore_sign_key **out, char path_out[TEST_PATH_MAX],
                                  const char *dir, const char *name, const void *data, size_t len,
                                  const char *passphrase)
{
    test_path(path_out, dir, name);
    unlink(path_out);
    test_write_file(path_out, data, len);
    return imgstore_sign_key_load(out, path_out, passphrase);
}

/* Armour `blob` under `label` as ssh-keygen would; free() the text. */
static inline char *test_armor(const uint8_t *blob, size_t len, const char *label, size_t *len_out)
{
    size_t text_len = imgstore_sign__armor_len(len, label);
    char *text = malloc(text_len + 1);

    assert_non_null(text);
    imgstore_sign__armor(text, blob, len, label);
    assert_int_equal(strlen(text), text_len);
    *len_out = text_len;
    return text;
}

/* Decode the armoured file at `path` into `blob` (at most `cap` bytes); returns its length. */
static inline size_t test_dearmor_file(uint8_t *blob, size_t cap, const char *path,
                                       const char *label)
{
    size_t text_len = 0, blob_len = 0;
    char *text = test_read_file(path, &text_len);

    assert_non_null(text);
    assert_int_equal(imgstore_sign__dearmor(blob, cap, &blob_len, text, text_len, label, path), 0);
    free(text);
    return blob_len;
}

/* True when the key's public half equals the one in `expected`. */
static inline bool test_same_key(const imgstore_sign_key *key, const imgstore_sign_key *expected)
{
    imgstore_sign_pubkey a, b;

    imgstore_sign_key_public(&a, key);
    imgstore_sign_key_public(&b, expected);
    return imgstore_sign_pubkey_equal(&a, &b);
}

#endif
