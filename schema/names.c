/*
 * The naming rules for everything a user or a manifest names: images, versions, channels,
 * files and label keys. Names become git tree entries, URL path segments and file names on
 * disk, so the rules are a small allow-list of ASCII bytes that can never spell a path
 * ("." / ".." / "a/b"), an option ("-x") or a control sequence. This file also owns the
 * quoting of untrusted values in error messages. It does not know where a name comes from.
 */
#include "schema/schema_internal.h"

#include <stdio.h>
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
    [IMGSTORE_NAME_LABEL] = {"label key", true},
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
