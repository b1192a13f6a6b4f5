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

int cli_cmd_push(cli_ctx *ctx, int argc, char **argv)
{
    if (cli_remote_selected(argc, argv)) /* --server: remote mode */
        return cli_remote_cmd_push(ctx, argc, argv);
    static const struct option options[] = {CLI_COMMON_OPTIONS,
                                            {"name", required_argument, NULL, OPT_NAME},
                                            {"version", required_argument, NULL, OPT_VERSION},
                                            {"label", required_argument, NULL, OPT_LABEL},
                                            {"source", required_argument, NULL, OPT_SOURCE},
                                            {"kind", required_argument, NULL, OPT_KIND},
                                            {NULL, 0, NULL, 0}};
    imgstore_label labels[IMGSTORE_MAX_LABELS];
    imgstore_push_opts opts = {0};
    imgstore_store *store = NULL;
    imgstore_push *push = NULL;
    imgstore_manifest *manifest = NULL;
    cli_signers signers = {0};
    cli_progress progress;
    char *name = NULL, *actor = NULL, *source = NULL, *kind = NULL;
    size_t label_count = 0;
    bool created = false;
    int opt, code = -1, err = 0;

    memset(labels, 0, sizeof(labels));
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (cli_common_option(ctx, opt, optarg, &code)) {
            if (code >= 0)
                goto done;
            continue;
        }
        switch (opt) {
        case OPT_NAME:
            opts.name = optarg;
            break;
        case OPT_VERSION:
            opts.version = optarg;
            break;
        case OPT_KIND:
            kind = optarg;
            break;
        case OPT_SOURCE:
            free(source);
            source = strdup(optarg);
            break;
        case OPT_LABEL: {
            char *eq = strchr(optarg, '=');

            if (!eq || eq == optarg) {
                code = cli_usage_error(ctx, "--label wants KEY=VALUE, got '%s'", optarg);
                goto done;
            }
            if (label_count == IMGSTORE_MAX_LABELS) {
                code = cli_usage_error(ctx, "at most %d labels", IMGSTORE_MAX_LABELS);
                goto done;
            }
            *eq = '\0';
            labels[label_count].key = optarg;
            labels[label_count++].value = eq + 1;
            break;
        }
        }
    }
    if (optind >= argc) {
        code = cli_usage_error(ctx, "no FILE to push");
        goto done;
    }
    if (source) {
        char *at = strrchr(source, '@');

        if (!at || at == source || !at[1]) {
            code = cli_usage_error(ctx, "--source wants URL@COMMIT, got '%s'", source);
            goto done;
        }
        *at = '\0';
        opts.source_repository = source;
        opts.source_commit = at + 1;
    }
    if (!opts.name) {
        if (!(name = cli_default_image_name(argv[optind])))
            goto oom;
        if (imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, name) < 0) {
            code = cli_usage_error(ctx, "cannot use '%s' (from %s) as the image name; pass --name",
                                   name, cli_base_name(argv[optind]));
            goto done;
        }
        opts.name = name;
    }
    if (!(actor = cli_actor(ctx)))
        goto oom;
    opts.actor = actor;
    opts.labels = labels;
    opts.label_count = label_count;
    cli_progress_init(&progress, opts.name, ctx->json);
    opts.progress = cli_progress_update;
    opts.progress_payload = &progress;
    if ((err = cli_signers_load(&signers, ctx)) < 0)
        goto done;
    opts.signers = cli_signers_view(&signers);
    if ((err = cli_open_store(&store, ctx, false)) < 0 ||
        (err = imgstore_store_push_begin(&push, store, &opts)) < 0)
        goto done;
    for (int i = optind; i < argc && err == 0; i++)
        err = push_one(push, argv[i], kind);
    if (err == 0)
        err = imgstore_store_push_commit(push, &manifest, &created);
    cli_progress_done(&progress);
    if (err < 0)
        goto done;
    if (ctx->json) {
        json_t *out = json_object();

        json_object_set_new(out, "created", json_boolean(created));
        json_object_set_new(out, "manifest", imgstore_schema_manifest_to_json(manifest));
        err = cli_print_json(out);
    } else {
        imgstore_trust_status trust;

        printf("%s@%s\n", manifest->name, manifest->version);
        if (imgstore_store_version_trust(&trust, store, manifest->name, manifest->version) == 0 &&
            !trust.trusted)
            fprintf(stderr,
                    "imgstore push: %s@%s has %zu of the %u release signatures it needs; add "
                    "them with imgstore sign\n",
                    manifest->name, manifest->version, trust.valid, trust.threshold);
        if (!created)
            fprintf(stderr, "imgstore push: %s@%s was already stored with these bytes\n",
                    manifest->name, manifest->version);
    }
    goto done;
oom:
    err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
done:
    if (code < 0)
        code = err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
    imgstore_manifest_free(manifest);
    imgstore_store_push_free(push);
    imgstore_store_free(store);
    cli_signers_free(&signers);
    free(actor);
    free(name);
    free(source);
    return code;
}
