/*
 * Retention commands (issue #12): prune (remove old versions no channel needs, one signed
 * commit) and which (every version and channel that held a file's bytes). Both act on a local
 * store only, like gc and reindex (docs/cli.md says why).
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    OPT_KEEP = OPT_FIRST_LOCAL,
    OPT_OLDER_THAN,
    OPT_DRY_RUN,
    OPT_KEEP_HISTORY,
    OPT_ARCHIVE,
    OPT_NO_HISTORY
};

static int parse_count(long long *out, const char *text, long long max)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno || !end || *end || end == text || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

static void print_items(const char *verb, const imgstore_prune_item *items, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        char size[32];

        if (items[i].reason)
            printf("%s %s@%s: %s\n", verb, cli_safe(items[i].name), cli_safe(items[i].version),
                   items[i].reason);
        else
            printf("%s %s@%s (created %s, %zu files, %s)\n", verb, cli_safe(items[i].name),
                   cli_safe(items[i].version), cli_safe(items[i].created), items[i].files,
                   cli_human_size(size, sizeof(size), items[i].size));
    }
}

int cli_cmd_prune(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS,
                                            {"keep", required_argument, NULL, OPT_KEEP},
                                            {"older-than", required_argument, NULL, OPT_OLDER_THAN},
                                            {"dry-run", no_argument, NULL, OPT_DRY_RUN},
                                            {"keep-history", no_argument, NULL, OPT_KEEP_HISTORY},
                                            {"archive", required_argument, NULL, OPT_ARCHIVE},
                                            {NULL, 0, NULL, 0}};
    imgstore_prune_opts opts = {.cut = true};
    imgstore_prune_plan *plan = NULL;
    imgstore_store *store = NULL;
    cli_signers signers = {0};
    bool dry_run = false, has_keep = false;
    long long value = 0;
    char freed[32];
    int code = -1, err, opt;

    while ((opt = cli_next_option(ctx, argc, argv, "", options, NULL, &code)) != -1) {
        if (opt == OPT_KEEP) {
            if (parse_count(&value, optarg, 1000000000) < 0 || value < 1)
                return cli_usage_error(ctx, "--keep: a number of versions, at least 1");
            opts.keep = (size_t)value;
            has_keep = true;
        } else if (opt == OPT_OLDER_THAN) {
            if (parse_count(&value, optarg, 365LL * 1000) < 0)
                return cli_usage_error(ctx, "--older-than: a number of days");
            opts.older_than = value * 86400;
        } else if (opt == OPT_DRY_RUN) {
            dry_run = true;
        } else if (opt == OPT_KEEP_HISTORY) {
            opts.cut = false;
        } else if (opt == OPT_ARCHIVE) {
            opts.archive = optarg;
        }
    }
    if (code >= 0)
        return code;
    if ((code = cli_local_only(ctx, argc, argv)) >= 0)
        return code;
    if (!has_keep)
        return cli_usage_error(ctx, "--keep N is required");
    if (opts.archive && !opts.cut)
        return cli_usage_error(ctx, "--archive is of the history a cut drops: not with "
                                    "--keep-history");
    if (optind + 1 < argc)
        return cli_usage_error(ctx, "unexpected argument '%s'", argv[optind + 1]);
    opts.name = optind < argc ? argv[optind] : NULL;
    if ((err = cli_open_store(&store, ctx, false)) < 0)
        goto done;
    if (dry_run) {
        err = imgstore_store_prune_plan(&plan, store, &opts);
    } else if ((err = cli_signers_load(&signers, ctx)) == 0) {
        imgstore_signers view = cli_signers_view(&signers);
        char *actor = cli_actor(ctx);

        err = actor ? imgstore_store_prune(&plan, store, &opts, &view, actor)
                    : imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        free(actor);
    }
    if (err < 0)
        goto done;
    if (ctx->json) {
        json_t *doc = imgstore_store_prune_plan_to_json(plan);

        if (doc)
            json_object_set_new(doc, "dry_run", json_boolean(dry_run));
        err = cli_print_json(doc);
        goto done;
    }
    print_items(dry_run ? "would remove" : "removed", plan->removed, plan->removed_count);
    print_items("kept", plan->kept, plan->kept_count);
    printf("%s %zu version%s, %llu files, %llu chunks, %s no remaining version shares "
           "(%llu manifests read)\n",
           dry_run ? "would free" : "freed", plan->removed_count,
           plan->removed_count == 1 ? "" : "s", (unsigned long long)plan->files_freed,
           (unsigned long long)plan->chunks_freed,
           cli_human_size(freed, sizeof(freed), plan->bytes_freed),
           (unsigned long long)plan->manifests_read);
    if (plan->files_unchecked)
        printf("%llu removed file%s counted as shared: without a digest index nothing says no "
               "other image holds %s (run 'imgstore reindex' for exact figures)\n",
               (unsigned long long)plan->files_unchecked, plan->files_unchecked == 1 ? "" : "s",
               plan->files_unchecked == 1 ? "it" : "them");
    if (plan->cut && dry_run)
        printf("would cut history: a new root at op %llu archiving %zu channel move%s and %zu "
               "policy step%s; 'imgstore gc --prune' then frees the removed bytes\n",
               (unsigned long long)plan->cut_op, plan->cut_moves, plan->cut_moves == 1 ? "" : "s",
               plan->cut_policies, plan->cut_policies == 1 ? "" : "s");
    else if (plan->cut)
        printf("commit %s, cut %s (op %llu, %zu channel move%s and %zu policy step%s "
               "archived); 'imgstore gc --prune' frees the removed bytes; clones made before "
               "must fetch and reset (docs/format.md)\n",
               plan->commit, plan->cut_commit, (unsigned long long)plan->cut_op, plan->cut_moves,
               plan->cut_moves == 1 ? "" : "s", plan->cut_policies,
               plan->cut_policies == 1 ? "" : "s");
    else if (plan->commit[0])
        printf("commit %s; the objects stay until 'imgstore gc --prune' (docs/format.md)\n",
               plan->commit);
done:
    imgstore_prune_plan_free(plan);
    cli_signers_free(&signers);
    imgstore_store_free(store);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

/* The SHA-256 of a file, read through a fixed buffer (never the whole file in memory). */
static int hash_file(char out[65], const char *path)
{
    imgstore_sha256 *sha = NULL;
    static unsigned char buf[1 << 20];
    int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;

    if (fd < 0)
        return imgstore_error_set(errno == ENOENT ? IMGSTORE_ENOTFOUND : IMGSTORE_ERROR, "%s: %s",
                                  path, strerror(errno));
    if ((err = imgstore_sha256_new(&sha)) == 0) {
        for (;;) {
            ssize_t n = read(fd, buf, sizeof(buf));

            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                err = imgstore_error_set(IMGSTORE_ERROR, "%s: %s", path, strerror(errno));
                break;
            }
            if (n == 0)
                break;
            imgstore_sha256_update(sha, buf, (size_t)n);
        }
        if (err == 0)
            imgstore_sha256_final_hex(sha, out);
    }
    imgstore_sha256_free(sha);
    close(fd);
    return err;
}

/* FILE if it names a file, else a SHA-256 in hex (either case). */
static int digest_arg(char out[65], const char *arg)
{
    if (access(arg, F_OK) == 0)
        return hash_file(out, arg);
    if (strlen(arg) == 64 && strspn(arg, "0123456789abcdefABCDEF") == 64) {
        for (size_t i = 0; i < 64; i++)
            out[i] = (char)(arg[i] >= 'A' && arg[i] <= 'F' ? arg[i] - 'A' + 'a' : arg[i]);
        out[64] = '\0';
        return 0;
    }
    return imgstore_error_set(IMGSTORE_EINVALID, "'%s' is neither a file nor a SHA-256",
                              cli_safe(arg));
}

static void print_channels(const char *label, char **channels, size_t count)
{
    if (count == 0)
        return;
    printf(" %s=", label);
    for (size_t i = 0; i < count; i++)
        printf("%s%s", i ? "," : "", cli_safe(channels[i]));
}

int cli_cmd_which(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        CLI_COMMON_OPTIONS, {"no-history", no_argument, NULL, OPT_NO_HISTORY}, {NULL, 0, NULL, 0}};
    imgstore_store *store = NULL;
    imgstore_where *rows = NULL;
    size_t count = 0;
    bool history = true;
    char sha256[65];
    int code = -1, err, opt;

    while ((opt = cli_next_option(ctx, argc, argv, "", options, NULL, &code)) != -1)
        if (opt == OPT_NO_HISTORY)
            history = false;
    if (code >= 0)
        return code;
    if ((code = cli_local_only(ctx, argc, argv)) >= 0)
        return code;
    if (optind + 1 != argc)
        return cli_usage_error(ctx, "give one FILE or SHA256");
    if ((err = digest_arg(sha256, argv[optind])) < 0 ||
        (err = cli_open_store(&store, ctx, false)) < 0 ||
        (err = imgstore_store_which(&rows, &count, store, sha256, history)) < 0)
        goto done;
    if (ctx->json) {
        err = cli_print_json(json_pack("{s:s, s:o}", "sha256", sha256, "versions",
                                       imgstore_store_where_to_json(rows, count)));
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        printf("%s@%s %s%s", cli_safe(rows[i].name), cli_safe(rows[i].version),
               cli_safe(rows[i].path), rows[i].stored ? "" : " (pruned)");
        print_channels("running", rows[i].running, rows[i].running_count);
        print_channels("stack", rows[i].stacked, rows[i].stacked_count);
        print_channels("ran", rows[i].ran, rows[i].ran_count);
        printf("\n");
    }
    if (count == 0)
        err = imgstore_error_set(IMGSTORE_ENOTFOUND, "no version ever held %s", sha256);
done:
    imgstore_where_free(rows, count);
    imgstore_store_free(store);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}
