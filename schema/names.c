/*
 * The naming rules for everything a user or a manifest names: images, versions, channels,
 * files and label keys. Names become git tree entries, URL path segments and file names on
 * disk, so the rules are a small allow-list of ASCII bytes that can never spell a path
 * ("." / ".." / "a/b"), an option ("-x") or a control sequence. Free texts shown as one line
 * (reasons, labels, source, actors) may hold any printable UTF-8, but no character that
 * drives a terminal. This file also owns the quoting of untrusted values in error messages.
 * It does not know where a name or text comes from.
 */
#include "schema/schema_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Long values are cut in messages; the rule, not the whole value, is what the reader needs. */
#define QUOTE_MAX_INPUT 40

typedef struct {
    const char *label;   /* how messages call this kind of name */
    bool upper_and_plus; /* also A-Z and '+' (versions carry build metadata: "1.0+g1a2b") */
} name_rule;

static const name_rule name_rules[] = {
    [IMGSTORE_NAME_IMAGE] = {"image name", false},     [IMGSTORE_NAME_VERSION] = {"version", true},
    [IMGSTORE_NAME_CHANNEL] = {"channel name", false}, [IMGSTORE_NAME_FILE] = {"file name", true},
    [IMGSTORE_NAME_LABEL] = {"label key", true},       [IMGSTORE_NAME_HOST] = {"host name", true},
};

void imgstore_schema__quote(char *buf, size_t cap, const char *value, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t shown = len > QUOTE_MAX_INPUT ? QUOTE_MAX_INPUT : len;
    size_t n = 0;

    if (cap == 0)
        return;
    for (size_t i = 0; i < shown && n + 5 < cap; i++) {
        unsigned char c = (unsigned char)value[i];

        if (c < 0x20 || c > 0x7e || c == '\'' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = 'x';
            buf[n++] = hex[c >> 4];
            buf[n++] = hex[c & 0xf];
        } else {
            buf[n++] = (char)c;
        }
    }
    if (shown < len && n + 4 <= cap) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
}

static bool name_byte_allowed(unsigned char c, bool upper_and_plus)
{
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')
        return true;
    return upper_and_plus && ((c >= 'A' && c <= 'Z') || c == '+');
}

int imgstore_schema_check_name(imgstore_name_kind kind, const char *value)
{
    char shown[IMGSTORE_SCHEMA__QUOTE_CAP];
    const name_rule *rule;
    size_t len;

    if ((unsigned)kind >= sizeof(name_rules) / sizeof(name_rules[0]))
        return imgstore_error_set(IMGSTORE_EINVALID, "unknown kind of name %d", (int)kind);
    rule = &name_rules[kind];
    if (!value)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: missing", rule->label);
    /* strnlen: a hostile caller's unterminated buffer is read no further than the cap. */
    len = strnlen(value, IMGSTORE_NAME_MAX + 1);
    imgstore_schema__quote(shown, sizeof(shown), value, len);
    if (len == 0 || len > IMGSTORE_NAME_MAX)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s '%s': must be 1 to %d bytes", rule->label,
                                  shown, IMGSTORE_NAME_MAX);
    if (value[0] == '.' || value[0] == '-' || value[0] == '+')
        return imgstore_error_set(IMGSTORE_EINVALID, "%s '%s': must not start with '%c'",
                                  rule->label, shown, value[0]);
    for (size_t i = 0; i < len; i++) {
        if (!name_byte_allowed((unsigned char)value[i], rule->upper_and_plus))
            return imgstore_error_set(
                IMGSTORE_EINVALID, "%s '%s': only %s are allowed", rule->label, shown,
                rule->upper_and_plus ? "A-Z a-z 0-9 . _ + -" : "a-z 0-9 . _ -");
    }
    return 0;
}

/* The code point of the character at `s` (valid UTF-8, checked before) and its length. */
static uint32_t utf8_at(const unsigned char *s, size_t *len_out)
{
    if (s[0] < 0x80) {
        *len_out = 1;
        return s[0];
    }
    if (s[0] < 0xe0) {
        *len_out = 2;
        return ((uint32_t)(s[0] & 0x1f) << 6) | (s[1] & 0x3f);
    }
    if (s[0] < 0xf0) {
        *len_out = 3;
        return ((uint32_t)(s[0] & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
    }
    *len_out = 4;
    return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) |
           ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
}

static bool text_char_unsafe(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

int imgstore_schema_check_text(const char *field, const char *value)
{
    size_t len;

    if (!field)
        field = "text";
    if (!value)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: missing", field);
    len = strnlen(value, IMGSTORE_TEXT_MAX);
    if (len >= IMGSTORE_TEXT_MAX)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: longer than %d bytes", field,
                                  IMGSTORE_TEXT_MAX - 1);
    if (!imgstore_schema__utf8_valid(value, len))
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: not UTF-8 text", field);
    for (size_t i = 0; i < len;) {
        size_t n;
        uint32_t cp = utf8_at((const unsigned char *)value + i, &n);

        if (text_char_unsafe(cp))
            return imgstore_error_set(IMGSTORE_EINVALID,
                                      "%s: control character U+%04X at byte %zu: a text is one "
                                      "line of printable characters, without control, line "
                                      "separator or bidi characters",
                                      field, (unsigned)cp, i);
        i += n;
    }
    return 0;
}

char *imgstore_schema_text_escape(const char *text)
{
    static const char hex[] = "0123456789abcdef";
    size_t len = strlen(text), n = 0;
    char *out = malloc(len * 4 + 1); /* at worst 4 bytes shown for each byte */

    if (!out)
        return NULL;
    for (size_t i = 0; i < len;) {
        const unsigned char *s = (const unsigned char *)text + i;
        size_t step = s[0] < 0x80 ? 1 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
        uint32_t cp;

        if (step > len - i || !imgstore_schema__utf8_valid(text + i, step)) {
            cp = s[0]; /* a byte that is not UTF-8: shown, never passed on */
            step = 0;
        } else {
            cp = utf8_at(s, &step);
        }
        if (step == 0 || text_char_unsafe(cp)) {
            out[n++] = '\\';
            if (cp < 0x100) {
                out[n++] = 'x';
            } else {
                out[n++] = 'u';
                out[n++] = hex[(cp >> 12) & 0xf];
                out[n++] = hex[(cp >> 8) & 0xf];
            }
            out[n++] = hex[(cp >> 4) & 0xf];
            out[n++] = hex[cp & 0xf];
            i += step ? step : 1;
        } else {
            memcpy(out + n, s, step);
            n += step;
            i += step;
        }
    }
    out[n] = '\0';
    return out;
}
