/*
 * imgstore push --server: upload files as one version. Each file is read twice from disk,
 * never held in memory: once to hash it, so the server can check the digest when the last
 * byte arrives, then streamed as a multipart/form-data part. Afterwards the client checks
 * what the server stored (the manifest names exactly the files and digests it sent) and, when
 * the version is pending because the server holds no release key, signs the manifest bytes
 * with the local release key and hands the signature over.
 */
#include "cli/remote.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HASH_BUF (1u << 20)

/* First pass: size and sha256 of a regular file. */
static int hash_file(cli_remote_upload_file *file, char sha[65])
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
static int check_stored(const imgstore_manifest *m, const cli_remote_upload_file *files,
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
static int check_provenance(const imgstore_manifest *m, const cli_remote_form_field *fields,
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
static int add_signatures(cli_remote *remote, const cli_remote_trust *trust,
                          const cli_remote_manifest *m, const cli_signers *signers)
{
    const imgstore_policy_role *release = &trust->policy->roles[IMGSTORE_ROLE_RELEASE];
    char *path =
        imgstore_strfmt("/v1/images/%s/%s/signatures", m->manifest->name, m->manifest->version);
    size_t sent = 0;
    int err = 0;

    if (!path)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (size_t i = 0; i < signers->count && err == 0; i++) {
        imgstore_sign_pubkey pub, listed;
        bool member = false;
        char *sig = NULL;
        json_t *answer = NULL;

        imgstore_sign_key_public(&pub, signers->keys[i]);
        for (size_t k = 0; k < release->key_count && !member; k++)
            member = imgstore_sign_pubkey_parse(&listed, release->keys[k]) == 0 &&
                     imgstore_sign_pubkey_equal(&listed, &pub);
        if (!member)
            continue;
        if ((err = imgstore_sign_sshsig(&sig, signers->keys[i], IMGSTORE_SIGN_NAMESPACE, m->bytes,
                                        m->len)) == 0)
            err = cli_remote_send_json(&answer, NULL, remote, "POST", path,
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

int cli_remote_cmd_push(cli_ctx *ctx, int argc, char **argv)
{
    cli_push_args args;
    cli_remote remote = {0};
    cli_remote_trust trust = {0};
    cli_remote_manifest m = {0};
    cli_remote_upload_file *files = NULL;
    cli_remote_form_field fields[IMGSTORE_MAX_LABELS + 1];
    cli_signers signers = {0};
    cli_progress progress;
    char(*sums)[65] = NULL;
    char *path = NULL;
    const char *name, *version, *kind, *stored_version;
    json_t *answer = NULL;
    size_t count, field_count = 0;
    uint64_t total = 0;
    bool created;
    int code, err = 0;

    if (cli_push_parse(ctx, argc, argv, &args, &code) < 0)
        return code;
    name = args.name;
    version = args.version;
    kind = args.kind;
    count = args.file_count;
    /* checked as the local push checks them; the server's store checks the rest */
    for (size_t i = 0; i < args.label_count; i++)
        fields[field_count++] = (cli_remote_form_field){"label", args.labels[i]};
    if (args.source)
        fields[field_count++] = (cli_remote_form_field){"source", args.source};
    if ((err = cli_remote_check_names(name, version, NULL)) < 0 ||
        (kind && (err = imgstore_schema_check_kind(kind)) < 0))
        goto done;
    if (!(files = calloc(count, sizeof(*files))) || !(sums = calloc(count, sizeof(*sums))))
        goto oom;
    for (size_t i = 0; i < count; i++) {
        files[i].path = args.files[i];
        files[i].name = cli_base_name(files[i].path);
        files[i].kind = kind;
        files[i].sha256 = sums[i];
        if ((err = imgstore_schema_check_name(IMGSTORE_NAME_FILE, files[i].name)) < 0 ||
            (err = hash_file(&files[i], sums[i])) < 0)
            goto done;
        total += files[i].size;
    }
    if ((err = cli_remote_open(&remote, &args.remote)) < 0 ||
        (err = cli_remote_trust_load(&trust, &remote)) < 0)
        goto done;
    if (!(path = version ? imgstore_strfmt("/v1/images/%s/%s", name, version)
                         : imgstore_strfmt("/v1/images/%s", name)))
        goto oom;
    cli_progress_init(&progress, name, ctx);
    remote.progress = &progress;
    remote.progress_total = total;
    err = cli_remote_upload(&answer, &remote, path, fields, field_count, files, count);
    cli_progress_done(&progress);
    remote.progress = NULL;
    if (err < 0)
        goto done;
    stored_version = json_string_value(json_object_get(answer, "version"));
    created = json_is_true(json_object_get(answer, "created"));
    if (!stored_version || (version && strcmp(stored_version, version) != 0)) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "the server's answer names another version");
        goto done;
    }
    if ((err = cli_remote_manifest_fetch(&m, &remote, &trust, name, stored_version, false)) < 0 ||
        (err = check_stored(m.manifest, files, count)) < 0 ||
        (err = check_provenance(m.manifest, fields, field_count)) < 0)
        goto done;
    if (!m.status.trusted && cli_signers_load(&signers, ctx) == 0) {
        if ((err = add_signatures(&remote, &trust, &m, &signers)) < 0)
            goto done;
        cli_remote_manifest_free(&m);
        if ((err = cli_remote_manifest_fetch(&m, &remote, &trust, name, stored_version, false)) <
                0 ||
            (err = check_stored(m.manifest, files, count)) < 0 ||
            (err = check_provenance(m.manifest, fields, field_count)) < 0)
            goto done;
    }
    err = cli_print_pushed(ctx, m.manifest, created, &m.status);
    goto done;
oom:
    err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
done:
    json_decref(answer);
    cli_signers_free(&signers);
    cli_remote_manifest_free(&m);
    cli_remote_trust_free(&trust);
    cli_remote_close(&remote);
    free(path);
    free(sums);
    free(files);
    free(args.name);
    free(args.file_version);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

/* imgstore sign NAME@VERSION --server URL: the manifest's exact bytes are fetched and
 * checked (they name this version), signed here with the local release keys, and the
 * signatures handed to the server, which checks them again before it stores them. */
int cli_remote_cmd_sign(cli_ctx *ctx, int argc, char **argv)
{
    cli_read_args args;
    cli_remote remote = {0};
    cli_remote_trust trust = {0};
    cli_remote_manifest m = {0};
    cli_signers signers = {0};
    char *name = NULL, *version = NULL;
    int code, err = 0;
    int first = cli_read_parse(ctx, argc, argv, &args, false, &code);

    if (first < 0 || (code = cli_version_arg(ctx, argc, argv, first, &name, &version)) >= 0)
        return code;
    if ((err = cli_signers_load(&signers, ctx)) < 0 ||
        (err = cli_remote_check_names(name, version, NULL)) < 0 ||
        (err = cli_remote_open(&remote, &args.remote)) < 0 ||
        (err = cli_remote_trust_load(&trust, &remote)) < 0 ||
        (err = cli_remote_manifest_fetch(&m, &remote, &trust, name, version, false)) < 0 ||
        (err = add_signatures(&remote, &trust, &m, &signers)) < 0)
        goto done;
    cli_remote_manifest_free(&m);
    if ((err = cli_remote_manifest_fetch(&m, &remote, &trust, name, version, false)) < 0)
        goto done;
    err = cli_print_signed(ctx, name, version, &m.status);
done:
    cli_signers_free(&signers);
    cli_remote_manifest_free(&m);
    cli_remote_trust_free(&trust);
    cli_remote_close(&remote);
    free(name);
    free(version);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}
