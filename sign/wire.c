/*
 * The byte-level formats under every sign/ file: SSH wire strings and integers read from
 * untrusted buffers without ever stepping past their end, written into fixed buffers with a
 * sticky overflow flag, and the PEM-style armour (BEGIN line, 70-column base64, END line)
 * shared by OpenSSH private keys, imgstore encrypted keys and SSH signatures. It knows no key
 * or signature semantics; the callers give every failure its context.
 */
#include "sign/sign_internal.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define ARMOR_LINE      70 /* what ssh-keygen wraps at; byte-identical output needs the same */
#define ARMOR_LABEL_MAX 64
#define QUOTE_MAX       64

void imgstore_sign__reader_init(imgstore_sign__reader *reader, const void *data, size_t len)
{
    reader->data = data;
    reader->len = len;
    reader->off = 0;
}

size_t imgstore_sign__remaining(const imgstore_sign__reader *reader)
{
    return reader->len - reader->off;
}

bool imgstore_sign__take_bytes(imgstore_sign__reader *reader, const uint8_t **out, size_t len)
{
    if (len > imgstore_sign__remaining(reader))
        return false;
    *out = reader->data + reader->off;
    reader->off += len;
    return true;
}

bool imgstore_sign__take_u8(imgstore_sign__reader *reader, uint8_t *out)
{
    const uint8_t *bytes;

    if (!imgstore_sign__take_bytes(reader, &bytes, 1))
        return false;
    *out = bytes[0];
    return true;
}

bool imgstore_sign__take_u32(imgstore_sign__reader *reader, uint32_t *out)
{
    const uint8_t *bytes;

    if (!imgstore_sign__take_bytes(reader, &bytes, 4))
        return false;
    *out = (uint32_t)bytes[0] << 24 | (uint32_t)bytes[1] << 16 | (uint32_t)bytes[2] << 8 |
           (uint32_t)bytes[3];
    return true;
}

bool imgstore_sign__take_u64(imgstore_sign__reader *reader, uint64_t *out)
{
    uint32_t high, low;
    size_t start = reader->off;

    if (!imgstore_sign__take_u32(reader, &high) || !imgstore_sign__take_u32(reader, &low)) {
        reader->off = start;
        return false;
    }
    *out = (uint64_t)high << 32 | low;
    return true;
}

bool imgstore_sign__take_string(imgstore_sign__reader *reader, const uint8_t **out, size_t *len_out)
{
    size_t start = reader->off;
    uint32_t len;

    if (!imgstore_sign__take_u32(reader, &len) || !imgstore_sign__take_bytes(reader, out, len)) {
        reader->off = start;
        return false;
    }
    *len_out = len;
    return true;
}

bool imgstore_sign__string_is(const uint8_t *str, size_t len, const char *expected)
{
    return len == strlen(expected) && memcmp(str, expected, len) == 0;
}

void imgstore_sign__writer_init(imgstore_sign__writer *writer, void *buf, size_t cap)
{
    writer->data = buf;
    writer->cap = cap;
    writer->len = 0;
    writer->overflow = false;
}

void imgstore_sign__put_bytes(imgstore_sign__writer *writer, const void *data, size_t len)
{
    if (writer->overflow || len > writer->cap - writer->len) {
        writer->overflow = true;
        return;
    }
    if (len > 0)
        memcpy(writer->data + writer->len, data, len);
    writer->len += len;
}

void imgstore_sign__put_u8(imgstore_sign__writer *writer, uint8_t value)
{
    imgstore_sign__put_bytes(writer, &value, 1);
}

void imgstore_sign__put_u32(imgstore_sign__writer *writer, uint32_t value)
{
    uint8_t bytes[4] = {(uint8_t)(value >> 24), (uint8_t)(value >> 16), (uint8_t)(value >> 8),
                        (uint8_t)value};

    imgstore_sign__put_bytes(writer, bytes, sizeof(bytes));
}

void imgstore_sign__put_u64(imgstore_sign__writer *writer, uint64_t value)
{
    imgstore_sign__put_u32(writer, (uint32_t)(value >> 32));
    imgstore_sign__put_u32(writer, (uint32_t)value);
}

void imgstore_sign__put_string(imgstore_sign__writer *writer, const void *data, size_t len)
{
    if (len > UINT32_MAX) {
        writer->overflow = true;
        return;
    }
    imgstore_sign__put_u32(writer, (uint32_t)len);
    imgstore_sign__put_bytes(writer, data, len);
}

void imgstore_sign__put_cstring(imgstore_sign__writer *writer, const char *str)
{
    imgstore_sign__put_string(writer, str, strlen(str));
}

void imgstore_sign__quote(char *out, size_t cap, const uint8_t *str, size_t len)
{
    size_t used = 0;

    for (size_t i = 0; i < len && i < QUOTE_MAX; i++) {
        char piece[5];

        if (str[i] >= 0x20 && str[i] < 0x7f && str[i] != '\\')
            snprintf(piece, sizeof(piece), "%c", str[i]);
        else
            snprintf(piece, sizeof(piece), "\\x%02x", str[i]);
        if (strlen(piece) + 4 > cap - used) /* keep room for "..." and NUL */
            break;
        memcpy(out + used, piece, strlen(piece));
        used += strlen(piece);
    }
    if (len > QUOTE_MAX && cap - used >= 4) {
        memcpy(out + used, "...", 3);
        used += 3;
    }
    out[used] = '\0';
}

size_t imgstore_sign__armor_len(size_t blob_len, const char *label)
{
    size_t b64_len = sodium_base64_ENCODED_LEN(blob_len, sodium_base64_VARIANT_ORIGINAL) - 1;
    size_t lines = (b64_len + ARMOR_LINE - 1) / ARMOR_LINE;

    /* "-----BEGIN " + label + "-----\n" and "-----END " + label + "-----\n" */
    return (11 + strlen(label) + 6) + b64_len + lines + (9 + strlen(label) + 6);
}

void imgstore_sign__armor(char *out, const uint8_t *blob, size_t blob_len, const char *label)
{
    size_t b64_len = sodium_base64_ENCODED_LEN(blob_len, sodium_base64_VARIANT_ORIGINAL) - 1;
    size_t used = (size_t)sprintf(out, "-----BEGIN %s-----\n", label);
    char *b64 = out + used + (b64_len + ARMOR_LINE - 1) / ARMOR_LINE;

    /*
     * Encode towards the end of the output, then move each line down into place: no second
     * buffer, which matters when the blob is a private key that must not reach the heap.
     */
    sodium_bin2base64(b64, b64_len + 1, blob, blob_len, sodium_base64_VARIANT_ORIGINAL);
    for (size_t done = 0; done < b64_len; done += ARMOR_LINE) {
        size_t line = b64_len - done < ARMOR_LINE ? b64_len - done : ARMOR_LINE;

        memmove(out + used, b64 + done, line);
        used += line;
        out[used++] = '\n';
    }
    sprintf(out + used, "-----END %s-----\n", label);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static size_t skip_space(const char *text, size_t len, size_t pos)
{
    while (pos < len && is_space(text[pos]))
        pos++;
    return pos;
}

static bool starts_with(const char *text, size_t len, size_t pos, const char *prefix)
{
    size_t prefix_len = strlen(prefix);

    return len - pos >= prefix_len && memcmp(text + pos, prefix, prefix_len) == 0;
}

bool imgstore_sign__has_begin(const char *text, size_t text_len, const char *label)
{
    char begin[ARMOR_LABEL_MAX + 20];

    snprintf(begin, sizeof(begin), "-----BEGIN %s-----", label);
    return starts_with(text, text_len, skip_space(text, text_len, 0), begin);
}

/* The first line that is exactly `marker` (after LF), searching from `pos`; `len` if none. */
static size_t find_line(const char *text, size_t len, size_t pos, const char *marker)
{
    for (; pos < len; pos++) {
        if ((pos == 0 || text[pos - 1] == '\n') && starts_with(text, len, pos, marker))
            return pos;
    }
    return len;
}

int imgstore_sign__dearmor(uint8_t *out, size_t cap, size_t *out_len, const char *text,
                           size_t text_len, const char *label, const char *what)
{
    char begin[ARMOR_LABEL_MAX + 20], end[ARMOR_LABEL_MAX + 20];
    size_t pos, body, end_pos, decoded_len;

    snprintf(begin, sizeof(begin), "-----BEGIN %s-----", label);
    snprintf(end, sizeof(end), "-----END %s-----", label);
    pos = skip_space(text, text_len, 0);
    if (!starts_with(text, text_len, pos, begin))
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: does not start with '%s'", what, begin);
    pos += strlen(begin);
    if (starts_with(text, text_len, pos, "\r\n"))
        pos += 2;
    else if (starts_with(text, text_len, pos, "\n"))
        pos += 1;
    else
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: '%s' is not on a line of its own", what,
                                  begin);
    body = pos;
    end_pos = find_line(text, text_len, body, end);
    if (end_pos == text_len)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: truncated, no '%s' line", what, end);
    pos = skip_space(text, text_len, end_pos + strlen(end));
    if (pos != text_len)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: unexpected data after '%s'", what, end);
    /*
     * base642bin with a NULL end pointer fails unless every byte is base64 or an ignored one;
     * it finds its ignore set with strchr(), which also matches the terminating NUL, so NUL
     * bytes would be skipped silently and one blob would have many accepted armourings.
     */
    if (memchr(text + body, '\0', end_pos - body) != NULL ||
        sodium_base642bin(out, cap, text + body, end_pos - body, "\r\n", &decoded_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: bad base64 between '%s' and '%s'", what,
                                  begin, end);
    *out_len = decoded_len;
    return 0;
}
