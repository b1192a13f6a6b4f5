/*
 * `imgstore serve`: builds the server configuration (config file first, then flags), creates
 * the store when it is missing, starts the server and waits for SIGTERM or SIGINT, then
 * stops it (which drains in-flight requests). The HTTP service itself is server/.
 */
#include "cli/cli.h"
#include "server/server.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_LISTEN = OPT_FIRST_LOCAL,
    OPT_CONFIG,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_SET,
    OPT_MIRROR_OF,
    OPT_TRUST_POLICY
};

int cli_cmd_serve(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        CLI_COMMON_OPTIONS,
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"set", required_argument, NULL, OPT_SET},
        {"mirror-of", required_argument, NULL, OPT_MIRROR_OF},
        {"trust-policy-sha256", required_argument, NULL, OPT_TRUST_POLICY},
        {NULL, 0, NULL, 0}};
    /* flags override the file whatever their order: remember them, apply them after it */
    const char *keys[64], *values[64];
    char *sets[64] = {0};
    size_t flag_count = 0;
    imgstore_server_config *config = NULL;
    imgstore_server *server = NULL;
    imgstore_store *store = NULL;
    cli_signers signers = {0};
    imgstore_signers view = {0};
    char *actor = NULL;
    const char *config_path = NULL;
    char *default_repo = NULL;
    sigset_t signals;
    int opt, sig, code = -1, err = 0;

    while ((opt = cli_next_option(ctx, argc, argv, "", options, NULL, &code)) != -1) {
        if (opt == OPT_CONFIG) {
            config_path = optarg;
            continue;
        }
        if (flag_count == 64) {
            code = cli_usage_error(ctx, "too many options");
            goto done;
        }
        if (opt == OPT_SET) {
            char *eq = strchr(optarg, '=');

            if (!eq || eq == optarg) {
                code = cli_usage_error(ctx, "--set expects KEY=VALUE");
                goto done;
            }
            if (!(sets[flag_count] = strdup(optarg))) {
                err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
                goto done;
            }
            sets[flag_count][eq - optarg] = '\0';
            keys[flag_count] = sets[flag_count];
            values[flag_count] = sets[flag_count] + (eq - optarg) + 1;
            flag_count++;
            continue;
        }
        keys[flag_count] = opt == OPT_LISTEN         ? "listen"
                           : opt == OPT_TLS_CERT     ? "tls_cert"
                           : opt == OPT_MIRROR_OF    ? "mirror_of"
                           : opt == OPT_TRUST_POLICY ? "mirror_policy_sha256"
                                                     : "tls_key";
        values[flag_count++] = optarg;
    }
    if (code >= 0)
        goto done;
    if (optind != argc) {
        code = cli_usage_error(ctx, "unexpected argument '%s'", argv[optind]);
        goto done;
    }
    if ((err = imgstore_server_config_new(&config)) < 0)
        goto done;
    if (config_path && (err = imgstore_server_config_load(config, config_path)) < 0)
        goto done;
    for (size_t i = 0; i < flag_count; i++) {
        if ((err = imgstore_server_config_set(config, keys[i], values[i])) < 0)
            goto done;
    }
    /* --repo and IMGSTORE_REPO beat the file's repo; the default store comes last */
    if (ctx->repo)
        err = imgstore_server_config_set(config, "repo", ctx->repo);
    else if (!imgstore_server_config_repo(config) &&
             (err = imgstore_store_default_path(&default_repo)) == 0)
        err = imgstore_server_config_set(config, "repo", default_repo);
    if (err < 0)
        goto done;
    if (imgstore_server_config_mirror_of(config))
        goto start; /* a read replica signs nothing, and its store comes from its primary */
    /* the server signs what is pushed and deployed through it with the CLI's keys */
    err = cli_signers_load(&signers, ctx);
    if (err == IMGSTORE_ENOTFOUND && ctx->key_path_count == 0 && !ctx->agent) {
        /* say what a keyless server does, exactly (docs/server.md, issue #10) */
        imgstore_log(IMGSTORE_LOG_WARN, "server",
                     "no signing key: uploads are stored pending until a client adds release "
                     "signatures, channel states are taken only signed by a client, deploy and "
                     "rollback through the server are refused, and the commits this server "
                     "writes are unsigned (give --key to sign them; see imgstore key generate)");
        err = 0;
    }
    if (err < 0 || !(actor = cli_actor(ctx)))
        goto done;
    view = cli_signers_view(&signers);
    /* a missing store is created, signed like imgstore init does when there is a key */
    err = view.count ? imgstore_store_init_trusted(&store, imgstore_server_config_repo(config),
                                                   view.keys[0], actor)
                     : imgstore_store_init(&store, imgstore_server_config_repo(config));
    if (err < 0)
        goto done;
    imgstore_store_free(store);
    store = NULL;
start:
    /* block the stop signals in every thread; this one waits for them below */
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    if ((err = imgstore_server_start(&server, config, &view)) < 0)
        goto done;
    fprintf(stdout, "imgstore serve: listening on %s, store %s\n", imgstore_server_address(server),
            imgstore_server_config_repo(config));
    fflush(stdout);
    sigwait(&signals, &sig);
    imgstore_log(IMGSTORE_LOG_INFO, "server", "signal=%s draining",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT");
    imgstore_server_stop(server);
    server = NULL;
done:
    if (code < 0)
        code = err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
    imgstore_server_stop(server);
    imgstore_server_config_free(config);
    cli_signers_free(&signers);
    free(actor);
    free(default_repo);
    for (size_t i = 0; i < 64; i++)
        free(sets[i]);
    return code;
}
