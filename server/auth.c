/*
 * Bearer-token authorisation. The presented token is hashed (SHA-256, the store's one
 * implementation) and compared with every configured digest in constant time, without
 * stopping at a match, so neither the timing nor the order of the config leaks which
 * prefix was right. Scopes come from the matching token; a request without a token gets
 * the configured anonymous scopes. Nothing here logs or keeps the token. It also decides
 * whether a host report's host name is vouched for by the token's binding (issue #12).
 */
#include "server/server_internal.h"

#include <string.h>

/* Constant-time equality of two digests (no early exit, no data-dependent branch). */
static bool digest_equal(const uint8_t *a, const uint8_t *b)
{
    volatile uint8_t diff = 0;

    for (size_t i = 0; i < 32; i++)
        diff |= (uint8_t)(a[i] ^ b[i]);
    return diff == 0;
}

int imgstore_server__token_digest(uint8_t out[32], const char *token)
{
    imgstore_sha256 *sha = NULL;
    char hex[65];
    int err;

    if ((err = imgstore_sha256_new(&sha)) < 0)
        return err;
    imgstore_sha256_update(sha, token, strlen(token));
    imgstore_sha256_final_hex(sha, hex);
    imgstore_sha256_free(sha);
    for (size_t i = 0; i < 32; i++) {
        int hi = hex[2 * i] <= '9' ? hex[2 * i] - '0' : hex[2 * i] - 'a' + 10;
        int lo = hex[2 * i + 1] <= '9' ? hex[2 * i + 1] - '0' : hex[2 * i + 1] - 'a' + 10;

        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

const imgstore_server__token *
imgstore_server__token_find_digest(const imgstore_server_config *config, const uint8_t digest[32])
{
    const imgstore_server__token *found = NULL;

    for (size_t i = 0; i < config->token_count; i++) {
        if (digest_equal(digest, config->tokens[i].digest) && !found)
            found = &config->tokens[i];
    }
    return found;
}

unsigned imgstore_server__scopes_granted(const imgstore_server_config *config,
                                         const imgstore_server__token *token)
{
    unsigned granted = token ? token->scopes : config->anonymous_scopes;

    return granted & IMGSTORE_SERVER_SCOPE_ADMIN ? ~0u : granted;
}

/* Which token the request presents: 0 (none), 1 (a configured one, in *out), -1 (bad). */
static int identify(const imgstore_server__token **out, imgstore_server__request *req)
{
    const imgstore_server_config *config = req->server->config;
    const char *header =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    *out = NULL;
    if (!header)
        return 0;
    if (strncmp(header, "Bearer ", 7) != 0 || !header[7])
        return -1;
    *out = imgstore_server__token_find(config, header + 7);
    return *out ? 1 : -1;
}

const imgstore_server__token *imgstore_server__token_find(const imgstore_server_config *config,
                                                          const char *token)
{
    uint8_t digest[32];

    if (strlen(token) > 505 || imgstore_server__token_digest(digest, token) < 0)
        return NULL;
    return imgstore_server__token_find_digest(config, digest);
}

static const char *scope_name(unsigned scope)
{
    switch (scope) {
    case IMGSTORE_SERVER_SCOPE_READ:
        return "read";
    case IMGSTORE_SERVER_SCOPE_PUSH:
        return "push";
    case IMGSTORE_SERVER_SCOPE_DEPLOY:
        return "deploy";
    case IMGSTORE_SERVER_SCOPE_REPORT:
        return "report";
    default:
        return "admin";
    }
}

/* "'read'", or "'read' (or 'push')" when any one of several will do */
static const char *scopes_text(char *out, size_t cap, unsigned scope)
{
    size_t len = 0;

    out[0] = '\0';
    for (unsigned bit = 1; bit <= IMGSTORE_SERVER_SCOPE_REPORT; bit <<= 1) {
        if (!(scope & bit) || len >= cap)
            continue;
        len += (size_t)snprintf(out + len, cap - len, len ? " (or '%s')" : "'%s'", scope_name(bit));
    }
    return out;
}

bool imgstore_server__authorize(imgstore_server__request *req, unsigned scope,
                                enum MHD_Result *result_out)
{
    const imgstore_server__token *token = NULL;
    int who = identify(&token, req);
    unsigned granted;
    char text[64];

    if (who < 0) {
        *result_out = imgstore_server__reply_status(req, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                                                    "the bearer token is not valid");
        return false;
    }
    req->token = token;
    granted = imgstore_server__scopes_granted(req->server->config, token);
    if (granted & scope) /* any one of the route's scopes will do */
        return true;
    if (!token)
        *result_out = imgstore_server__reply_status(req, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                                                    "this request needs a bearer token");
    else
        *result_out = imgstore_server__reply_status(req, MHD_HTTP_FORBIDDEN, "forbidden",
                                                    "token '%s' lacks the %s scope", token->name,
                                                    scopes_text(text, sizeof(text), scope));
    return false;
}

bool imgstore_server__report_allowed(bool *verified_out, const imgstore_server__token *token,
                                     const char *image, const char *host)
{
    *verified_out = false;
    if (!token || !token->host[0]) /* unbound: taken, as a claim nobody vouches for */
        return true;
    if (strcmp(token->host, host) != 0) {
        imgstore_error_set(IMGSTORE_EINVALID,
                           "token '%s' is bound to host '%s' and may not report for '%s'",
                           token->name, token->host, host);
        return false;
    }
    if (token->image[0] && strcmp(token->image, image) != 0) {
        imgstore_error_set(IMGSTORE_EINVALID,
                           "token '%s' is bound to image '%s' and may not report on '%s'",
                           token->name, token->image, image);
        return false;
    }
    *verified_out = true;
    return true;
}
