/*
 * Reading one chunk blob and proving it is the chunk the manifest names (size and SHA-256)
 * before anyone sees a byte of it.
 *
 * Loose chunks are read by loose.c's bounded reader straight into a buffer we own (no copy
 * into libgit2's); packed ones through libgit2.
 */
#include "store/store_internal.h"

#include <stdlib.h>
#include <string.h>

void imgstore_store__chunk_buf_clear(imgstore_store__chunk_buf *chunk)
{
    git_odb_object_free(chunk->object);
    free(chunk->owned);
    memset(chunk, 0, sizeof(*chunk));
}

static int load_libgit2(imgstore_store__chunk_buf *out, git_odb *odb, const git_oid *oid,
                        const imgstore_chunk_ref *expect)
{
    int rc = git_odb_read(&out->object, odb, oid);

    if (rc < 0) {
        /* a missing or unreadable chunk is a damaged store, whatever libgit2 calls it */
        imgstore_store__git_error(rc, "chunk %s (blob %s) cannot be read", expect->sha256,
                                  git_oid_tostr_s(oid));
        return imgstore_error_set(IMGSTORE_EVERIFY, "%s", imgstore_error_last());
    }
    out->data = git_odb_object_data(out->object);
    out->len = git_odb_object_size(out->object);
    return 0;
}

int imgstore_store__chunk_load(imgstore_store__chunk_buf *out, imgstore_store *store, git_odb *odb,
                               const git_oid *oid, const imgstore_chunk_ref *expect)
{
    imgstore_sha256 *sha = NULL;
    char hex[65];
    int err = 0;

    git_object_t type = GIT_OBJECT_INVALID;

    if ((err = imgstore_store__loose_read_any(out, &type, store->objects_dir, oid, expect->size)) <
            0 ||
        (err == 0 && (err = load_libgit2(out, odb, oid, expect)) < 0)) {
        imgstore_error_wrap(err, "chunk %s: ", expect->sha256);
        goto done;
    }
    err = 0;
    if (type != GIT_OBJECT_BLOB && !out->object) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "chunk %s (object %s) is not a blob",
                                 expect->sha256, git_oid_tostr_s(oid));
        goto done;
    }
    if (out->len != expect->size) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "chunk %s (blob %s) has %zu bytes, not %llu",
                                 expect->sha256, git_oid_tostr_s(oid), out->len,
                                 (unsigned long long)expect->size);
        goto done;
    }
    if ((err = imgstore_sha256_new(&sha)) < 0)
        goto done;
    imgstore_sha256_update(sha, out->data, out->len);
    imgstore_sha256_final_hex(sha, hex);
    if (strcmp(hex, expect->sha256) != 0)
        err = imgstore_error_set(IMGSTORE_EVERIFY, "chunk %s (blob %s) is damaged: sha256 is %s",
                                 expect->sha256, git_oid_tostr_s(oid), hex);
done:
    imgstore_sha256_free(sha);
    if (err < 0)
        imgstore_store__chunk_buf_clear(out);
    return err;
}
