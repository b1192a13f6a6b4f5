/*
 * The OCI form of a version (docs/oci.md): the config blob and the OCI image manifest the
 * server's /v2 routes hand out, and the parse of an OCI image manifest a client pushes.
 * Both renderings are pure functions of the imgstore manifest (sorted keys, compact), so the
 * OCI manifest's digest is the same on every call, every server and every clone of a store.
 * What to do with them (blobs, tags, pushes) is the server's and the store's business.
 */
#include "schema/schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

#define LABEL_PREFIX "org.imgstore.label."

int imgstore_schema_oci_digest(char *hex, const char *digest)
{
    const char *at;

    if (!digest || strncmp(digest, "sha256:", 7) != 0)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "digest '%.80s': only sha256:<64 hex digits> digests are taken",
                                  digest ? digest : "");
    at = digest + 7;
    if (strlen(at) != 64)
        return imgstore_error_set(IMGSTORE_EINVALID, "digest '%.80s': expected 64 hex digits",
                                  digest);
    for (size_t i = 0; i < 64; i++) {
        if (!((at[i] >= '0' && at[i] <= '9') || (at[i] >= 'a' && at[i] <= 'f')))
            return imgstore_error_set(IMGSTORE_EINVALID,
                                      "digest '%.80s': expected lower-case hex digits", digest);
    }
    memcpy(hex, at, 65);
    return 0;
}

static char *dump(const json_t *doc, size_t *len_out)
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);

    if (text)
        *len_out = strlen(text);
    return text;
}

/* A detail as an annotation value: strings as they are, the rest as compact JSON. */
static int annotate_detail(json_t *annotations, const char *key, const json_t *value)
{
    char name[96], *text = NULL;
    int rc;

    snprintf(name, sizeof(name), "org.imgstore.%s", key);
    if (json_is_string(value))
        return json_object_set_new(annotations, name, json_string(json_string_value(value)));
    if (json_is_true(value) || json_is_false(value))
        return json_object_set_new(annotations, name,
                                   json_string(json_is_true(value) ? "true" : "false"));
    if (!(text = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)))
        return -1;
    rc = json_object_set_new(annotations, name, json_string(text));
    free(text);
    return rc;
}

static json_t *layer_of(const json_t *file)
{
    const char *kind = json_string_value(json_object_get(file, "kind"));
    const char *format = json_string_value(json_object_get(file, "format"));
    const char *path = json_string_value(json_object_get(file, "path"));
    const char *sha = json_string_value(json_object_get(file, "sha256"));
    json_t *details = json_object_get(file, "details");
    json_t *annotations = json_object(), *layer = NULL;
    char media[128], digest[80];
    const char *key;
    json_t *value;

    if (!annotations || !kind || !format || !path || !sha)
        goto fail;
    /* the format tells the kind's variant ("unikernel.solo5-xen"); "kernel.bzimage" */
    if (strcmp(format, kind) != 0 && strcmp(format, "unknown") != 0)
        snprintf(media, sizeof(media), IMGSTORE_OCI_LAYER_PREFIX "%s.%s", kind, format);
    else
        snprintf(media, sizeof(media), IMGSTORE_OCI_LAYER_PREFIX "%s", kind);
    snprintf(digest, sizeof(digest), "sha256:%s", sha);
    if (json_object_set_new(annotations, IMGSTORE_OCI_TITLE, json_string(path)) < 0 ||
        json_object_set_new(annotations, "org.imgstore.kind", json_string(kind)) < 0 ||
        json_object_set_new(annotations, "org.imgstore.format", json_string(format)) < 0)
        goto fail;
    json_object_foreach(details, key, value)
    {
        if (annotate_detail(annotations, key, value) < 0)
            goto fail;
    }
    layer = json_pack("{s:s, s:s, s:O, s:o}", "mediaType", media, "digest", digest, "size",
                      json_object_get(file, "size"), "annotations", annotations);
    return layer;
fail:
    json_decref(annotations);
    return NULL;
}

static int set_text(json_t *annotations, const char *key, const char *value)
{
    return value ? json_object_set_new(annotations, key, json_string(value)) : 0;
}

int imgstore_schema_oci_config(char **out, size_t *len_out, const char *canonical,
                               size_t canonical_len, const char *canonical_sha256)
{
    json_t *config;

    *out = NULL;
    if (!canonical || !canonical_sha256)
        return imgstore_error_set(IMGSTORE_EINVALID, "oci config: no manifest");
    /* the exact bytes that release signatures cover, as a JSON string: a client can check
     * them against GET /v1/images/{name}/{version}/signatures */
    config = json_pack("{s:s, s:s#, s:s}", "schema", "imgstore.oci-config/1", "manifest", canonical,
                       canonical_len, "manifest_sha256", canonical_sha256);
    if (config)
        *out = dump(config, len_out);
    json_decref(config);
    return *out ? 0 : imgstore_error_set(IMGSTORE_ERROR, "cannot encode the OCI config");
}

int imgstore_schema_oci_manifest(char **out, size_t *len_out, const imgstore_manifest *manifest,
                                 const char *canonical_sha256, const char *config_sha256,
                                 size_t config_len)
{
    json_t *doc = NULL, *oci = NULL, *layers = NULL, *annotations = NULL;
    json_t *file;
    char digest[80], key[160];
    size_t index;
    int err = IMGSTORE_ERROR;

    *out = NULL;
    if (!manifest || !canonical_sha256 || !config_sha256)
        return imgstore_error_set(IMGSTORE_EINVALID, "oci manifest: no manifest");
    if (!(doc = imgstore_schema_manifest_to_json(manifest)) || !(layers = json_array()) ||
        !(annotations = json_object()))
        goto done;
    json_array_foreach(json_object_get(doc, "files"), index, file)
    {
        if (json_array_append_new(layers, layer_of(file)) < 0)
            goto done;
    }
    if (set_text(annotations, "org.opencontainers.image.created", manifest->created) < 0 ||
        set_text(annotations, "org.opencontainers.image.version", manifest->version) < 0 ||
        set_text(annotations, "org.opencontainers.image.source", manifest->source_repository) < 0 ||
        set_text(annotations, "org.opencontainers.image.revision", manifest->source_commit) < 0 ||
        set_text(annotations, "org.imgstore.name", manifest->name) < 0 ||
        set_text(annotations, "org.imgstore.builder", manifest->builder) < 0 ||
        set_text(annotations, "org.imgstore.manifest_sha256", canonical_sha256) < 0 ||
        set_text(annotations, "org.imgstore.boot.kernel", manifest->boot.kernel) < 0 ||
        set_text(annotations, "org.imgstore.boot.initrd", manifest->boot.initrd) < 0 ||
        set_text(annotations, "org.imgstore.boot.cmdline", manifest->boot.cmdline) < 0)
        goto done;
    for (size_t i = 0; i < manifest->label_count; i++) {
        snprintf(key, sizeof(key), LABEL_PREFIX "%s", manifest->labels[i].key);
        if (set_text(annotations, key, manifest->labels[i].value) < 0)
            goto done;
    }
    snprintf(digest, sizeof(digest), "sha256:%s", config_sha256);
    oci = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:O, s:O}", "schemaVersion", 2, "mediaType",
                    IMGSTORE_OCI_MANIFEST_TYPE, "config", "mediaType", IMGSTORE_OCI_CONFIG_TYPE,
                    "digest", digest, "size", (json_int_t)config_len, "layers", layers,
                    "annotations", annotations);
    if (oci && (*out = dump(oci, len_out)))
        err = 0;
done:
    if (err < 0)
        imgstore_error_set(IMGSTORE_ERROR, "cannot render the OCI manifest of %s %s",
                           manifest->name, manifest->version);
    json_decref(oci);
    json_decref(annotations);
    json_decref(layers);
    json_decref(doc);
    return err;
}

/* ---- parsing what a client pushes ----------------------------------------------------- */

static char *dup_string(const json_t *value)
{
    return json_is_string(value) ? strdup(json_string_value(value)) : NULL;
}

static int descriptor_parse(imgstore_oci_descriptor *out, const json_t *desc, const char *where)
{
    const json_t *size = json_object_get(desc, "size");
    const char *digest = json_string_value(json_object_get(desc, "digest"));
    int err;

    if (!json_is_object(desc))
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: not a descriptor", where);
    if ((err = imgstore_schema_oci_digest(out->sha256, digest)) < 0)
        return imgstore_error_wrap(err, "%s: ", where);
    if (!json_is_integer(size) || json_integer_value(size) < 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: size must be a non-negative integer",
                                  where);
    out->size = (uint64_t)json_integer_value(size);
    if (!(out->media_type = dup_string(json_object_get(desc, "mediaType"))))
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: no mediaType", where);
    out->title =
        dup_string(json_object_get(json_object_get(desc, "annotations"), IMGSTORE_OCI_TITLE));
    return 0;
}

void imgstore_oci_manifest_free(imgstore_oci_manifest *m)
{
    if (!m)
        return;
    free(m->config.media_type);
    free(m->config.title);
    for (size_t i = 0; m->layers && i < m->layer_count; i++) {
        free(m->layers[i].media_type);
        free(m->layers[i].title);
    }
    free(m->layers);
    for (size_t i = 0; i < m->label_count; i++) {
        free(m->labels[i].key);
        free(m->labels[i].value);
    }
    free(m->labels);
    free(m->created);
    free(m->source);
    free(m->revision);
    free(m);
}

int imgstore_schema_oci_parse(imgstore_oci_manifest **out, const char *buf, size_t len)
{
    imgstore_oci_manifest *m = NULL;
    json_t *doc = NULL, *layers, *annotations, *value;
    const char *media, *key;
    json_error_t jerr;
    char where[64];
    int err = 0;

    *out = NULL;
    if (len > IMGSTORE_OCI_MANIFEST_MAX_BYTES)
        return imgstore_error_set(IMGSTORE_EINVALID, "manifest: larger than %u bytes",
                                  IMGSTORE_OCI_MANIFEST_MAX_BYTES);
    if (!(doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr)) || !json_is_object(doc)) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "manifest: not a JSON object: %s",
                                 doc ? "" : jerr.text);
        goto done;
    }
    if (json_integer_value(json_object_get(doc, "schemaVersion")) != 2) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "manifest: schemaVersion must be 2");
        goto done;
    }
    media = json_string_value(json_object_get(doc, "mediaType"));
    if (media && strcmp(media, IMGSTORE_OCI_MANIFEST_TYPE) != 0) {
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "manifest: media type %.100s: only OCI image manifests (" //
                                 IMGSTORE_OCI_MANIFEST_TYPE ") are taken",
                                 media);
        goto done;
    }
    layers = json_object_get(doc, "layers");
    if (!json_is_array(layers)) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "manifest: no layers array");
        goto done;
    }
    if (json_array_size(layers) > IMGSTORE_MAX_FILES) {
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "manifest: %zu layers, a version holds at most %d files",
                                 json_array_size(layers), IMGSTORE_MAX_FILES);
        goto done;
    }
    if (!(m = calloc(1, sizeof(*m))) ||
        !(m->layers = calloc(json_array_size(layers) + 1, sizeof(*m->layers))) ||
        !(m->labels = calloc(IMGSTORE_MAX_LABELS, sizeof(*m->labels)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = descriptor_parse(&m->config, json_object_get(doc, "config"), "manifest: config")) <
        0)
        goto done;
    for (size_t i = 0; i < json_array_size(layers); i++) {
        snprintf(where, sizeof(where), "manifest: layers[%zu]", i);
        m->layer_count = i + 1;
        if ((err = descriptor_parse(&m->layers[i], json_array_get(layers, i), where)) < 0)
            goto done;
    }
    annotations = json_object_get(doc, "annotations");
    m->created = dup_string(json_object_get(annotations, "org.opencontainers.image.created"));
    m->source = dup_string(json_object_get(annotations, "org.opencontainers.image.source"));
    m->revision = dup_string(json_object_get(annotations, "org.opencontainers.image.revision"));
    json_object_foreach(annotations, key, value)
    {
        imgstore_label *label;

        if (strncmp(key, LABEL_PREFIX, strlen(LABEL_PREFIX)) != 0 || !json_is_string(value))
            continue;
        if (m->label_count == IMGSTORE_MAX_LABELS) {
            err = imgstore_error_set(IMGSTORE_EINVALID, "manifest: more than %d labels",
                                     IMGSTORE_MAX_LABELS);
            goto done;
        }
        label = &m->labels[m->label_count++];
        if (!(label->key = strdup(key + strlen(LABEL_PREFIX))) ||
            !(label->value = strdup(json_string_value(value)))) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            goto done;
        }
    }
    *out = m;
    m = NULL;
done:
    imgstore_oci_manifest_free(m);
    json_decref(doc);
    return err;
}
