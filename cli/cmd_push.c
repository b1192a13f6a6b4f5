/*
 * imgstore push: stream local files into the store as one version. The store does the
 * chunking, hashing and format detection; this file maps argv to push options and prints
 * NAME@VERSION on stdout so that CI scripts can capture it.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { OPT_NAME = OPT_FIRST_LOCAL, OPT_VERSION, OPT_LABEL, OPT_SOURCE, OPT_KIND };

static int fd_read(size_t *out_len, void *buf, size_t cap, void *payload)
{
    int fd = *(int *)payload;
    ssize_t n;

    do {
        n = read(fd, buf, cap);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "read failed: %s", strerror(errno));
    *out_len = (size_t)n;
    return 0;
}

static int push_one(imgstore_push *push, const char *path, const char *kind)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int err;

    if (fd < 0)
        return imgstore_error_set(errno == ENOENT ? IMGSTORE_ENOTFOUND : IMGSTORE_ERROR,
                                  "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: not a regular file", path);
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    err = imgstore_store_push_file_stream(push, cli_base_name(path), kind, (uint64_t)st.st_size,
                                          fd_read, &fd);
    close(fd);
    return err;
}

/* The store's rule for a label value, checked before a byte is read or sent, with the
 * store's message (store/push.c), so both modes refuse it alike. */
static int check_label_value(const char *label, const char *value)
{
    char field[IMGSTORE_NAME_MAX + 8];

    snprintf(field, sizeof(field), "label %.*s", (int)(value - 1 - label), label);
    return imgstore_schema_check_text(field, value);
}

int cli_push_parse(cli_ctx *ctx, int argc, char **argv, cli_push_args *args, int *code)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS,
                                            CLI_REMOTE_OPTIONS,
                                            {"name", required_argument, NULL, OPT_NAME},
                                            {"version", required_argument, NULL, OPT_VERSION},
                                            {"label", required_argument, NULL, OPT_LABEL},
                                            {"source", required_argument, NULL, OPT_SOURCE},
                                            {"kind", required_argument, NULL, OPT_KIND},
                                            {NULL, 0, NULL, 0}};
    const char *name = NULL, *at, *eq;
    char *file_version = NULL;
    int opt, err;

    *code = -1;
    memset(args, 0, sizeof(*args));
    while ((opt = cli_next_option(ctx, argc, argv, "", options, &args->remote, code)) != -1) {
        switch (opt) {
        case OPT_NAME:
            name = optarg;
            break;
        case OPT_VERSION:
            args->version = optarg;
            break;
        case OPT_KIND:
            args->kind = optarg;
            break;
        case OPT_SOURCE:
            at = strrchr(optarg, '@');
            if (!at || at == optarg || !at[1]) {
                *code = cli_usage_error(ctx, "--source wants URL@COMMIT, got '%s'", optarg);
                return -1;
            }
            if ((err = imgstore_schema_check_text("source", optarg)) < 0) {
                *code = cli_fail(ctx, err);
                return -1;
            }
            args->source = optarg;
            break;
        case OPT_LABEL:
            eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                *code = cli_usage_error(ctx, "--label wants KEY=VALUE, got '%s'", optarg);
                return -1;
            }
            if (args->label_count == IMGSTORE_MAX_LABELS) {
                *code = cli_usage_error(ctx, "at most %d labels", IMGSTORE_MAX_LABELS);
                return -1;
            }
            if ((err = check_label_value(optarg, eq + 1)) < 0) {
                *code = cli_fail(ctx, err);
                return -1;
            }
            args->labels[args->label_count++] = optarg;
            break;
        }
    }
    if (*code >= 0)
        return -1;
    if (optind >= argc) {
        *code = cli_usage_error(ctx, "no FILE to push");
        return -1;
    }
    if (argc - optind > IMGSTORE_MAX_FILES) {
        *code = cli_usage_error(ctx, "at most %d files in a version", IMGSTORE_MAX_FILES);
        return -1;
    }
    args->files = &argv[optind];
    args->file_count = (size_t)(argc - optind);
    /* a name given is checked where it is used, with the rule in the message */
    if (name) {
        if (!(args->name = strdup(name))) {
            *code = cli_fail(ctx, imgstore_error_set(IMGSTORE_ERROR, "out of memory"));
            return -1;
        }
        return 0;
    }
    if ((err = cli_default_image_name(&args->name, &file_version, argv[optind])) < 0) {
        *code = err == IMGSTORE_EINVALID ? cli_usage_error(ctx, "%s", imgstore_error_last())
                                         : cli_fail(ctx, err);
        return -1;
    }
    if (!args->version)
        args->version = args->file_version = file_version;
    else
        free(file_version);
    return 0;
}

int cli_print_pushed(const cli_ctx *ctx, const imgstore_manifest *m, bool created,
                     const imgstore_trust_status *status)
{
    if (ctx->json)
        return cli_print_json(json_pack("{s:b, s:o}", "created", created, "manifest",
                                        imgstore_schema_manifest_to_json(m)));
    printf("%s@%s\n", m->name, m->version);
    if (!status->trusted)
        fprintf(stderr,
                "imgstore push: %s@%s is pending: it has %zu of the %u release signatures it "
                "needs; sign it with imgstore sign %s@%s and a release key (--key)\n",
                m->name, m->version, status->valid, status->threshold, m->name, m->version);
    if (!created)
        fprintf(stderr, "imgstore push: %s@%s was already stored with these bytes\n", m->name,
                m->version);
    return 0;
}

int cli_cmd_push(cli_ctx *ctx, int argc, char **argv)
{
    if (cli_remote_selected(argc, argv)) /* --server: remote mode */
        return cli_remote_cmd_push(ctx, argc, argv);
    imgstore_label labels[IMGSTORE_MAX_LABELS];
    char *label_copies[IMGSTORE_MAX_LABELS] = {NULL}, *source = NULL, *actor = NULL;
    imgstore_push_opts opts = {0};
    imgstore_store *store = NULL;
    imgstore_push *push = NULL;
    imgstore_manifest *manifest = NULL;
    imgstore_trust_status status = {.trusted = true};
    cli_signers signers = {0};
    cli_push_args args;
    cli_progress progress;
    bool created = false;
    int code, err = 0;

    if (cli_push_parse(ctx, argc, argv, &args, &code) < 0)
        return code;
    opts.name = args.name;
    opts.version = args.version;
    for (size_t i = 0; i < args.label_count; i++) {
        if (!(label_copies[i] = strdup(args.labels[i])))
            goto oom;
        labels[i].key = label_copies[i];
        labels[i].value = strchr(label_copies[i], '=');
        *labels[i].value++ = '\0';
    }
    opts.labels = labels;
    opts.label_count = args.label_count;
    if (args.source) {
        if (!(source = strdup(args.source)))
            goto oom;
        *strrchr(source, '@') = '\0';
        opts.source_repository = source;
        opts.source_commit = source + strlen(source) + 1;
    }
    if (!(actor = cli_actor(ctx)))
        goto oom;
    opts.actor = actor;
    cli_progress_init(&progress, opts.name, ctx);
    opts.progress = cli_progress_update;
    opts.progress_payload = &progress;
    /* the store first: on a new machine the answer is `imgstore init`, which makes the key
     * too, not `imgstore key generate` (issue #10) */
    if ((err = cli_open_store(&store, ctx, false)) < 0 ||
        (err = cli_signers_load(&signers, ctx)) < 0)
        goto done;
    opts.signers = cli_signers_view(&signers);
    if ((err = imgstore_store_push_begin(&push, store, &opts)) < 0)
        goto done;
    for (size_t i = 0; i < args.file_count && err == 0; i++)
        err = push_one(push, args.files[i], args.kind);
    if (err == 0)
        err = imgstore_store_push_commit(push, &manifest, &created);
    cli_progress_done(&progress);
    if (err < 0)
        goto done;
    /* stored either way: a trust status that cannot be read only loses the reminder */
    if (imgstore_store_version_trust(&status, store, manifest->name, manifest->version) < 0)
        status.trusted = true;
    err = cli_print_pushed(ctx, manifest, created, &status);
    goto done;
oom:
    err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
done:
    imgstore_manifest_free(manifest);
    imgstore_store_push_free(push);
    imgstore_store_free(store);
    cli_signers_free(&signers);
    for (size_t i = 0; i < args.label_count; i++)
        free(label_copies[i]);
    free(actor);
    free(source);
    free(args.name);
    free(args.file_version);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}
