/*
 * The manifest parser's rules: every broken field of the golden manifest is refused with
 * IMGSTORE_EINVALID and a message naming its JSON path; the caps hold; truncated or damaged
 * bytes are refused cleanly. Run under ASan, so the refusals also prove that nothing leaks.
 */
#include "schema/schema.h"
#include "schema_test_util.h"

#include <stdio.h>

static void assert_parse_refused(const char *text, const char *message_part)
{
    imgstore_manifest *m = (imgstore_manifest *)1;

    imgstore_error_clear();
    if (imgstore_schema_manifest_parse(&m, text, strlen(text)) != IMGSTORE_EINVALID)
        fail_msg("accepted: %s", text);
    assert_null(m);
    if (!strstr(imgstore_error_last(), message_part))
        fail_msg("message '%s' lacks '%s'", imgstore_error_last(), message_part);
}

typedef struct {
    const char *find;
    const char *with;
    const char *message; /* must occur in the error message */
} mutation;

#define LONG_ARCH  "x86_64_extended_"
#define FILE0_SIZE "\"size\":5},{" /* the first file's size; the chunk's is followed by "}]" */
static const mutation mutations[] = {
    /* the document */
    {"imgstore.manifest/1", "imgstore.manifest/2",
     "manifest: schema: expected 'imgstore.manifest/1'"},
    {"\"version\":\"1.0.0\"", "\"version\":\"1.0.0\",\"extra\":1",
     "manifest: extra: unknown field"},
    {"\"name\":\"app\",", "", "manifest: name: missing"},
    {"\"name\":\"app\"", "\"name\":\"app\",\"name\":\"app\"", "duplicate object key"},
    {"\"name\":\"app\"", "\"name\":7", "manifest: name: expected a string, found an integer"},
    {"\"name\":\"app\"", "\"name\":\"App\"", "manifest: name: image name 'App': only a-z"},
    {"\"name\":\"app\"", "\"name\":\"caf\xc3\xa9\"", "manifest: name: image name 'caf\\xc3\\xa9'"},
    {"\"name\":\"app\"", "\"name\":\"a\\u0000b\"", "manifest: not valid JSON"},
    {"\"name\":\"app\"", "\"name\":\"a\xff\"", "manifest: not valid JSON"},
    {"\"version\":\"1.0.0\"", "\"version\":\"..\"",
     "manifest: version: version '..': must not start with '.'"},
    {"2026-11-25T13:51:00Z", "2026-11-25 13:51:00Z",
     "manifest: created: '2026-11-25 13:51:00Z': expected a UTC time"},
    {"2026-11-25T13:51:00Z", "2026-02-30T13:51:00Z", "manifest: created:"},
    {"2026-11-25T13:51:00Z", "2026-11-25T13:51:00+00:00", "manifest: created:"},
    {"2026-11-25T13:51:00Z", "@1700000000", "manifest: created:"},
    {"2026-11-25T13:51:00Z", "2026-11-25T24:00:00Z", "manifest: created:"},
    /* files */
    {"\"path\":\"app.hvt\"", "\"path\":\"a/b\"", "manifest: files[0].path: file name 'a/b'"},
    {"\"path\":\"app.hvt\"", "\"path\":\"..\"", "manifest: files[0].path: file name '..'"},
    {"\"path\":\"app.hvt\",", "", "manifest: files[0].path: missing"},
    {"\"path\":\"app.hvt\"", "\"path\":\"app.hvt\",\"mode\":1",
     "manifest: files[0].mode: unknown field"},
    {"\"sha256\":\"" SHA_A "\"",
     "\"sha256\":\""
     "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\"",
     "manifest: files[0].sha256: expected 64 lower-case hex digits"},
    {"\"sha256\":\"" SHA_A "\"", "\"sha256\":\"abc\"",
     "manifest: files[0].sha256: expected 64 lower-case hex digits"},
    {FILE0_SIZE, "\"size\":6},{",
     "manifest: files[0].size: 6 is not the sum of the chunk sizes (5)"},
    {FILE0_SIZE, "\"size\":5.0},{",
     "manifest: files[0].size: expected an integer, found a real number"},
    {FILE0_SIZE, "\"size\":5e0},{",
     "manifest: files[0].size: expected an integer, found a real number"},
    {FILE0_SIZE, "\"size\":-5},{", "manifest: files[0].size: must be from 0 to 9007199254740992"},
    {FILE0_SIZE, "\"size\":9007199254740993},{",
     "manifest: files[0].size: must be from 0 to 9007199254740992"},
    {FILE0_SIZE, "\"size\":99999999999999999999},{", "manifest: not valid JSON"},
    {FILE0_SIZE, "\"size\":\"5\"},{",
     "manifest: files[0].size: expected an integer, found a string"},
    {"\"kind\":\"unikernel\"", "\"kind\":\"weird\"",
     "manifest: files[0].kind: 'weird' is not one of"},
    {"\"kind\":\"unikernel\"", "\"kind\":\"\"", "manifest: files[0].kind: must be 1 to 23 bytes"},
    {"\"format\":\"solo5-hvt\"", "\"format\":\"Solo5 hvt\"",
     "manifest: files[0].format: 'Solo5 hvt': only a-z"},
    {"\"format\":\"solo5-hvt\",", "", "manifest: files[0].format: missing"},
    {",\"details\":{}", ",\"details\":[]",
     "manifest: files[1].details: expected an object, found an array"},
    /* details */
    {"\"arch\":\"x86_64\"", "\"arch\":\"\"",
     "manifest: files[0].details.arch: must be 1 to 15 bytes, found 0"},
    {"\"arch\":\"x86_64\"", "\"arch\":\"" LONG_ARCH "\"",
     "manifest: files[0].details.arch: must be 1 to 15 bytes, found 16"},
    {"\"arch\":\"x86_64\"", "\"arch\":\"x86_64\",\"color\":\"red\"",
     "manifest: files[0].details.color: unknown field"},
    {"\"arch\":\"x86_64\"", "\"arch\":\"x86_64\",\"hybrid\":false",
     "manifest: files[0].details.hybrid: must be omitted when false"},
    {"\"arch\":\"x86_64\"", "\"arch\":\"x86_64\",\"efi\":1",
     "manifest: files[0].details.efi: expected a boolean"},
    {"\"arch\":\"x86_64\"", "\"arch\":\"x86_64\",\"xen_mode\":\"hvm\"",
     "manifest: files[0].details.xen_mode: 'hvm' is not one of: pv, pvh, pv+pvh"},
    {"\"arch\":\"x86_64\"", "\"arch\":\"x86_64\",\"virtual_size\":0",
     "manifest: files[0].details.virtual_size: must be from 1"},
    {"\"solo5_abi_version\":2", "\"solo5_abi_version\":4294967296",
     "manifest: files[0].details.solo5_abi_version: must be from 1 to 4294967295"},
    {"\"devices\":[{\"name\":\"service\",\"type\":\"net-basic\"}]", "\"devices\":[]",
     "manifest: files[0].details.devices: must hold 1 to 64 devices"},
    {"\"name\":\"service\"", "\"name\":\"my service\"",
     "manifest: files[0].details.devices[0].name: only printable ASCII"},
    {"\"name\":\"service\"", "\"name\":\"service\",\"mac\":\"x\"",
     "manifest: files[0].details.devices[0].mac: unknown field"},
    {"\"type\":\"net-basic\"", "\"type\":\"Net\"",
     "manifest: files[0].details.devices[0].type: 'Net'"},
    {"{\"name\":\"service\",\"type\":\"net-basic\"}", "7",
     "manifest: files[0].details.devices[0]: expected an object"},
    /* chunks */
    {"{\"sha256\":\"" SHA_B "\",\"size\":5}", "{\"sha256\":\"" SHA_B "\",\"size\":5.5}",
     "manifest: files[0].chunks[0].size: expected an integer, found a real number"},
    {"\"sha256\":\"" SHA_B "\"", "\"sha256\":\"" SHA_B "0\"",
     "manifest: files[0].chunks[0].sha256: expected 64 lower-case hex digits"},
    {"\"sha256\":\"" SHA_B "\",\"size\":5", "\"sha256\":\"" SHA_B "\",\"size\":0",
     "manifest: files[0].chunks[0].size: must be from 1 to 4194304"},
    {"\"sha256\":\"" SHA_B "\",\"size\":5", "\"sha256\":\"" SHA_B "\",\"size\":4194305",
     "manifest: files[0].chunks[0].size: must be from 1 to 4194304"},
    {"\"sha256\":\"" SHA_B "\",\"size\":5", "\"sha256\":\"" SHA_B "\",\"size\":5,\"offset\":0",
     "manifest: files[0].chunks[0].offset: unknown field"},
    {"\"chunks\":[]", "\"chunks\":[{\"sha256\":\"" SHA_B "\",\"size\":1}]",
     "manifest: files[1].chunks: a file of size 0 has no chunks"},
    {"\"chunks\":[{", "\"chunks\":[{\"sha256\":\"" SHA_B "\",\"size\":1},{",
     "manifest: files[0].size: 5 is not the sum of the chunk sizes (6)"},
    {"\"chunks\":[]", "\"chunks\":{}",
     "manifest: files[1].chunks: expected an array, found an object"},
    /* order and uniqueness of files */
    {"\"path\":\"empty.cfg\"", "\"path\":\"app.hvt\"", "manifest: files[1].path: duplicate path"},
    {"\"path\":\"empty.cfg\"", "\"path\":\"a.cfg\"",
     "manifest: files[1].path: files must be sorted by path"},
    /* provenance */
    {"\"builder\":\"ci@example\",", "", "manifest: provenance.builder: missing"},
    {"\"builder\":\"ci@example\"", "\"builder\":\"\"",
     "manifest: provenance.builder: must be 1 to 4095 bytes"},
    {"\"builder\":\"ci@example\"", "\"builder\":null",
     "manifest: provenance.builder: expected a string, found null"},
    {"\"source\":{\"commit\":\"1a2b3c\",\"repository\":\"https://example.org/app.git\"}",
     "\"source\":{}", "manifest: provenance.source: must not be empty"},
    {"\"commit\":\"1a2b3c\"", "\"commit\":\"1a2b3c\",\"branch\":\"main\"",
     "manifest: provenance.source.branch: unknown field"},
    {"\"labels\":{\"ci.job\":\"42\"}", "\"labels\":{\"ci job\":\"42\"}",
     "manifest: provenance.labels: label key 'ci job'"},
    {"\"labels\":{\"ci.job\":\"42\"}", "\"labels\":{\"ci.job\":42}",
     "manifest: provenance.labels.ci.job: expected a string, found an integer"},
    {"\"labels\":{\"ci.job\":\"42\"}", "\"labels\":[]",
     "manifest: provenance.labels: expected an object"},
    {"\"labels\":{\"ci.job\":\"42\"}", "\"labels\":{\"a\":\"1\",\"a\":\"2\"}",
     "duplicate object key"},
    {"\"labels\":{\"ci.job\":\"42\"},", "", "manifest: provenance.labels: missing"},
    {"\"provenance\":{", "\"provenance\":{\"signer\":1,",
     "manifest: provenance.signer: unknown field"},
    /* boot */
    {"\"kernel\":\"app.hvt\"", "\"kernel\":\"vmlinuz\"",
     "manifest: boot.kernel: not a file of this manifest"},
    {"\"kernel\":\"app.hvt\"", "\"kernel\":\"app.hvt\",\"initrd\":\"initrd.img\"",
     "manifest: boot.initrd: not a file of this manifest"},
    {"\"complete\":false", "\"complete\":true",
     "manifest: boot.complete: must be true exactly when"},
    {"\"complete\":false,", "", "manifest: boot.complete: missing"},
    {"\"complete\":false,\"kernel\":\"app.hvt\"", "\"complete\":false",
     "manifest: boot.kernel: missing"},
    {"\"kernel\":\"app.hvt\"", "\"kernel\":\"app.hvt\",\"initrd\":null",
     "manifest: boot.initrd: expected a string, found null"},
    {"\"kernel\":\"app.hvt\"", "\"kernel\":\"app.hvt\",\"dtb\":\"x\"",
     "manifest: boot.dtb: unknown field"},
    /* not JSON, or not one document */
    {"\"version\":\"1.0.0\"}", "\"version\":\"1.0.0\"} {}", "manifest: not valid JSON"},
    {"\"version\":\"1.0.0\"}", "\"version\":\"1.0.0\"", "manifest: not valid JSON"},
};

static void parse_refuses_each_rule_naming_the_field(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(mutations) / sizeof(mutations[0]); i++) {
        char *text = replaced(golden_manifest, mutations[i].find, mutations[i].with);

        assert_parse_refused(text, mutations[i].message);
        free(text);
    }
}

static void parse_refuses_non_objects_and_empty_input(void **state)
{
    (void)state;
    assert_parse_refused("[]", "manifest: expected an object, found an array");
    assert_parse_refused("\"x\"", "manifest: not valid JSON");
    assert_parse_refused("", "manifest: not valid JSON");
    assert_parse_refused("{}", "manifest: schema: missing");
    assert_int_equal(imgstore_schema_manifest_parse(NULL, golden_manifest, strlen(golden_manifest)),
                     IMGSTORE_EINVALID);
}

static void parse_refuses_documents_over_the_size_cap(void **state)
{
    size_t len = IMGSTORE_MANIFEST_MAX_BYTES + 1;
    char *big = malloc(len);
    imgstore_manifest *m = NULL;

    (void)state;
    assert_non_null(big);
    memset(big, ' ', len);
    memcpy(big, golden_manifest, strlen(golden_manifest));
    assert_int_equal(imgstore_schema_manifest_parse(&m, big, len), IMGSTORE_EINVALID);
    assert_non_null(strstr(imgstore_error_last(), "more than the 33554432 allowed"));
    /* just under the cap, trailing whitespace is fine */
    assert_int_equal(imgstore_schema_manifest_parse(&m, big, len - 1), 0);
    imgstore_manifest_free(m);
    free(big);
}

static char *with_labels(size_t count)
{
    size_t cap = strlen(golden_manifest) + count * 32;
    char *labels = malloc(cap);
    char *text;
    size_t used = 0;

    assert_non_null(labels);
    used += (size_t)snprintf(labels, cap, "\"labels\":{");
    for (size_t i = 0; i < count; i++)
        used += (size_t)snprintf(labels + used, cap - used, "%s\"k%zu\":\"v\"", i ? "," : "", i);
    snprintf(labels + used, cap - used, "}");
    text = replaced(golden_manifest, "\"labels\":{\"ci.job\":\"42\"}", labels);
    free(labels);
    return text;
}

static void parse_enforces_the_label_cap_and_sorts_labels(void **state)
{
    imgstore_manifest *m = NULL;
    char *text = with_labels(IMGSTORE_MAX_LABELS);

    (void)state;
    assert_int_equal(imgstore_schema_manifest_parse(&m, text, strlen(text)), 0);
    assert_int_equal(m->label_count, IMGSTORE_MAX_LABELS);
    /* "k10" before "k2": sorted bytewise, not by insertion or number */
    for (size_t i = 1; i < m->label_count; i++)
        assert_true(strcmp(m->labels[i - 1].key, m->labels[i].key) < 0);
    imgstore_manifest_free(m);
    free(text);
    text = with_labels(IMGSTORE_MAX_LABELS + 1);
    assert_parse_refused(text, "manifest: provenance.labels: more than 64 labels");
    free(text);
}

/* The golden_manifest manifest with a `len`-byte "text" detail on its second file. */
static char *with_text(size_t len)
{
    size_t cap = len + 64;
    char *details = malloc(cap);
    char *text;
    int n;

    assert_non_null(details);
    n = snprintf(details, cap, "\"details\":{\"text\":\"");
    memset(details + n, 'x', len);
    strcpy(details + n + len, "\"}");
    text = replaced(golden_manifest, "\"details\":{}", details);
    free(details);
    return text;
}

static void parse_enforces_the_text_cap(void **state)
{
    imgstore_manifest *m = NULL;
    char *text = with_text(IMGSTORE_TEXT_MAX - 1);

    (void)state;
    assert_int_equal(imgstore_schema_manifest_parse(&m, text, strlen(text)), 0);
    assert_int_equal(strlen(m->files[1].info.text), IMGSTORE_TEXT_MAX - 1);
    imgstore_manifest_free(m);
    free(text);
    text = with_text(IMGSTORE_TEXT_MAX);
    assert_parse_refused(text, "manifest: files[1].details.text: must be 1 to 4095 bytes");
    free(text);
}

static void parse_never_accepts_truncated_or_damaged_bytes(void **state)
{
    size_t len = strlen(golden_manifest);
    char *copy = malloc(len + 1);

    (void)state;
    assert_non_null(copy);
    for (size_t cut = 0; cut < len; cut++) {
        imgstore_manifest *m = NULL;

        memcpy(copy, golden_manifest, cut);
        assert_int_equal(imgstore_schema_manifest_parse(&m, copy, cut), IMGSTORE_EINVALID);
        assert_null(m);
    }
    /* Any one byte changed either still parses or is refused cleanly; never crashes or leaks. */
    for (size_t at = 0; at < len; at++) {
        static const char replacements[] = {'x', '0', '"', '}', ']', ',', '\\', '\x80', ' '};

        for (size_t r = 0; r < sizeof(replacements); r++) {
            imgstore_manifest *m = NULL;
            int err;

            memcpy(copy, golden_manifest, len);
            copy[at] = replacements[r];
            err = imgstore_schema_manifest_parse(&m, copy, len);
            assert_true(err == 0 || err == IMGSTORE_EINVALID);
            imgstore_manifest_free(m);
        }
    }
    free(copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_refuses_each_rule_naming_the_field),
        cmocka_unit_test(parse_refuses_non_objects_and_empty_input),
        cmocka_unit_test(parse_refuses_documents_over_the_size_cap),
        cmocka_unit_test(parse_enforces_the_label_cap_and_sorts_labels),
        cmocka_unit_test(parse_enforces_the_text_cap),
        cmocka_unit_test(parse_never_accepts_truncated_or_damaged_bytes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
