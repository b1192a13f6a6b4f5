/*
 * Store-wide commands: init, verify (re-hash everything), fsck (structure only) and gc
 * (pack loose objects).
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* init signs the new store's first commit and policy: with the keys given, else the
 * default key, which is created (unencrypted, mode 0600) when it does not exist yet. */
static int open_or_create(imgstore_store **out, const cli_ctx *ctx)
{
    cli_signers signers = {0};
    imgstore_sign_key *made = NULL;
    char *path = NULL, *key_path = NULL, *pub_line = NULL, *actor = cli_actor(ctx);
    int err;

    *out = NULL;
    if (!ctx->repo && (err = imgstore_store_default_path(&path)) < 0)
        goto done;
    err = cli_signers_load(&signers, ctx);
    if (err == IMGSTORE_ENOTFOUND && ctx->key_path_count == 0 && !ctx->agent) {
        imgstore_sign_pubkey pub;

        if (!(key_path = cli_default_key_path())) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            goto done;
        }
        if ((err = cli_key_create(&made, key_path, actor)) < 0)
            goto done;
        imgstore_sign_key_public(&pub, made);
        if (imgstore_sign_pubkey_format(&pub_line, &pub) == 0)
            fprintf(stderr, "imgstore init: created signing key %s\n  %s\n", key_path, pub_line);
        signers.keys[0] = made;
        signers.count = 1;
        made = NULL;
    } else if (err < 0) {
        goto done;
    }
    err = imgstore_store_init_trusted(out, ctx->repo ? ctx->repo : path, signers.keys[0], actor);
done:
    cli_signers_free(&signers);
    imgstore_sign_key_free(made);
    free(pub_line);
    free(key_path);
    free(path);
    free(actor);
    return err;
}

int cli_cmd_init(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_store *store = NULL;
    int code, err;
    int first = cli_parse_common(ctx, argc, argv, &code);

    if (first < 0)
        return code;
    if ((code = cli_local_only(ctx, argc, argv)) >= 0)
        return code;
    if (first != argc)
        return cli_usage_error(ctx, "unexpected argument '%s'", argv[first]);
    if ((err = open_or_create(&store, ctx)) < 0)
        return cli_fail(ctx, err);
    if (ctx->json)
        err = cli_print_json(json_pack("{s:s}", "path", imgstore_store_path(store)));
    else
        printf("%s\n", imgstore_store_path(store));
    imgstore_store_free(store);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

typedef struct {
    const cli_ctx *ctx;
    json_t *rows;     /* versions (verify) or problems (fsck) */
    json_t *channels; /* verify: channel states */
    json_t *policies; /* verify: the policy chain */
} report_ctx;

/* One row per version, channel and policy: ok, pending (fewer signatures than the role's
 * threshold: stored, never handed out) or FAILED with the reason. */
static void report_row(const imgstore_verify_result *r, void *payload)
{
    report_ctx *rc = payload;
    const char *kind = r->kind ? r->kind : "version";
    const char *status = r->status ? "failed" : r->signatures < r->threshold ? "pending" : "ok";
    bool is_version = strcmp(kind, "version") == 0;
    char what[300];

    if (strcmp(kind, "channel") == 0)
        snprintf(what, sizeof(what), "channel %s/%s", r->name, r->version);
    else if (strcmp(kind, "policy") == 0)
        snprintf(what, sizeof(what), "policy %s", r->version);
    else
        snprintf(what, sizeof(what), "%s%s%s", r->name, *r->version ? "@" : "", r->version);
    if (rc->ctx->json) {
        json_t *row =
            json_pack("{s:s, s:s, s:s}", "name", r->name, "version", r->version, "status", status);

        if (is_version)
            json_object_set_new(row, "bytes", json_integer((json_int_t)r->bytes));
        if (r->threshold) {
            json_object_set_new(row, "signatures", json_integer((json_int_t)r->signatures));
            json_object_set_new(row, "threshold", json_integer((json_int_t)r->threshold));
        }
        if (r->status)
            json_object_set_new(row, "message", json_string(r->message));
        json_array_append_new(strcmp(kind, "channel") == 0  ? rc->channels
                              : strcmp(kind, "policy") == 0 ? rc->policies
                                                            : rc->rows,
                              row);
    } else if (r->status) {
        printf("FAILED  %s  %s\n", what, cli_safe(r->message));
    } else {
        char size[32] = "";

        if (is_version)
            cli_human_size(size, sizeof(size), r->bytes);
        printf("%-8s%s  %s%ssignatures %zu/%u\n", status, what, size, *size ? "  " : "",
               r->signatures, r->threshold);
    }
}

static int finish(cli_ctx *ctx, report_ctx *rc, const char *key, int err)
{
    if (ctx->json) {
        json_t *out = json_pack("{s:b, s:O}", "ok", err == 0, key, rc->rows);

        if (strcmp(key, "versions") == 0) {
            json_object_set(out, "channels", rc->channels);
            json_object_set(out, "policies", rc->policies);
        }
        if (err < 0 && err != IMGSTORE_EVERIFY)
            json_object_set_new(out, "error", json_string(imgstore_error_last()));
        cli_print_json(out);
    }
    json_decref(rc->rows);
    json_decref(rc->channels);
    json_decref(rc->policies);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

int cli_cmd_verify(cli_ctx *ctx, int argc, char **argv)
{
    if (cli_remote_selected(argc, argv)) /* --server: remote mode */
        return cli_remote_cmd_verify(ctx, argc, argv);
    imgstore_store *store = NULL;
    report_ctx rc = {ctx, json_array(), json_array(), json_array()};
    char *name = NULL, *version = NULL;
    cli_read_args args;
    int code, err;
    int first = cli_read_parse(ctx, argc, argv, &args, false, &code);

    if (first < 0 || argc - first > 1) {
        json_decref(rc.rows);
        json_decref(rc.channels);
        json_decref(rc.policies);
        return first < 0 ? code : cli_usage_error(ctx, "expected at most one NAME[@VERSION]");
    }
    if (first < argc && (err = cli_split_ref(&name, &version, argv[first])) < 0)
        goto done;
    if ((err = cli_open_store(&store, ctx, false)) == 0)
        err = imgstore_store_verify(store, name, version, report_row, &rc);
    /* the policy chain and channel states, when the whole store is checked */
    if (store && !name && (err == 0 || err == IMGSTORE_EVERIFY)) {
        int trust_err = imgstore_store_verify_trust(store, report_row, &rc);

        if (trust_err < 0)
            err = trust_err;
    }
done:
    imgstore_store_free(store);
    free(name);
    free(version);
    return finish(ctx, &rc, "versions", err);
}

int cli_cmd_fsck(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_store *store = NULL;
    report_ctx rc = {ctx, json_array(), json_array(), json_array()};
    int code, err;
    int first = cli_parse_common(ctx, argc, argv, &code);

    if (first < 0 || first != argc) {
        json_decref(rc.rows);
        json_decref(rc.channels);
        json_decref(rc.policies);
        return first < 0 ? code : cli_usage_error(ctx, "unexpected argument '%s'", argv[first]);
    }
    if ((code = cli_local_only(ctx, argc, argv)) >= 0) {
        json_decref(rc.rows);
        json_decref(rc.channels);
        json_decref(rc.policies);
        return code;
    }
    if ((err = cli_open_store(&store, ctx, false)) == 0)
        err = imgstore_store_fsck(store, report_row, &rc);
    if (err == 0 && !ctx->json)
        printf("ok\n");
    imgstore_store_free(store);
    return finish(ctx, &rc, "problems", err);
}

int cli_cmd_reindex(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        CLI_COMMON_OPTIONS, {"check", no_argument, NULL, OPT_FIRST_LOCAL}, {NULL, 0, NULL, 0}};
    imgstore_store *store = NULL;
    cli_signers signers = {0};
    bool check = false, changed = false;
    int code = -1, err, opt;

    while ((opt = cli_next_option(ctx, argc, argv, "", options, NULL, &code)) != -1)
        check = check || opt == OPT_FIRST_LOCAL;
    if (code >= 0)
        return code;
    if (optind != argc)
        return cli_usage_error(ctx, "unexpected argument '%s'", argv[optind]);
    if ((code = cli_local_only(ctx, argc, argv)) >= 0)
        return code;
    if ((err = cli_open_store(&store, ctx, false)) == 0) {
        if (check) {
            err = imgstore_store_index_check(store);
        } else if ((err = cli_signers_load(&signers, ctx)) == 0) {
            char *actor = cli_actor(ctx);

            err = actor ? imgstore_store_reindex(&changed, store, actor, signers.keys[0])
                        : imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            free(actor);
        }
    }
    if (err == 0) {
        const char *said = check     ? "the indexes match a rebuild"
                           : changed ? "rebuilt the indexes"
                                     : "the indexes were current";

        if (ctx->json)
            err = cli_print_json(json_pack("{s:b, s:b}", "ok", 1, "changed", changed));
        else
            printf("%s\n", said);
    }
    cli_signers_free(&signers);
    imgstore_store_free(store);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

int cli_cmd_gc(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS,
                                            {"all", no_argument, NULL, OPT_ALL},
                                            {"prune", optional_argument, NULL, OPT_FIRST_LOCAL},
                                            {NULL, 0, NULL, 0}};
    imgstore_gc_opts opts = {0};
    imgstore_gc_stats s;
    imgstore_store *store = NULL;
    char before[32], after[32];
    int opt, code = -1, err;

    while ((opt = cli_next_option(ctx, argc, argv, "", options, NULL, &code)) != -1) {
        if (opt == OPT_ALL) {
            opts.all = true;
        } else if (opt == OPT_FIRST_LOCAL) { /* --prune[=now|DAYS], as git gc --prune */
            char *end = NULL;
            long days = optarg ? strtol(optarg, &end, 10) : 14;

            opts.prune = true;
            if (optarg && strcmp(optarg, "now") == 0)
                days = 0;
            else if (optarg && (!*optarg || *end || days < 0 || days > 36500))
                return cli_usage_error(ctx, "--prune=now or --prune=DAYS (default 14)");
            opts.prune_expire = (int64_t)days * 86400;
        }
    }
    if (code >= 0)
        return code;
    if ((code = cli_local_only(ctx, argc, argv)) >= 0)
        return code;
    if (optind != argc)
        return cli_usage_error(ctx, "unexpected argument '%s'", argv[optind]);
    if ((err = cli_open_store(&store, ctx, false)) == 0)
        err = imgstore_store_gc(&s, store, &opts);
    imgstore_store_free(store);
    if (err < 0)
        return cli_fail(ctx, err);
    if (s.damaged)
        fprintf(stderr,
                "imgstore gc: %llu objects do not match their ids and were left loose; "
                "run 'imgstore fsck'\n",
                (unsigned long long)s.damaged);
    if (ctx->json) {
        err = cli_print_json(json_pack(
            "{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "skipped", s.skipped,
            "objects_packed", (json_int_t)s.objects_packed, "loose_before",
            (json_int_t)s.loose_before, "loose_after", (json_int_t)s.loose_after, "bytes_before",
            (json_int_t)s.bytes_before, "bytes_after", (json_int_t)s.bytes_after, "packs_written",
            (json_int_t)s.packs_written, "packs_removed", (json_int_t)s.packs_removed, "packs",
            (json_int_t)s.packs, "damaged", (json_int_t)s.damaged, "objects_pruned",
            (json_int_t)s.objects_pruned, "bytes_pruned", (json_int_t)s.bytes_pruned));
        return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
    }
    if (s.skipped) {
        printf("skipped: another gc is packing this store\n");
        return CLI_EXIT_OK;
    }
    if (opts.prune)
        printf("pruned %llu unreachable objects (%s loose)\n", (unsigned long long)s.objects_pruned,
               cli_human_size(before, sizeof(before), s.bytes_pruned));
    printf("packed %llu objects; loose objects %llu -> %llu; %llu packs (%llu written, "
           "%llu combined away); objects %s -> %s\n",
           (unsigned long long)s.objects_packed, (unsigned long long)s.loose_before,
           (unsigned long long)s.loose_after, (unsigned long long)s.packs,
           (unsigned long long)s.packs_written, (unsigned long long)s.packs_removed,
           cli_human_size(before, sizeof(before), s.bytes_before),
           cli_human_size(after, sizeof(after), s.bytes_after));
    return CLI_EXIT_OK;
}
