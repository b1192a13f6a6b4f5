/*
 * Who may see the status page (issue #12), and its login, logout and stylesheet.
 *
 * Same tokens as the API. A browser cannot send a bearer header from a link, so the login
 * form takes a token once and answers with a session cookie: "v1.<expires>.<token
 * digest>.<HMAC-SHA256>", signed with a key drawn at server start. Why a session and not
 * the token itself: the token (which may carry push, deploy or admin) never rests in the
 * browser's cookie jar; the cookie ends after IMGSTORE_SERVER_SESSION_SECONDS; it names the
 * token by the digest the config holds and every request looks it up again, so a session
 * has the token's current scopes and ends with it; and it is stateless (no table to bound,
 * nothing shared between threads). A restart draws a new key and so signs everyone out. The
 * cookie is HttpOnly (no script reads it; the pages have none), SameSite=Strict (no other
 * site's page or form sends it), Secure under TLS, and only the status page reads it: the
 * API answers bearer tokens only, so a cookie can never push, deploy or sign.
 *
 * Not responsible for the pages themselves (route_ui.c) nor for the HTML (html.c).
 */
#include "server/server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SESSION_VERSION "v1"

static void hex_encode(char *out, const uint8_t *bytes, size_t len)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[bytes[i] >> 4];
        out[2 * i + 1] = hex[bytes[i] & 0xf];
    }
    out[2 * len] = '\0';
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool hex_decode(uint8_t *out, const char *hex, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

/* SHA-256 of a||b as raw bytes, through the store's one SHA-256. */
static void sha256_two(uint8_t out[32], const void *a, size_t a_len, const void *b, size_t b_len)
{
    imgstore_sha256 *sha = NULL;
    char hex[65];

    memset(out, 0, 32);
    if (imgstore_sha256_new(&sha) < 0)
        return; /* an all-zero MAC matches no cookie we made: the login fails, safely */
    imgstore_sha256_update(sha, a, a_len);
    imgstore_sha256_update(sha, b, b_len);
    imgstore_sha256_final_hex(sha, hex);
    imgstore_sha256_free(sha);
    hex_decode(out, hex, 32);
}

/* HMAC-SHA256 (RFC 2104) with a 32-byte key. */
static void hmac_sha256(uint8_t out[32], const uint8_t key[32], const char *message)
{
    uint8_t ipad[64], opad[64], inner[32];

    for (size_t i = 0; i < 64; i++) {
        ipad[i] = (uint8_t)((i < 32 ? key[i] : 0) ^ 0x36);
        opad[i] = (uint8_t)((i < 32 ? key[i] : 0) ^ 0x5c);
    }
    sha256_two(inner, ipad, sizeof(ipad), message, strlen(message));
    sha256_two(out, opad, sizeof(opad), inner, sizeof(inner));
}

void imgstore_server__session_make(char *out, size_t cap, const uint8_t key[32],
                                   const uint8_t digest[32], int64_t expires)
{
    char digest_hex[65], mac_hex[65], signed_part[128];
    uint8_t mac[32];

    hex_encode(digest_hex, digest, 32);
    snprintf(signed_part, sizeof(signed_part), SESSION_VERSION ".%lld.%s", (long long)expires,
             digest_hex);
    hmac_sha256(mac, key, signed_part);
    hex_encode(mac_hex, mac, 32);
    snprintf(out, cap, "%s.%s", signed_part, mac_hex);
}

int imgstore_server__session_check(const imgstore_server__token **out,
                                   const imgstore_server_config *config, const uint8_t key[32],
                                   const char *cookie, int64_t now)
{
    char signed_part[128];
    const char *dot;
    uint8_t mac[32], given[32], digest[32], diff = 0;
    uint64_t expires;
    size_t signed_len;

    *out = NULL;
    /* v1.<expires>.<64 hex>.<64 hex> */
    if (!cookie || strncmp(cookie, SESSION_VERSION ".", 3) != 0 || !(dot = strchr(cookie + 3, '.')))
        return imgstore_error_set(IMGSTORE_EINVALID, "malformed session");
    signed_len = (size_t)(dot - cookie) + 1 + 64;
    if (strlen(cookie) != signed_len + 1 + 64 || signed_len >= sizeof(signed_part) ||
        cookie[signed_len] != '.')
        return imgstore_error_set(IMGSTORE_EINVALID, "malformed session");
    memcpy(signed_part, cookie, signed_len);
    signed_part[signed_len] = '\0';
    signed_part[dot - cookie] = '\0';
    if (imgstore_parse_u64(&expires, signed_part + 3) < 0 || !hex_decode(digest, dot + 1, 32) ||
        !hex_decode(given, cookie + signed_len + 1, 32))
        return imgstore_error_set(IMGSTORE_EINVALID, "malformed session");
    signed_part[dot - cookie] = '.';
    hmac_sha256(mac, key, signed_part);
    for (size_t i = 0; i < 32; i++)
        diff |= (uint8_t)(mac[i] ^ given[i]);
    if (diff)
        return imgstore_error_set(IMGSTORE_EINVALID, "session not signed by this server");
    if ((int64_t)expires <= now)
        return imgstore_error_set(IMGSTORE_ENOTFOUND, "session expired");
    if (!(*out = imgstore_server__token_find_digest(config, digest)))
        return imgstore_error_set(IMGSTORE_ENOTFOUND, "the session's token is not configured");
    return 0;
}

int imgstore_server__form_value(char **out, const char *body, size_t len, const char *key)
{
    size_t key_len = strlen(key);
    const char *at = body, *end = body + len;

    *out = NULL;
    while (at < end) {
        const char *pair_end = memchr(at, '&', (size_t)(end - at));
        const char *value;
        char *decoded;
        size_t n = 0;

        if (!pair_end)
            pair_end = end;
        if ((size_t)(pair_end - at) <= key_len || memcmp(at, key, key_len) != 0 ||
            at[key_len] != '=') {
            at = pair_end + 1;
            continue;
        }
        value = at + key_len + 1;
        if (!(decoded = malloc((size_t)(pair_end - value) + 1)))
            return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        for (const char *c = value; c < pair_end; c++) {
            int hi, lo;

            if (*c == '+') {
                decoded[n++] = ' ';
                continue;
            }
            if (*c != '%') {
                decoded[n++] = *c;
                continue;
            }
            hi = c + 2 < pair_end ? hex_digit((char)(c[1] | 0x20)) : -1;
            lo = c + 2 < pair_end ? hex_digit((char)(c[2] | 0x20)) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(decoded);
                return imgstore_error_set(IMGSTORE_EINVALID, "form field %s: bad escape", key);
            }
            decoded[n++] = (char)(hi << 4 | lo);
            c += 2;
        }
        if (memchr(decoded, '\0', n)) {
            free(decoded);
            return imgstore_error_set(IMGSTORE_EINVALID, "form field %s: NUL", key);
        }
        decoded[n] = '\0';
        *out = decoded;
        return 0;
    }
    return IMGSTORE_ENOTFOUND;
}

bool imgstore_server__ui_next_ok(const char *target)
{
    /* a path on this server: "/..." but not "//host" or "/\host", which browsers read as
     * another origin, and only URL characters (no header or markup tricks) */
    if (!target || target[0] != '/' || target[1] == '/' || target[1] == '\\' ||
        strlen(target) > 512)
        return false;
    return strspn(target, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                          "-._~/?=&%+") == strlen(target);
}

/* ---- answering ------------------------------------------------------------------------ */

static bool tls(const imgstore_server__request *req)
{
    return req->server->tls_cert_pem != NULL;
}

/* 303 See Other to `location`, setting (or clearing: NULL) the session cookie. */
static enum MHD_Result redirect(imgstore_server__request *req, const char *location,
                                const char *cookie_value, bool set_cookie)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    char cookie[320];

    if (!response)
        return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_LOCATION, location);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (set_cookie) {
        if (cookie_value)
            snprintf(cookie, sizeof(cookie),
                     IMGSTORE_SERVER_SESSION_COOKIE "=%s; Path=/; Max-Age=%d; HttpOnly; "
                                                    "SameSite=Strict%s",
                     cookie_value, IMGSTORE_SERVER_SESSION_SECONDS, tls(req) ? "; Secure" : "");
        else
            snprintf(cookie, sizeof(cookie),
                     IMGSTORE_SERVER_SESSION_COOKIE "=; Path=/; Max-Age=0; HttpOnly; "
                                                    "SameSite=Strict%s",
                     tls(req) ? "; Secure" : "");
        MHD_add_response_header(response, MHD_HTTP_HEADER_SET_COOKIE, cookie);
    }
    return imgstore_server__queue(req, MHD_HTTP_SEE_OTHER, response, 0);
}

static enum MHD_Result login_page(imgstore_server__request *req, unsigned status,
                                  const char *message, const char *next)
{
    imgstore_server__html html = {0};

    imgstore_server__html_begin(&html, "Sign in", NULL);
    imgstore_server__html_raw(&html, "<form class=\"login\" method=\"post\" action=\"/ui/login\">"
                                     "<h1>Sign in</h1>");
    if (message)
        imgstore_server__html_fmt(&html, "<p class=\"error\" id=\"login-error\">%s</p>", message);
    imgstore_server__html_fmt(
        &html,
        "<p class=\"muted\">Paste an API token with the <code>read</code> scope (<code>imgstore "
        "token create --scope read</code>). The browser keeps a signed session for %d hours, "
        "not the token.</p><label for=\"token\">Token</label>"
        "<input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\" required "
        "autofocus><input type=\"hidden\" name=\"next\" value=\"%s\">"
        "<button type=\"submit\" id=\"sign-in\">Sign in</button></form>",
        IMGSTORE_SERVER_SESSION_SECONDS / 3600,
        next && imgstore_server__ui_next_ok(next) ? next : "/ui/");
    imgstore_server__html_end(&html);
    return imgstore_server__reply_html(req, status, &html);
}

static enum MHD_Result forbidden_page(imgstore_server__request *req, const char *name)
{
    imgstore_server__html html = {0};

    imgstore_server__html_begin(&html, "Forbidden", name);
    imgstore_server__html_fmt(&html,
                              "<h1>Forbidden</h1><p class=\"error\">Token %s lacks the "
                              "<code>read</code> scope the status page needs.</p>",
                              name);
    imgstore_server__html_end(&html);
    return imgstore_server__reply_html(req, MHD_HTTP_FORBIDDEN, &html);
}

bool imgstore_server__ui_authorize(imgstore_server__request *req, enum MHD_Result *result_out)
{
    const imgstore_server_config *config = req->server->config;
    const imgstore_server__token *token = NULL;
    const char *cookie;
    char next[600];

    /* a client that sends a bearer token (curl, a script) is answered as by the API */
    if (MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION))
        return imgstore_server__authorize(req, IMGSTORE_SERVER_SCOPE_READ, result_out);
    cookie =
        MHD_lookup_connection_value(req->conn, MHD_COOKIE_KIND, IMGSTORE_SERVER_SESSION_COOKIE);
    if (cookie && *cookie &&
        imgstore_server__session_check(&token, config, req->server->session_key, cookie,
                                       (int64_t)time(NULL)) < 0) {
        /* expired, forged, or its token was removed: sign in again */
        imgstore_error_clear();
        *result_out = login_page(req, MHD_HTTP_UNAUTHORIZED,
                                 "Your session has ended. Sign in again.", req->url);
        return false;
    }
    if (imgstore_server__scopes_granted(config, token) & IMGSTORE_SERVER_SCOPE_READ) {
        req->token = token;
        req->answer_variant = token ? token->name : NULL;
        return true;
    }
    if (token) {
        req->token = token;
        *result_out = forbidden_page(req, token->name);
        return false;
    }
    snprintf(next, sizeof(next), "/ui/login?next=%s", req->url);
    *result_out =
        redirect(req, imgstore_server__ui_next_ok(req->url) ? next : "/ui/login", NULL, false);
    return false;
}

/* ---- routes ----------------------------------------------------------------------------- */

/* GET /ui/style.css: the same bytes for everyone, no auth (it holds nothing of the store) */
enum MHD_Result imgstore_server__route_ui_style(imgstore_server__request *req)
{
    size_t len = strlen(imgstore_server__html_stylesheet);
    struct MHD_Response *response = MHD_create_response_from_buffer(
        len, (void *)imgstore_server__html_stylesheet, MHD_RESPMEM_PERSISTENT);

    if (!response)
        return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "text/css; charset=utf-8");
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "public, max-age=3600");
    MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
    return imgstore_server__queue(req, MHD_HTTP_OK, response, len);
}

/* GET /ui/login[?next=PATH] */
enum MHD_Result imgstore_server__route_ui_login_form(imgstore_server__request *req)
{
    return login_page(req, MHD_HTTP_OK, NULL,
                      MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "next"));
}

/*
 * A form posted from another site's page: SameSite keeps our cookie from such a post, but
 * login itself needs none, so refuse what the browser says came from elsewhere (Fetch
 * Metadata; older browsers send Origin) rather than sign a visitor in to someone else's
 * session.
 */
static bool same_origin(imgstore_server__request *req)
{
    const char *site = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Sec-Fetch-Site");
    const char *origin = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Host");
    const char *origin_host;

    if (site)
        return strcmp(site, "same-origin") == 0 || strcmp(site, "none") == 0;
    if (!origin || strcmp(origin, "null") == 0)
        return origin == NULL;
    origin_host = strstr(origin, "://");
    return origin_host && host && strcasecmp(origin_host + 3, host) == 0;
}

/* POST /ui/login, form fields token and next */
enum MHD_Result imgstore_server__route_ui_login(imgstore_server__request *req)
{
    char *token_text = NULL, *next = NULL, cookie[160];
    const imgstore_server__token *token = NULL;
    uint8_t digest[32];
    enum MHD_Result result;

    if (!same_origin(req))
        return imgstore_server__reply_status(req, MHD_HTTP_FORBIDDEN, "forbidden",
                                             "a sign-in posted from another site");
    if (imgstore_server__form_value(&next, req->body ? req->body : "", req->body_len, "next") < 0 ||
        !imgstore_server__ui_next_ok(next)) {
        free(next);
        next = NULL;
    }
    if (imgstore_server__form_value(&token_text, req->body ? req->body : "", req->body_len,
                                    "token") < 0 ||
        !*token_text || strlen(token_text) > 512 ||
        imgstore_server__token_digest(digest, token_text) < 0 ||
        !(token = imgstore_server__token_find_digest(req->server->config, digest))) {
        imgstore_error_clear();
        result = login_page(req, MHD_HTTP_UNAUTHORIZED, "That token is not valid here.", next);
    } else if (!(imgstore_server__scopes_granted(req->server->config, token) &
                 IMGSTORE_SERVER_SCOPE_READ)) {
        result = login_page(req, MHD_HTTP_FORBIDDEN,
                            "That token lacks the read scope the status page needs.", next);
    } else {
        req->token = token; /* the log names who signed in */
        imgstore_server__session_make(cookie, sizeof(cookie), req->server->session_key, digest,
                                      (int64_t)time(NULL) + IMGSTORE_SERVER_SESSION_SECONDS);
        result = redirect(req, next ? next : "/ui/", cookie, true);
    }
    if (token_text) /* the token does not outlive the request in our memory */
        memset(token_text, 0, strlen(token_text));
    if (req->body)
        memset(req->body, 0, req->body_len);
    free(token_text);
    free(next);
    return result;
}

/* POST /ui/logout: the cookie is dropped; the session stays valid until it expires if it
 * was copied elsewhere (stateless), which is the cost of needing no session table */
enum MHD_Result imgstore_server__route_ui_logout(imgstore_server__request *req)
{
    if (!same_origin(req))
        return imgstore_server__reply_status(req, MHD_HTTP_FORBIDDEN, "forbidden",
                                             "a sign-out posted from another site");
    return redirect(req, "/ui/login", NULL, true);
}
