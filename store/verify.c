/*
 * Checking a store: `verify` re-hashes every chunk and file of the selected versions
 * against their manifests; `fsck` checks the structure without reading image bytes
 * (layout, canonical manifests and channel states, chunk blobs present with the sizes the
 * manifests say, channels pointing at stored versions with the right manifest digest).
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    imgstore_sha256 *sha;
    uint64_t bytes;
} hash_sink;

static int hash_write(const void *buf, size_t len, void *payload)
{
    hash_sink *sink = payload;

    imgstore_sha256_update(sink->sha, buf, len);
    sink->bytes += len;
    return 0;
}

/* Chunks are checked as they are read; this adds the whole-file digest, which also proves
 * the manifest's file entry agrees with its own chunk list. */
static int verify_file(imgstore_store *store, const git_tree *root, const imgstore_manifest *m,
                       const imgstore_manifest_file *file, uint64_t *bytes)
{
    hash_sink sink = {NULL, 0};
    char hex[65];
    int err;

    if ((err = imgstore_sha256_new(&sink.sha)) < 0)
        return err;
    err =
        imgstore_store__file_read_at(store, root, m, file->path, 0, UINT64_MAX, hash_write, &sink);
    *bytes += sink.bytes;
    imgstore_sha256_final_hex(sink.sha, hex);
    imgstore_sha256_free(sink.sha);
    if (err == 0 && (sink.bytes != file->size || strcmp(hex, file->sha256) != 0))
        err = imgstore_error_set(IMGSTORE_EVERIFY, "%s %s %s: file sha256 is %s, manifest says %s",
                                 m->name, m->version, file->path, hex, file->sha256);
    return err;
}

int imgstore_store__verify_files_at(uint64_t *bytes_out, imgstore_store *store,
                                    const git_tree *root, const imgstore_manifest *manifest)
{
    uint64_t bytes = 0;
    int err = 0;

    for (size_t i = 0; i < manifest->file_count && err == 0; i++)
        err = verify_file(store, root, manifest, &manifest->files[i], &bytes);
    if (bytes_out)
        *bytes_out = bytes;
    return err;
}

static int verify_version(imgstore_store *store, const char *name, const char *version,
                          imgstore_verify_fn report, void *payload)
{
    imgstore_verify_result result = {name, version, 0, "", 0, "version", 0, 0};
    imgstore_manifest *m = NULL;
    git_tree *tip = NULL;
    int err;

    if ((err = imgstore_store__tip_tree(&tip, store)) == 0 &&
        (err = imgstore_store__manifest_load(&m, NULL, store, tip, name, version)) == 0)
        err = imgstore_store__verify_files_at(&result.bytes, store, tip, m);
    git_tree_free(tip);
    if (err == 0) {
        imgstore_trust_status trust;

        /* below threshold is pending, not damage; a signature that fails to verify is */
        if ((err = imgstore_store_version_trust(&trust, store, name, version)) == 0) {
            result.signatures = trust.valid;
            result.threshold = trust.threshold;
            if (trust.invalid)
                err = IMGSTORE_EVERIFY; /* the message names the first bad signature */
        }
    }
    if (err < 0) {
        result.status =
            err == IMGSTORE_ENOTFOUND || err == IMGSTORE_EINVALID ? IMGSTORE_EVERIFY : err;
        result.message = imgstore_error_last();
    }
    if (report)
        report(&result, payload);
    imgstore_manifest_free(m);
    return result.status;
}

int imgstore_store_verify(imgstore_store *store, const char *name, const char *version,
                          imgstore_verify_fn report, void *payload)
{
    char **names = NULL;
    size_t name_count = 0;
    int err, worst = 0;

    if (name && version) {
        imgstore_manifest *m = NULL;

        if ((err = imgstore_store_manifest_get(&m, NULL, store, name, version)) ==
            IMGSTORE_ENOTFOUND)
            return err;
        imgstore_manifest_free(m);
        return verify_version(store, name, version, report, payload) < 0 ? IMGSTORE_EVERIFY : 0;
    }
    if (name) {
        if (!(names = calloc(1, sizeof(*names))) || !(names[0] = strdup(name))) {
            free(names);
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        }
        name_count = 1;
    } else if ((err = imgstore_store_list_images(&names, &name_count, store)) < 0)
        return err;
    for (size_t i = 0; i < name_count; i++) {
        char **versions = NULL;
        size_t count = 0;

        if ((err = imgstore_store_list_versions(&versions, &count, store, names[i])) < 0) {
            if (name) {
                imgstore_strings_free(names, name_count);
                return err;
            }
            imgstore_verify_result r = {
                names[i], "", IMGSTORE_EVERIFY, imgstore_error_last(), 0, "version", 0, 0};

            if (report)
                report(&r, payload);
            worst = IMGSTORE_EVERIFY;
            continue;
        }
        for (size_t j = 0; j < count; j++) {
            if (verify_version(store, names[i], versions[j], report, payload) < 0)
                worst = IMGSTORE_EVERIFY;
        }
        imgstore_strings_free(versions, count);
    }
    imgstore_strings_free(names, name_count);
    if (worst)
        imgstore_error_set(worst, "some versions failed verification");
    return worst;
}

typedef struct {
    imgstore_store *store;
    imgstore_verify_fn report;
    void *payload;
    int problems;
} fsck_ctx;

static void problem(fsck_ctx *ctx, const char *name, const char *version, const char *message)
{
    imgstore_verify_result r = {
        name ? name : "", version ? version : "", IMGSTORE_EVERIFY, message, 0, "version", 0, 0};

    ctx->problems++;
    if (ctx->report)
        ctx->report(&r, ctx->payload);
}

static void fsck_version(fsck_ctx *ctx, git_tree *tip, const char *name, const char *version)
{
    imgstore_manifest *m = NULL;
    git_odb *odb = NULL;
    char msg[1024];

    if (imgstore_store__manifest_load(&m, NULL, ctx->store, tip, name, version) < 0) {
        problem(ctx, name, version, imgstore_error_last());
        return;
    }
    git_repository_odb(&odb, ctx->store->repo);
    for (size_t i = 0; i < m->file_count; i++) {
        char path[512];
        git_tree_entry *dir = NULL;
        git_tree *chunks = NULL;

        char files[300];

        snprintf(files, sizeof(files), "files/%s", m->files[i].path);
        imgstore_store__version_path(path, sizeof(path), ctx->store, name, version, files);
        if (m->files[i].chunk_count == 0)
            continue;
        if (git_tree_entry_bypath(&dir, tip, path) < 0 ||
            git_tree_lookup(&chunks, ctx->store->repo, git_tree_entry_id(dir)) < 0 ||
            git_tree_entrycount(chunks) != m->files[i].chunk_count) {
            snprintf(msg, sizeof(msg), "%s: chunk tree missing or not %zu entries", path,
                     m->files[i].chunk_count);
            problem(ctx, name, version, msg);
        } else {
            for (size_t c = 0; c < m->files[i].chunk_count; c++) {
                const git_tree_entry *entry = git_tree_entry_byindex(chunks, c);
                size_t size = 0;
                git_object_t type;
                char expect[24];

                snprintf(expect, sizeof(expect), "%06zu", c);
                if (strcmp(git_tree_entry_name(entry), expect) != 0 ||
                    git_odb_read_header(&size, &type, odb, git_tree_entry_id(entry)) < 0 ||
                    type != GIT_OBJECT_BLOB || size != m->files[i].chunks[c].size) {
                    snprintf(msg, sizeof(msg),
                             "%s/%s: chunk blob missing, misnamed or not %llu bytes", path,
                             git_tree_entry_name(entry),
                             (unsigned long long)m->files[i].chunks[c].size);
                    problem(ctx, name, version, msg);
                }
            }
        }
        git_tree_free(chunks);
        git_tree_entry_free(dir);
    }
    git_odb_free(odb);
    imgstore_manifest_free(m);
}

static void fsck_channels(fsck_ctx *ctx, git_tree *tip, const char *name)
{
    char dir[256], **channels = NULL;
    size_t count = 0;

    snprintf(dir, sizeof(dir), "channels/%s", name);
    if (imgstore_store__list_tree(&channels, &count, ctx->store, tip, dir, ".json") < 0)
        return;
    for (size_t i = 0; i < count; i++) {
        imgstore_channel_state *s = NULL;
        imgstore_manifest *m = NULL;
        char digest[65], msg[1024];

        if (imgstore_store__channel_load(&s, ctx->store, tip, name, channels[i]) < 0) {
            problem(ctx, name, NULL, imgstore_error_last());
            continue;
        }
        if (imgstore_store__manifest_load(&m, digest, ctx->store, tip, name, s->version) < 0 ||
            strcmp(digest, s->manifest_sha256) != 0) {
            snprintf(msg, sizeof(msg),
                     "channel %s/%s points at %s, which is missing or whose "
                     "manifest digest differs",
                     name, channels[i], s->version);
            problem(ctx, name, s->version, msg);
        }
        imgstore_manifest_free(m);
        imgstore_channel_state_free(s);
    }
    imgstore_strings_free(channels, count);
}

/* One image's versions, walked shard by shard: each checked, each bad shard or misplaced
 * version a problem of its own. */
typedef struct {
    fsck_ctx *ctx;
    git_tree *tip;
    const char *name;
} fsck_image;

static int fsck_each(const char *version, const git_tree_entry *entry, void *payload)
{
    fsck_image *walk = payload;

    (void)entry;
    fsck_version(walk->ctx, walk->tip, walk->name, version);
    return 0;
}

static int fsck_damaged(const char *message, void *payload)
{
    fsck_image *walk = payload;

    problem(walk->ctx, walk->name, NULL, message);
    return 0;
}

int imgstore_store_fsck(imgstore_store *store, imgstore_verify_fn report, void *payload)
{
    fsck_ctx ctx = {store, report, payload, 0};
    git_tree *tip = NULL;
    char **names = NULL;
    size_t count = 0;
    int err;

    if ((err = imgstore_store__tip_tree(&tip, store)) < 0)
        return err;
    for (size_t i = 0; i < git_tree_entrycount(tip); i++) {
        const char *entry = git_tree_entry_name(git_tree_entry_byindex(tip, i));

        if (strcmp(entry, IMGSTORE_STORE_MARKER) != 0 && strcmp(entry, "images") != 0 &&
            strcmp(entry, "channels") != 0 && strcmp(entry, "trust") != 0 &&
            strcmp(entry, "index") != 0 && strcmp(entry, "archive") != 0) {
            char msg[512];

            snprintf(msg, sizeof(msg), "unexpected top-level entry '%s'", entry);
            problem(&ctx, NULL, NULL, msg);
        }
    }
    if ((err = imgstore_store__list_tree(&names, &count, store, tip, "images", NULL)) < 0 &&
        err != IMGSTORE_ENOTFOUND)
        goto done;
    for (size_t i = 0; i < count; i++) {
        fsck_image walk = {&ctx, tip, names[i]};

        if (imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, names[i]) < 0 ||
            imgstore_store__versions_foreach(store, tip, store->layout, names[i], fsck_each,
                                             fsck_damaged, &walk) < 0) {
            problem(&ctx, names[i], NULL, imgstore_error_last());
            continue;
        }
        fsck_channels(&ctx, tip, names[i]);
    }
    /* what a cut archived (cut.c): the states of the moves whose commits it dropped */
    {
        size_t archived = 0;

        if (imgstore_store__cut_verify_archive(&archived, store, tip) < 0)
            problem(&ctx, NULL, NULL, imgstore_error_last());
    }
    /* derived data: what a rebuild from the history and the manifests gives, exactly */
    if (imgstore_store_index_check(store) < 0)
        problem(&ctx, NULL, NULL, imgstore_error_last());
    err = 0;
    if (ctx.problems)
        err = imgstore_error_set(IMGSTORE_EVERIFY, "%d problem(s) found", ctx.problems);
done:
    imgstore_strings_free(names, count);
    git_tree_free(tip);
    return err;
}
