/*
 * Push and sign over HTTP (moved from cli/remote_push.c, #11): upload files as one version. Each
 * file is read twice from disk, never held in memory: once to hash it, so the server can check the
 * digest when the last byte arrives, then streamed as a multipart/form-data part. Afterwards the
 * client checks what the server stored (the manifest names exactly the files and digests it sent)
 * and, when the version is pending because the server holds no release key, signs the manifest
 * bytes with the caller's release keys and hands the signatures over.
 */
#include "client/client_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HASH_BUF (1u << 20)

/* First pass: size and sha256 of a regular file. */
static int hash_file(imgstore_client__upload_file *file, char sha[65])
{
    imgstore_sha256 *ctx = NULL;
    char *buf = malloc(HASH_BUF);
    struct stat st;
    int fd = open(file->path, O_RDONLY | O_CLOEXEC), err = 0;
    ssize_t n;

    if (!buf) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if (fd < 0) {
        err = imgstore_error_set(errno == ENOENT ? IMGSTORE_ENOTFOUND : IMGSTORE_ERROR,
                                 "cannot open %s: %s", file->path, strerror(errno));
        goto done;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "%s: not a regular file", file->path);
        goto done;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if ((err = imgstore_sha256_new(&ctx)) < 0)
        goto done;
    file->size = 0;
    while ((n = read(fd, buf, HASH_BUF)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = imgstore_error_set(IMGSTORE_ERROR, "cannot read %s: %s", file->path,
                                     strerror(errno));
            goto done;
        }
        imgstore_sha256_update(ctx, buf, (size_t)n);
        file->size += (uint64_t)n;
    }
    imgstore_sha256_final_hex(ctx, sha);
done:
    imgstore_sha256_free(ctx);
    if (fd >= 0)
        close(fd);
    free(buf);
    return err;
}

/* The server's manifest must hold exactly the files sent, with their sizes and digests:
 * otherwise signing it would vouch for bytes this machine never had. */
static int check_stored(const imgstore_manifest *m, const imgstore_client__upload_file *files,
                        size_t count)
{
    if (m->file_count != count)
        return imgstore_error_set(IMGSTORE_EVERIFY,
                                  "%s %s: the server stored %zu files, %zu were sent", m->name,
                                  m->version, m->file_count, count);
    for (size_t i = 0; i < count; i++) {
        bool found = false;

        for (size_t j = 0; j < m->file_count && !found; j++)
            found = strcmp(m->files[j].path, files[i].name) == 0 &&
                    m->files[j].size == files[i].size &&
                    strcmp(m->files[j].sha256, files[i].sha256) == 0;
        if (!found)
            return imgstore_error_set(IMGSTORE_EVERIFY,
                                      "%s %s: the server's manifest does not hold %s as sent",
                                      m->name, m->version, files[i].name);
    }
    return 0;
}

/* The stored provenance must be what was sent, for the same reason. */
static int check_provenance(const imgstore_manifest *m, const imgstore_client__form_field *fields,
                            size_t field_count)
{
    size_t labels = 0;

    for (size_t i = 0; i < field_count; i++) {
        const char *value = fields[i].value;
        bool found = false;

        if (strcmp(fields[i].name, "source") == 0) {
            const char *at = strrchr(value, '@');

            found = m->source_repository && m->source_commit &&
                    strlen(m->source_repository) == (size_t)(at - value) &&
                    strncmp(m->source_repository, value, (size_t)(at - value)) == 0 &&
                    strcmp(m->source_commit, at + 1) == 0;
        } else {
            const char *eq = strchr(value, '=');

            labels++;
            for (size_t j = 0; j < m->label_count && !found; j++)
                found = strlen(m->labels[j].key) == (size_t)(eq - value) &&
                        strncmp(m->labels[j].key, value, (size_t)(eq - value)) == 0 &&
                        strcmp(m->labels[j].value, eq + 1) == 0;
        }
        if (!found)
            return imgstore_error_set(IMGSTORE_EVERIFY,
                                      "%s %s: the server's manifest does not hold %s %s as sent",
                                      m->name, m->version, fields[i].name, value);
    }
    if (labels != m->label_count)
        return imgstore_error_set(IMGSTORE_EVERIFY,
                                  "%s %s: the server stored %zu labels, %zu were sent", m->name,
                                  m->version, m->label_count, labels);
    return 0;
}

/* Sign the manifest bytes with each local release key the policy lists and hand the
 * signatures to the server. Keys outside the release role are skipped (they would not count). */
static int add_signatures(imgstore_client *client, const imgstore_policy *policy,
                          const imgstore_client_manifest *m, const imgstore_sign_key *const *keys,
                          size_t key_count)
{
    const imgstore_policy_role *release = &policy->roles[IMGSTORE_ROLE_RELEASE];
    char *path =
        imgstore_strfmt("/v1/images/%s/%s/signatures", m->manifest->name, m->manifest->version);
    size_t sent = 0;
    int err = 0;

    if (!path)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (size_t i = 0; i < key_count && err == 0; i++) {
        imgstore_sign_pubkey pub, listed;
        bool member = false;
        char *sig = NULL;
        json_t *answer = NULL;

        imgstore_sign_key_public(&pub, keys[i]);
        for (size_t k = 0; k < release->key_count && !member; k++)
            member = imgstore_sign_pubkey_parse(&listed, release->keys[k]) == 0 &&
                     imgstore_sign_pubkey_equal(&listed, &pub);
        if (!member)
            continue;
        if ((err = imgstore_sign_sshsig(&sig, keys[i], IMGSTORE_SIGN_NAMESPACE, m->bytes,
                                        m->len)) == 0)
            err = imgstore_client__send_json(&answer, NULL, client, "POST", path,
                                             json_pack("{s:s}", "signature", sig));
        json_decref(answer);
        free(sig);
        sent += err == 0;
    }
    free(path);
    if (err == 0 && sent == 0)
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "none of the signing keys is a release key of the policy");
    return err;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

static int check_push(const imgstore_client_push_opts *opts)
{
    int err;

    if (!opts || !opts->name || (opts->file_count && !opts->files) ||
        (opts->label_count && !opts->labels))
        return imgstore_error_set(IMGSTORE_EINVALID, "push: bad arguments");
    if (opts->label_count > IMGSTORE_MAX_LABELS)
        return imgstore_error_set(IMGSTORE_EINVALID, "push: more than %d labels",
                                  IMGSTORE_MAX_LABELS);
    if ((err = imgstore_client_check_names(opts->name, opts->version, NULL)) < 0 ||
        (opts->kind && (err = imgstore_schema_check_kind(opts->kind)) < 0))
        return err;
    for (size_t i = 0; i < opts->label_count; i++) {
        if (!strchr(opts->labels[i], '='))
            return imgstore_error_set(IMGSTORE_EINVALID, "label '%s': expected KEY=VALUE",
                                      opts->labels[i]);
    }
    if (opts->source && !strrchr(opts->source, '@'))
        return imgstore_error_set(IMGSTORE_EINVALID, "source '%s': expected REPOSITORY@COMMIT",
                                  opts->source);
    return 0;
}

int imgstore_client_push(imgstore_client_manifest *out, bool *created_out, imgstore_client *client,
                         const imgstore_client_push_opts *opts)
{
    const imgstore_policy *policy = NULL;
    imgstore_client__upload_file *files = NULL;
    imgstore_client__form_field fields[IMGSTORE_MAX_LABELS + 1];
    char(*sums)[65] = NULL;
    char *path = NULL;
    const char *stored_version;
    json_t *answer = NULL;
    size_t count, field_count = 0;
    uint64_t total = 0;
    int err;

    memset(out, 0, sizeof(*out));
    if (created_out)
        *created_out = false;
    if ((err = check_push(opts)) < 0)
        return err;
    count = opts->file_count;
    /* checked as the local push checks them; the server's store checks the rest */
    for (size_t i = 0; i < opts->label_count; i++)
        fields[field_count++] = (imgstore_client__form_field){"label", opts->labels[i]};
    if (opts->source)
        fields[field_count++] = (imgstore_client__form_field){"source", opts->source};
    if (!(files = calloc(count ? count : 1, sizeof(*files))) ||
        !(sums = calloc(count ? count : 1, sizeof(*sums))))
        goto oom;
    for (size_t i = 0; i < count; i++) {
        files[i].path = opts->files[i];
        files[i].name = base_name(files[i].path);
        files[i].kind = opts->kind;
        files[i].sha256 = sums[i];
        if ((err = imgstore_schema_check_name(IMGSTORE_NAME_FILE, files[i].name)) < 0 ||
            (err = hash_file(&files[i], sums[i])) < 0)
            goto done;
        total += files[i].size;
    }
    if ((err = imgstore_client__policy(&policy, client)) < 0)
        goto done;
    if (!(path = opts->version ? imgstore_strfmt("/v1/images/%s/%s", opts->name, opts->version)
                               : imgstore_strfmt("/v1/images/%s", opts->name)))
        goto oom;
    client->progress_base = 0;
    client->progress_total = total;
    err = imgstore_client__upload(&answer, client, path, fields, field_count, files, count);
    client->progress_total = 0;
    if (err < 0)
        goto done;
    stored_version = json_string_value(json_object_get(answer, "version"));
    if (created_out)
        *created_out = json_is_true(json_object_get(answer, "created"));
    if (!stored_version || (opts->version && strcmp(stored_version, opts->version) != 0)) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "the server's answer names another version");
        goto done;
    }
    if ((err = imgstore_client_manifest_fetch(out, client, opts->name, stored_version, false)) <
            0 ||
        (err = check_stored(out->manifest, files, count)) < 0 ||
        (err = check_provenance(out->manifest, fields, field_count)) < 0)
        goto done;
    goto done;
oom:
    err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
done:
    if (err < 0)
        imgstore_client_manifest_clear(out);
    json_decref(answer);
    free(path);
    free(sums);
    free(files);
    return err;
}

int imgstore_client_sign(imgstore_client_manifest *m, imgstore_client *client,
                         const imgstore_sign_key *const *keys, size_t key_count)
{
    const imgstore_policy *policy = NULL;
    imgstore_client_manifest fresh = {0};
    int err;

    if (!m || !m->manifest || !m->bytes || (key_count && !keys))
        return imgstore_error_set(IMGSTORE_EINVALID, "sign: bad arguments");
    if ((err = imgstore_client__policy(&policy, client)) < 0 ||
        (err = add_signatures(client, policy, m, keys, key_count)) < 0 ||
        (err = imgstore_client_manifest_fetch(&fresh, client, m->manifest->name,
                                              m->manifest->version, false)) < 0)
        return err;
    /* the signatures were made over m's bytes: the server must still hold exactly those */
    if (fresh.len != m->len || memcmp(fresh.bytes, m->bytes, m->len) != 0) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s %s: the server's manifest changed while it was signed",
                                 m->manifest->name, m->manifest->version);
        imgstore_client_manifest_clear(&fresh);
        return err;
    }
    imgstore_client_manifest_clear(m);
    *m = fresh;
    return 0;
}
