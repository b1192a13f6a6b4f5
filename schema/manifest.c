/*
 * Image manifests: the struct <-> JSON mapping, the validation rules, and the canonical bytes
 * that are stored and signed. The canonical form is jansson's compact dump with keys sorted
 * bytewise and no trailing newline; encode only emits manifests that parse, because it runs
 * the parser's checks on what it is about to return, so one set of rules serves both
 * directions. The shape is documented in schema/manifest.schema.json. File details live in
 * manifest_details.c; where manifests are stored and how they are signed is not our concern.
 */
#include "schema/schema_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/*
 * Largest chunk a manifest may name. Equal to IMGSTORE_CHUNK_MAX in store/store.h, which
 * schema may not include; the store's chunker never cuts larger pieces.
 */
#define CHUNK_MAX (4u * 1024 * 1024)

static const char *const manifest_keys[] = {"schema", "name",       "version", "created",
                                            "files",  "provenance", "boot",    NULL};
static const char *const file_keys[] = {"path",   "size",    "sha256", "kind",
                                        "format", "details", "chunks", NULL};
static const char *const chunk_keys[] = {"sha256", "size", NULL};
static const char *const provenance_keys[] = {"builder", "source", "labels", NULL};
static const char *const source_keys[] = {"repository", "commit", NULL};
static const char *const boot_keys[] = {"kernel", "initrd", "cmdline", "complete", NULL};

void imgstore_manifest_free(imgstore_manifest *manifest)
{
    if (!manifest)
        return;
    for (size_t i = 0; manifest->files && i < manifest->file_count; i++) {
        free(manifest->files[i].path);
        free(manifest->files[i].chunks);
    }
    for (size_t i = 0; manifest->labels && i < manifest->label_count; i++) {
        free(manifest->labels[i].key);
        free(manifest->labels[i].value);
    }
    free(manifest->name);
    free(manifest->version);
    free(manifest->created);
    free(manifest->files);
    free(manifest->source_repository);
    free(manifest->source_commit);
    free(manifest->builder);
    free(manifest->labels);
    free(manifest->boot.kernel);
    free(manifest->boot.initrd);
    free(manifest->boot.cmdline);
    free(manifest);
}

/* ---- reading -------------------------------------------------------------------------- */

static int read_chunks(imgstore_manifest_file *file, const json_t *obj,
                       const imgstore_schema__at *at)
{
    imgstore_schema__at item;
    json_t *chunks;
    json_t *chunk;
    uint64_t total = 0;
    size_t i;
    int err;

    if ((err = imgstore_schema__field(&chunks, obj, at, "chunks", JSON_ARRAY, true)) < 0)
        return err;
    if (json_array_size(chunks) > 0 &&
        !(file->chunks = calloc(json_array_size(chunks), sizeof(*file->chunks))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    json_array_foreach(chunks, i, chunk)
    {
        imgstore_chunk_ref *ref = &file->chunks[i];

        imgstore_schema__at_index(&item, at, "chunks", i);
        if (!json_is_object(chunk))
            return imgstore_schema__fail(&item, NULL, "expected an object");
        if ((err = imgstore_schema__keys(chunk, &item, chunk_keys)) < 0 ||
            (err = imgstore_schema__sha256(ref->sha256, chunk, &item, "sha256")) < 0 ||
            (err = imgstore_schema__uint(&ref->size, chunk, &item, "size", 1, CHUNK_MAX, true)) < 0)
            return err;
        file->chunk_count = i + 1;
        /* Cannot overflow: chunks are at most 4 MiB and the document at most 32 MiB. */
        total += ref->size;
    }
    if (file->size == 0 && file->chunk_count > 0)
        return imgstore_schema__fail(at, "chunks", "a file of size 0 has no chunks");
    if (total != file->size)
        return imgstore_schema__fail(at, "size",
                                     "%" PRIu64 " is not the sum of the chunk sizes (%" PRIu64 ")",
                                     file->size, total);
    return 0;
}

static int read_file(imgstore_manifest_file *file, const json_t *obj, const imgstore_schema__at *at)
{
    int err;

    if (!json_is_object(obj))
        return imgstore_schema__fail(at, NULL, "expected an object");
    if ((err = imgstore_schema__keys(obj, at, file_keys)) < 0 ||
        (err = imgstore_schema__name(&file->path, obj, at, "path", IMGSTORE_NAME_FILE, true)) < 0 ||
        (err = imgstore_schema__uint(&file->size, obj, at, "size", 0, IMGSTORE_SCHEMA__INT_MAX,
                                     true)) < 0 ||
        (err = imgstore_schema__sha256(file->sha256, obj, at, "sha256")) < 0 ||
        (err = imgstore_schema__file_info_read(&file->info, obj, at)) < 0)
        return err;
    return read_chunks(file, obj, at);
}

static int read_files(imgstore_manifest *m, const json_t *root, const imgstore_schema__at *at)
{
    imgstore_schema__at item;
    json_t *files;
    json_t *file;
    size_t i;
    int err;

    if ((err = imgstore_schema__field(&files, root, at, "files", JSON_ARRAY, true)) < 0)
        return err;
    if (json_array_size(files) == 0 || json_array_size(files) > IMGSTORE_MAX_FILES)
        return imgstore_schema__fail(at, "files", "must hold 1 to %d files, found %zu",
                                     IMGSTORE_MAX_FILES, json_array_size(files));
    if (!(m->files = calloc(json_array_size(files), sizeof(*m->files))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    json_array_foreach(files, i, file)
    {
        imgstore_schema__at_index(&item, at, "files", i);
        m->file_count = i + 1;
        if ((err = read_file(&m->files[i], file, &item)) < 0)
            return err;
        /* Sorted and unique: the same files have one order, and paths name files in a tree. */
        if (i > 0) {
            int order = strcmp(m->files[i - 1].path, m->files[i].path);

            if (order == 0)
                return imgstore_schema__fail(&item, "path", "duplicate path");
            if (order > 0)
                return imgstore_schema__fail(&item, "path",
                                             "files must be sorted by path (bytewise)");
        }
    }
    return 0;
}

static int label_cmp(const void *a, const void *b)
{
    return strcmp(((const imgstore_label *)a)->key, ((const imgstore_label *)b)->key);
}

static int read_labels(imgstore_manifest *m, const json_t *provenance,
                       const imgstore_schema__at *at)
{
    imgstore_schema__at where;
    const char *key;
    json_t *labels;
    json_t *value;
    int err;

    if ((err = imgstore_schema__field(&labels, provenance, at, "labels", JSON_OBJECT, true)) < 0)
        return err;
    imgstore_schema__at_key(&where, at, "labels");
    if (json_object_size(labels) > IMGSTORE_MAX_LABELS)
        return imgstore_schema__fail(&where, NULL, "more than %d labels", IMGSTORE_MAX_LABELS);
    if (json_object_size(labels) > 0 &&
        !(m->labels = calloc(json_object_size(labels), sizeof(*m->labels))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    json_object_foreach(labels, key, value)
    {
        imgstore_label *label = &m->labels[m->label_count];

        if (imgstore_schema_check_name(IMGSTORE_NAME_LABEL, key) < 0)
            return imgstore_schema__fail(&where, NULL, "%s", imgstore_error_last());
        m->label_count++;
        if (!(label->key = strdup(key)))
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        if ((err = imgstore_schema__line(&label->value, labels, &where, key, 0, true)) < 0)
            return err;
    }
    if (m->label_count > 0)
        qsort(m->labels, m->label_count, sizeof(*m->labels), label_cmp);
    return 0;
}

static int read_provenance(imgstore_manifest *m, const json_t *root, const imgstore_schema__at *at)
{
    imgstore_schema__at where;
    imgstore_schema__at source_at;
    json_t *provenance;
    json_t *source;
    int err;

    if ((err = imgstore_schema__field(&provenance, root, at, "provenance", JSON_OBJECT, true)) < 0)
        return err;
    imgstore_schema__at_key(&where, at, "provenance");
    imgstore_schema__at_key(&source_at, &where, "source");
    if ((err = imgstore_schema__keys(provenance, &where, provenance_keys)) < 0 ||
        (err = imgstore_schema__line(&m->builder, provenance, &where, "builder", 1, true)) < 0 ||
        (err = imgstore_schema__field(&source, provenance, &where, "source", JSON_OBJECT, false)) <
            0)
        return err;
    if (source) {
        if ((err = imgstore_schema__keys(source, &source_at, source_keys)) < 0 ||
            (err = imgstore_schema__line(&m->source_repository, source, &source_at, "repository", 1,
                                         false)) < 0 ||
            (err = imgstore_schema__line(&m->source_commit, source, &source_at, "commit", 1,
                                         false)) < 0)
            return err;
        if (json_object_size(source) == 0)
            return imgstore_schema__fail(&source_at, NULL, "must not be empty (omit it instead)");
    }
    return read_labels(m, provenance, &where);
}

static bool has_file(const imgstore_manifest *m, const char *path)
{
    for (size_t i = 0; i < m->file_count; i++) {
        if (strcmp(m->files[i].path, path) == 0)
            return true;
    }
    return false;
}

static int read_boot_path(char **out, const imgstore_manifest *m, const json_t *boot,
                          const imgstore_schema__at *at, const char *key, bool required)
{
    int err;

    if ((err = imgstore_schema__name(out, boot, at, key, IMGSTORE_NAME_FILE, required)) < 0)
        return err;
    if (*out && !has_file(m, *out))
        return imgstore_schema__fail(at, key, "not a file of this manifest");
    return 0;
}

static int read_boot(imgstore_manifest *m, const json_t *root, const imgstore_schema__at *at)
{
    imgstore_boot_set *set = &m->boot;
    imgstore_schema__at where;
    json_t *boot;
    int err;

    if ((err = imgstore_schema__field(&boot, root, at, "boot", JSON_OBJECT, false)) < 0 || !boot)
        return err;
    imgstore_schema__at_key(&where, at, "boot");
    if ((err = imgstore_schema__keys(boot, &where, boot_keys)) < 0 ||
        (err = read_boot_path(&set->kernel, m, boot, &where, "kernel", true)) < 0 ||
        (err = read_boot_path(&set->initrd, m, boot, &where, "initrd", false)) < 0 ||
        (err = read_boot_path(&set->cmdline, m, boot, &where, "cmdline", false)) < 0 ||
        (err = imgstore_schema__bool(&set->complete, boot, &where, "complete", true)) < 0)
        return err;
    if (set->complete != (set->initrd && set->cmdline))
        return imgstore_schema__fail(&where, "complete",
                                     "must be true exactly when kernel, initrd and cmdline "
                                     "are all given");
    return 0;
}

static int read_manifest(imgstore_manifest **out, const json_t *root)
{
    imgstore_manifest *m = NULL;
    imgstore_schema__at at;
    const char *schema;
    int err;

    *out = NULL;
    imgstore_schema__at_root(&at, "manifest");
    if (!(m = calloc(1, sizeof(*m)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = imgstore_schema__keys(root, &at, manifest_keys)) < 0 ||
        (err = imgstore_schema__string(&schema, root, &at, "schema", 0, SIZE_MAX, true)) < 0)
        goto done;
    /* Checked first: a future format must fail on its version, not on a field it renamed. */
    if (strcmp(schema, IMGSTORE_MANIFEST_SCHEMA) != 0) {
        err = imgstore_schema__fail(&at, "schema", "expected '" IMGSTORE_MANIFEST_SCHEMA "'");
        goto done;
    }
    if ((err = imgstore_schema__name(&m->name, root, &at, "name", IMGSTORE_NAME_IMAGE, true)) < 0 ||
        (err = imgstore_schema__name(&m->version, root, &at, "version", IMGSTORE_NAME_VERSION,
                                     true)) < 0 ||
        (err = imgstore_schema__time(&m->created, root, &at, "created", true)) < 0 ||
        (err = read_files(m, root, &at)) < 0 || (err = read_provenance(m, root, &at)) < 0 ||
        (err = read_boot(m, root, &at)) < 0)
        goto done;
    *out = m;
    m = NULL;
done:
    imgstore_manifest_free(m);
    return err;
}

int imgstore_schema_manifest_parse(imgstore_manifest **out, const char *buf, size_t len)
{
    json_t *root = NULL;
    int err;

    if (!out)
        return imgstore_error_set(IMGSTORE_EINVALID, "manifest: no place for the result");
    *out = NULL;
    if ((err = imgstore_schema__load(&root, "manifest", buf, len, IMGSTORE_MANIFEST_MAX_BYTES)) < 0)
        return err;
    err = read_manifest(out, root);
    json_decref(root);
    return err;
}

/* ---- writing -------------------------------------------------------------------------- */

static int write_chunks(json_t *file_obj, const imgstore_manifest_file *file,
                        const imgstore_schema__at *at)
{
    imgstore_schema__at item;
    json_t *chunks = NULL;
    json_t *chunk;
    int err = 0;

    if (file->chunk_count > 0 && !file->chunks)
        return imgstore_schema__fail(at, "chunks", "%zu chunks but no array", file->chunk_count);
    if (!(chunks = json_array()))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (size_t i = 0; i < file->chunk_count; i++) {
        imgstore_schema__at_index(&item, at, "chunks", i);
        if (!(chunk = json_object())) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            goto done;
        }
        if ((err = imgstore_schema__append_new(chunks, chunk)) < 0 ||
            (err = imgstore_schema__set_string(chunk, &item, "sha256", file->chunks[i].sha256)) <
                0 ||
            (err = imgstore_schema__set_uint(chunk, &item, "size", file->chunks[i].size)) < 0)
            goto done;
    }
    err = imgstore_schema__set_new(file_obj, "chunks", chunks);
    chunks = NULL;
done:
    json_decref(chunks);
    return err;
}

static int write_file(json_t *files, const imgstore_manifest_file *file,
                      const imgstore_schema__at *at)
{
    json_t *obj = json_object();
    int err;

    if ((err = imgstore_schema__append_new(files, obj)) < 0)
        return err;
    /* sha256 is a fixed array in caller memory: bound it like the details' arrays. */
    if (!memchr(file->sha256, '\0', sizeof(file->sha256)))
        return imgstore_schema__fail(at, "sha256", "not NUL-terminated");
    if ((err = imgstore_schema__set_string(obj, at, "path", file->path)) < 0 ||
        (err = imgstore_schema__set_uint(obj, at, "size", file->size)) < 0 ||
        (err = imgstore_schema__set_string(obj, at, "sha256", file->sha256)) < 0 ||
        (err = imgstore_schema__file_info_write(obj, &file->info, at)) < 0)
        return err;
    return write_chunks(obj, file, at);
}

static int write_provenance(json_t *root, const imgstore_manifest *m, const imgstore_schema__at *at)
{
    imgstore_schema__at where, source_at, labels_at, item;
    json_t *provenance = json_object();
    json_t *labels = json_object();
    json_t *source;
    int err;

    /* Attached as soon as made (and stolen even on failure): `root` owns everything. */
    if ((err = imgstore_schema__set_new(root, "provenance", provenance)) < 0) {
        json_decref(labels);
        return err;
    }
    if ((err = imgstore_schema__set_new(provenance, "labels", labels)) < 0)
        return err;
    imgstore_schema__at_key(&where, at, "provenance");
    imgstore_schema__at_key(&source_at, &where, "source");
    imgstore_schema__at_key(&labels_at, &where, "labels");
    if ((err = imgstore_schema__set_string(provenance, &where, "builder", m->builder)) < 0)
        return err;
    if (m->source_repository || m->source_commit) {
        source = json_object();
        if ((err = imgstore_schema__set_new(provenance, "source", source)) < 0 ||
            (err = imgstore_schema__set_string(source, &source_at, "repository",
                                               m->source_repository)) < 0 ||
            (err = imgstore_schema__set_string(source, &source_at, "commit", m->source_commit)) < 0)
            return err;
    }
    if (m->label_count > IMGSTORE_MAX_LABELS)
        return imgstore_schema__fail(&labels_at, NULL, "more than %d labels", IMGSTORE_MAX_LABELS);
    if (m->label_count > 0 && !m->labels)
        return imgstore_schema__fail(&labels_at, NULL, "%zu labels but no array", m->label_count);
    for (size_t i = 0; i < m->label_count; i++) {
        const imgstore_label *label = &m->labels[i];

        imgstore_schema__at_index(&item, &where, "labels", i);
        if (imgstore_schema_check_name(IMGSTORE_NAME_LABEL, label->key) < 0)
            return imgstore_schema__fail(&item, NULL, "%s", imgstore_error_last());
        /* A JSON object cannot hold the same key twice: say so instead of losing a value. */
        if (json_object_get(labels, label->key))
            return imgstore_schema__fail(&labels_at, label->key, "duplicate label key");
        if (!label->value)
            return imgstore_schema__fail(&labels_at, label->key, "missing");
        if ((err = imgstore_schema__set_string(labels, &labels_at, label->key, label->value)) < 0)
            return err;
    }
    return 0;
}

static int write_boot(json_t *root, const imgstore_boot_set *set, const imgstore_schema__at *at)
{
    imgstore_schema__at where;
    json_t *boot;
    int err;

    /* Without a kernel nothing boots; a lone initrd or cmdline is just a file. */
    if (!set->kernel)
        return 0;
    boot = json_object();
    if ((err = imgstore_schema__set_new(root, "boot", boot)) < 0)
        return err;
    imgstore_schema__at_key(&where, at, "boot");
    if ((err = imgstore_schema__set_string(boot, &where, "kernel", set->kernel)) < 0 ||
        (err = imgstore_schema__set_string(boot, &where, "initrd", set->initrd)) < 0 ||
        (err = imgstore_schema__set_string(boot, &where, "cmdline", set->cmdline)) < 0)
        return err;
    return imgstore_schema__set_bool(boot, "complete", set->complete);
}

/* Builds without validating: the caller runs read_manifest() on the result when it must. */
static int build_manifest(json_t **out, const imgstore_manifest *m)
{
    imgstore_schema__at at, item;
    json_t *root = NULL;
    json_t *files = NULL;
    int err;

    *out = NULL;
    imgstore_schema__at_root(&at, "manifest");
    if (!m) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "manifest: none given");
        goto done;
    }
    if (m->file_count > IMGSTORE_MAX_FILES) {
        err = imgstore_schema__fail(&at, "files", "must hold 1 to %d files, found %zu",
                                    IMGSTORE_MAX_FILES, m->file_count);
        goto done;
    }
    if (m->file_count > 0 && !m->files) {
        err = imgstore_schema__fail(&at, "files", "%zu files but no array", m->file_count);
        goto done;
    }
    if (!(root = json_object()) || !(files = json_array())) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = imgstore_schema__set_new(root, "files", files)) < 0)
        goto done;
    for (size_t i = 0; i < m->file_count; i++) {
        imgstore_schema__at_index(&item, &at, "files", i);
        if ((err = write_file(files, &m->files[i], &item)) < 0)
            goto done;
    }
    if ((err = imgstore_schema__set_string(root, &at, "schema", IMGSTORE_MANIFEST_SCHEMA)) < 0 ||
        (err = imgstore_schema__set_string(root, &at, "name", m->name)) < 0 ||
        (err = imgstore_schema__set_string(root, &at, "version", m->version)) < 0 ||
        (err = imgstore_schema__set_string(root, &at, "created", m->created)) < 0 ||
        (err = write_provenance(root, m, &at)) < 0 || (err = write_boot(root, &m->boot, &at)) < 0)
        goto done;
    *out = root;
    root = NULL;
done:
    json_decref(root);
    return err;
}

json_t *imgstore_schema_manifest_to_json(const imgstore_manifest *manifest)
{
    json_t *root;

    if (build_manifest(&root, manifest) < 0)
        return NULL;
    return root;
}

int imgstore_schema_manifest_encode(char **out, size_t *len_out, const imgstore_manifest *manifest)
{
    imgstore_manifest *checked = NULL;
    json_t *root = NULL;
    int err;

    if (!out || !len_out)
        return imgstore_error_set(IMGSTORE_EINVALID, "manifest: no place for the result");
    *out = NULL;
    *len_out = 0;
    if ((err = build_manifest(&root, manifest)) < 0 || (err = read_manifest(&checked, root)) < 0)
        goto done;
    err = imgstore_schema__dump(out, len_out, root, "manifest", IMGSTORE_MANIFEST_MAX_BYTES);
done:
    imgstore_manifest_free(checked);
    json_decref(root);
    return err;
}

bool imgstore_schema_manifest_is_canonical(const char *buf, size_t len)
{
    imgstore_manifest *manifest = NULL;
    char *canonical = NULL;
    size_t canonical_len = 0;
    bool same = false;

    if (imgstore_schema_manifest_parse(&manifest, buf, len) == 0 &&
        imgstore_schema_manifest_encode(&canonical, &canonical_len, manifest) == 0)
        same = canonical_len == len && memcmp(canonical, buf, len) == 0;
    free(canonical);
    imgstore_manifest_free(manifest);
    return same;
}
