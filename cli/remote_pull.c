/*
 * imgstore pull --server: the remote twin of cmd_pull.c. It believes nothing the server says
 * until the client library checked it (client/verify.c), and downloads each file into a staging
 * file beside its destination, named after the file's digest so that an interrupted pull resumes
 * where it stopped (HTTP Range) instead of starting over. The whole file is hashed (the resumed
 * prefix included) and compared with the signed manifest; cli_pull_write renames the version's
 * files into place only once all of them verified, so a destination never holds an unverified byte.
 * With -o - each chunk is held (at most one chunk, 4 MiB) and checked against the manifest before
 * it is written to stdout.
 */
#include "cli/remote.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Download one file into its staging file beside `dest` (resuming what an earlier pull left
 * there) and check it against the manifest; *staged_out names it. */
static int stage_file(char **staged_out, imgstore_client *client, const cli_pull_progress *bar,
                      const imgstore_manifest *m, const imgstore_manifest_file *file,
                      const char *dest)
{
    char *dir_copy = strdup(dest), *base_copy = strdup(dest), *tmp = NULL;
    uint64_t base = bar->done;
    struct stat st;
    int fd = -1, err = 0;

    if (!dir_copy || !base_copy ||
        !(tmp = imgstore_strfmt("%s/.%s.imgstore-partial-%.16s", dirname(dir_copy),
                                basename(base_copy), file->sha256))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((err = imgstore_schema_check_name(IMGSTORE_NAME_FILE, file->path)) < 0)
        goto done;
    if ((fd = open(tmp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644)) < 0 ||
        fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    /* two pulls into one directory must not write one temp file at once */
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        err = imgstore_error_set(IMGSTORE_ELOCKED, "another pull is writing %s", tmp);
        goto done;
    }
    imgstore_client_set_progress(client, bar->bar ? cli_progress_update : NULL, bar->bar, base,
                                 bar->total);
    err = imgstore_client_file_pull_fd(client, m, file, fd, tmp);
    if (err == IMGSTORE_EVERIFY)
        unlink(tmp); /* the server refused a chunk: nothing to resume */
    if (err < 0)
        goto done; /* an interrupted download stays for the next run to resume */
    if (fchmod(fd, 0644) < 0 || fsync(fd) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    *staged_out = tmp;
    tmp = NULL;
done:
    if (fd >= 0)
        close(fd);
    free(tmp);
    free(base_copy);
    free(dir_copy);
    return err;
}

/* -o -: one chunk at a time, each checked before a byte of it reaches stdout. */
typedef struct {
    const imgstore_manifest_file *file;
    size_t chunk; /* index of the chunk being filled */
    char *buf;    /* its bytes so far */
    size_t filled;
} chunk_sink;

static int chunk_write(bool restarted, const void *buf, size_t len, void *payload)
{
    chunk_sink *sink = payload;
    const char *bytes = buf;
    int err;

    (void)restarted; /* asked from byte 0: nothing to restart */
    while (len > 0) {
        const imgstore_chunk_ref *ref;
        size_t take;
        char digest[65];

        if (sink->chunk >= sink->file->chunk_count)
            return imgstore_error_set(IMGSTORE_EVERIFY,
                                      "%s: the server sent more than the manifest says",
                                      sink->file->path);
        ref = &sink->file->chunks[sink->chunk];
        take = ref->size - sink->filled < len ? (size_t)(ref->size - sink->filled) : len;
        memcpy(sink->buf + sink->filled, bytes, take);
        sink->filled += take;
        bytes += take;
        len -= take;
        if (sink->filled < ref->size)
            continue;
        if ((err = imgstore_sha256_hex(digest, sink->buf, sink->filled)) < 0)
            return err;
        if (strcmp(digest, ref->sha256) != 0)
            return imgstore_error_set(IMGSTORE_EVERIFY,
                                      "%s: chunk %zu does not match the signed manifest; stopped "
                                      "before it",
                                      sink->file->path, sink->chunk + 1);
        if ((err = imgstore_write_all(STDOUT_FILENO, sink->buf, sink->filled)) < 0)
            return err;
        sink->chunk++;
        sink->filled = 0;
    }
    return 0;
}

static int pull_to_stdout(imgstore_client *client, const imgstore_manifest *m)
{
    const imgstore_manifest_file *file = &m->files[0];
    chunk_sink sink = {file, 0, NULL, 0};
    uint64_t largest = 0;
    int err;

    if (m->file_count != 1)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "%s %s has %zu files; choose one with --file to write it to "
                                  "stdout",
                                  m->name, m->version, m->file_count);
    for (size_t i = 0; i < file->chunk_count; i++)
        largest = file->chunks[i].size > largest ? file->chunks[i].size : largest;
    if (largest > 4 * IMGSTORE_CHUNK_MAX)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: chunks over %u bytes", file->path,
                                  4 * IMGSTORE_CHUNK_MAX);
    if (!(sink.buf = malloc(largest ? (size_t)largest : 1)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    err = imgstore_client_file_read_once(client, m->name, m->version, file->path, 0, chunk_write,
                                         &sink);
    if (err == 0 && (sink.chunk != file->chunk_count || sink.filled != 0))
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s: the server sent fewer bytes than the "
                                 "manifest says",
                                 file->path);
    free(sink.buf);
    return err;
}

/* The newest version, as the server lists it (what it then hands out is checked). */
static int newest_version(char **out, imgstore_client *client, const char *name)
{
    json_t *body = NULL;
    char *path = imgstore_strfmt("/v1/images/%s", name);
    const char *version;
    int err;

    *out = NULL;
    if (!path)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    if ((err = imgstore_client_get_json(&body, client, path)) == 0) {
        version = json_string_value(
            json_object_get(json_array_get(json_object_get(body, "versions"), 0), "version"));
        if (!version)
            err = imgstore_error_set(IMGSTORE_ENOTFOUND, "image %s has no version", name);
        else if (!(*out = strdup(version)))
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    json_decref(body);
    free(path);
    return err;
}

typedef struct {
    imgstore_client *client;
    const imgstore_manifest *m;
} remote_source;

static int remote_stage(char **staged_out, const imgstore_manifest_file *file, const char *dest,
                        const cli_pull_progress *progress, void *payload)
{
    remote_source *src = payload;
    return stage_file(staged_out, src->client, progress, src->m, file, dest);
}

static int remote_to_stdout(const imgstore_manifest *m, void *payload)
{
    return pull_to_stdout(((remote_source *)payload)->client, m);
}

int cli_remote_cmd_pull(cli_ctx *ctx, int argc, char **argv)
{
    cli_pull_args args;
    imgstore_client *client = NULL;
    imgstore_client_manifest m = {0};
    imgstore_channel_state *state = NULL;
    remote_source src = {NULL, NULL};
    cli_pull_source source = {remote_stage, remote_to_stdout, &src, true};
    int code, err = 0;

    if (cli_pull_parse(ctx, argc, argv, &args, &code) < 0)
        return code;
    if ((err = imgstore_client_check_names(args.name, args.version, args.channel)) < 0 ||
        (err = cli_client_open(&client, &args.remote)) < 0 ||
        (err = imgstore_client_policy_load(client)) < 0)
        goto done;
    src.client = client;
    if (args.channel) {
        if ((err = imgstore_client_channel_get(&state, NULL, client, args.name, args.channel,
                                               false)) < 0)
            goto done;
        if (!(args.version = strdup(state->version))) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            goto done;
        }
    } else if (!args.version && (err = newest_version(&args.version, client, args.name)) < 0) {
        goto done;
    }
    if ((err = imgstore_client_manifest_fetch(&m, client, args.name, args.version, true)) < 0)
        goto done;
    if (state && strcmp(state->manifest_sha256, m.sha256) != 0) {
        err = imgstore_error_set(IMGSTORE_EVERIFY,
                                 "%s/%s pins manifest %.16s... of %s, but the server's manifest "
                                 "is %.16s...",
                                 args.name, args.channel, state->manifest_sha256, args.version,
                                 m.sha256);
        goto done;
    }
    src.m = m.manifest;
    err = cli_pull_write(ctx, &args, m.manifest, m.sha256, state ? state->sequence : 0, &source);
done:
    imgstore_channel_state_free(state);
    imgstore_client_manifest_clear(&m);
    imgstore_client_free(client);
    cli_pull_args_free(&args);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}
