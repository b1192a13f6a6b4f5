/*
 * Store-wide commands: init, verify (re-hash everything) and fsck (structure only).
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_cmd_init(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_store *store = NULL;
    int code, err;
    int first = cli_parse_common(ctx, argc, argv, &code);

    if (first < 0)
        return code;
    if (first != argc)
        return cli_usage_error(ctx, "unexpected argument '%s'", argv[first]);
    if ((err = cli_open_store(&store, ctx, true)) < 0)
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
    json_t *rows;
} report_ctx;

static void report_row(const imgstore_verify_result *r, void *payload)
{
    report_ctx *rc = payload;

    if (rc->ctx->json) {
        json_t *row =
            json_pack("{s:s, s:s, s:s, s:I}", "name", r->name, "version", r->version, "status",
                      r->status ? "failed" : "ok", "bytes", (json_int_t)r->bytes);

        if (r->status)
            json_object_set_new(row, "message", json_string(r->message));
        json_array_append_new(rc->rows, row);
    } else if (r->status) {
        printf("FAILED  %s%s%s  %s\n", r->name, *r->version ? "@" : "", r->version, r->message);
    } else {
        char size[32];

        printf("ok      %s@%s  %s\n", r->name, r->version,
               cli_human_size(size, sizeof(size), r->bytes));
    }
}

static int finish(cli_ctx *ctx, report_ctx *rc, const char *key, int err)
{
    if (ctx->json) {
        json_t *out = json_pack("{s:b, s:O}", "ok", err == 0, key, rc->rows);

        if (err < 0 && err != IMGSTORE_EVERIFY)
            json_object_set_new(out, "error", json_string(imgstore_error_last()));
        cli_print_json(out);
    }
    json_decref(rc->rows);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}

int cli_cmd_verify(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_store *store = NULL;
    report_ctx rc = {ctx, json_array()};
    char *name = NULL, *version = NULL;
    int code, err;
    int first = cli_parse_common(ctx, argc, argv, &code);

    if (first < 0) {
        json_decref(rc.rows);
        return code;
    }
    if (argc - first > 1) {
        json_decref(rc.rows);
        return cli_usage_error(ctx, "expected at most one NAME[@VERSION]");
    }
    if (first < argc && (err = cli_split_ref(&name, &version, argv[first])) < 0)
        goto done;
    if ((err = cli_open_store(&store, ctx, false)) == 0)
        err = imgstore_store_verify(store, name, version, report_row, &rc);
done:
    imgstore_store_free(store);
    free(name);
    free(version);
    return finish(ctx, &rc, "versions", err);
}

int cli_cmd_fsck(cli_ctx *ctx, int argc, char **argv)
{
    imgstore_store *store = NULL;
    report_ctx rc = {ctx, json_array()};
    int code, err;
    int first = cli_parse_common(ctx, argc, argv, &code);

    if (first < 0 || first != argc) {
        json_decref(rc.rows);
        return first < 0 ? code : cli_usage_error(ctx, "unexpected argument '%s'", argv[first]);
    }
    if ((err = cli_open_store(&store, ctx, false)) == 0)
        err = imgstore_store_fsck(store, report_row, &rc);
    if (err == 0 && !ctx->json)
        printf("ok\n");
    imgstore_store_free(store);
    return finish(ctx, &rc, "problems", err);
}
