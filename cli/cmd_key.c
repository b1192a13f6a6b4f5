/*
 * imgstore key: make a signing key (Ed25519, docs/security.md) and show a key's public half
 * and id. Key formats and wiping are sign/'s; this file only picks paths and prints.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { OPT_OUT = OPT_FIRST_LOCAL, OPT_COMMENT, OPT_PASSPHRASE_FILE };

static int mkdir_parents_of(const char *path)
{
    char buf[4096];

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0700) < 0 && errno != EEXIST)
                return imgstore_error_set(IMGSTORE_ERROR, "cannot create %s: %s", buf,
                                          strerror(errno));
            *p = '/';
        }
    }
    return 0;
}

/* FILE.pub beside the private key, like ssh-keygen. */
static int write_pub(const char *key_path, const imgstore_sign_key *key)
{
    imgstore_sign_pubkey pub;
    char *line = NULL, *pub_path = imgstore_strfmt("%s.pub", key_path);
    FILE *f = NULL;
    int err = 0;

    imgstore_sign_key_public(&pub, key);
    if (!pub_path || (err = imgstore_sign_pubkey_format(&line, &pub)) < 0)
        goto done;
    if (!(f = fopen(pub_path, "w")) || fprintf(f, "%s\n", line) < 0 || fclose(f) != 0) {
        f = NULL;
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot write %s: %s", pub_path, strerror(errno));
    }
    f = NULL;
done:
    if (f)
        fclose(f);
    free(line);
    free(pub_path);
    return err;
}

static int create_key(imgstore_sign_key **out, const char *path, const char *comment,
                      const char *passphrase)
{
    imgstore_sign_key *key = NULL;
    int err;

    *out = NULL;
    if ((err = mkdir_parents_of(path)) < 0 ||
        (err = imgstore_sign_key_generate(&key, comment)) < 0 ||
        (err = imgstore_sign_key_save(key, path, passphrase)) < 0 ||
        (err = write_pub(path, key)) < 0) {
        imgstore_sign_key_free(key);
        return err;
    }
    *out = key;
    return 0;
}

int cli_key_create(imgstore_sign_key **out, const char *path, const char *comment)
{
    return create_key(out, path, comment, NULL);
}

static char *read_passphrase_file(const char *path)
{
    char buf[1024];
    FILE *f = fopen(path, "r");

    if (!f || !fgets(buf, sizeof(buf), f)) {
        if (f)
            fclose(f);
        imgstore_error_set(IMGSTORE_EINVALID, "cannot read a passphrase from %s", path);
        return NULL;
    }
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    return strdup(buf);
}

static int key_generate(cli_ctx *ctx, const char *out_path, const char *comment,
                        const char *passphrase_file)
{
    imgstore_sign_key *key = NULL;
    imgstore_sign_pubkey pub;
    char *path = NULL, *line = NULL, *passphrase = NULL, *actor = NULL;
    int err = 0;

    if (!(path = out_path ? strdup(out_path) : cli_default_key_path()) ||
        !(actor = cli_actor(ctx))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        goto done;
    }
    if (passphrase_file && !(passphrase = read_passphrase_file(passphrase_file))) {
        err = IMGSTORE_EINVALID;
        goto done;
    }
    if (!passphrase_file && getenv("IMGSTORE_KEY_PASSPHRASE"))
        passphrase = strdup(getenv("IMGSTORE_KEY_PASSPHRASE"));
    if ((err = create_key(&key, path, comment ? comment : actor, passphrase)) < 0)
        goto done;
    imgstore_sign_key_public(&pub, key);
    if ((err = imgstore_sign_pubkey_format(&line, &pub)) < 0)
        goto done;
    if (ctx->json)
        err = cli_print_json(json_pack("{s:s, s:s, s:s, s:b}", "path", path, "public_key", line,
                                       "key_id", imgstore_sign_key_id(key), "encrypted",
                                       passphrase && *passphrase));
    else
        printf("%s\n", line);
    if (!ctx->json)
        fprintf(stderr, "imgstore key: wrote %s (mode 0600) and %s.pub; key id %s\n", path, path,
                imgstore_sign_key_id(key));
done:
    imgstore_sign_key_free(key);
    if (passphrase)
        memset(passphrase, 0, strlen(passphrase));
    free(passphrase);
    free(line);
    free(actor);
    free(path);
    return err;
}

/* The public half and id of the signing key the other commands would use. */
static int key_show(cli_ctx *ctx)
{
    cli_signers signers = {0};
    imgstore_sign_pubkey pub;
    char *line = NULL;
    int err;

    if ((err = cli_signers_load(&signers, ctx)) < 0)
        return err;
    imgstore_sign_key_public(&pub, signers.keys[0]);
    if ((err = imgstore_sign_pubkey_format(&line, &pub)) == 0) {
        if (ctx->json)
            err = cli_print_json(json_pack("{s:s, s:s}", "public_key", line, "key_id",
                                           imgstore_sign_key_id(signers.keys[0])));
        else
            printf("%s\n%s\n", line, imgstore_sign_key_id(signers.keys[0]));
    }
    free(line);
    cli_signers_free(&signers);
    return err;
}

int cli_cmd_key(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        CLI_COMMON_OPTIONS,
        {"out", required_argument, NULL, OPT_OUT},
        {"comment", required_argument, NULL, OPT_COMMENT},
        {"passphrase-file", required_argument, NULL, OPT_PASSPHRASE_FILE},
        {NULL, 0, NULL, 0}};
    const char *out_path = NULL, *comment = NULL, *passphrase_file = NULL, *action;
    int opt, code = -1, err;

    while ((opt = cli_next_option(ctx, argc, argv, "", options, NULL, &code)) != -1) {
        if (opt == OPT_OUT)
            out_path = optarg;
        else if (opt == OPT_COMMENT)
            comment = optarg;
        else if (opt == OPT_PASSPHRASE_FILE)
            passphrase_file = optarg;
    }
    if (code >= 0)
        return code;
    action = optind < argc ? argv[optind] : "";
    if (strcmp(action, "generate") == 0 && optind + 1 == argc) {
        err = key_generate(ctx, out_path, comment, passphrase_file);
    } else if (strcmp(action, "show") == 0 && argc - optind <= 2) {
        if (optind + 1 < argc && ctx->key_path_count < CLI_KEYS_MAX)
            ctx->key_paths[ctx->key_path_count++] = argv[optind + 1];
        err = key_show(ctx);
    } else {
        return cli_usage_error(ctx, "expected 'generate' or 'show [FILE]'");
    }
    return err < 0 ? cli_fail(ctx, err) : CLI_EXIT_OK;
}
