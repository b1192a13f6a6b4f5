/*
 * The OCI form of a version (schema/oci.c, docs/oci.md): the config blob wraps the exact
 * manifest bytes, the OCI manifest's layers are the files with their media types, titles and
 * details, the rendering is a pure function (its digest never moves), and the parse of a
 * pushed manifest takes what imgstore keeps and refuses what it cannot take.
 */
#include "schema/schema.h"
#include "schema_test_util.h"

#include <stdio.h>

static json_t *load(const char *text)
{
    json_t *doc = json_loads(text, 0, NULL);

    assert_non_null(doc);
    return doc;
}

static void render(char **manifest_out, char **config_out)
{
    imgstore_manifest *m = NULL;
    size_t len = 0, config_len = 0;

    assert_int_equal(imgstore_schema_manifest_parse(&m, golden_manifest, strlen(golden_manifest)),
                     0);
    assert_int_equal(imgstore_schema_oci_config(config_out, &config_len, golden_manifest,
                                                strlen(golden_manifest), SHA_B),
                     0);
    assert_int_equal(imgstore_schema_oci_manifest(manifest_out, &len, m, SHA_B, SHA_A, config_len),
                     0);
    assert_int_equal(strlen(*manifest_out), len);
    imgstore_manifest_free(m);
}

static void oci_layers_are_the_files_with_titles_and_details(void **state)
{
    char *manifest = NULL, *config = NULL;
    json_t *doc, *layer, *annotations;

    (void)state;
    render(&manifest, &config);
    doc = load(manifest);
    assert_string_equal(json_string_value(json_object_get(doc, "mediaType")),
                        IMGSTORE_OCI_MANIFEST_TYPE);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(doc, "config"), "digest")),
        "sha256:" SHA_A);
    assert_int_equal(json_array_size(json_object_get(doc, "layers")), 2);
    layer = json_array_get(json_object_get(doc, "layers"), 0);
    annotations = json_object_get(layer, "annotations");
    assert_string_equal(json_string_value(json_object_get(layer, "mediaType")),
                        "application/vnd.imgstore.unikernel.solo5-hvt");
    assert_string_equal(json_string_value(json_object_get(layer, "digest")), "sha256:" SHA_A);
    assert_string_equal(json_string_value(json_object_get(annotations, IMGSTORE_OCI_TITLE)),
                        "app.hvt");
    assert_string_equal(json_string_value(json_object_get(annotations, "org.imgstore.arch")),
                        "x86_64");
    assert_string_equal(
        json_string_value(json_object_get(annotations, "org.imgstore.solo5_abi_version")), "2");
    assert_string_equal(json_string_value(json_object_get(annotations, "org.imgstore.devices")),
                        "[{\"name\":\"service\",\"type\":\"net-basic\"}]");
    layer = json_array_get(json_object_get(doc, "layers"), 1);
    assert_string_equal(json_string_value(json_object_get(layer, "mediaType")),
                        "application/vnd.imgstore.config.xl");
    assert_int_equal(json_integer_value(json_object_get(layer, "size")), 0);
    annotations = json_object_get(doc, "annotations");
    assert_string_equal(
        json_string_value(json_object_get(annotations, "org.opencontainers.image.source")),
        "https://example.org/app.git");
    assert_string_equal(
        json_string_value(json_object_get(annotations, "org.imgstore.label.ci.job")), "42");
    json_decref(doc);
    /* the config carries the exact signed bytes */
    doc = load(config);
    assert_string_equal(json_string_value(json_object_get(doc, "manifest")), golden_manifest);
    json_decref(doc);
    free(manifest);
    free(config);
}

static void oci_rendering_is_a_pure_function(void **state)
{
    char *a = NULL, *b = NULL, *ca = NULL, *cb = NULL;

    (void)state;
    render(&a, &ca);
    render(&b, &cb);
    assert_string_equal(a, b);
    assert_string_equal(ca, cb);
    free(a);
    free(b);
    free(ca);
    free(cb);
}

static void oci_parse_takes_a_rendered_manifest_back(void **state)
{
    char *manifest = NULL, *config = NULL;
    imgstore_oci_manifest *parsed = NULL;

    (void)state;
    render(&manifest, &config);
    assert_int_equal(imgstore_schema_oci_parse(&parsed, manifest, strlen(manifest)), 0);
    assert_int_equal(parsed->layer_count, 2);
    assert_string_equal(parsed->layers[0].title, "app.hvt");
    assert_string_equal(parsed->layers[0].sha256, SHA_A);
    assert_string_equal(parsed->config.sha256, SHA_A);
    assert_null(parsed->config.title);
    assert_string_equal(parsed->source, "https://example.org/app.git");
    assert_string_equal(parsed->revision, "1a2b3c");
    assert_int_equal(parsed->label_count, 1);
    assert_string_equal(parsed->labels[0].key, "ci.job");
    assert_string_equal(parsed->labels[0].value, "42");
    imgstore_oci_manifest_free(parsed);
    free(manifest);
    free(config);
}

static void oci_parse_refuses_what_imgstore_cannot_take(void **state)
{
    static const char *const bad[] = {
        "not json",
        "{\"schemaVersion\":1,\"layers\":[]}",
        "{\"schemaVersion\":2,\"mediaType\":\"application/"
        "vnd.docker.distribution.manifest.v2+json\","
        "\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:" SHA_A
        "\",\"size\":1},\"layers\":[]}",
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"sha512:00\",\"size\":1},"
        "\"layers\":[]}",
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:" SHA_A
        "\",\"size\":-1},\"layers\":[]}",
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:" SHA_A
        "\",\"size\":1}}",
    };
    imgstore_oci_manifest *parsed = NULL;
    char hex[65];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(imgstore_schema_oci_parse(&parsed, bad[i], strlen(bad[i])),
                         IMGSTORE_EINVALID);
        assert_null(parsed);
    }
    assert_int_equal(imgstore_schema_oci_digest(hex, "sha256:" SHA_A), 0);
    assert_string_equal(hex, SHA_A);
    assert_int_equal(imgstore_schema_oci_digest(hex, "sha256:" SHA_A "0"), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_schema_oci_digest(hex, "sha256:ABCDEF"), IMGSTORE_EINVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(oci_layers_are_the_files_with_titles_and_details),
        cmocka_unit_test(oci_rendering_is_a_pure_function),
        cmocka_unit_test(oci_parse_takes_a_rendered_manifest_back),
        cmocka_unit_test(oci_parse_refuses_what_imgstore_cannot_take),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
