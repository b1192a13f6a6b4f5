/*
 * The server's configuration: defaults, one `key = value` setter shared by the config file
 * and the command line, and the file reader. Tokens are kept as SHA-256 digests only, so a
 * leaked config file does not leak a usable token. Does not open sockets or the store.
 */
#include "server/server_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_BYTES 4096

int imgstore_server_config_new(imgstore_server_config **out)
{
    imgstore_server_config *config = calloc(1, sizeof(*config));

    *out = NULL;
    if (!config || !(config->listen = strdup("127.0.0.1:8080"))) {
        free(config);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    config->cache_max_bytes = 4ull << 30;
    config->max_upload_bytes = 16ull << 30;
    config->max_uploads = 16;
    config->upload_min_rate = 1024;
    config->upload_rate_window = 60;
    config->oci_upload_timeout = 900;
    config->max_json_bytes = 64 * 1024;
    config->max_header_bytes = 32 * 1024;
    config->max_url_bytes = 2048;
    config->connection_timeout = 60;
    config->header_timeout = 20;
    config->max_connections = 512;
    config->max_connections_per_ip = 128;
    config->max_waiters = 256;
    config->max_wait_seconds = 60;
    config->drain_seconds = 30;
    config->fill_concurrency = 2;
    config->stream_concurrency = 4;
    config->answer_cache_bytes = 8 * 1024 * 1024;
    config->gc_interval = 60;
    config->mirror_interval = 10;
    *out = config;
    return 0;
}

void imgstore_server_config_free(imgstore_server_config *config)
{
    if (!config)
        return;
    free(config->repo);
    free(config->listen);
    free(config->cache_dir);
    free(config->tls_cert);
    free(config->tls_key);
    free(config->mirror_of);
    free(config->mirror_primary_http);
    free(config->mirror_policy_sha256);
    free(config->tokens);
    free(config);
}

const char *imgstore_server_config_repo(const imgstore_server_config *config)
{
    return config->repo;
}

const char *imgstore_server_config_mirror_of(const imgstore_server_config *config)
{
    return config->mirror_of;
}

int imgstore_server__config_copy(imgstore_server_config **out, const imgstore_server_config *config)
{
    imgstore_server_config *copy = malloc(sizeof(*copy));
    bool ok;

    *out = NULL;
    if (!copy)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    *copy = *config;
    copy->repo = config->repo ? strdup(config->repo) : NULL;
    copy->listen = strdup(config->listen);
    copy->cache_dir = config->cache_dir ? strdup(config->cache_dir) : NULL;
    copy->tls_cert = config->tls_cert ? strdup(config->tls_cert) : NULL;
    copy->tls_key = config->tls_key ? strdup(config->tls_key) : NULL;
    copy->mirror_of = config->mirror_of ? strdup(config->mirror_of) : NULL;
    copy->mirror_primary_http =
        config->mirror_primary_http ? strdup(config->mirror_primary_http) : NULL;
    copy->mirror_policy_sha256 =
        config->mirror_policy_sha256 ? strdup(config->mirror_policy_sha256) : NULL;
    copy->tokens = calloc(config->token_count + 1, sizeof(*copy->tokens));
    ok = (!config->repo || copy->repo) && copy->listen && (!config->cache_dir || copy->cache_dir) &&
         (!config->tls_cert || copy->tls_cert) && (!config->tls_key || copy->tls_key) &&
         (!config->mirror_of || copy->mirror_of) &&
         (!config->mirror_primary_http || copy->mirror_primary_http) &&
         (!config->mirror_policy_sha256 || copy->mirror_policy_sha256) && copy->tokens;
    if (!ok) {
        imgstore_server_config_free(copy);
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    }
    if (config->token_count)
        memcpy(copy->tokens, config->tokens, config->token_count * sizeof(*copy->tokens));
    *out = copy;
    return 0;
}

int imgstore_server__scopes_parse(unsigned *out, const char *text)
{
    static const struct {
        const char *name;
        unsigned bit;
    } scopes[] = {{"read", IMGSTORE_SERVER_SCOPE_READ},
                  {"push", IMGSTORE_SERVER_SCOPE_PUSH},
                  {"deploy", IMGSTORE_SERVER_SCOPE_DEPLOY},
                  {"report", IMGSTORE_SERVER_SCOPE_REPORT},
                  {"admin", IMGSTORE_SERVER_SCOPE_ADMIN}};
    unsigned bits = 0;
    const char *at = text;

    *out = 0;
    if (strcmp(text, "none") == 0)
        return 0;
    while (*at) {
        size_t len = strcspn(at, ",");
        bool known = false;

        for (size_t i = 0; i < sizeof(scopes) / sizeof(scopes[0]); i++) {
            if (strlen(scopes[i].name) == len && strncmp(at, scopes[i].name, len) == 0) {
                bits |= scopes[i].bit;
                known = true;
            }
        }
        if (!known)
            return imgstore_error_set(IMGSTORE_EINVALID,
                                      "scope '%.*s': expected read, push, deploy, report, admin or "
                                      "none",
                                      (int)len, at);
        at += len;
        if (*at == ',')
            at++;
    }
    if (bits == 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "scopes: expected at least one scope");
    *out = bits;
    return 0;
}

static int hex_digest(uint8_t *out, const char *hex)
{
    if (strlen(hex) != 64)
        return -1;
    for (size_t i = 0; i < 32; i++) {
        unsigned byte;

        if (!isxdigit((unsigned char)hex[2 * i]) || !isxdigit((unsigned char)hex[2 * i + 1]) ||
            sscanf(hex + 2 * i, "%2x", &byte) != 1)
            return -1;
        out[i] = (uint8_t)byte;
    }
    return 0;
}

/* "token = <sha256 hex> scopes=read,push name=ci [host=web-1 [image=app]]" */
static int add_token(imgstore_server_config *config, const char *value)
{
    imgstore_server__token token = {{0}, 0, "token", "", ""};
    imgstore_server__token *grown;
    char buf[LINE_MAX_BYTES];
    char *word, *save = NULL;
    bool have_scopes = false;
    int err;

    if (strlen(value) >= sizeof(buf))
        return imgstore_error_set(IMGSTORE_EINVALID, "token: line too long");
    strcpy(buf, value);
    word = strtok_r(buf, " \t", &save);
    if (!word || hex_digest(token.digest, word) < 0)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "token: expected the token's SHA-256 as 64 hex digits first "
                                  "(imgstore token create prints the line)");
    while ((word = strtok_r(NULL, " \t", &save))) {
        if (strncmp(word, "scopes=", 7) == 0) {
            if ((err = imgstore_server__scopes_parse(&token.scopes, word + 7)) < 0)
                return imgstore_error_wrap(err, "token: ");
            have_scopes = true;
        } else if (strncmp(word, "name=", 5) == 0) {
            if ((err = imgstore_schema_check_name(IMGSTORE_NAME_LABEL, word + 5)) < 0)
                return imgstore_error_wrap(err, "token: ");
            snprintf(token.name, sizeof(token.name), "%s", word + 5);
        } else if (strncmp(word, "host=", 5) == 0) {
            if ((err = imgstore_schema_check_name(IMGSTORE_NAME_HOST, word + 5)) < 0)
                return imgstore_error_wrap(err, "token: ");
            snprintf(token.host, sizeof(token.host), "%s", word + 5);
        } else if (strncmp(word, "image=", 6) == 0) {
            if ((err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, word + 6)) < 0)
                return imgstore_error_wrap(err, "token: ");
            snprintf(token.image, sizeof(token.image), "%s", word + 6);
        } else {
            return imgstore_error_set(IMGSTORE_EINVALID,
                                      "token: unknown attribute '%s' (scopes=, name=, host=, "
                                      "image=)",
                                      word);
        }
    }
    if (!have_scopes || token.scopes == 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "token: scopes= is required");
    /* an image binding narrows a host's reports; alone it would vouch for no host name */
    if (token.image[0] && !token.host[0])
        return imgstore_error_set(IMGSTORE_EINVALID, "token: image= needs host= too");
    if (!(grown = realloc(config->tokens, (config->token_count + 1) * sizeof(*grown))))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    config->tokens = grown;
    config->tokens[config->token_count++] = token;
    return 0;
}

static int set_string(char **slot, const char *key, const char *value)
{
    char *copy;

    if (!*value)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: empty value", key);
    if (!(copy = strdup(value)))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    free(*slot);
    *slot = copy;
    return 0;
}

/* Sizes take an optional K, M or G suffix (powers of 1024). */
static int set_number(uint64_t *slot, const char *key, const char *value, bool size)
{
    unsigned long long number;
    char *end;

    errno = 0;
    if (!isdigit((unsigned char)value[0]))
        goto bad;
    number = strtoull(value, &end, 10);
    if (errno)
        goto bad;
    if (size && *end) {
        int shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : -1;

        if (shift < 0 || end[1] || number > (UINT64_MAX >> shift))
            goto bad;
        number <<= shift;
        end++;
    }
    if (*end)
        goto bad;
    *slot = number;
    return 0;
bad:
    return imgstore_error_set(IMGSTORE_EINVALID, "%s: '%s' is not a %s", key, value,
                              size ? "size (bytes, or with a K, M or G suffix)" : "number");
}

static int set_bool(bool *out, const char *key, const char *value)
{
    if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
        *out = true;
    else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
        *out = false;
    else
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: expected true or false, not '%s'", key,
                                  value);
    return 0;
}

int imgstore_server_config_set(imgstore_server_config *config, const char *key, const char *value)
{
    static const struct {
        const char *key;
        size_t offset;
        bool size;
        uint64_t min, max;
    } numbers[] = {
#define NUMBER(k, is_size, lo, hi) {#k, offsetof(imgstore_server_config, k), is_size, lo, hi}
        NUMBER(cache_max_bytes, true, 0, UINT64_MAX),
        NUMBER(max_upload_bytes, true, 1, UINT64_MAX),
        NUMBER(max_uploads, false, 1, 1024),
        NUMBER(upload_min_rate, true, 0, 1ull << 30),
        NUMBER(upload_rate_window, false, 1, 86400),
        NUMBER(oci_upload_timeout, false, 1, 86400),
        NUMBER(max_json_bytes, true, 64, 16u << 20),
        NUMBER(max_header_bytes, true, 4096, 1u << 20),
        NUMBER(max_url_bytes, true, 256, 64 * 1024),
        NUMBER(connection_timeout, false, 1, 86400),
        NUMBER(header_timeout, false, 1, 3600),
        NUMBER(max_connections, false, 1, 65536),
        NUMBER(max_connections_per_ip, false, 1, 65536),
        NUMBER(max_waiters, false, 0, 65536),
        NUMBER(max_wait_seconds, false, 0, 3600),
        NUMBER(drain_seconds, false, 0, 3600),
        NUMBER(fill_concurrency, false, 1, 64),
        NUMBER(stream_concurrency, false, 1, 1024),
        NUMBER(answer_cache_bytes, true, 0, 1ull << 30),
        NUMBER(gc_interval, false, 0, 86400),
        NUMBER(mirror_interval, false, 1, 86400),
#undef NUMBER
    };
    int err;

    if (strcmp(key, "repo") == 0)
        return set_string(&config->repo, key, value);
    if (strcmp(key, "listen") == 0)
        return set_string(&config->listen, key, value);
    if (strcmp(key, "cache_dir") == 0)
        return set_string(&config->cache_dir, key, value);
    if (strcmp(key, "tls_cert") == 0)
        return set_string(&config->tls_cert, key, value);
    if (strcmp(key, "tls_key") == 0)
        return set_string(&config->tls_key, key, value);
    if (strcmp(key, "token") == 0)
        return add_token(config, value);
    if (strcmp(key, "mirror_of") == 0)
        return set_string(&config->mirror_of, key, value);
    if (strcmp(key, "mirror_primary_http") == 0) {
        if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0)
            return imgstore_error_set(
                IMGSTORE_EINVALID, "%s: expected an http:// or https:// URL, not '%s'", key, value);
        return set_string(&config->mirror_primary_http, key, value);
    }
    if (strcmp(key, "mirror_policy_sha256") == 0) {
        uint8_t digest[32];

        if (hex_digest(digest, value) < 0)
            return imgstore_error_set(IMGSTORE_EINVALID, "%s: expected 64 hex digits", key);
        return set_string(&config->mirror_policy_sha256, key, value);
    }
    if (strcmp(key, "anonymous_scopes") == 0)
        return imgstore_server__scopes_parse(&config->anonymous_scopes, value);
    if (strcmp(key, "read_public") == 0) {
        bool on;

        if ((err = set_bool(&on, key, value)) < 0)
            return err;
        if (on)
            config->anonymous_scopes |= IMGSTORE_SERVER_SCOPE_READ;
        else
            config->anonymous_scopes &= ~IMGSTORE_SERVER_SCOPE_READ;
        return 0;
    }
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
        uint64_t *slot = (uint64_t *)((char *)config + numbers[i].offset);
        uint64_t number = 0;

        if (strcmp(key, numbers[i].key) != 0)
            continue;
        if ((err = set_number(&number, key, value, numbers[i].size)) < 0)
            return err;
        if (number < numbers[i].min || number > numbers[i].max)
            return imgstore_error_set(IMGSTORE_EINVALID, "%s: %s is outside %llu..%llu", key, value,
                                      (unsigned long long)numbers[i].min,
                                      (unsigned long long)numbers[i].max);
        *slot = number;
        return 0;
    }
    return imgstore_error_set(IMGSTORE_EINVALID, "unknown setting '%s' (see docs/server.md)", key);
}

static char *trim(char *text)
{
    char *end;

    while (isspace((unsigned char)*text))
        text++;
    end = text + strlen(text);
    while (end > text && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return text;
}

int imgstore_server_config_load(imgstore_server_config *config, const char *path)
{
    char line[LINE_MAX_BYTES];
    unsigned line_no = 0;
    FILE *file = fopen(path, "r");
    int err = 0;

    if (!file)
        return imgstore_error_set(errno == ENOENT ? IMGSTORE_ENOTFOUND : IMGSTORE_ERROR,
                                  "cannot read config %s: %s", path, strerror(errno));
    while (fgets(line, sizeof(line), file)) {
        char *text, *eq;

        line_no++;
        if (!strchr(line, '\n') && !feof(file)) {
            err = imgstore_error_set(IMGSTORE_EINVALID, "%s:%u: line longer than %d bytes", path,
                                     line_no, LINE_MAX_BYTES - 2);
            break;
        }
        text = trim(line);
        if (!*text || *text == '#')
            continue;
        if (!(eq = strchr(text, '='))) {
            err =
                imgstore_error_set(IMGSTORE_EINVALID, "%s:%u: expected key = value", path, line_no);
            break;
        }
        *eq = '\0';
        if ((err = imgstore_server_config_set(config, trim(text), trim(eq + 1))) < 0) {
            imgstore_error_wrap(err, "%s:%u: ", path, line_no);
            break;
        }
    }
    if (err == 0 && ferror(file))
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot read config %s", path);
    fclose(file);
    return err;
}
