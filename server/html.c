/*
 * HTML for the status page (issue #12): the one place markup is built. A document grows in a
 * capped buffer; text from the store is escaped on the way in (what the terminal would be
 * shown escaped is shown escaped here too, then & < > " ' become entities), and formats of
 * ours take their %s arguments as text, so a page cannot put a stored byte into markup
 * unescaped. Also the page frame, the stylesheet, and the headers every HTML answer carries.
 * What a page shows, and who may see it, is route_ui.c and ui_auth.c.
 */
#include "server/server_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void append(imgstore_server__html *html, const char *bytes, size_t len)
{
    if (html->err)
        return;
    if (html->len + len + 1 > IMGSTORE_SERVER_HTML_MAX) {
        html->err = imgstore_error_set(IMGSTORE_EINVALID, "the page is larger than %u bytes",
                                       IMGSTORE_SERVER_HTML_MAX);
        return;
    }
    if (html->len + len + 1 > html->cap) {
        size_t cap = html->cap ? html->cap : 4096;
        char *grown;

        while (cap < html->len + len + 1)
            cap *= 2;
        if (!(grown = realloc(html->data, cap))) {
            html->err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            return;
        }
        html->data = grown;
        html->cap = cap;
    }
    memcpy(html->data + html->len, bytes, len);
    html->len += len;
    html->data[html->len] = '\0';
}

void imgstore_server__html_raw(imgstore_server__html *html, const char *markup)
{
    append(html, markup, strlen(markup));
}

void imgstore_server__html_text(imgstore_server__html *html, const char *text)
{
    char *shown;
    const char *run;

    if (!text || html->err)
        return;
    if (!(shown = imgstore_schema_text_escape(text))) {
        html->err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
        return;
    }
    run = shown;
    for (const char *c = shown; *c; c++) {
        const char *entity = NULL;

        switch (*c) {
        case '&':
            entity = "&amp;";
            break;
        case '<':
            entity = "&lt;";
            break;
        case '>':
            entity = "&gt;";
            break;
        case '"':
            entity = "&quot;";
            break;
        case '\'':
            entity = "&#39;";
            break;
        default:
            continue;
        }
        append(html, run, (size_t)(c - run));
        imgstore_server__html_raw(html, entity);
        run = c + 1;
    }
    append(html, run, strlen(run));
    free(shown);
}

void imgstore_server__html_fmt(imgstore_server__html *html, const char *fmt, ...)
{
    char number[32];
    const char *run = fmt;
    va_list ap;

    va_start(ap, fmt);
    for (const char *c = fmt; *c && !html->err; c++) {
        if (*c != '%')
            continue;
        append(html, run, (size_t)(c - run));
        if (c[1] == 's') {
            imgstore_server__html_text(html, va_arg(ap, const char *));
            c += 1;
        } else if (c[1] == 'd') {
            snprintf(number, sizeof(number), "%d", va_arg(ap, int));
            imgstore_server__html_raw(html, number);
            c += 1;
        } else if (c[1] == 'u') {
            snprintf(number, sizeof(number), "%u", va_arg(ap, unsigned));
            imgstore_server__html_raw(html, number);
            c += 1;
        } else if (c[1] == 'z' && c[2] == 'u') {
            snprintf(number, sizeof(number), "%zu", va_arg(ap, size_t));
            imgstore_server__html_raw(html, number);
            c += 2;
        } else if (c[1] == 'l' && c[2] == 'l' && c[3] == 'u') {
            snprintf(number, sizeof(number), "%llu", va_arg(ap, unsigned long long));
            imgstore_server__html_raw(html, number);
            c += 3;
        } else if (c[1] == '%') {
            imgstore_server__html_raw(html, "%");
            c += 1;
        } else {
            html->err = imgstore_error_set(IMGSTORE_EINVALID, "html format: unsupported %.4s", c);
            break;
        }
        run = c + 1;
    }
    if (!html->err)
        append(html, run, strlen(run));
    va_end(ap);
}

void imgstore_server__html_free(imgstore_server__html *html)
{
    if (!html)
        return;
    free(html->data);
    html->data = NULL;
    html->len = html->cap = 0;
    html->err = 0;
}

void imgstore_server__html_begin(imgstore_server__html *html, const char *title, const char *user)
{
    imgstore_server__html_fmt(html,
                              "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                              "<meta name=\"viewport\" content=\"width=device-width, "
                              "initial-scale=1\"><title>%s · imgstore</title>"
                              "<link rel=\"stylesheet\" href=\"/ui/style.css\"></head>\n<body>"
                              "<header><a class=\"brand\" href=\"/ui/\">imgstore</a>"
                              "<nav><a href=\"/ui/\">Images</a></nav>",
                              title);
    if (user)
        imgstore_server__html_fmt(html,
                                  "<form class=\"session\" method=\"post\" action=\"/ui/logout\">"
                                  "<span>signed in as <b id=\"user\">%s</b></span> "
                                  "<button type=\"submit\">Log out</button></form>",
                                  user);
    imgstore_server__html_raw(html, "</header>\n<main>\n");
}

void imgstore_server__html_end(imgstore_server__html *html)
{
    imgstore_server__html_raw(html, "</main>\n<footer>imgstore status page: read-only, "
                                    "rendered by the server from the store's tip</footer>\n"
                                    "</body></html>\n");
}

void imgstore_server__html_headers(struct MHD_Response *response)
{
    /* nothing but our stylesheet, our images and our forms: a stored text that escaped
     * escaping still could not run script, load from elsewhere, or post elsewhere */
    MHD_add_response_header(response, "Content-Security-Policy",
                            "default-src 'none'; style-src 'self'; img-src 'self'; "
                            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(response, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(response, "X-Frame-Options", "DENY");
}

enum MHD_Result imgstore_server__reply_html(imgstore_server__request *req, unsigned status,
                                            imgstore_server__html *html)
{
    enum MHD_Result result;

    if (html->err || !html->data) {
        int err = html->err ? html->err : IMGSTORE_ERROR;

        imgstore_server__html_free(html);
        return imgstore_server__reply_error(req, err == IMGSTORE_EINVALID ? IMGSTORE_ERROR : err);
    }
    /* a page is a function of the tip and who reads it: revalidated on every view */
    result = imgstore_server__reply_body(req, status, html->data, html->len,
                                         "text/html; charset=utf-8", "no-store", NULL);
    imgstore_server__html_free(html);
    return result;
}

const char imgstore_server__html_stylesheet[] =
    ":root{--fg:#1d2330;--muted:#5b6476;--line:#d9dde5;--bg:#f6f7f9;--card:#fff;"
    "--accent:#2456b3;--ok:#1d7a3a;--bad:#b42318;--warn:#8a5a00}\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);"
    "background:var(--bg)}\n"
    "header{display:flex;gap:1.5rem;align-items:center;padding:.7rem 1.5rem;background:#1d2330;"
    "color:#fff}\n"
    "header a{color:#fff;text-decoration:none}\n"
    "header .brand{font-weight:700;letter-spacing:.02em}\n"
    "header nav{flex:1}\n"
    "header form.session{display:flex;gap:.6rem;align-items:center;margin:0;font-size:.9rem}\n"
    "main{max-width:72rem;margin:1.5rem auto;padding:0 1.5rem}\n"
    "h1{font-size:1.5rem;margin:.2rem 0 1rem}\n"
    "h2{font-size:1.1rem;margin:1.8rem 0 .6rem}\n"
    ".crumbs{color:var(--muted);font-size:.9rem}\n"
    ".crumbs a{color:var(--accent)}\n"
    "table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid "
    "var(--line)}\n"
    "th,td{text-align:left;padding:.45rem .7rem;border-bottom:1px solid var(--line);"
    "vertical-align:top}\n"
    "th{background:#eef0f4;font-weight:600;font-size:.85rem;color:var(--muted)}\n"
    "td a{color:var(--accent)}\n"
    "td.nowrap,td code.name{white-space:nowrap}\n"
    "td.digest{font-size:12px;min-width:17em}\n"
    "code,.digest{font:13px/1.4 ui-monospace,'DejaVu Sans Mono',monospace;word-break:break-all}\n"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1.2rem;background:"
    "var(--card);border:1px solid var(--line);padding:.8rem 1rem;margin:0}\n"
    "dt{color:var(--muted)}\n"
    "dd{margin:0}\n"
    ".badge{display:inline-block;padding:.05rem .5rem;border-radius:.7rem;font-size:.8rem;"
    "font-weight:600;border:1px solid}\n"
    ".ok{color:var(--ok);border-color:var(--ok)}\n"
    ".bad{color:var(--bad);border-color:var(--bad)}\n"
    ".warn{color:var(--warn);border-color:var(--warn)}\n"
    ".muted{color:var(--muted)}\n"
    ".pager{margin:.8rem 0;display:flex;gap:1rem}\n"
    ".pager a{color:var(--accent)}\n"
    ".login{max-width:26rem;margin:3rem auto;background:var(--card);border:1px solid "
    "var(--line);padding:1.5rem}\n"
    ".login input[type=password]{width:100%;padding:.5rem;margin:.4rem 0 1rem;font:inherit}\n"
    "button{font:inherit;padding:.35rem .9rem;border:1px solid var(--accent);background:"
    "var(--accent);color:#fff;border-radius:.25rem;cursor:pointer}\n"
    "header button{background:transparent;border-color:#fff}\n"
    ".error{color:var(--bad);font-weight:600}\n"
    "footer{max-width:72rem;margin:2rem auto;padding:0 1.5rem;color:var(--muted);"
    "font-size:.8rem}\n";
