/*
 * The status page's parsers and its escaping (server/html.c, server/ui_auth.c; issue #12).
 * The input is three lines: a stored text to show, a login form body, a session cookie. The
 * text's markup must hold no < > " ' and no control byte, and every & must begin one of
 * our entities, whatever the bytes (so no stored text becomes an element or an attribute);
 * a form value decodes or fails with a message; a cookie is a session only when it is, byte
 * for byte, the one this key made; a login goes back only to a path of ours.
 */
#include "fuzz_util.h"
#include "server/server_internal.h"

static const char *next_line(char **text)
{
    char *line = *text, *newline;

    if (!line)
        return "";
    if ((newline = strchr(line, '\n'))) {
        *newline = '\0';
        *text = newline + 1;
    } else {
        *text = NULL;
    }
    return line;
}

static void check_markup(const char *markup)
{
    static const char *const entities[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"};

    for (const char *c = markup; *c; c++) {
        FUZZ_CHECK(*c != '<' && *c != '>' && *c != '"' && *c != '\'');
        FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
        if (*c == '&') {
            bool known = false;

            for (size_t i = 0; i < sizeof(entities) / sizeof(entities[0]); i++)
                known = known || strncmp(c, entities[i], strlen(entities[i])) == 0;
            FUZZ_CHECK(known);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t key[32] = {7};
    imgstore_server__token token = {.scopes = IMGSTORE_SERVER_SCOPE_READ, .name = "fuzz"};
    imgstore_server_config config = {.tokens = &token, .token_count = 1};
    const imgstore_server__token *who = NULL;
    imgstore_server__html html = {0};
    char *text, *rest, made[160], *value = NULL;
    const char *shown, *form, *cookie;
    int err;

    FUZZ_CHECK((text = malloc(size + 1)) != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    rest = text;
    shown = next_line(&rest);
    form = next_line(&rest);
    cookie = next_line(&rest);

    imgstore_server__html_text(&html, shown);
    FUZZ_CHECK(html.err == 0);
    check_markup(html.data ? html.data : "");
    imgstore_server__html_free(&html);
    imgstore_server__html_fmt(&html, "<td title=\"%s\">%s</td>", shown, shown);
    FUZZ_CHECK(html.err == 0 && strncmp(html.data, "<td title=\"", 11) == 0);
    imgstore_server__html_free(&html);

    err = imgstore_server__form_value(&value, form, strlen(form), "token");
    FUZZ_CHECK(err == 0 || err == IMGSTORE_ENOTFOUND || err == IMGSTORE_EINVALID);
    FUZZ_CHECK(err != IMGSTORE_EINVALID || imgstore_error_last()[0] != '\0');
    FUZZ_CHECK(err == 0 || value == NULL);
    free(value);

    if (imgstore_server__ui_next_ok(form))
        FUZZ_CHECK(form[0] == '/' && form[1] != '/' && form[1] != '\\' && !strchr(form, '"') &&
                   !strchr(form, '<') && !strchr(form, '\r') && !strchr(form, ' '));

    FUZZ_CHECK(imgstore_server__token_digest(token.digest, "imgstore_fuzz") == 0);
    imgstore_server__session_make(made, sizeof(made), key, token.digest, 2000);
    FUZZ_CHECK(imgstore_server__session_check(&who, &config, key, made, 1999) == 0);
    err = imgstore_server__session_check(&who, &config, key, cookie, 1999);
    FUZZ_CHECK(err == 0 || err == IMGSTORE_EINVALID || err == IMGSTORE_ENOTFOUND);
    FUZZ_CHECK((err == 0) == (strcmp(cookie, made) == 0));
    FUZZ_CHECK((err == 0) == (who == &token));
    free(text);
    return 0;
}
