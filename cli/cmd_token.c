/*
 * `imgstore token create --scope S[,S...] [--name N] [--host H [--image N]]`: makes a new
 * random bearer token for `imgstore serve`, prints it once, and prints the config line that
 * grants it (which holds only the token's SHA-256, docs/server.md "Auth"), with the host
 * (and image) its agent reports are bound to (issue #12). Nothing is written anywhere: the
 * operator pastes the line into the server's config.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

enum { OPT_SCOPE = OPT_FIRST_LOCAL, OPT_NAME, OPT_HOST, OPT_IMAGE };

static int check_scopes(const char *scopes)
{
    static const char *const known[] = {"read", "push", "deploy", "report", "admin"};
    const char *at = scopes;

    if (!*at)
        return imgstore_error_set(IMGSTORE_EINVALID, "--scope: empty");
    while (*at) {
        size_t len = strcspn(at, ",");
        bool ok = false;

        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            ok = ok || (strlen(known[i]) == len && strncmp(at, known[i], len) == 0);
        if (!ok)
            return imgstore_error_set(IMGSTORE_EINVALID,
                                      "--scope '%.*s': expected read, push, deploy, report or "
                                      "admin",
                                      (int)len, at);
        at += len;
        if (*at == ',' && !*++at)
            return imgstore_error_set(IMGSTORE_EINVALID, "--scope: trailing comma");
    }
    return 0;
}

/* Does the comma-separated list `scopes` (checked) hold one that may post reports? */
static bool may_report(const char *scopes)
{
    static const char *const posting[] = {"report", "deploy", "admin"};

    for (const char *at = scopes; *at; at += *at == ',') {
        size_t len = strcspn(at, ",");

        for (size_t i = 0; i < sizeof(posting) / sizeof(posting[0]); i++) {
            if (strlen(posting[i]) == len && strncmp(at, posting[i], len) == 0)
                return true;
        }
        at += len;
    }
    return false;
}

static int random_hex(char *out, size_t bytes)
{
    unsigned char buf[64];
    size_t got = 0;

    while (got < bytes) {
        ssize_t n = getrandom(buf + got, bytes - got, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return imgstore_error_set(IMGSTORE_ERROR, "getrandom: %s", strerror(errno));
        got += (size_t)n;
    }
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", buf[i]);
    return 0;
}

int cli_cmd_token(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS,
                                            {"scope", required_argument, NULL, OPT_SCOPE},
                                            {"name", required_argument, NULL, OPT_NAME},
                                            {"host", required_argument, NULL, OPT_HOST},
                                            {"image", required_argument, NULL, OPT_IMAGE},
                                            {NULL, 0, NULL, 0}};
    const char *scopes = NULL, *name = "token", *host = NULL, *image = NULL;
    imgstore_sha256 *sha = NULL;
    char token[80], secret[65], digest[65], *line = NULL;
    int opt, code = -1, err = 0;

    while ((opt = cli_next_option(ctx, argc, argv, "", options, NULL, &code)) != -1) {
        if (opt == OPT_SCOPE)
            scopes = optarg;
        else if (opt == OPT_NAME)
            name = optarg;
        else if (opt == OPT_HOST)
            host = optarg;
        else if (opt == OPT_IMAGE)
            image = optarg;
    }
    if (code >= 0)
        goto done;
    if (optind != argc - 1 || strcmp(argv[optind], "create") != 0) {
        code = cli_usage_error(ctx, "expected 'create'");
        goto done;
    }
    if (!scopes) {
        code = cli_usage_error(ctx, "--scope is required");
        goto done;
    }
    if (image && !host) {
        code = cli_usage_error(ctx, "--image needs --host (it narrows a host's reports)");
        goto done;
    }
    if ((err = check_scopes(scopes)) < 0 ||
        (err = imgstore_schema_check_name(IMGSTORE_NAME_LABEL, name)) < 0 ||
        (host && (err = imgstore_schema_check_name(IMGSTORE_NAME_HOST, host)) < 0) ||
        (image && (err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, image)) < 0))
        goto done;
    if (host && !may_report(scopes)) { /* a binding nothing would ever check */
        code = cli_usage_error(ctx, "--host binds host reports: --scope needs report, deploy "
                                    "or admin");
        goto done;
    }
    if ((err = random_hex(secret, 32)) < 0 || (err = imgstore_sha256_new(&sha)) < 0)
        goto done;
    snprintf(token, sizeof(token), "imgstore_%s", secret);
    imgstore_sha256_update(sha, token, strlen(token));
    imgstore_sha256_final_hex(sha, digest);
    if (!(line = imgstore_strfmt("token = %s scopes=%s name=%s%s%s%s%s", digest, scopes, name,
                                 host ? " host=" : "", host ? host : "", image ? " image=" : "",
                                 image ? image : ""))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if (ctx->json) {
        err = cli_print_json(json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:s?}", "token", token,
                                       "sha256", digest, "scopes", scopes, "name", name,
                                       "config_line", line, "host", host, "image", image));
    } else {
        printf("%s\n", token);
        fprintf(stderr, "imgstore token: shown once; add this line to the server config:\n");
        printf("%s\n", line);
    }
done:
    if (code < 0)
        code = err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
    imgstore_sha256_free(sha);
    free(line);
    return code;
}
