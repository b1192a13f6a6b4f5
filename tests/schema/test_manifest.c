/*
 * Manifests: the canonical bytes (a golden string), round trips, canonical-form detection,
 * encode's refusals (each naming the JSON path of the field), and that
 * schema/manifest.schema.json matches what encode writes. The parser's rules are covered by
 * test_manifest_rules.c. Run under ASan, so refusals also prove that nothing leaks.
 */
#include "schema/schema.h"
#include "schema_test_util.h"

#include <stdio.h>

/* The manifest whose canonical bytes are golden_manifest. */
static imgstore_manifest *sample(void)
{
    imgstore_manifest *m = calloc(1, sizeof(*m));
    imgstore_manifest_file *f;

    assert_non_null(m);
    m->name = dup("app");
    m->version = dup("1.0.0");
    m->created = dup("2026-11-25T13:51:00Z");
    m->file_count = 2;
    m->files = calloc(2, sizeof(*m->files));
    assert_non_null(m->files);
    f = &m->files[0];
    f->path = dup("app.hvt");
    f->size = 5;
    strcpy(f->sha256, SHA_A);
    strcpy(f->info.kind, "unikernel");
    strcpy(f->info.format, "solo5-hvt");
    strcpy(f->info.arch, "x86_64");
    strcpy(f->info.solo5_target, "hvt");
    f->info.solo5_abi_version = 2;
    f->info.device_count = 1;
    strcpy(f->info.devices[0].name, "service");
    strcpy(f->info.devices[0].type, "net-basic");
    f->chunk_count = 1;
    f->chunks = calloc(1, sizeof(*f->chunks));
    assert_non_null(f->chunks);
    strcpy(f->chunks[0].sha256, SHA_B);
    f->chunks[0].size = 5;
    f = &m->files[1];
    f->path = dup("empty.cfg");
    strcpy(f->sha256, SHA_E);
    strcpy(f->info.kind, "config");
    strcpy(f->info.format, "xl");
    m->builder = dup("ci@example");
    m->source_repository = dup("https://example.org/app.git");
    m->source_commit = dup("1a2b3c");
    m->label_count = 1;
    m->labels = calloc(1, sizeof(*m->labels));
    assert_non_null(m->labels);
    m->labels[0].key = dup("ci.job");
    m->labels[0].value = dup("42");
    m->boot.kernel = dup("app.hvt");
    return m;
}

/* `text` with the first `find` replaced by `with`; the test fails if `find` is absent. */
static void assert_encodes_to(const imgstore_manifest *m, const char *expected)
{
    char *bytes = NULL;
    size_t len = 0;

    if (imgstore_schema_manifest_encode(&bytes, &len, m) != 0)
        fail_msg("encode failed: %s", imgstore_error_last());
    assert_int_equal(len, strlen(bytes));
    assert_string_equal(bytes, expected);
    free(bytes);
}

static void assert_encode_refused(const imgstore_manifest *m, const char *message_part)
{
    char *bytes = (char *)"untouched";
    size_t len = 1;

    assert_int_equal(imgstore_schema_manifest_encode(&bytes, &len, m), IMGSTORE_EINVALID);
    assert_null(bytes);
    assert_int_equal(len, 0);
    if (!strstr(imgstore_error_last(), message_part))
        fail_msg("message '%s' lacks '%s'", imgstore_error_last(), message_part);
}

static void encode_writes_golden_manifest_canonical_bytes(void **state)
{
    imgstore_manifest *m = sample();

    (void)state;
    assert_encodes_to(m, golden_manifest);
    imgstore_manifest_free(m);
}

static void round_trip_encode_parse_encode_is_identical(void **state)
{
    imgstore_manifest *parsed = NULL;

    (void)state;
    assert_int_equal(
        imgstore_schema_manifest_parse(&parsed, golden_manifest, strlen(golden_manifest)), 0);
    assert_string_equal(parsed->name, "app");
    assert_int_equal(parsed->file_count, 2);
    assert_int_equal(parsed->files[0].chunk_count, 1);
    assert_int_equal(parsed->files[0].info.device_count, 1);
    assert_int_equal(parsed->files[0].info.solo5_abi_version, 2);
    assert_string_equal(parsed->files[0].info.devices[0].type, "net-basic");
    assert_int_equal(parsed->files[1].chunk_count, 0);
    assert_null(parsed->files[1].chunks);
    assert_string_equal(parsed->boot.kernel, "app.hvt");
    assert_null(parsed->boot.initrd);
    assert_false(parsed->boot.complete);
    assert_encodes_to(parsed, golden_manifest);
    imgstore_manifest_free(parsed);
}

static void round_trip_keeps_every_detail_field(void **state)
{
    imgstore_manifest *m = sample();
    imgstore_manifest *parsed = NULL;
    imgstore_file_info *info = &m->files[0].info;
    char *bytes = NULL;
    char *again = NULL;
    size_t len = 0, again_len = 0;

    (void)state;
    strcpy(info->xen_mode, "pv+pvh");
    strcpy(info->kernel_version, "6.6.13-linuxkit (root@buildkitsandbox) #1 SMP");
    strcpy(info->boot_protocol, "2.15");
    strcpy(info->volume_id, "CDROM vol \xc3\xa9");
    info->hybrid = true;
    info->efi = true;
    strcpy(info->partition_table, "gpt");
    info->virtual_size = UINT64_C(1) << 53;
    strcpy(info->compression, "zstd");
    strcpy(info->text, "console=ttyS0\n\"quoted\" \\ \x01");
    assert_int_equal(imgstore_schema_manifest_encode(&bytes, &len, m), 0);
    assert_int_equal(imgstore_schema_manifest_parse(&parsed, bytes, len), 0);
    assert_memory_equal(&parsed->files[0].info, info, sizeof(*info));
    assert_int_equal(imgstore_schema_manifest_encode(&again, &again_len, parsed), 0);
    assert_int_equal(len, again_len);
    assert_memory_equal(bytes, again, len);
    assert_true(imgstore_schema_manifest_is_canonical(bytes, len));
    free(again);
    free(bytes);
    imgstore_manifest_free(parsed);
    imgstore_manifest_free(m);
}

static void parse_ignores_key_order_and_whitespace(void **state)
{
    static const char shuffled[] =
        "{ \"version\" : \"1.0.0\", \"schema\": \"imgstore.manifest/1\",\n"
        "  \"provenance\": {\"source\": {\"repository\": \"https://example.org/app.git\",\n"
        "     \"commit\": \"1a2b3c\"}, \"labels\": {\"ci.job\": \"42\"}, \"builder\": "
        "\"ci@example\"},\n"
        "  \"name\": \"app\",\n"
        "  \"files\": [ {\"size\": 5, \"sha256\": \"" SHA_A "\", \"path\": \"app.hvt\",\n"
        "     \"kind\": \"unikernel\", \"format\": \"solo5-hvt\",\n"
        "     \"details\": {\"solo5_target\": \"hvt\", \"solo5_abi_version\": 2,\n"
        "        \"devices\": [{\"type\": \"net-basic\", \"name\": \"service\"}], \"arch\": "
        "\"x86_64\"},\n"
        "     \"chunks\": [{\"size\": 5, \"sha256\": \"" SHA_B "\"}]},\n"
        "    {\"size\": 0, \"sha256\": \"" SHA_E "\", \"path\": \"empty.cfg\", \"kind\": "
        "\"config\",\n"
        "     \"format\": \"xl\", \"details\": {}, \"chunks\": []} ],\n"
        "  \"created\": \"2026-11-25T13:51:00Z\",\n"
        "  \"boot\": {\"kernel\": \"app.hvt\", \"complete\": false} }\n";
    imgstore_manifest *parsed = NULL;

    (void)state;
    if (imgstore_schema_manifest_parse(&parsed, shuffled, strlen(shuffled)) != 0)
        fail_msg("%s", imgstore_error_last());
    assert_encodes_to(parsed, golden_manifest);
    imgstore_manifest_free(parsed);
    assert_false(imgstore_schema_manifest_is_canonical(shuffled, strlen(shuffled)));
}

static void is_canonical_only_for_the_exact_bytes(void **state)
{
    char *text;

    (void)state;
    assert_true(imgstore_schema_manifest_is_canonical(golden_manifest, strlen(golden_manifest)));
    /* the same manifest, other bytes */
    text = replaced(golden_manifest, "\"name\":\"app\"", "\"name\": \"app\"");
    assert_false(imgstore_schema_manifest_is_canonical(text, strlen(text)));
    free(text);
    text = replaced(golden_manifest, "{\"boot\":{\"complete\":false,\"kernel\":\"app.hvt\"},",
                    "{\"boot\":{\"kernel\":\"app.hvt\",\"complete\":false},");
    assert_false(imgstore_schema_manifest_is_canonical(text, strlen(text)));
    free(text);
    text = replaced(golden_manifest, "\"size\":0", "\"size\":-0");
    assert_false(imgstore_schema_manifest_is_canonical(text, strlen(text)));
    free(text);
    text = replaced(golden_manifest, "\"ci@example\"", "\"ci\\u0040example\"");
    assert_false(imgstore_schema_manifest_is_canonical(text, strlen(text)));
    free(text);
    text = replaced(golden_manifest, "\"version\":\"1.0.0\"}", "\"version\":\"1.0.0\"}\n");
    assert_false(imgstore_schema_manifest_is_canonical(text, strlen(text)));
    free(text);
    /* not a manifest at all */
    assert_false(imgstore_schema_manifest_is_canonical("{}", 2));
    assert_false(imgstore_schema_manifest_is_canonical(NULL, 0));
    /* a prefix of the canonical bytes */
    assert_false(
        imgstore_schema_manifest_is_canonical(golden_manifest, strlen(golden_manifest) - 1));
}

static void encode_refuses_unsorted_and_duplicate_files(void **state)
{
    imgstore_manifest *m = sample();
    char *path = m->files[1].path;

    (void)state;
    m->files[1].path = dup("a.cfg");
    assert_encode_refused(m, "manifest: files[1].path: files must be sorted by path");
    free(m->files[1].path);
    m->files[1].path = dup("app.hvt");
    assert_encode_refused(m, "manifest: files[1].path: duplicate path");
    free(m->files[1].path);
    m->files[1].path = path;
    assert_encodes_to(m, golden_manifest);
    imgstore_manifest_free(m);
}

static void encode_refuses_broken_fields_naming_them(void **state)
{
    imgstore_manifest *m = sample();
    char *saved;

    (void)state;
    saved = m->name;
    m->name = NULL;
    assert_encode_refused(m, "manifest: name: missing");
    m->name = saved;

    saved = m->builder;
    m->builder = dup("bad \xc3(");
    assert_encode_refused(m, "manifest: provenance.builder: not valid UTF-8");
    free(m->builder);
    m->builder = saved;

    m->files[0].size = (UINT64_C(1) << 53) + 1;
    assert_encode_refused(m, "manifest: files[0].size: must be at most 9007199254740992");
    m->files[0].size = 4;
    assert_encode_refused(m, "manifest: files[0].size: 4 is not the sum of the chunk sizes (5)");
    m->files[0].size = 5;

    m->files[0].chunks[0].sha256[3] = 'X';
    assert_encode_refused(m, "manifest: files[0].chunks[0].sha256: expected 64 lower-case hex");
    m->files[0].chunks[0].sha256[3] = 'c';

    memset(m->files[0].info.arch, 'a', sizeof(m->files[0].info.arch));
    assert_encode_refused(m, "manifest: files[0].details.arch: not NUL-terminated");
    strcpy(m->files[0].info.arch, "x86_64");

    strcpy(m->files[0].info.kind, "blob");
    assert_encode_refused(m, "manifest: files[0].kind: 'blob' is not one of");
    strcpy(m->files[0].info.kind, "unikernel");

    m->files[0].info.device_count = IMGSTORE_MAX_DEVICES + 1;
    assert_encode_refused(m, "manifest: files[0].details.devices: more than 64 devices");
    m->files[0].info.device_count = 1;

    saved = m->created;
    m->created = dup("yesterday");
    assert_encode_refused(m, "manifest: created: 'yesterday': expected a UTC time");
    free(m->created);
    m->created = saved;

    m->file_count = 0;
    assert_encode_refused(m, "manifest: files: must hold 1 to 64 files, found 0");
    m->file_count = IMGSTORE_MAX_FILES + 1;
    assert_encode_refused(m, "manifest: files: must hold 1 to 64 files, found 65");
    m->file_count = 2;

    m->boot.complete = true;
    assert_encode_refused(m, "manifest: boot.complete: must be true exactly when");
    m->boot.complete = false;

    assert_encodes_to(m, golden_manifest);
    assert_encode_refused(NULL, "manifest: none given");
    imgstore_manifest_free(m);
}

static void encode_refuses_duplicate_and_invalid_label_keys(void **state)
{
    imgstore_manifest *m = sample();
    imgstore_label labels[2] = {{(char *)"ci.job", (char *)"1"}, {(char *)"ci.job", (char *)"2"}};
    imgstore_label *saved = m->labels;

    (void)state;
    m->labels = labels;
    m->label_count = 2;
    assert_encode_refused(m, "manifest: provenance.labels.ci.job: duplicate label key");
    labels[1].key = (char *)"bad key";
    assert_encode_refused(m, "manifest: provenance.labels[1]: label key 'bad key'");
    labels[1].key = (char *)"a.first";
    labels[1].value = NULL;
    assert_encode_refused(m, "manifest: provenance.labels.a.first: missing");
    m->labels = saved;
    m->label_count = 1;
    imgstore_manifest_free(m);
}

static void encode_accepts_labels_in_any_order(void **state)
{
    imgstore_manifest *m = sample();
    imgstore_manifest *parsed = NULL;
    imgstore_label labels[2] = {{(char *)"z", (char *)"1"}, {(char *)"a", (char *)""}};
    imgstore_label *saved = m->labels;
    char *bytes = NULL;
    size_t len = 0;

    (void)state;
    m->labels = labels;
    m->label_count = 2;
    assert_int_equal(imgstore_schema_manifest_encode(&bytes, &len, m), 0);
    assert_non_null(strstr(bytes, "\"labels\":{\"a\":\"\",\"z\":\"1\"}"));
    assert_int_equal(imgstore_schema_manifest_parse(&parsed, bytes, len), 0);
    assert_string_equal(parsed->labels[0].key, "a");
    assert_string_equal(parsed->labels[1].key, "z");
    m->labels = saved;
    m->label_count = 1;
    imgstore_manifest_free(parsed);
    free(bytes);
    imgstore_manifest_free(m);
}

static void encode_omits_unknown_optional_parts(void **state)
{
    imgstore_manifest *m = sample();
    imgstore_manifest *parsed = NULL;
    char *bytes = NULL;
    size_t len = 0;

    (void)state;
    /* no kernel: no boot object, even if an initrd was found */
    free(m->boot.kernel);
    m->boot.kernel = NULL;
    m->boot.initrd = dup("empty.cfg");
    free(m->source_commit);
    m->source_commit = NULL;
    assert_int_equal(imgstore_schema_manifest_encode(&bytes, &len, m), 0);
    assert_null(strstr(bytes, "\"boot\""));
    assert_null(strstr(bytes, "\"commit\""));
    assert_non_null(strstr(bytes, "\"source\":{\"repository\":\"https://example.org/app.git\"}"));
    assert_int_equal(imgstore_schema_manifest_parse(&parsed, bytes, len), 0);
    assert_null(parsed->boot.kernel);
    assert_null(parsed->boot.initrd);
    assert_null(parsed->source_commit);
    imgstore_manifest_free(parsed);
    free(bytes);

    free(m->source_repository);
    m->source_repository = NULL;
    assert_int_equal(imgstore_schema_manifest_encode(&bytes, &len, m), 0);
    assert_null(strstr(bytes, "\"source\""));
    free(bytes);
    imgstore_manifest_free(m);
}

static void encode_writes_a_complete_boot_set(void **state)
{
    imgstore_manifest *m = sample();
    char *bytes = NULL;
    size_t len = 0;

    (void)state;
    m->boot.initrd = dup("empty.cfg");
    m->boot.cmdline = dup("empty.cfg");
    m->boot.complete = true;
    assert_int_equal(imgstore_schema_manifest_encode(&bytes, &len, m), 0);
    assert_non_null(strstr(bytes, "{\"boot\":{\"cmdline\":\"empty.cfg\",\"complete\":true,"
                                  "\"initrd\":\"empty.cfg\",\"kernel\":\"app.hvt\"},"));
    assert_true(imgstore_schema_manifest_is_canonical(bytes, len));
    free(bytes);
    imgstore_manifest_free(m);
}

static void to_json_has_the_shape_of_the_canonical_bytes(void **state)
{
    imgstore_manifest *m = sample();
    json_t *obj = imgstore_schema_manifest_to_json(m);
    char *dumped;

    (void)state;
    assert_non_null(obj);
    dumped = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(dumped, golden_manifest);
    free(dumped);
    json_decref(obj);
    assert_null(imgstore_schema_manifest_to_json(NULL));
    imgstore_manifest_free(m);
}

static json_t *load_schema_file(const char *name)
{
    char path[4096];
    json_error_t error;
    json_t *schema;

    snprintf(path, sizeof(path), "%s/schema/%s", IMGSTORE_SOURCE_DIR, name);
    schema = json_load_file(path, JSON_REJECT_DUPLICATES, &error);
    if (!schema)
        fail_msg("%s: line %d: %s", path, error.line, error.text);
    return schema;
}

static void schema_file_lists_exactly_the_encoded_top_level_keys(void **state)
{
    json_t *schema = load_schema_file("manifest.schema.json");
    json_t *properties = json_object_get(schema, "properties");
    imgstore_manifest *m = sample();
    json_t *encoded = NULL;
    const char *key;
    json_t *value;
    char *bytes = NULL;
    size_t len = 0;

    (void)state;
    assert_string_equal(json_string_value(json_object_get(schema, "$schema")),
                        "https://json-schema.org/draft/2020-12/schema");
    assert_true(json_is_false(json_object_get(schema, "additionalProperties")));
    assert_non_null(properties);
    assert_int_equal(imgstore_schema_manifest_encode(&bytes, &len, m), 0);
    encoded = json_loadb(bytes, len, 0, NULL);
    assert_non_null(encoded);
    assert_int_equal(json_object_size(properties), json_object_size(encoded));
    json_object_foreach(encoded, key, value)
    {
        if (!json_object_get(properties, key))
            fail_msg("encoded key '%s' not in manifest.schema.json", key);
    }
    json_decref(encoded);
    free(bytes);
    imgstore_manifest_free(m);
    json_decref(schema);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_writes_golden_manifest_canonical_bytes),
        cmocka_unit_test(round_trip_encode_parse_encode_is_identical),
        cmocka_unit_test(round_trip_keeps_every_detail_field),
        cmocka_unit_test(parse_ignores_key_order_and_whitespace),
        cmocka_unit_test(is_canonical_only_for_the_exact_bytes),
        cmocka_unit_test(encode_refuses_unsorted_and_duplicate_files),
        cmocka_unit_test(encode_refuses_broken_fields_naming_them),
        cmocka_unit_test(encode_refuses_duplicate_and_invalid_label_keys),
        cmocka_unit_test(encode_accepts_labels_in_any_order),
        cmocka_unit_test(encode_omits_unknown_optional_parts),
        cmocka_unit_test(encode_writes_a_complete_boot_set),
        cmocka_unit_test(to_json_has_the_shape_of_the_canonical_bytes),
        cmocka_unit_test(schema_file_lists_exactly_the_encoded_top_level_keys),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
