/*
 * Shared by the schema tests: the golden manifest (a small manifest in canonical form, also
 * built by sample() in test_manifest.c) and helpers that derive broken documents from it.
 */
#ifndef IMGSTORE_TESTS_SCHEMA_UTIL_H
#define IMGSTORE_TESTS_SCHEMA_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define SHA_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SHA_B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define SHA_E "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const char golden_manifest[] =
    "{\"boot\":{\"complete\":false,\"kernel\":\"app.hvt\"},"
    "\"created\":\"2026-11-25T13:51:00Z\","
    "\"files\":["
    "{\"chunks\":[{\"sha256\":\"" SHA_B "\",\"size\":5}],"
    "\"details\":{\"arch\":\"x86_64\",\"devices\":[{\"name\":\"service\",\"type\":\"net-basic\"}],"
    "\"solo5_abi_version\":2,\"solo5_target\":\"hvt\"},"
    "\"format\":\"solo5-hvt\",\"kind\":\"unikernel\",\"path\":\"app.hvt\","
    "\"sha256\":\"" SHA_A "\",\"size\":5},"
    "{\"chunks\":[],\"details\":{},\"format\":\"xl\",\"kind\":\"config\",\"path\":\"empty.cfg\","
    "\"sha256\":\"" SHA_E "\",\"size\":0}],"
    "\"name\":\"app\","
    "\"provenance\":{\"builder\":\"ci@example\",\"labels\":{\"ci.job\":\"42\"},"
    "\"source\":{\"commit\":\"1a2b3c\",\"repository\":\"https://example.org/app.git\"}},"
    "\"schema\":\"imgstore.manifest/1\",\"version\":\"1.0.0\"}";

static inline char *dup(const char *text)
{
    char *copy = strdup(text);

    assert_non_null(copy);
    return copy;
}

/* `text` with the first `find` replaced by `with`; the test fails if `find` is absent. */
static inline char *replaced(const char *text, const char *find, const char *with)
{
    const char *at = strstr(text, find);
    char *out;

    if (!at)
        fail_msg("'%s' not in the document", find);
    out = malloc(strlen(text) - strlen(find) + strlen(with) + 1);
    assert_non_null(out);
    memcpy(out, text, (size_t)(at - text));
    strcpy(out + (at - text), with);
    strcat(out, at + strlen(find));
    return out;
}

#endif
