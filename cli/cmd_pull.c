/*
 * imgstore pull: write a version's files to disk. Each file goes to a staging file beside
 * its destination, checked chunk by chunk and as a whole against the manifest; only when
 * every file of the version verified are they renamed into place, so a destination never
 * holds unverified or partial bytes, nor a mix of two versions (issue #10).
 * Its argv and where the files go (cli_pull_parse, cli_pull_write) serve remote mode too
 * (cli/remote_pull.c), which brings its own source of bytes.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { OPT_CHANNEL = OPT_FIRST_LOCAL, OPT_FILE };

typedef struct {
    int fd;
    uint64_t done, total;
    cli_progress *progress;
} file_sink;

static int sink_write(const void *buf, size_t len, void *payload)
{
    file_sink *sink = payload;
    int err;

    if ((err = imgstore_write_all(sink->fd, buf, len)) < 0)
        return err;
    sink->done += len;
    cli_progress_update(sink->done, sink->total, sink->progress);
    return 0;
}

/* Write one file of `m` into a staging file beside `dest`, fsynced; *staged_out names it. */
static int stage_file(char **staged_out, imgstore_store *store, const imgstore_manifest *m,
                      const imgstore_manifest_file *file, const char *dest, file_sink *sink)
{
    char *tmp = NULL, *dir_copy = strdup(dest);
    int err = 0;

    if (!dir_copy ||
        !(tmp = imgstore_strfmt("%s/.%s.imgstore-XXXXXX", dirname(dir_copy), file->path))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if ((sink->fd = mkstemp(tmp)) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot create a file beside %s: %s", dest,
                                 strerror(errno));
        free(tmp);
        tmp = NULL;
        goto done;
    }
    fchmod(sink->fd, 0644);
    if ((err = imgstore_store_file_read(store, m, file->path, 0, UINT64_MAX, sink_write, sink)) < 0)
        goto done;
    if (fsync(sink->fd) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    *staged_out = tmp;
    tmp = NULL;
done:
    if (sink->fd >= 0)
        close(sink->fd);
    sink->fd = -1;
    if (tmp)
        unlink(tmp);
    free(tmp);
    free(dir_copy);
    return err;
}

/* Narrow the manifest to the file named `path` (the others are freed). */
static int keep_one_file(imgstore_manifest *m, const char *path)
{
    for (size_t i = 0; i < m->file_count; i++) {
        if (strcmp(m->files[i].path, path) == 0) {
            imgstore_manifest_file keep = m->files[i];

            m->files[i] = m->files[0];
            m->files[0] = keep;
            for (size_t j = 1; j < m->file_count; j++) {
                free(m->files[j].path);
                free(m->files[j].chunks);
            }
            m->file_count = 1;
            return 0;
        }
    }
    return imgstore_error_set(IMGSTORE_ENOTFOUND, "%s %s has no file %s", m->name, m->version,
                              path);
}

/* `-o -`: stream one file to stdout, for pipes (qemu-img, dd). A reader of the pipe sees the
 * bytes before the whole-file digest is checked, but never a chunk that failed its own
 * check, and the exit status says whether the whole file verified. */
static int pull_to_stdout(imgstore_store *store, const imgstore_manifest *m)
{
    file_sink sink = {STDOUT_FILENO, 0, 0, NULL};
    cli_progress progress;

    if (m->file_count != 1)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "%s %s has %zu files; choose one with --file to write it to "
                                  "stdout",
                                  m->name, m->version, m->file_count);
    cli_progress_init(&progress, m->name, NULL);
    sink.progress = &progress;
    sink.total = m->files[0].size;
    return imgstore_store_file_read(store, m, m->files[0].path, 0, UINT64_MAX, sink_write, &sink);
}

/* The manifest to pull: NAME@VERSION, what --channel runs (digest pinned by the channel
 * state), or the newest version. */
static int resolve_manifest(imgstore_manifest **out, char *digest_out, uint64_t *sequence_out,
                            imgstore_store *store, const char *name, const char *version,
                            const char *channel)
{
    imgstore_channel_state *state = NULL;
    imgstore_version_row *newest = NULL;
    size_t count = 0;
    int err;

    if (channel) {
        char store_id[41];

        if ((err = imgstore_store_channel_manifest_get(out, digest_out, &state, store, name,
                                                       channel)) == 0 &&
            (err = imgstore_store_id(store_id, store)) == 0 &&
            (err = imgstore_trust_seen_update(NULL, store_id, state)) == 0)
            *sequence_out = state->sequence;
        if (err < 0) {
            imgstore_manifest_free(*out);
            *out = NULL;
        }
        imgstore_channel_state_free(state);
        return err;
    }
    if (version)
        return imgstore_store_manifest_get_trusted(out, digest_out, store, name, version);
    /* the newest: one row of the version index */
    if ((err = imgstore_store_versions_page(&newest, &count, NULL, store, name, SIZE_MAX, 1)) < 0)
        return err;
    err = imgstore_store_manifest_get_trusted(out, digest_out, store, name, newest[0].version);
    imgstore_version_rows_free(newest, count);
    return err;
}

int cli_pull_parse(cli_ctx *ctx, int argc, char **argv, cli_pull_args *args, int *code)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS,
                                            CLI_REMOTE_OPTIONS,
                                            {"channel", required_argument, NULL, OPT_CHANNEL},
                                            {"output", required_argument, NULL, 'o'},
                                            {"file", required_argument, NULL, OPT_FILE},
                                            {NULL, 0, NULL, 0}};
    int opt, err;

    *code = -1;
    memset(args, 0, sizeof(*args));
    while ((opt = cli_next_option(ctx, argc, argv, "o:", options, &args->remote, code)) != -1) {
        if (opt == OPT_CHANNEL)
            args->channel = optarg;
        else if (opt == 'o')
            args->output = optarg;
        else if (opt == OPT_FILE)
            args->only = optarg;
    }
    if (*code >= 0)
        return -1;
    if (optind != argc - 1) {
        *code = cli_usage_error(ctx, "expected one NAME[@VERSION]");
        return -1;
    }
    if ((err = cli_split_ref(&args->name, &args->version, argv[optind])) < 0) {
        *code = cli_fail(ctx, err);
        return -1;
    }
    if (args->version && args->channel) {
        *code = cli_usage_error(ctx, "give NAME@VERSION or --channel, not both");
        cli_pull_args_free(args);
        return -1;
    }
    return 0;
}

void cli_pull_args_free(cli_pull_args *args)
{
    free(args->name);
    free(args->version);
    args->name = args->version = NULL;
}

/* Put back what commit_staged replaced: destinations [0, count) were renamed over. */
static void undo_renames(char **dests, char **backups, const bool *existed, size_t count)
{
    for (size_t i = count; i-- > 0;) {
        if (backups[i])
            rename(backups[i], dests[i]);
        else if (!existed[i])
            unlink(dests[i]);
    }
}

/*
 * Rename every staged file over its destination, or none: each destination that exists is
 * first hard-linked to a backup name so that a rename failing halfway can put the earlier
 * ones back (a boot set of two new files and one old one does not boot). A file system
 * without hard links (vfat) gets no backup, so there a halfway failure is only reported.
 */
static int commit_staged(char **dests, char **staged, size_t count)
{
    char **backups = calloc(count ? count : 1, sizeof(*backups));
    bool *existed = calloc(count ? count : 1, sizeof(*existed));
    size_t renamed = 0;
    int err = 0;

    if (!backups || !existed) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < count && err == 0; i++) {
        struct stat st;

        if (lstat(dests[i], &st) < 0)
            continue;
        existed[i] = true;
        if (S_ISDIR(st.st_mode)) {
            err = imgstore_error_set(IMGSTORE_ERROR,
                                     "cannot replace %s: it is a directory; no file was written",
                                     dests[i]);
        } else if (count > 1) {
            if (!(backups[i] = imgstore_strfmt("%s.old", staged[i]))) {
                err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
                break;
            }
            unlink(backups[i]); /* left by a pull that was killed here */
            if (link(dests[i], backups[i]) < 0) {
                free(backups[i]);
                backups[i] = NULL;
            }
        }
    }
    for (; renamed < count && err == 0; renamed++) {
        if (rename(staged[renamed], dests[renamed]) < 0) {
            err = imgstore_error_set(IMGSTORE_ERROR,
                                     "cannot move %s into place: %s; the other files of the "
                                     "version were left as they were",
                                     dests[renamed], strerror(errno));
            undo_renames(dests, backups, existed, renamed);
        }
    }
    for (size_t i = 0; i < count; i++)
        if (err == 0 && (i == 0 || strcmp(dests[i], dests[i - 1]) != 0))
            err = cli_sync_dir_of(dests[i]);
done:
    for (size_t i = 0; backups && i < count; i++) {
        if (backups[i])
            unlink(backups[i]);
        free(backups[i]);
    }
    free(backups);
    free(existed);
    return err;
}

int cli_pull_write(const cli_ctx *ctx, const cli_pull_args *args, imgstore_manifest *m,
                   const char *digest, uint64_t sequence, const cli_pull_source *source)
{
    const char *output = args->output;
    cli_progress bar;
    cli_pull_progress progress = {&bar, 0, 0};
    json_t *files_json = NULL;
    char **dests = NULL, **staged = NULL;
    struct stat st;
    bool to_dir;
    int err = 0;

    if (args->only && (err = keep_one_file(m, args->only)) < 0)
        return err;
    if (output && strcmp(output, "-") == 0)
        return ctx->json ? imgstore_error_set(IMGSTORE_EINVALID, "-o - and --json both want stdout")
                         : source->to_stdout(m, source->payload);
    to_dir = !output || m->file_count > 1 || (output[0] && output[strlen(output) - 1] == '/') ||
             (stat(output, &st) == 0 && S_ISDIR(st.st_mode));
    if (to_dir && output && mkdir(output, 0755) < 0 && errno != EEXIST)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot create %s: %s", output, strerror(errno));
    for (size_t i = 0; i < m->file_count; i++)
        progress.total += m->files[i].size;
    if (!(files_json = json_array()) || !(dests = calloc(m->file_count + 1, sizeof(*dests))) ||
        !(staged = calloc(m->file_count + 1, sizeof(*staged)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < m->file_count && err == 0; i++) {
        dests[i] = to_dir ? imgstore_strfmt("%s/%s", output ? output : ".", m->files[i].path)
                          : strdup(output);
        if (!dests[i])
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    /* stage and verify every file before any destination changes */
    cli_progress_init(&bar, m->name, ctx);
    for (size_t i = 0; i < m->file_count && err == 0; i++) {
        err = source->stage(&staged[i], &m->files[i], dests[i], &progress, source->payload);
        progress.done += m->files[i].size;
    }
    cli_progress_done(&bar);
    if (err == 0 && (err = commit_staged(dests, staged, m->file_count)) == 0) {
        for (size_t i = 0; i < m->file_count; i++) {
            free(staged[i]); /* renamed into place */
            staged[i] = NULL;
        }
    }
    if (err < 0)
        goto done;
    for (size_t i = 0; i < m->file_count; i++) {
        const imgstore_manifest_file *file = &m->files[i];

        json_array_append_new(files_json,
                              json_pack("{s:s, s:s, s:I, s:s}", "path", file->path, "written_to",
                                        dests[i], "size", (json_int_t)file->size, "sha256",
                                        file->sha256));
        if (!ctx->json)
            printf("%s\n", dests[i]);
    }
    if (ctx->json) {
        json_t *out = json_pack("{s:s, s:s, s:s, s:O}", "name", m->name, "version", m->version,
                                "manifest_sha256", digest, "files", files_json);

        if (out && args->channel) {
            json_object_set_new(out, "channel", json_string(args->channel));
            json_object_set_new(out, "sequence", json_integer((json_int_t)sequence));
        }
        err = cli_print_json(out);
    }
done:
    for (size_t i = 0; staged && i < m->file_count; i++) {
        /* after a failure the staging files go, unless the source resumes from them: an
         * interrupted download is kept, bytes that failed verification never are */
        if (staged[i] && (!source->resumable || err == IMGSTORE_EVERIFY))
            unlink(staged[i]);
        free(staged[i]);
    }
    for (size_t i = 0; dests && i < m->file_count; i++)
        free(dests[i]);
    free(staged);
    free(dests);
    json_decref(files_json);
    return err;
}

typedef struct {
    imgstore_store *store;
    const imgstore_manifest *m;
} local_source;

static int local_stage(char **staged_out, const imgstore_manifest_file *file, const char *dest,
                       const cli_pull_progress *progress, void *payload)
{
    local_source *src = payload;
    file_sink sink = {-1, progress->done, progress->total, progress->bar};

    return stage_file(staged_out, src->store, src->m, file, dest, &sink);
}

static int local_to_stdout(const imgstore_manifest *m, void *payload)
{
    return pull_to_stdout(((local_source *)payload)->store, m);
}

int cli_cmd_pull(cli_ctx *ctx, int argc, char **argv)
{
    if (cli_remote_selected(argc, argv)) /* --server: remote mode */
        return cli_remote_cmd_pull(ctx, argc, argv);
    imgstore_store *store = NULL;
    imgstore_manifest *m = NULL;
    cli_pull_args args;
    char digest[65];
    uint64_t sequence = 0;
    local_source src = {NULL, NULL};
    cli_pull_source source = {local_stage, local_to_stdout, &src, false};
    int code, err;

    if (cli_pull_parse(ctx, argc, argv, &args, &code) < 0)
        return code;
    if ((err = cli_open_store(&store, ctx, false)) == 0 &&
        (err = resolve_manifest(&m, digest, &sequence, store, args.name, args.version,
                                args.channel)) == 0) {
        src.store = store;
        src.m = m;
        err = cli_pull_write(ctx, &args, m, digest, sequence, &source);
    }
    imgstore_manifest_free(m);
    imgstore_store_free(store);
    cli_pull_args_free(&args);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}
