/*
 * push and sign --server: argv, progress and output over the client library
 * (client/push.c uploads, checks what the server stored and hands signatures over). When
 * the server holds no release key, the version stays pending unless this machine signs it
 * with its local release keys, loaded only then.
 */
#include "cli/remote.h"

#include <stdlib.h>
#include <string.h>

int cli_remote_cmd_push(cli_ctx *ctx, int argc, char **argv)
{
    cli_push_args args;
    imgstore_client *client = NULL;
    imgstore_client_manifest m = {0};
    imgstore_client_push_opts opts;
    cli_signers signers = {0};
    cli_progress progress;
    bool created = false;
    int code, err = 0;

    if (cli_push_parse(ctx, argc, argv, &args, &code) < 0)
        return code;
    memset(&opts, 0, sizeof(opts));
    opts.name = args.name;
    opts.version = args.version;
    opts.kind = args.kind;
    opts.files = (const char *const *)args.files;
    opts.file_count = args.file_count;
    opts.labels = (const char *const *)args.labels;
    opts.label_count = args.label_count;
    opts.source = args.source;
    if ((err = imgstore_client_check_names(opts.name, opts.version, NULL)) < 0 ||
        (opts.kind && (err = imgstore_schema_check_kind(opts.kind)) < 0) ||
        (err = cli_client_open(&client, &args.remote)) < 0)
        goto done;
    cli_progress_init(&progress, args.name, ctx->json);
    imgstore_client_set_progress(client, cli_progress_update, &progress, 0, 0);
    err = imgstore_client_push(&m, &created, client, &opts);
    cli_progress_done(&progress);
    imgstore_client_set_progress(client, NULL, NULL, 0, 0);
    if (err < 0)
        goto done;
    if (!m.status.trusted && cli_signers_load(&signers, ctx) == 0 &&
        (err = imgstore_client_sign(&m, client, (const imgstore_sign_key *const *)signers.keys,
                                    signers.count)) < 0)
        goto done;
    err = cli_print_pushed(ctx, m.manifest, created, &m.status);
done:
    cli_signers_free(&signers);
    imgstore_client_manifest_clear(&m);
    imgstore_client_free(client);
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
    imgstore_client *client = NULL;
    imgstore_client_manifest m = {0};
    cli_signers signers = {0};
    char *name = NULL, *version = NULL;
    int code, err = 0;
    int first = cli_read_parse(ctx, argc, argv, &args, false, &code);

    if (first < 0 || (code = cli_version_arg(ctx, argc, argv, first, &name, &version)) >= 0)
        return code;
    if ((err = cli_signers_load(&signers, ctx)) < 0 ||
        (err = imgstore_client_check_names(name, version, NULL)) < 0 ||
        (err = cli_client_open(&client, &args.remote)) < 0 ||
        (err = imgstore_client_manifest_fetch(&m, client, name, version, false)) < 0 ||
        (err = imgstore_client_sign(&m, client, (const imgstore_sign_key *const *)signers.keys,
                                    signers.count)) < 0)
        goto done;
    err = cli_print_signed(ctx, name, version, &m.status);
done:
    cli_signers_free(&signers);
    imgstore_client_manifest_clear(&m);
    imgstore_client_free(client);
    free(name);
    free(version);
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}
