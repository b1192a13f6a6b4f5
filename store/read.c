/*
 * Reading versions back: manifests, file bytes and listings, from the current tip. Every
 * byte handed out has been checked: manifests by their git id and against the path they
 * are stored under, chunks by SHA-256 before any of their bytes reach the writer. Chunks
 * that match the manifest's digests are the manifest's bytes, so reads do not hash the
 * whole file a second time; `verify` does (store/verify.c).
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int imgstore_store__manifest_load(imgstore_manifest **out, char *digest_out, imgstore_store *store,
                                  const git_tree *root, const char *name, const char *version)
{
    imgstore_manifest *m = NULL;
    char path[512];
    char *bytes = NULL;
    size_t len = 0;
    int err;

    *out = NULL;
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, version)) < 0)
        return err;
    imgstore_store__version_path(path, sizeof(path), store, name, version, "manifest.json");
    err = imgstore_store__read_small_blob(&bytes, &len, store, root, path,
                                          IMGSTORE_MANIFEST_MAX_BYTES);
    if (err == IMGSTORE_ENOTFOUND) {
        err = imgstore_error_set(IMGSTORE_ENOTFOUND, "no version %s of image %s", version, name);
        goto done;
    }
    if (err < 0)
        goto done;
    if ((err = imgstore_schema_manifest_parse(&m, bytes, len)) < 0) {
        err = imgstore_error_wrap(IMGSTORE_EVERIFY, "%s: stored manifest is damaged: ", path);
        goto done;
    }
    if (strcmp(m->name, name) != 0 || strcmp(m->version, version) != 0) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "%s: manifest is for %s %s, not %s %s", path,
                                 m->name, m->version, name, version);
        goto done;
    }
    if (digest_out) {
        imgstore_sha256 *sha = NULL;

        if ((err = imgstore_sha256_new(&sha)) < 0)
            goto done;
        imgstore_sha256_update(sha, bytes, len);
        imgstore_sha256_final_hex(sha, digest_out);
        imgstore_sha256_free(sha);
    }
    *out = m;
    m = NULL;
done:
    imgstore_manifest_free(m);
    free(bytes);
    return err;
}

int imgstore_store_manifest_get(imgstore_manifest **out, char *digest_out, imgstore_store *store,
                                const char *name, const char *version)
{
    git_tree *tip = NULL;
    int err;

    *out = NULL;
    if ((err = imgstore_store__tip_tree(&tip, store)) < 0)
        return err;
    err = imgstore_store__manifest_load(out, digest_out, store, tip, name, version);
    git_tree_free(tip);
    return err;
}

static const imgstore_manifest_file *find_file(const imgstore_manifest *m, const char *path)
{
    for (size_t i = 0; i < m->file_count; i++) {
        if (strcmp(m->files[i].path, path) == 0)
            return &m->files[i];
    }
    return NULL;
}

int imgstore_store_file_read(imgstore_store *store, const imgstore_manifest *manifest,
                             const char *path, uint64_t offset, uint64_t length,
                             imgstore_write_fn write, void *payload)
{
    git_tree *tip = NULL;
    int err;

    if ((err = imgstore_store__tip_tree(&tip, store)) < 0)
        return err;
    err = imgstore_store__file_read_at(store, tip, manifest, path, offset, length, write, payload);
    git_tree_free(tip);
    return err;
}

int imgstore_store__file_read_at(imgstore_store *store, const git_tree *root,
                                 const imgstore_manifest *manifest, const char *path,
                                 uint64_t offset, uint64_t length, imgstore_write_fn write,
                                 void *payload)
{
    const imgstore_manifest_file *file = find_file(manifest, path);
    imgstore_store__readahead *ra = NULL;
    git_tree_entry *dir = NULL;
    git_tree *chunks = NULL;
    git_oid *oids = NULL;
    uint64_t end, chunk_start = 0;
    size_t first = 0, last = 0;
    char tree_path[512], files[300];
    int err = 0, rc;

    if (!file)
        return imgstore_error_set(IMGSTORE_ENOTFOUND, "%s %s has no file %s", manifest->name,
                                  manifest->version, path);
    if (offset > file->size)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: offset %llu is past its %llu bytes", path,
                                  (unsigned long long)offset, (unsigned long long)file->size);
    end = length > file->size - offset ? file->size : offset + length;
    if (end == offset)
        return 0;
    snprintf(files, sizeof(files), "files/%s", path);
    imgstore_store__version_path(tree_path, sizeof(tree_path), store, manifest->name,
                                 manifest->version, files);
    if ((rc = git_tree_entry_bypath(&dir, root, tree_path)) < 0 ||
        (rc = git_tree_lookup(&chunks, store->repo, git_tree_entry_id(dir))) < 0) {
        imgstore_store__git_error(rc, "%s: chunk tree missing or damaged", tree_path);
        err = imgstore_error_set(IMGSTORE_EVERIFY, "%s", imgstore_error_last());
        goto done;
    }
    if (git_tree_entrycount(chunks) != file->chunk_count) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "%s: %zu chunk blobs, manifest lists %zu",
                                 tree_path, git_tree_entrycount(chunks), file->chunk_count);
        goto done;
    }
    if (!(oids = calloc(file->chunk_count, sizeof(*oids)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    /* chunks [first, last] hold the range */
    for (size_t i = 0; i < file->chunk_count; i++) {
        uint64_t chunk_end = chunk_start + file->chunks[i].size;

        oids[i] = *git_tree_entry_id(git_tree_entry_byindex(chunks, i));
        if (chunk_end <= offset)
            first = i + 1;
        if (chunk_start < end)
            last = i;
        chunk_start = chunk_end;
    }
    if ((err = imgstore_store__readahead_new(&ra, store, oids, file->chunks, first, last + 1)) < 0)
        goto done;
    chunk_start = 0;
    for (size_t i = 0; i < first; i++)
        chunk_start += file->chunks[i].size;
    for (size_t i = first; i <= last; i++) {
        uint64_t chunk_end = chunk_start + file->chunks[i].size;
        uint64_t from = offset > chunk_start ? offset - chunk_start : 0;
        uint64_t to = (end < chunk_end ? end : chunk_end) - chunk_start;
        imgstore_store__chunk_buf chunk;

        if ((err = imgstore_store__readahead_next(&chunk, ra, i)) < 0) {
            imgstore_error_wrap(err, "%s %s %s: ", manifest->name, manifest->version, path);
            goto done;
        }
        err = write(chunk.data + from, (size_t)(to - from), payload);
        imgstore_store__chunk_buf_clear(&chunk);
        if (err < 0)
            goto done;
        chunk_start = chunk_end;
    }
done:
    imgstore_store__readahead_free(ra);
    free(oids);
    git_tree_free(chunks);
    git_tree_entry_free(dir);
    return err;
}

int imgstore_store__list_tree(char ***out, size_t *count_out, imgstore_store *store,
                              const git_tree *root, const char *path, const char *suffix)
{
    git_tree_entry *dir = NULL;
    git_tree *tree = NULL;
    char **names = NULL;
    size_t count = 0, suffix_len = suffix ? strlen(suffix) : 0;
    int err = 0, rc;

    *out = NULL;
    *count_out = 0;
    if ((rc = git_tree_entry_bypath(&dir, root, path)) < 0 ||
        (rc = git_tree_lookup(&tree, store->repo, git_tree_entry_id(dir))) < 0) {
        err = imgstore_store__git_error(rc, "%s", path);
        goto done;
    }
    if (!(names = calloc(git_tree_entrycount(tree) + 1, sizeof(*names)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < git_tree_entrycount(tree); i++) {
        const char *entry = git_tree_entry_name(git_tree_entry_byindex(tree, i));
        size_t len = strlen(entry);

        if (suffix && (len <= suffix_len || strcmp(entry + len - suffix_len, suffix) != 0))
            continue;
        if (!(names[count] = strndup(entry, len - suffix_len))) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            goto done;
        }
        count++;
    }
    *out = names;
    *count_out = count;
    names = NULL;
done:
    imgstore_strings_free(names, count);
    git_tree_free(tree);
    git_tree_entry_free(dir);
    return err;
}

static int list_at(char ***out, size_t *count_out, imgstore_store *store, const char *path,
                   const char *suffix, bool missing_ok)
{
    git_tree *tip = NULL;
    int err;

    if ((err = imgstore_store__tip_tree(&tip, store)) < 0)
        return err;
    err = imgstore_store__list_tree(out, count_out, store, tip, path, suffix);
    git_tree_free(tip);
    if (err == IMGSTORE_ENOTFOUND && missing_ok) {
        *out = calloc(1, sizeof(char *));
        return *out ? 0 : imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    return err;
}

int imgstore_store_list_images(char ***names_out, size_t *count_out, imgstore_store *store)
{
    return list_at(names_out, count_out, store, "images", NULL, true);
}

int imgstore_store_list_channels(char ***channels_out, size_t *count_out, imgstore_store *store,
                                 const char *name)
{
    char path[256];
    int err;

    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name)) < 0)
        return err;
    snprintf(path, sizeof(path), "channels/%s", name);
    return list_at(channels_out, count_out, store, path, ".json", true);
}

int imgstore_store_list_versions(char ***versions_out, size_t *count_out, imgstore_store *store,
                                 const char *name)
{
    imgstore_version_row *rows = NULL;
    char **versions = NULL;
    size_t count = 0;
    int err;

    *versions_out = NULL;
    *count_out = 0;
    if ((err = imgstore_store_versions_page(&rows, &count, NULL, store, name, SIZE_MAX, 0)) < 0)
        return err;
    if (!(versions = calloc(count + 1, sizeof(*versions)))) {
        imgstore_version_rows_free(rows, count);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    for (size_t i = 0; i < count; i++) {
        versions[i] = rows[i].version; /* taken */
        rows[i].version = NULL;
    }
    imgstore_version_rows_free(rows, count);
    *versions_out = versions;
    *count_out = count;
    return 0;
}
