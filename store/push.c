/*
 * A push: stream the files of one image version into chunk blobs, learn what each file is,
 * then add the version to the tree in one commit. Nothing is visible to readers before that
 * commit; a push that fails or is abandoned leaves only unreferenced blobs, which git treats
 * as garbage and which the next identical push reuses.
 *
 * Memory: one staging buffer of two maximum chunks plus the writer's bounded job buffers,
 * whatever the image size.
 */
#include "store/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STAGE_CAP (2 * (size_t)IMGSTORE_CHUNK_MAX)

typedef struct {
    imgstore_manifest_file file;
    git_oid *oids; /* chunk blobs, parallel to file.chunks */
    git_oid tree;  /* files/<path>/ tree */
} pushed_file;

struct imgstore_push {
    imgstore_store *store;
    char *name, *version, *actor, *source_repository, *source_commit;
    imgstore_label *labels;
    size_t label_count;
    int64_t created;
    imgstore_progress_fn progress;
    void *progress_payload;
    uint64_t progress_total, progress_done;
    imgstore_signers signers; /* borrowed from the caller until push_commit */

    pushed_file *files;
    size_t file_count;

    /* the file being streamed */
    bool in_file;
    bool slot_open; /* files[file_count] is begun (its path allocated) but not finished */
    char *cur_kind;
    uint8_t *stage;
    size_t stage_len, stage_off;
    size_t chunk_count;
    imgstore_sha256 *file_sha;
    imgstore_store__writer *writer;
    bool failed; /* a write failed: the current file cannot be finished */
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void pushed_file_clear(pushed_file *f)
{
    free(f->file.path);
    free(f->file.chunks);
    free(f->oids);
    memset(f, 0, sizeof(*f));
}

void imgstore_store_push_free(imgstore_push *push)
{
    if (!push)
        return;
    imgstore_store__writer_free(push->writer);
    imgstore_sha256_free(push->file_sha);
    free(push->stage);
    free(push->cur_kind);
    for (size_t i = 0; i < push->file_count + (push->slot_open ? 1 : 0); i++)
        pushed_file_clear(&push->files[i]);
    free(push->files);
    for (size_t i = 0; i < push->label_count; i++) {
        free(push->labels[i].key);
        free(push->labels[i].value);
    }
    free(push->labels);
    free(push->name);
    free(push->version);
    free(push->actor);
    free(push->source_repository);
    free(push->source_commit);
    free(push);
}

static int label_cmp(const void *a, const void *b)
{
    return strcmp(((const imgstore_label *)a)->key, ((const imgstore_label *)b)->key);
}

int imgstore_store_push_begin(imgstore_push **out, imgstore_store *store,
                              const imgstore_push_opts *opts)
{
    imgstore_push *push = NULL;
    int err = 0;

    *out = NULL;
    if (!opts || !opts->name)
        return imgstore_error_set(IMGSTORE_EINVALID, "push: an image name is required");
    if (opts->signers.count == 0 && !opts->allow_unsigned)
        return imgstore_error_set(
            IMGSTORE_EINVALID, "push %s: a release key must sign the manifest (--key)", opts->name);
    /* Refuse a key the policy does not trust before any byte is uploaded; the commit checks
     * again against the tip it lands on. */
    {
        imgstore_policy *policy = NULL;

        if ((err = imgstore_store_policy_get(&policy, NULL, store)) < 0)
            return err;
        for (size_t i = 0; i < opts->signers.count && err == 0; i++)
            err = imgstore_store__key_check_role(policy, IMGSTORE_ROLE_RELEASE,
                                                 opts->signers.keys[i]);
        imgstore_policy_free(policy);
        if (err < 0)
            return err;
    }
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, opts->name)) < 0 ||
        (opts->version &&
         (err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, opts->version)) < 0))
        return err;
    /* free texts are refused here, before any byte is read, with the field named; the
     * manifest's own rule (schema) would refuse them only once every byte was stored */
    if (opts->actor && (err = imgstore_schema_check_text("actor", opts->actor)) < 0)
        return err;
    if (opts->source_repository || opts->source_commit) {
        /* checked as URL@COMMIT, the one form users give it in, so messages match theirs */
        char *source =
            imgstore_strfmt("%s@%s", opts->source_repository ? opts->source_repository : "",
                            opts->source_commit ? opts->source_commit : "");

        err = source ? imgstore_schema_check_text("source", source)
                     : imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        free(source);
        if (err < 0)
            return err;
    }
    if (opts->label_count > IMGSTORE_MAX_LABELS)
        return imgstore_error_set(IMGSTORE_EINVALID, "push: more than %d labels",
                                  IMGSTORE_MAX_LABELS);
    if (!(push = calloc(1, sizeof(*push))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    push->store = store;
    push->name = strdup(opts->name);
    push->version = dup_or_null(opts->version);
    push->actor = strdup(opts->actor ? opts->actor : "imgstore");
    push->source_repository = dup_or_null(opts->source_repository);
    push->source_commit = dup_or_null(opts->source_commit);
    push->created = opts->created ? opts->created : (int64_t)time(NULL);
    push->progress = opts->progress;
    push->progress_payload = opts->progress_payload;
    push->signers = opts->signers;
    push->labels = calloc(opts->label_count ? opts->label_count : 1, sizeof(*push->labels));
    if (!push->name || !push->actor || !push->labels || (opts->version && !push->version)) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < opts->label_count; i++) {
        const imgstore_label *l = &opts->labels[i];

        if ((err = imgstore_schema_check_name(IMGSTORE_NAME_LABEL, l->key)) < 0)
            goto done;
        if (l->value) {
            char field[IMGSTORE_NAME_MAX + 8];

            snprintf(field, sizeof(field), "label %s", l->key);
            if ((err = imgstore_schema_check_text(field, l->value)) < 0)
                goto done;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(opts->labels[j].key, l->key) == 0) {
                err = imgstore_error_set(IMGSTORE_EINVALID, "label '%s' given twice", l->key);
                goto done;
            }
        }
        push->labels[i].key = strdup(l->key);
        push->labels[i].value = strdup(l->value ? l->value : "");
        push->label_count++;
    }
    qsort(push->labels, push->label_count, sizeof(*push->labels), label_cmp);
    *out = push;
    push = NULL;
done:
    imgstore_store_push_free(push);
    return err;
}

int imgstore_store_push_file_begin(imgstore_push *push, const char *path, const char *kind,
                                   uint64_t size_hint)
{
    pushed_file *grown;
    int err;

    if (push->in_file)
        return imgstore_error_set(IMGSTORE_EINVALID, "push: file %s is still open",
                                  push->files[push->file_count].file.path);
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_FILE, path)) < 0 ||
        (kind && (err = imgstore_schema_check_kind(kind)) < 0))
        return err;
    if (push->file_count >= IMGSTORE_MAX_FILES)
        return imgstore_error_set(IMGSTORE_EINVALID, "push: more than %d files in one version",
                                  IMGSTORE_MAX_FILES);
    for (size_t i = 0; i < push->file_count; i++) {
        if (strcmp(push->files[i].file.path, path) == 0)
            return imgstore_error_set(IMGSTORE_EINVALID, "push: file name '%s' given twice", path);
    }
    if (!(grown = realloc(push->files, (push->file_count + 1) * sizeof(*grown))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    push->files = grown;
    memset(&push->files[push->file_count], 0, sizeof(*grown));
    /* the slot is open from here: push_free clears it if the file is never finished */
    push->slot_open = true;
    if (!(push->files[push->file_count].file.path = strdup(path)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    free(push->cur_kind);
    push->cur_kind = dup_or_null(kind);
    if (!push->stage && !(push->stage = malloc(STAGE_CAP)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if (!push->file_sha && (err = imgstore_sha256_new(&push->file_sha)) < 0)
        return err;
    if ((err = imgstore_store__writer_new(&push->writer, push->store)) < 0)
        return err;
    push->stage_len = push->stage_off = 0;
    push->chunk_count = 0;
    push->failed = false;
    push->progress_total += size_hint;
    push->in_file = true;
    return 0;
}

static int submit_chunks(imgstore_push *push, bool at_end)
{
    int err;

    while (push->stage_len - push->stage_off >= (at_end ? 1 : IMGSTORE_CHUNK_MAX)) {
        const uint8_t *start = push->stage + push->stage_off;
        size_t cut = imgstore_store__chunk_cut(start, push->stage_len - push->stage_off, at_end);

        if ((err = imgstore_store__writer_submit(push->writer, start, cut, push->chunk_count)) < 0)
            return err;
        push->chunk_count++;
        push->stage_off += cut;
    }
    if (push->stage_off > 0 && push->stage_off + IMGSTORE_CHUNK_MAX > STAGE_CAP) {
        memmove(push->stage, push->stage + push->stage_off, push->stage_len - push->stage_off);
        push->stage_len -= push->stage_off;
        push->stage_off = 0;
    }
    return 0;
}

int imgstore_store_push_write(imgstore_push *push, const void *buf, size_t len)
{
    const uint8_t *bytes = buf;
    int err;

    if (!push->in_file)
        return imgstore_error_set(IMGSTORE_EINVALID, "push: write before file_begin");
    if (push->failed)
        return imgstore_error_set(IMGSTORE_ERROR, "push: an earlier write failed");
    imgstore_sha256_update(push->file_sha, buf, len);
    while (len > 0) {
        size_t room = STAGE_CAP - push->stage_len;
        size_t n = len < room ? len : room;

        memcpy(push->stage + push->stage_len, bytes, n);
        push->stage_len += n;
        bytes += n;
        len -= n;
        if ((err = submit_chunks(push, false)) < 0) {
            push->failed = true;
            return err;
        }
        push->progress_done += n;
        if (push->progress)
            push->progress(push->progress_done, push->progress_total, push->progress_payload);
    }
    return 0;
}

typedef struct {
    imgstore_store *store;
    git_odb *odb;
    const pushed_file *file;
    size_t cached; /* index of the chunk in `object`, or SIZE_MAX */
    imgstore_store__chunk_buf chunk;
} detect_reader;

static int detect_read_at(size_t *out_len, void *buf, size_t len, uint64_t offset, void *payload)
{
    detect_reader *r = payload;
    const imgstore_manifest_file *file = &r->file->file;
    uint64_t chunk_start = 0;
    size_t done = 0;

    for (size_t i = 0; i < file->chunk_count && done < len; i++) {
        uint64_t chunk_end = chunk_start + file->chunks[i].size;

        if (offset + done < chunk_end) {
            uint64_t in_chunk = offset + done - chunk_start;
            size_t n = (size_t)(chunk_end - (offset + done));
            int rc;

            if (r->cached != i) {
                imgstore_store__chunk_buf_clear(&r->chunk);
                r->cached = SIZE_MAX;
                if ((rc = imgstore_store__chunk_load(&r->chunk, r->store, r->odb, &r->file->oids[i],
                                                     &file->chunks[i])) < 0)
                    return rc;
                r->cached = i;
            }
            if (n > len - done)
                n = len - done;
            memcpy((uint8_t *)buf + done, r->chunk.data + in_chunk, n);
            done += n;
        }
        chunk_start = chunk_end;
    }
    *out_len = done;
    return 0;
}

static int detect_file(imgstore_push *push, pushed_file *f)
{
    detect_reader reader = {push->store, NULL, f, SIZE_MAX, {0}};
    imgstore_file_info *info = &f->file.info;
    int err;

    if (push->cur_kind && strcmp(push->cur_kind, "unknown") == 0) {
        memset(info, 0, sizeof(*info));
        snprintf(info->kind, sizeof(info->kind), "unknown");
        snprintf(info->format, sizeof(info->format), "unknown");
        return 0;
    }
    if ((err = git_repository_odb(&reader.odb, push->store->repo)) < 0)
        return imgstore_store__git_error(err, "cannot open the object database");
    err = imgstore_store__detect(info, f->file.path, f->file.size, detect_read_at, &reader);
    imgstore_store__chunk_buf_clear(&reader.chunk);
    git_odb_free(reader.odb);
    if (err < 0 && push->cur_kind) {
        /* An explicit --kind stores what detection would refuse; say so in the format. */
        memset(info, 0, sizeof(*info));
        snprintf(info->format, sizeof(info->format), "unknown");
        err = 0;
    } else if (err == IMGSTORE_EINVALID) {
        char msg[1024];

        snprintf(msg, sizeof(msg), "%s", imgstore_error_last());
        return imgstore_error_set(err, "%s (to store it anyway, push it with --kind unknown)", msg);
    }
    if (!err && push->cur_kind)
        snprintf(info->kind, sizeof(info->kind), "%s", push->cur_kind);
    return err;
}

static int build_file_tree(imgstore_push *push, pushed_file *f)
{
    git_treebuilder *bld = NULL;
    int rc;

    if ((rc = git_treebuilder_new(&bld, push->store->repo, NULL)) < 0)
        goto done;
    for (size_t i = 0; i < f->file.chunk_count && rc >= 0; i++) {
        char entry[24];

        snprintf(entry, sizeof(entry), "%06zu", i);
        rc = git_treebuilder_insert(NULL, bld, entry, &f->oids[i], GIT_FILEMODE_BLOB);
    }
    if (rc >= 0)
        rc = git_treebuilder_write(&f->tree, bld);
done:
    git_treebuilder_free(bld);
    return rc < 0 ? imgstore_store__git_error(rc, "%s: cannot write its chunk tree", f->file.path)
                  : 0;
}

int imgstore_store_push_file_end(imgstore_push *push, const char *expected_sha256)
{
    pushed_file *f = &push->files[push->file_count];
    const imgstore_store__chunk *results = NULL;
    int err;

    if (!push->in_file)
        return imgstore_error_set(IMGSTORE_EINVALID, "push: file_end without file_begin");
    push->in_file = false;
    if (push->failed) {
        err = imgstore_error_set(IMGSTORE_ERROR, "push: an earlier write failed");
        goto done;
    }
    if (push->chunk_count > 999999) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "%s: more than 999999 chunks", f->file.path);
        goto done;
    }
    if ((err = submit_chunks(push, true)) < 0 ||
        (err = imgstore_store__writer_wait(push->writer, &results)) < 0)
        goto done;
    imgstore_sha256_final_hex(push->file_sha, f->file.sha256);
    if (expected_sha256 && strcmp(expected_sha256, f->file.sha256) != 0) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "%s: sha256 is %s, not the declared %s",
                                 f->file.path, f->file.sha256, expected_sha256);
        goto done;
    }
    f->file.chunk_count = push->chunk_count;
    f->file.chunks = calloc(push->chunk_count ? push->chunk_count : 1, sizeof(*f->file.chunks));
    f->oids = calloc(push->chunk_count ? push->chunk_count : 1, sizeof(*f->oids));
    if (!f->file.chunks || !f->oids) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < push->chunk_count; i++) {
        memcpy(f->file.chunks[i].sha256, results[i].sha256, sizeof(results[i].sha256));
        f->file.chunks[i].size = results[i].size;
        f->oids[i] = results[i].oid;
        f->file.size += results[i].size;
    }
    if ((err = detect_file(push, f)) < 0 || (err = build_file_tree(push, f)) < 0)
        goto done;
    push->file_count++;
done:
    imgstore_store__writer_free(push->writer);
    push->writer = NULL;
    if (err < 0)
        pushed_file_clear(f);
    push->slot_open = false;
    return err;
}

int imgstore_store_push_file_stream(imgstore_push *push, const char *path, const char *kind,
                                    uint64_t size_hint, imgstore_read_fn read, void *payload)
{
    uint8_t *buf = malloc(1024 * 1024);
    size_t n = 0;
    int err;

    if (!buf)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if ((err = imgstore_store_push_file_begin(push, path, kind, size_hint)) < 0)
        goto done;
    while ((err = read(&n, buf, 1024 * 1024, payload)) == 0 && n > 0) {
        if ((err = imgstore_store_push_write(push, buf, n)) < 0)
            break;
    }
    if (err < 0) {
        char saved[1024];

        /* Close the file so the push stays usable for freeing, but report the first error. */
        snprintf(saved, sizeof(saved), "%s: %s", path, imgstore_error_last());
        push->failed = true;
        imgstore_store_push_file_end(push, NULL);
        imgstore_error_set(err, "%s", saved);
        goto done;
    }
    err = imgstore_store_push_file_end(push, NULL);
done:
    free(buf);
    return err;
}

static int pushed_cmp(const void *a, const void *b)
{
    return strcmp(((const pushed_file *)a)->file.path, ((const pushed_file *)b)->file.path);
}

int imgstore_store_push_commit(imgstore_push *push, imgstore_manifest **out, bool *created_out)
{
    imgstore_manifest m;
    imgstore_manifest_file *files = NULL;
    git_oid *trees = NULL;
    char created[32];
    int err;

    *out = NULL;
    if (push->in_file)
        return imgstore_error_set(IMGSTORE_EINVALID, "push: file %s was not finished",
                                  push->files[push->file_count].file.path);
    qsort(push->files, push->file_count, sizeof(*push->files), pushed_cmp);
    files = calloc(push->file_count + 1, sizeof(*files));
    trees = calloc(push->file_count + 1, sizeof(*trees));
    if (!files || !trees) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    /* The manifest borrows the push's strings and arrays; nothing here is freed through it. */
    for (size_t i = 0; i < push->file_count; i++) {
        files[i] = push->files[i].file;
        trees[i] = push->files[i].tree;
    }
    imgstore_time_rfc3339(created, sizeof(created), push->created);
    memset(&m, 0, sizeof(m));
    m.name = push->name;
    m.version = push->version;
    m.created = created;
    m.file_count = push->file_count;
    m.files = files;
    m.source_repository = push->source_repository;
    m.source_commit = push->source_commit;
    m.builder = push->actor;
    m.label_count = push->label_count;
    m.labels = push->labels;
    err = imgstore_store__commit_version(out, created_out, push->store, &m, trees, push->actor,
                                         &push->signers);
done:
    free(trees);
    free(files);
    return err;
}
